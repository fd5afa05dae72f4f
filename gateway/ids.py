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


def _encode(value: int) -> str:
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))
