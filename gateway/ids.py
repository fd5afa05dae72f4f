"""Decision ids: ULIDs (time-ordered, so newest-first is a sort by id).

Monotonic within a process: ids made in the same millisecond count up from a
random start, so they stay ordered and unique without a system call per id.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def new_id(at_ms: int | None = None) -> str:
    """A 26-character ULID: 48 bits of milliseconds, 80 bits random-then-counting."""
    global _last_ms, _last_random
    ms = int(time.time() * 1000) if at_ms is None else at_ms
    with _lock:
        if ms == _last_ms:
            _last_random = (_last_random + 1) % (1 << _RANDOM_BITS)
        else:
            _last_ms, _last_random = ms, int.from_bytes(os.urandom(10), "big") >> 1
        value = (ms << _RANDOM_BITS) | _last_random
    return _encode(value)


# Every 10-bit group as its two characters: 13 lookups encode the 130 bits
# of a ULID (the leading two are zero), a fifth of the work of 26 divisions.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))


def _encode(value: int) -> str:
    return "".join([_PAIRS[(value >> shift) & 0x3FF] for shift in _SHIFTS])
