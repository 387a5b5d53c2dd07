"""UUIDv7 ids: time-ordered, so retention and replay can page by id."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_MS_MASK = (1 << 48) - 1
_RAND_MASK = (1 << 62) - 1
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
            stamps.append((ms & _MS_MASK) << 80 | 0x7 << 76 | _seq << 64 | 0b10 << 62)
    noise = os.urandom(8 * count)
    ids = []
    for i, stamp in enumerate(stamps):
        value = stamp | int.from_bytes(noise[8 * i : 8 * i + 8], "big") & _RAND_MASK
        h = f"{value:032x}"  # what str(uuid.UUID(int=value)) gives, without building the object
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids
