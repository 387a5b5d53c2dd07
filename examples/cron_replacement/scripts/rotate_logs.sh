#!/bin/sh
# Append a heartbeat line to DIR/heartbeat.log and rotate the file past 1000 lines.
# Exit 64 (usage) when DIR is missing from the arguments: the schedule lists 64 as permanent.
set -eu
if [ $# -lt 1 ]; then
    echo "usage: rotate_logs.sh DIR" >&2
    exit 64
fi
dir=$1
mkdir -p "$dir"
log="$dir/heartbeat.log"
date -u +"%Y-%m-%dT%H:%M:%SZ heartbeat" >> "$log"
lines=$(wc -l < "$log" | tr -d ' ')
if [ "$lines" -gt 1000 ]; then
    mv "$log" "$log.1"
    echo "rotated $log ($lines lines)"
else
    echo "$log has $lines lines"
fi
