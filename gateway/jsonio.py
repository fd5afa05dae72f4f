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
