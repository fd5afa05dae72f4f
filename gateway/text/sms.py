"""SMS segments as carriers count them (GSM 03.38 / 3GPP TS 23.038 and 23.040).

Encoding: GSM-7 when every character is in the GSM 03.38 default alphabet
(basic table, 1 septet) or its extension table (an escape plus the character,
2 septets); otherwise the whole message is UCS-2, counted in UTF-16 code units.

Capacity: a message that fits in one segment gets 160 septets / 70 units; a
longer one is concatenated and each part loses room to the user data header:
153 septets / 67 units per part.

Splitting follows the Twilio message segment calculator and Android: a part
never ends inside an escape sequence (a 2-septet character moves whole to the
next part), inside a surrogate pair, or, in UCS-2, inside a user-perceived
character (an extended grapheme cluster: emoji ZWJ sequences, flags, keycaps,
a letter with its combining marks). Two deliberate edges:

- A grapheme cluster longer than a whole part (say a letter under 80
  combining marks) cannot stay whole: it starts a fresh part and is cut at
  code-point boundaries, still never inside a surrogate pair.
- In GSM-7 the unit is the character, as on Android: CR LF may be split
  between two parts (each is a whole septet).

Empty text is one segment: a carrier bills an empty SMS as one message, and
the Twilio calculator reports one segment for it too.

A lone surrogate (which can reach us from a bad JSON escape) is not in GSM
03.38, so it forces UCS-2 and counts as one UTF-16 code unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import regex

GSM_7: Final = "GSM-7"
UCS_2: Final = "UCS-2"

# GSM 03.38 default alphabet, basic table, in code order (0x00-0x7F). 0x1B is
# the escape to the extension table and is not a character of its own.
_GSM_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each costs the escape septet plus its own.
_GSM_EXTENDED: Final = frozenset("\f^{}\\[~]|€")
_GSM_ALL: Final = _GSM_BASIC | _GSM_EXTENDED

_SINGLE: Final = {GSM_7: 160, UCS_2: 70}
_PART: Final = {GSM_7: 153, UCS_2: 67}

_MAX_NON_GSM: Final = 5
# \X is linear, but a bound keeps any surprise from stalling a request; past
# it the split falls back to code points (surrogate pairs still stay whole).
_GRAPHEME: Final = regex.compile(r"\X")
# Characters that can join a neighbour into one grapheme cluster (UAX #29):
# marks and other extenders, ZWJ, regional indicators, prepended characters,
# spacing marks, conjoining Hangul jamo (a precomposed syllable only joins
# with those), and CR (of CR LF).
_CLUSTERING: Final = regex.compile(
    r"[\p{GCB=Extend}\p{GCB=ZWJ}\p{GCB=Regional_Indicator}\p{GCB=Prepend}"
    r"\p{GCB=SpacingMark}\p{GCB=L}\p{GCB=V}\p{GCB=T}\r]"
)
_GRAPHEME_TIMEOUT_S: Final = 0.25


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """How a text travels as SMS.

    `chars` counts Unicode code points; `units` counts septets in GSM-7 (an
    extension character counts 2) or UTF-16 code units in UCS-2 (an emoji
    outside the BMP counts 2, a flag 4). `non_gsm` is empty for GSM-7; for
    UCS-2 it names the first (up to 5) distinct characters that forced it, as
    (code-point offset of the first occurrence, character).
    """

    encoding: str
    segments: int
    chars: int
    units: int
    non_gsm: tuple[tuple[int, str], ...]


def sms_segments(text: str) -> SegmentInfo:
    """Count the SMS segments of `text`, as carriers and Twilio do."""
    if _is_gsm(text):
        units = _gsm_units(text)
        return SegmentInfo(GSM_7, _gsm_segments(text, units), len(text), units, ())
    units = _utf16_units(text)
    return SegmentInfo(UCS_2, _ucs2_segments(text, units), len(text), units, _non_gsm(text))


def _gsm_segments(text: str, units: int) -> int:
    if units <= _SINGLE[GSM_7]:
        return 1
    if units == len(text):  # no escape sequence to keep whole
        return -(-units // _PART[GSM_7])
    return _split(_gsm_costs(text), _PART[GSM_7])


def _ucs2_segments(text: str, units: int) -> int:
    if units <= _SINGLE[UCS_2]:
        return 1
    if _simple_graphemes(text):
        if units == len(text):  # one code unit per character: cut anywhere
            return -(-units // _PART[UCS_2])
        return _split([2 if ch > "\uffff" else 1 for ch in text], _PART[UCS_2])
    return _split(_ucs2_costs(text), _PART[UCS_2])


def _simple_graphemes(text: str) -> bool:
    """Is every code point of `text` a grapheme cluster of its own?"""
    try:
        return _CLUSTERING.search(text, timeout=_GRAPHEME_TIMEOUT_S) is None
    except TimeoutError:
        return False


def _is_gsm(text: str) -> bool:
    return _GSM_ALL.issuperset(text)


def _gsm_units(text: str) -> int:
    return len(text) + sum(text.count(ch) for ch in _GSM_EXTENDED)


def _utf16_units(text: str) -> int:
    # surrogatepass: a lone surrogate encodes as the one code unit it is.
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _gsm_costs(text: str) -> list[int]:
    return [2 if ch in _GSM_EXTENDED else 1 for ch in text]


def _ucs2_costs(text: str) -> list[int]:
    """Cost in code units of each piece that must not be split across parts.

    A grapheme cluster longer than a whole part is given back as its code
    points, so it is cut there (never inside a surrogate pair).
    """
    try:
        pieces: list[str] = _GRAPHEME.findall(text, timeout=_GRAPHEME_TIMEOUT_S)
    except TimeoutError:
        pieces = list(text)
    costs: list[int] = []
    for piece in pieces:
        if len(piece) == 1:
            costs.append(2 if piece > "\uffff" else 1)
            continue
        cost = _utf16_units(piece)
        if cost <= _PART[UCS_2]:
            costs.append(cost)
        else:
            costs.extend(2 if ch > "\uffff" else 1 for ch in piece)
    return costs


def _split(costs: list[int], capacity: int) -> int:
    """Greedy fill of parts of `capacity` units; a piece never straddles two parts."""
    parts = 1
    used = 0
    for cost in costs:
        if used + cost > capacity:
            parts += 1
            used = 0
        used += cost
    return parts


def _non_gsm(text: str) -> tuple[tuple[int, str], ...]:
    found: dict[str, int] = {}
    for offset, ch in enumerate(text):
        if ch not in _GSM_ALL and ch not in found:
            found[ch] = offset
            if len(found) == _MAX_NON_GSM:
                break
    return tuple((offset, ch) for ch, offset in found.items())
