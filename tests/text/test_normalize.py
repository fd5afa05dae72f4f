"""Normalization: each evasion folds away, word spacing survives, offsets map back."""

from __future__ import annotations

import pytest

from gateway.text.normalize import _FOLD, _MAY_FOLD, Normalized, normalize, normalize_term


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FREE", "free"),
        ("FrEe", "free"),
        ("ＦＲＥＥ", "free"),  # full-width
        ("fr\u200bee", "free"),  # zero-width space
        ("f\u200dr\u200ce\u2060e", "free"),  # joiners, word joiner
        ("fr\u00adee", "free"),  # soft hyphen
        ("\ufefffree", "free"),  # byte order mark
        ("f r e e", "free"),
        ("f.r.e.e", "free"),
        ("f-r-e-e", "free"),
        ("f_r_e_e", "free"),
        ("F - R - E - E", "free"),
        ("f r e e money", "free money"),
        ("f.r.e.e. money", "free. money"),
        ("ﬁnance", "finance"),  # NFKC ligature
        ("𝐟𝐫𝐞𝐞", "free"),  # mathematical bold
        ("Ⓕⓡⓔⓔ", "free"),  # circled letters
        ("STRASSE Straße", "strasse strasse"),  # case folding
        ("cafe\u0301", "cafe"),  # combining mark composes, and the accent folds away
        ("guarantéed rísk-free", "guaranteed risk-free"),  # Latin diacritics fold
        ("Tiếng Việt", "tieng viet"),
        ("guarante\u0301\u0301ed", "guaranteed"),  # a second accent NFKC leaves apart
        ("がんばって", "がんばって"),  # other scripts keep their marks
        ("穩賺不賠", "稳赚不赔"),  # traditional -> simplified
        ("稳 赚 不 赔", "稳赚不赔"),
        ("稳-赚-不-赔", "稳赚不赔"),
        ("回T退訂", "回t退订"),
        ("稳，赚，不，赔", "稳赚不赔"),  # full-width commas between single letters
        ("稳、赚、不、赔", "稳赚不赔"),
        ("f,r,e,e", "free"),
        ("回复 TD 退订", "回复td退订"),  # a short Latin word typeset apart
        ("risk‑free risk–free risk−free", "risk-free risk-free risk-free"),
        ("f‐r‐e‐e", "free"),  # a dash between single letters
        ("a\t\n  b", "a b"),
        ("x\u3000y", "x y"),  # ideographic space
        # A letter that folds to several still stands alone as written.
        ("j.s.ß.a.u", "jsssau"),
        ("G R O ẞ E deal", "grosse deal"),
        ("ﬁ.x.y", "fixy"),
        ("a…b…c", "abc"),  # one character that folds to three separators
        ("ß a", "ss a"),  # two single letters are not a run
    ],
)
def test_evasions_fold(text: str, expected: str) -> None:
    assert normalize(text).text == expected


@pytest.mark.parametrize(
    "text",
    [
        "free money",
        "plan b now",  # one single letter
        "很稳,赚了",  # a comma parts Chinese words
        "使用 iphone 购买",  # a word of a sentence between Chinese words
        "a b",  # two single letters are not a run
        "vitamin c and d",
        "reply stop to opt out",
        "5 km away",
        "a.m. ok",
    ],
)
def test_word_spacing_survives(text: str) -> None:
    assert normalize(text).text == text


def test_whitespace_runs_collapse() -> None:
    assert normalize("free    money\n\n now").text == "free money now"


def test_origin_maps_to_original_offsets() -> None:
    norm = normalize("Hi  F r e e!")
    assert norm.text == "hi free!"
    assert norm.origin == (0, 1, 2, 4, 6, 8, 10, 11)


def test_origin_of_expansions_and_removals() -> None:
    norm = normalize("ﬁ\u200bne ß")
    assert norm.text == "fine ss"
    assert norm.origin == (0, 0, 2, 3, 4, 5, 5)


def test_origin_of_spaced_letters_that_expand() -> None:
    norm = normalize("xy j.s.ß.a.u")
    assert norm.text == "xy jsssau"
    assert norm.origin == (0, 1, 2, 3, 5, 7, 7, 9, 11)


def test_origin_through_full_width_and_combining() -> None:
    text = "ＯＫ cafe\u0301 ok"
    norm = normalize(text)
    assert norm.text == "ok cafe ok"
    assert len(norm.origin) == len(norm.text)
    assert norm.origin[norm.text.index("cafe")] == text.index("cafe")
    assert norm.origin[-2:] == (len(text) - 2, len(text) - 1)


def test_origin_of_ascii_text_with_control_characters() -> None:
    # Pure ASCII takes a fast path; its removed control characters must
    # still shift the offsets of what follows them.
    norm = normalize("a\x00b\x7fc free")
    assert norm.text == "abc free"
    assert norm.origin == (0, 2, 4, 5, 6, 7, 8, 9)


def test_origin_is_identity_for_plain_text() -> None:
    text = "plain text, nothing to fold"
    assert normalize(text) == Normalized(text, tuple(range(len(text))))


def test_normalize_term_strips_and_may_be_empty() -> None:
    assert normalize_term("  Free Money  ") == "free money"
    assert normalize_term("\u200b \u00ad\ufeff") == ""
    assert normalize_term("") == ""


@pytest.mark.parametrize(
    "text",
    [
        "\ud800",
        "a\udfffb",
        "\x00\x01\x02\x7f",
        "x" * 100_000,
        "f r e e " * 12_000,
        "é\u0301\u0302" * 20_000,
        "穩 賺 " * 20_000,
        "\ufdd0\U0010ffff\ue000",  # noncharacters, private use
    ],
)
def test_bad_input_does_not_raise(text: str) -> None:
    norm = normalize(text)
    assert len(norm.origin) == len(norm.text)
    assert all(a <= b for a, b in zip(norm.origin, norm.origin[1:], strict=False))
    assert not norm.origin or norm.origin[-1] < len(text)


def test_lone_surrogates_and_controls_are_removed() -> None:
    assert normalize("fr\ud800e\x00e").text == "free"


def test_characters_left_out_of_the_fold_table_fold_to_themselves() -> None:
    # Folding looks up only the characters _MAY_FOLD matches; every other
    # character of the BMP must be one the table maps to itself.
    bmp = "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, 0x10000)))
    skipped = _MAY_FOLD.sub("", bmp)
    assert len(skipped) > 50_000  # most characters stay as they are
    assert skipped.translate(_FOLD) == skipped
