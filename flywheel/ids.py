"""UUIDv7 ids: time-ordered, so retention and replay can page by id."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_seq = 0
_RAND_MASK = (1 << 62) - 1
_MS_MASK = (1 << 48) - 1


def _reserve(count: int) -> list[tuple[int, int]]:
    """``count`` (millisecond, sequence) pairs, each later than any reserved before in this process.

    The 12-bit counter starts at a random value below 1024 in each new millisecond (leaving
    headroom) and counts up; when it runs out within one millisecond, the next is borrowed.
    """
    global _last_ms, _seq
    stamps = []
    with _lock:
        ms, seq = time.time_ns() // 1_000_000, _seq
        if ms <= _last_ms:
            ms = _last_ms
        else:
            seq = int.from_bytes(os.urandom(2), "big") & 0x3FF
            _last_ms = ms
            stamps.append((ms, seq))
            count -= 1
        for _ in range(count):
            seq += 1
            if seq > 0xFFF:
                ms, seq = ms + 1, 0
            stamps.append((ms, seq))
        _last_ms, _seq = ms, seq
    return stamps


def _format(ms: int, seq: int, rand: int) -> str:
    h = f"{(ms & _MS_MASK) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand & _RAND_MASK:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"  # str(uuid.UUID(int=…)) without the object


def new_id() -> str:
    """Return a new UUIDv7 string; ids minted in one process sort in minting order."""
    (ms, seq), = _reserve(1)
    return _format(ms, seq, int.from_bytes(os.urandom(8), "big"))


def new_ids(count: int) -> list[str]:
    """``count`` new UUIDv7 strings in minting order: one lock and one read of the random source
    for the lot, which is what makes bulk inserts and claims cheap per id."""
    if count <= 0:
        return []
    noise = os.urandom(8 * count)
    return [_format(ms, seq, int.from_bytes(noise[8 * i : 8 * i + 8], "big"))
            for i, (ms, seq) in enumerate(_reserve(count))]
