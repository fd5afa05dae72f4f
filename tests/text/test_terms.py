"""Term matching: word edges, CJK, offsets in the original text, errors, scale."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import gateway.text.terms as terms_module
from gateway.text.normalize import normalize
from gateway.text.terms import TermError, TermMatch, TermMatcher, load_terms_file


def first(terms: list[str], text: str) -> TermMatch | None:
    return TermMatcher.compile(terms).first(text)


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("FREE!!", 0),
        ("Get it free.", 7),
        ("Get it ＦＲＥＥ now", 7),
        ("get it fr\u200bee", 7),
        ("it is f r e e money", 6),
        ("it is f.r.e.e", 6),
        ("it is f-r-e-e", 6),
        ("it is f_r_e_e", 6),
        ("(free)", 1),
    ],
)
def test_banned_word_found_with_offset(text: str, offset: int) -> None:
    assert first(["free"], text) == TermMatch("free", 0, offset)


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("Get a f r e e gift", 6),  # a one-letter word joins the run: "afree"
        ("Get a F.R.E.E gift", 6),
        ("win a f-r-e-e phone", 6),
        ("I f r e e", 2),
    ],
)
def test_spaced_term_after_a_one_letter_word(text: str, offset: int) -> None:
    assert first(["free"], text) == TermMatch("free", 0, offset)


@pytest.mark.parametrize(
    ("term", "text"),
    [
        ("no risk", "n o r i s k"),
        ("get rich quick", "g.e.t r.i.c.h q.u.i.c.k"),
        ("guaranteed returns", "G.U.A.R.A.N.T.E.E.D. R.E.T.U.R.N.S."),
    ],
)
def test_several_words_spelled_out_letter_by_letter(term: str, text: str) -> None:
    assert first([term], f"now {text}!") == TermMatch(term, 0, 4)


def test_a_spelled_term_needs_a_run_of_spaced_letters() -> None:
    # Without its spaces the term counts only where letters were spaced out.
    assert first(["no risk"], "norisk") is None
    assert first(["no risk"], "no riskier") is None
    assert first(["free"], "a freed man") is None


def test_cjk_and_a_lone_latin_letter_with_spaces_between() -> None:
    for text in ("大促 回 T退订", "大促 回T 退订", "回 T 退订"):
        assert first(["回T退订"], text) is not None, text
    assert first(["回T退订"], "回 TD 退订") is None


def test_a_short_latin_word_typeset_apart_in_chinese() -> None:
    for text in ("全场五折，回复 TD 退订", "退订回 TD", "回复TD退订"):
        assert first(["回复TD退订", "退订回TD"], text) is not None, text


@pytest.mark.parametrize(
    ("term", "text"),
    [
        ("risk-free investment", "a risk free investment"),
        ("risk-free investment", "a riskfree investment"),
        ("risk-free investment", "a risk‑free investment"),
        ("risk-free investment", "a risk–free investment"),
        ("no risk", "no-risk!"),
        ("no risk", "no‐risk"),
        ("稳赚不赔", "稳，赚，不，赔"),
        ("free", "f,r,e,e"),
    ],
)
def test_hyphens_spaces_and_commas_do_not_hide_a_term(term: str, text: str) -> None:
    found = first([term], text)
    assert found is not None and found.term == term


def test_a_compound_term_still_needs_its_words() -> None:
    assert first(["risk-free"], "a risky free offer") is None
    assert first(["no risk"], "norisk") is None  # words written apart are not closed up


@pytest.mark.parametrize(
    ("term", "text"),
    [
        ("保证收益", "我们不做保证——收益取决于市场"),  # the 破折号 parts clauses
        ("risk-free", "Investing carries risk—free advice is no substitute"),  # em dash
        ("no risk", "Say no—risk is real"),
        ("abc", "Choose a, b, c or d"),  # a list, not a spelled-out word
        ("123", "Press 1, 2, 3 to vote"),
    ],
)
def test_what_parts_words_still_parts_them(term: str, text: str) -> None:
    assert first([term], text) is None


def test_spaced_term_with_a_letter_that_expands() -> None:
    # ß folds to ss: still one of the spaced-out letters the sender wrote.
    assert first(["jsßau"], "buy j.s.ß.a.u now") == TermMatch("jsßau", 0, 4)
    assert first(["jsssau"], "buy J S ẞ A U now") == TermMatch("jsssau", 0, 4)


@pytest.mark.parametrize("text", ["class", "assess", "passing", "bass guitar", "ass1"])
def test_word_edges_in_latin(text: str) -> None:
    assert first(["ass"], text) is None


@pytest.mark.parametrize(("text", "offset"), [("ass", 0), ("you ass!", 4), ("ASS.", 0)])
def test_whole_word_matches(text: str, offset: int) -> None:
    assert first(["ass"], text) == TermMatch("ass", 0, offset)


def test_cjk_matches_inside_unspaced_text() -> None:
    text = "这是一个稳赚不赔的投资机会"
    assert first(["稳赚不赔"], text) == TermMatch("稳赚不赔", 0, 4)


def test_traditional_matches_simplified_and_back() -> None:
    assert first(["稳赚不赔"], "穩賺不賠的項目") == TermMatch("稳赚不赔", 0, 0)
    assert first(["穩賺不賠"], "稳赚不赔") == TermMatch("穩賺不賠", 0, 0)


def test_mixed_term_and_required_phrases() -> None:
    matcher = TermMatcher.compile(["回T退订", "拒收请回复R", "Reply STOP to opt out"])
    assert matcher.first("【商城】新品上市，回T退订") == TermMatch("回T退订", 0, 9)
    assert matcher.first("优惠活动，拒收请回复R") == TermMatch("拒收请回复R", 1, 5)
    text = "Sale today! Reply STOP to opt out."
    assert matcher.first(text) == TermMatch("Reply STOP to opt out", 2, 12)
    assert matcher.first("Reply STOP to opt outside") is None


def test_latin_term_next_to_cjk_text() -> None:
    assert first(["TD"], "回复TD退订") == TermMatch("TD", 0, 2)
    assert first(["TD"], "回复TDX退订") is None


def test_offset_after_control_characters_in_ascii_text() -> None:
    text = "\x07\x07 FREE"
    assert first(["free"], text) == TermMatch("free", 0, text.index("FREE"))


def test_many_near_misses_in_non_ascii_text_stay_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each match's character offset used to be found by decoding the text up
    # to it: quadratic in a 100 KB message full of near misses. Count the
    # bytes decoded instead of timing, so the test is not at the mercy of load.
    decoded = 0
    real = terms_module._chars

    def counting(data: str) -> int:
        nonlocal decoded
        decoded += len(data)
        return real(data)

    monkeypatch.setattr(terms_module, "_chars", counting)
    text = "classé " * 15_000
    matcher = TermMatcher.compile(["ass", "classé x"])
    assert matcher.first(text) is None
    assert matcher.found(text) == {}
    size = len(text.encode())
    assert decoded <= 2 * 2 * size


def test_offset_counts_code_points_of_the_original() -> None:
    text = "😀😀 ＦＲＥＥ\u200b money"
    assert first(["free money"], text) == TermMatch("free money", 0, 3)


def test_earliest_match_wins_then_longest() -> None:
    matcher = TermMatcher.compile(["money", "free", "free money", "cash"])
    assert matcher.first("cash or free money") == TermMatch("cash", 3, 0)
    assert matcher.first("get free money") == TermMatch("free money", 2, 4)


def test_duplicate_terms_report_the_first() -> None:
    matcher = TermMatcher.compile(["FREE", "free", "Ｆree"])
    assert matcher.first("free") == TermMatch("FREE", 0, 0)
    assert set(matcher.found("free")) == {0, 1, 2}


def test_found_reports_each_term_first_match() -> None:
    matcher = TermMatcher.compile(["stop", "help", "absent", "退订"])
    found = matcher.found("Reply STOP to stop, HELP for help. 退订")
    assert found == {
        0: TermMatch("stop", 0, 6),
        1: TermMatch("help", 1, 20),
        3: TermMatch("退订", 3, 35),
    }


def test_normalized_variants_share_one_normalization() -> None:
    matcher = TermMatcher.compile(["free"])
    norm = normalize("so f r e e")
    assert matcher.first_normalized(norm) == TermMatch("free", 0, 3)
    assert matcher.found_normalized(norm) == {0: TermMatch("free", 0, 3)}


def test_no_terms_and_empty_text() -> None:
    assert TermMatcher.compile([]).first("anything") is None
    assert TermMatcher.compile(["x"]).first("") is None
    assert TermMatcher.compile([]).found("anything") == {}


@pytest.mark.parametrize(
    ("terms", "index", "message"),
    [
        (["ok", ""], 1, "term is empty"),
        (
            ["ok", "\u200b \u00ad"],
            1,
            "term '\\u200b \\xad' normalizes to nothing (only spaces, separators"
            " or invisible characters)",
        ),
        (
            ["   "],
            0,
            "term '   ' normalizes to nothing (only spaces, separators or invisible characters)",
        ),
    ],
)
def test_term_errors(terms: list[str], index: int, message: str) -> None:
    with pytest.raises(TermError) as caught:
        TermMatcher.compile(terms)
    assert caught.value.index == index
    assert caught.value.term == terms[index]
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


def test_load_terms_file(tmp_path: Path) -> None:
    path = tmp_path / "finance.txt"
    path.write_text(
        "\ufeff# finance claims\nguaranteed returns\n\n  稳赚不赔  \n#1 stock\r\n   # note\n",
        encoding="utf-8",
    )
    assert load_terms_file(path) == [(2, "guaranteed returns"), (4, "稳赚不赔")]


def test_hash_inside_a_term_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("top #1 pick\n", encoding="utf-8")
    assert load_terms_file(path) == [(1, "top #1 pick")]


def test_missing_terms_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.txt"
    with pytest.raises(TermError) as caught:
        load_terms_file(path)
    assert str(caught.value) == f"terms file '{path}' not found"
    assert caught.value.index == 0


def test_non_utf8_terms_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("free\ngratuit\ncaf\u00e9\n".encode("latin-1"))
    with pytest.raises(TermError) as caught:
        load_terms_file(path)
    assert str(caught.value) == f"terms file '{path}' is not UTF-8: byte 0xe9 on line 3"
    assert caught.value.index == 3


def test_terms_file_with_a_control_character(tmp_path: Path) -> None:
    path = tmp_path / "binary.txt"
    path.write_bytes(b"free\r\nfr\x00ee\n")
    with pytest.raises(TermError) as caught:
        load_terms_file(path)
    assert str(caught.value) == (
        f"terms file '{path}' line 2: control character U+0000 (is it a text file?)"
    )
    assert caught.value.index == 2


def test_terms_file_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(TermError) as caught:
        load_terms_file(tmp_path)
    assert str(caught.value) == f"cannot read terms file '{tmp_path}': Is a directory"


def _scale_terms(count: int) -> list[str]:
    rng = random.Random(7)
    letters = "bcdfghjklmnprstvz"
    han = "稳赚不赔贷款优惠注册领取红包彩票博彩现金利息投资理财"
    terms: set[str] = set()
    while len(terms) < count:
        if rng.random() < 0.6:
            word = "".join(rng.choice(letters) + rng.choice("aeiou") for _ in range(3))
            terms.add(word if rng.random() < 0.7 else f"{word} {word[::-1]}")
        else:
            terms.add("".join(rng.choice(han) for _ in range(rng.randint(3, 5))))
    return sorted(terms)


def test_ten_thousand_terms() -> None:
    terms = _scale_terms(10_000)
    matcher = TermMatcher.compile(terms)
    assert len(matcher) == 10_000
    latin = next(i for i, t in enumerate(terms) if " " in t)
    han = next(i for i, t in enumerate(terms) if not t.isascii())
    text = "Hello, your parcel is on its way. " * 20 + terms[latin].upper() + "!"
    assert matcher.first(text) == TermMatch(terms[latin], latin, text.index(terms[latin].upper()))
    zh_text = "您好，您的包裹正在路上。" * 20 + "【" + terms[han] + "】"
    found = matcher.first(zh_text)
    assert found is not None
    assert found.offset <= zh_text.index(terms[han])
    assert terms[han] in {terms[i] for i in matcher.found(zh_text)}
    assert matcher.first("Hello, your parcel is on its way.") is None
    # Every term is found in a text made of just that term.
    for index in range(0, 10_000, 97):
        result = matcher.found(terms[index])
        assert result[index] == TermMatch(terms[index], index, 0)


@pytest.mark.parametrize(
    "text",
    ["\ud800free", "a" * 100_000, "free " * 20_000, "\x00" * 1000 + "free", "稳" * 50_000],
)
def test_bad_input_does_not_raise(text: str) -> None:
    matcher = TermMatcher.compile(["free", "稳赚不赔", "aaa"])
    matcher.first(text)
    matcher.found(text)
