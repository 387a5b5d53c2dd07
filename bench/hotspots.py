"""Summarise a py-spy ``--format raw`` profile (collapsed stacks) into hot-spot tables.

    py-spy record --subprocesses --threads [--idle] --format raw -r 200 -o drain.txt -- \\
        .venv/bin/python -m bench --db sqlite: --scenario drain --concurrency 8 --n 5000 --repeat 1
    python -m bench.hotspots drain.txt [--process bench.child] [--top 25] [--by-thread]

For each function it prints the share of samples in which it is on the stack (inclusive)
and at the top of the stack (self). Functions are named ``name (file)`` without line
numbers, so one function is one row. ``--process`` keeps only processes whose command
line contains the text (``bench.child`` = the runner processes; ``bench --`` = the
harness itself, where enqueue and bulk run).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from collections.abc import Iterable

_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def parse(lines: Iterable[str], process: str | None) -> list[tuple[str, list[str], int]]:
    """(thread, frames root→leaf, samples) per collapsed stack."""
    stacks = []
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        body, _, count = line.rpartition(" ")
        frames = body.split(";")
        procs = [f for f in frames if f.startswith("process ")]
        if process and not any(process in p for p in procs):
            continue
        thread = "?"
        rest = []
        for frame in frames:
            if frame.startswith("process "):
                continue
            if frame.startswith("thread ("):
                thread = frame.split(":", 1)[1].strip() if ":" in frame else frame
                thread = re.sub(r"_\d+$", "", re.sub(r"-\d+(_\d+)?$", "", thread))
                continue
            rest.append(_short(frame))
        stacks.append((thread, rest, int(count)))
    return stacks


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match.group("file")
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match.group('name')} ({path})"


def summarise(stacks: list[tuple[str, list[str], int]], top: int, by_thread: bool) -> str:
    out = []
    groups: dict[str, list[tuple[str, list[str], int]]] = defaultdict(list)
    for stack in stacks:
        groups[stack[0] if by_thread else "all threads"].append(stack)
    for group, members in sorted(groups.items(), key=lambda kv: -sum(s[2] for s in kv[1])):
        total = sum(s[2] for s in members)
        inclusive: Counter[str] = Counter()
        own: Counter[str] = Counter()
        for _, frames, count in members:
            for name in set(frames):
                inclusive[name] += count
            if frames:
                own[frames[-1]] += count
        out.append(f"\n## {group}: {total} samples\n")
        out.append("| inclusive % | self % | function |")
        out.append("|---:|---:|---|")
        names = sorted(inclusive, key=lambda n: (-inclusive[n], n))
        shown = 0
        for name in names:
            if shown >= top:
                break
            out.append(f"| {100 * inclusive[name] / total:.1f} | {100 * own[name] / total:.1f} | `{name}` |")
            shown += 1
        out.append("\nTop self time:\n")
        out.append("| self % | function |")
        out.append("|---:|---|")
        for name, count in own.most_common(top):
            out.append(f"| {100 * count / total:.1f} | `{name}` |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotspots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file")
    parser.add_argument("--process", default=None, help="keep processes whose command line contains this")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--by-thread", action="store_true")
    parser.add_argument("--skip", action="append", default=[],
                        help="drop stacks containing a frame with this text (repeatable)")
    args = parser.parse_args(argv)
    with open(args.file, encoding="utf-8") as fh:
        stacks = parse(fh, args.process)
    if args.skip:
        stacks = [s for s in stacks if not any(k in f for f in s[1] for k in args.skip)]
    print(summarise(stacks, args.top, args.by_thread))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
