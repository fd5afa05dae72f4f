"""JSON out, fast: orjson (encoding decisions was the largest single cost per
message), with a safe fallback."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(data: Any) -> bytes:
    """Compact UTF-8 JSON. Text that cannot be UTF-8 (a lone surrogate echoed
    from bad input) falls back to ASCII escapes instead of failing."""
    try:
        return orjson.dumps(data)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(data, separators=(",", ":")).encode("ascii")


# Characters a JSON string may hold raw that some readers take for a line's
# end (str.splitlines, JavaScript's line terminators): escaped in JSON lines.
_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_line(data: Any) -> str:
    """One JSON document on one line, whatever line breaks a reader knows:
    readable text, with the breaks other than LF (already escaped) escaped."""
    return json.dumps(data, ensure_ascii=False).translate(_BREAKS)
