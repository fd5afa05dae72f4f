"""Properties of the text and window code over arbitrary input: nothing raises,
segment counts agree with the encoding, banned terms are found where they were
written, and a window's next opening is open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import available_timezones

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.schedule.window import Window, WindowError, is_open, next_open
from gateway.schedule.zones import valid_zone
from gateway.text.normalize import normalize, normalize_term
from gateway.text.sms import GSM_7, UCS_2, sms_segments
from gateway.text.terms import TermMatcher

BOUNDED = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Every plane, lone surrogates included, plus the characters evasions and
# scripts are made of: joiners, bidi marks, combining marks, emoji parts,
# full-width and traditional Chinese, separators and controls.
_TRICKY = (
    "\u200b\u200c\u200d\u200e\u200f\u202e\u2066\u00ad\ufeff\u0301\u0308\u20e3\ufe0f"
    "\U0001f3fb\U0001f1eb\U0001f1f7\U0001f468\U0001f469\u1100\u1161\u11a8\u3164"
    "\r\n\t\x00\x1b\x7f\u0085\u2028\u3000ＦＲＥＥ穩賺不賠稳赚不赔 .-_*~/|+·•‧∙⋅"
    "ßẞİﬁ①€[]{}^\\@£¥èÇØΔ§¿\u0627\u0644\u0660\ud800\udc00"
)
_CHARS = st.one_of(
    st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF),
    st.sampled_from(_TRICKY),
    st.sampled_from("abcdef xyz."),
)
TEXT = st.text(_CHARS, max_size=300)
# Pure ASCII takes a fast path of its own; with control characters in it.
ASCII_TEXT = st.text(st.characters(max_codepoint=127), max_size=100)
GSM_TEXT = st.text(st.sampled_from('@£$¥èé\nØ\rÅΔ_ !"#%&()*+,-./09:;<=>?AZaz§¿€[]{}^~|\\\f'))

_GSM_EXTENDED = set("\f^{}\\[~]|€")


@BOUNDED
@given(st.one_of(TEXT, GSM_TEXT, TEXT.map(lambda s: s * 5)))
def test_segments_agree_with_the_encoding(text: str) -> None:
    info = sms_segments(text)
    assert info.chars == len(text)
    if info.encoding == GSM_7:
        assert info.non_gsm == ()
        assert info.units == len(text) + sum(ch in _GSM_EXTENDED for ch in text)
        single, part = 160, 153
    else:
        assert info.encoding == UCS_2
        assert info.non_gsm, "UCS-2 names the character that forced it"
        offset, char = info.non_gsm[0]
        assert text[offset] == char
        assert info.units == len(text.encode("utf-16-le", "surrogatepass")) // 2
        single, part = 70, 67
    if info.units <= single:
        assert info.segments == 1
    else:
        assert -(-info.units // part) <= info.segments <= info.units


@BOUNDED
@given(TEXT)
def test_normalize_keeps_a_map_into_the_original(text: str) -> None:
    norm = normalize(text)
    assert len(norm.origin) == len(norm.text)
    assert list(norm.origin) == sorted(norm.origin)
    assert all(0 <= at < len(text) for at in norm.origin)
    assert normalize(norm.text).text == norm.text
    normalize_term(text)


# Letters, one of them folding to two (ß -> ss) yet spaced out as one.
_WORD = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzéüøß"), min_size=2, max_size=10)
_EDGE = st.sampled_from([", ", "! ", "(", ")", "? ", '"', ": ", ","])


def _written(term: str, how: str) -> str:
    if how == "upper":
        return term.upper()
    if how == "full-width":
        return "".join(chr(ord(c) + 0xFEE0) if "a" <= c <= "z" else c for c in term)
    if how == "spaced" and len(term) >= 3:
        return " ".join(term)
    if how == "dotted" and len(term) >= 3:
        return ".".join(term)
    if how == "zero-width":
        return "\u200b".join(term)
    return term


@BOUNDED
@given(
    _WORD,
    st.sampled_from(["as is", "upper", "full-width", "spaced", "dotted", "zero-width"]),
    st.one_of(TEXT, ASCII_TEXT),
    _EDGE,
    _EDGE,
    st.one_of(TEXT, ASCII_TEXT),
)
def test_a_latin_term_is_found_where_it_was_written(
    term: str, how: str, before: str, left: str, right: str, after: str
) -> None:
    text = before + left + _written(term, how) + right + after
    found = TermMatcher.compile([term]).found(text)
    assert 0 in found
    offset = found[0].offset
    assert offset <= len(before + left)  # this one, or an earlier one
    assert normalize(text[offset:]).text.startswith(normalize_term(term))


@BOUNDED
@given(
    st.text(st.sampled_from("稳赚不赔穩賺不賠回退订免费贷款中奖ポイント"), min_size=2, max_size=6),
    TEXT,
    TEXT,
)
def test_a_cjk_term_is_found_anywhere(term: str, before: str, after: str) -> None:
    text = before + term + after
    found = TermMatcher.compile([term]).found(text)
    assert 0 in found
    offset = found[0].offset
    assert offset <= len(before)
    assert normalize(text[offset:]).text.startswith(normalize_term(term))


_ZONES = sorted(zone for zone in available_timezones() if valid_zone(zone))
_CLOCK = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 24), st.integers(0, 59))
_INSTANT = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(9000, 12, 31),
    timezones=st.one_of(
        st.just(UTC),
        st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-1439, 1439)),
    ),
)


@BOUNDED
@given(
    st.lists(st.builds(lambda a, b: f"{a}-{b}", _CLOCK, _CLOCK), min_size=1, max_size=3),
    st.one_of(st.none(), st.lists(st.sampled_from(["mon", "wed", "sat", "sun"]), min_size=1)),
    _INSTANT,
    st.lists(st.sampled_from(_ZONES), min_size=1, max_size=3),
    st.integers(0, 14),
)
def test_next_open_is_open_and_not_before_the_start(
    hours: list[str], days: list[str] | None, instant: datetime, zones: list[str], horizon: int
) -> None:
    try:
        window = Window.parse(hours, days)
    except WindowError:
        return
    now_open = all(is_open(window, instant, zone, None) for zone in zones)
    answer = next_open([(window, zones, None)], instant, timedelta(days=horizon))
    if now_open:
        assert answer == instant
    if answer is not None:
        assert instant <= answer <= instant + timedelta(days=horizon)
        assert all(is_open(window, answer, zone, None) for zone in zones)
