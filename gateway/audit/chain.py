"""The trail's hash chain: what makes an altered record evident.

Each journal entry is sealed with a link: the SHA-256 of the previous link
(32 bytes; the first entry's "previous" is 32 zero bytes) followed by the
entry's own bytes. The link, in hex, is written as the entry's last element:

    ["d",1732456800000,{...the record...},"9f2c...64 hex digits"]
    ["a","0193...",{...the changes...},"4b7e..."]

Changing a byte of an entry, or removing or inserting one, breaks every link
from there on; `gateway audit verify` recomputes them. The newest link (the
head) stands for the whole trail up to it: an auditor who keeps a head
elsewhere can later prove that nothing before it changed, and that nothing
was cut off after it, which a chain alone cannot show (whoever can write the
files could recompute every link). Entries written before the chain existed
end in `}]` rather than `"]` and are counted as unchained.

Pure: bytes in, bytes out, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from gateway.jsonio import dumps

GENESIS = bytes(32)  # the "previous link" of a trail's first entry
_OPEN = b',"'
_CLOSE = b'"]\n'
SEAL_BYTES = len(_OPEN) + 64 + len(_CLOSE)  # the end of a sealed line: ,"<link>"]\n


def decision(record: dict[str, Any], at_ms: int) -> bytes:
    """The entry of a decision record, decided at `at_ms`."""
    return b'["d",%d,%b]' % (at_ms, dumps(record))


def amendment(decision_id: str, changes: dict[str, Any]) -> bytes:
    """The entry of changes to a decision (the upstream's answer, late reasons)."""
    return b'["a",%b,%b]' % (dumps(decision_id), dumps(changes))


def link(previous: bytes, entry: bytes) -> bytes:
    """The link of `entry` (a JSON array without its link) after `previous`."""
    return hashlib.sha256(previous + entry).digest()


def sealed(entries: Iterable[bytes], previous: bytes) -> tuple[bytes, bytes]:
    """The journal lines of `entries` (each a JSON array, no newline), each
    with its link, and the last link (the new head)."""
    lines = []
    for entry in entries:
        previous = hashlib.sha256(previous + entry).digest()
        lines.append(b'%b,"%b"]\n' % (entry[:-1], previous.hex().encode()))
    return b"".join(lines), previous


def opened(line: bytes) -> tuple[bytes, bytes | None]:
    """A journal line (with its newline) as (entry, link); the link is None
    for an entry written before the chain, or for one that is not a sealed
    line at all (the caller sees that when it parses the entry)."""
    if not line.endswith(_CLOSE) or len(line) < SEAL_BYTES + 2:
        return line.rstrip(b"\n"), None
    start = len(line) - SEAL_BYTES
    if line[start : start + 2] != _OPEN:
        return line.rstrip(b"\n"), None
    try:
        value = bytes.fromhex(line[start + 2 : start + 66].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return line.rstrip(b"\n"), None
    return line[:start] + b"]", value


def is_head(text: str) -> bool:
    """Whether `text` reads as a link (64 hex digits), as an auditor gives one."""
    if len(text) != 64:
        return False
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True
