"""UUIDv7 ids: time-ordered, so retention and replay can page by id."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_MS_MASK = (1 << 48) - 1
#: the first hex digit of the variant group: 0b10 followed by two random bits
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_last_ms = 0
_seq = 0


def new_id() -> str:
    """Return a new UUIDv7 string; ids minted in one process sort in minting order."""
    return new_ids(1)[0]


def new_ids(count: int) -> list[str]:
    """``count`` new UUIDv7 strings in minting order, with one lock and one ``os.urandom`` call."""
    global _last_ms, _seq
    stamps = []
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        for _ in range(count):
            ms = now_ms
            if ms <= _last_ms:
                ms = _last_ms
                _seq += 1
                if _seq > 0xFFF:  # 12-bit counter exhausted within one millisecond: borrow the next ms
                    ms += 1
                    _seq = 0
            else:
                _seq = int.from_bytes(os.urandom(2), "big") & 0x3FF  # leave headroom for the counter
            _last_ms = ms
            stamps.append((ms, _seq))
    noise = os.urandom(8 * count).hex()
    ids = []
    for i, (ms, seq) in enumerate(stamps):
        # what str(uuid.UUID(int=value)) gives, without building the object: 48 bits of
        # milliseconds, version 7, the 12-bit sequence, variant 0b10 and 62 random bits
        t = f"{ms & _MS_MASK:012x}"
        r = noise[16 * i : 16 * i + 16]
        ids.append(f"{t[:8]}-{t[8:]}-7{seq:03x}-{_VARIANT[r[0]]}{r[1:4]}-{r[4:]}")
    return ids
