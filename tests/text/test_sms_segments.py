"""SMS segment counting against published calculator test suites, plus edges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.text.sms import SegmentInfo, sms_segments

HERE = Path(__file__).resolve().parent
# The cases of Twilio's segment calculator as published (each names its source),
# kept in the repository so that a clone anywhere runs them.
SHARED_CASES = HERE / "data" / "sms_segments_twilio_calculator.jsonl"
OUR_CASES = HERE / "data" / "sms_segments_published.jsonl"
EXPECTED_KEYS = ("encoding", "segments", "units", "chars")


def _load(path: Path) -> list[dict[str, Any]]:
    # A missing file must fail the run, not shrink it: no skipping here.
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _params() -> list[Any]:
    params = []
    for path in (SHARED_CASES, OUR_CASES):
        if not path.is_file():
            params.append(pytest.param(None, id=f"missing:{path.name}"))
            continue
        for number, case in enumerate(_load(path), start=1):
            params.append(pytest.param(case, id=f"{path.stem}:{number}"))
    return params


@pytest.mark.parametrize("case", _params())
def test_published_case(case: dict[str, Any] | None) -> None:
    assert case is not None, "published segment cases file is missing"
    assert case["source"].startswith("https://"), "every published case names its source"
    info = sms_segments(case["text"])
    expected = {key: case[key] for key in EXPECTED_KEYS if key in case}
    assert expected, "a case asserts something"
    assert {key: getattr(info, key) for key in expected} == expected


def test_enough_published_cases() -> None:
    texts = {case["text"] for path in (SHARED_CASES, OUR_CASES) for case in _load(path)}
    assert len(_load(SHARED_CASES)) == 51
    assert len(texts) >= 80


def test_empty_text_is_one_segment() -> None:
    assert sms_segments("") == SegmentInfo("GSM-7", 1, 0, 0, ())


@pytest.mark.parametrize(
    ("text", "encoding", "segments", "units"),
    [
        # An escape pair at septets 153-154 moves whole to the second part.
        ("a" * 152 + "€" + "b" * 7, "GSM-7", 2, 161),
        ("a" * 151 + "€" + "b" * 8, "GSM-7", 2, 161),
        # 153 + 153 septets exactly, the last pair ending at the boundary.
        ("a" * 151 + "{" + "b" * 151 + "}", "GSM-7", 2, 306),
        # The same pair one septet later straddles: a third part.
        ("a" * 152 + "{" + "b" * 150 + "}", "GSM-7", 3, 306),
        # Form feed is in the extension table.
        ("\f" * 80, "GSM-7", 1, 160),
        ("\f" * 81, "GSM-7", 2, 162),
    ],
)
def test_escape_sequences_stay_whole(text: str, encoding: str, segments: int, units: int) -> None:
    info = sms_segments(text)
    assert (info.encoding, info.segments, info.units) == (encoding, segments, units)


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        # Each pair holds 134 units, two parts' worth if cut anywhere; the
        # first of a pair keeps its cluster inside part one, the second
        # puts it across the unit-67 boundary, so it moves whole.
        ("д" * 65 + "😀" + "д" * 67, 2),  # emoji ends on unit 67
        ("д" * 66 + "😀" + "д" * 66, 3),  # emoji would straddle 67/68
        ("д" * 63 + "🇫🇷" + "д" * 67, 2),  # flag (4 units) ends on unit 67
        ("д" * 64 + "🇫🇷" + "д" * 66, 3),  # flag would straddle
        ("д" * 64 + "1\ufe0f\u20e3" + "д" * 67, 2),  # keycap (3 units) ends on 67
        ("д" * 65 + "1\ufe0f\u20e3" + "д" * 66, 3),  # keycap would straddle
        ("д" * 62 + "👍🏽" + "д" * 68, 2),  # emoji with skin tone (4 units)
        ("д" * 64 + "👍🏽" + "д" * 66, 3),
        ("д" * 65 + "é\u0301" + "д" * 67, 2),  # letter + combining mark
        ("д" * 66 + "e\u0301" + "д" * 66, 3),
    ],
)
def test_graphemes_stay_whole(text: str, segments: int) -> None:
    info = sms_segments(text)
    assert info.encoding == "UCS-2"
    assert info.segments == segments


def test_grapheme_boundary_is_exact() -> None:
    # 64 units then a flag: the flag cannot end part one (68 > 67); part two
    # holds flag + 63 = 67 units, so one more unit makes a third part.
    assert sms_segments("д" * 64 + "🇫🇷" + "д" * 63).segments == 2
    assert sms_segments("д" * 64 + "🇫🇷" + "д" * 64).segments == 3


def test_grapheme_longer_than_a_part_is_cut_at_code_points() -> None:
    # One letter under 99 combining marks: 100 units in one cluster.
    info = sms_segments("e" + "\u0301" * 99)
    assert (info.encoding, info.units, info.segments) == ("UCS-2", 100, 2)
    # A long cluster of emoji (ZWJ chain): cut, but never inside a pair.
    chain = "\u200d".join(["😀"] * 30)  # 30 * 2 + 29 = 89 units, one cluster
    assert sms_segments(chain).segments == 2


@pytest.mark.parametrize(
    ("text", "encoding", "non_gsm"),
    [
        ("Ça va", "GSM-7", ()),
        ("ça va", "UCS-2", ((0, "ç"),)),
        ("say \u201chi\u201d", "UCS-2", ((4, "\u201c"), (7, "\u201d"))),
        ("it's", "GSM-7", ()),
        ("it\u2019s", "UCS-2", ((2, "\u2019"),)),
        ("a`b", "UCS-2", ((1, "`"),)),
        ("20°C", "UCS-2", ((2, "°"),)),
        ("a\u2014b", "UCS-2", ((1, "\u2014"),)),
        ("£5 @ ¥ ¤ § ¿¡ ΔΦΓΛΩΠΨΣΘΞ ÆæßÉ ÄÖÑÜäöñüà", "GSM-7", ()),
        (
            "ççç 😀 ° ` \u2019 \u2014 x",  # the first 5 distinct, at first sight
            "UCS-2",
            ((0, "ç"), (4, "😀"), (6, "°"), (8, "`"), (10, "\u2019")),
        ),
    ],
)
def test_gsm_alphabet(text: str, encoding: str, non_gsm: tuple[tuple[int, str], ...]) -> None:
    info = sms_segments(text)
    assert (info.encoding, info.non_gsm) == (encoding, non_gsm)


def test_units_and_chars() -> None:
    info = sms_segments("🇫🇷😀a")
    assert (info.chars, info.units) == (4, 7)
    assert sms_segments("[x]").units == 5


@pytest.mark.parametrize(
    "text",
    ["\ud800", "a\udfffb", "\x00\x01\x1b", "x" * 100_000, "😀" * 50_000, "é\u0301" * 30_000],
)
def test_bad_input_does_not_raise(text: str) -> None:
    info = sms_segments(text)
    assert info.segments >= 1
    assert info.chars == len(text)


def test_lone_surrogate_is_one_ucs2_unit() -> None:
    info = sms_segments("ab\ud83d")
    assert (info.encoding, info.units, info.segments) == ("UCS-2", 3, 1)
    assert info.non_gsm == ((2, "\ud83d"),)


def test_cr_lf_is_gsm() -> None:
    info = sms_segments("line\r\nline")
    assert (info.encoding, info.units) == ("GSM-7", 10)
