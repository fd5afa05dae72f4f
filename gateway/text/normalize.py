"""Text normalization for term matching, with a map back to the original text.

`normalize` folds away the differences a sender can use to slip a banned term
past a filter, and keeps, for every character of the result, the code-point
offset in the original text it came from, so a match is reported where the
sender wrote it. The steps, in order:

1. Unicode NFKC: full-width and other compatibility forms (`ＦＲＥＥ`, `ﬁ`,
   `①`) become their plain forms; a letter and its combining marks compose.
2. Case folding (`str.casefold`): `FREE`, `Free`, `STRAẞE` fold alike; and a
   Latin letter with diacritics folds to its base letter (`é` -> `e`), so
   `guarantéed` is `guaranteed` (other scripts keep their marks), and the
   combining diacritics U+0300-U+036F that stay apart are removed.
3. Traditional Chinese characters fold to simplified (`穩賺不賠` -> `稳赚不赔`),
   one character to one, from OpenCC's character table.
4. Every whitespace character becomes a space, and every hyphen, the figure
   and en dashes and the minus sign become `-` (not the em dash, which parts
   clauses); invisible characters are
   removed: format characters (category Cf: zero-width space and joiners,
   soft hyphen, byte order mark, bidi controls), other control characters,
   lone surrogates, variation selectors and the Hangul filler characters.
5. Separators between single letters are removed, and whitespace runs
   collapse to one space. The rule for separators, exactly:

   - A *separator run* is 1 to 3 characters from: space `.` `-` `_` `*` `~`
     `/` `|` `+` `·` `•` `‧` `∙` `⋅`; or, between single letters, one `,` or
     `、` alone (a full-width comma is `,` by then; `a, b, c` is a list).
   - A *single letter* is one letter or digit with no letter or digit right
     before or after it, counted as the sender wrote it: a character that
     folds to several letters (`ß` -> `ss`, `ﬁ` -> `fi`) is one letter
     here, so `j.s.ß.a.u` reads as five spaced-out letters.
   - Where at least 3 single letters follow one another, each pair joined by
     one separator run, the separator runs between them are removed. Text
     around the run is untouched, so ordinary word spacing survives.
   - Between two Han or Kana characters, a separator run is removed
     (Chinese and Japanese are not written with spaces between words); so
     is one between a Han or Kana character and a word of 1 to 4 other
     letters or digits that no other such word follows (`回 T 退订` ->
     `回t退订`, `回复 TD 退订` -> `回复td退订`, `退订回 TD` -> `退订回td`).

   Examples: `f r e e` -> `free`; `f.r.e.e` -> `free`; `F - R - E - E` ->
   `free`; `f_r_e_e money` -> `free money`; `free money` stays `free money`;
   `plan b now` stays (one single letter); `a b` stays (two are not enough);
   `稳 赚 不 赔` -> `稳赚不赔`; `稳，赚，不，赔` -> `稳赚不赔`.

Terms go through the same function (`normalize_term`), so a policy term and
a message meet in the same form whatever the sender did.

Cost: every step is linear in the text. The patterns used here are plain
character classes and bounded repetitions (nothing can backtrack), so no
input can stall them; pure ASCII text, most messages, takes a fast path.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import regex

from gateway.text._t2s import table as _t2s_table

__all__ = ["Normalized", "normalize", "normalize_term"]


@dataclass(frozen=True, slots=True)
class Normalized:
    """A normalized text and where each of its characters came from.

    `origin[i]` is the code-point offset in the original text of `text[i]`;
    `len(origin) == len(text)` and `origin` never decreases. Characters that
    one original character expanded into (`ﬁ` -> `fi`) share its offset.
    """

    text: str
    origin: tuple[int, ...]
    # (start, end) in `text` of each run of spaced-out single letters joined
    # by step 5: inside one, where the sender's words began is not known.
    joined: tuple[tuple[int, int], ...] = ()


def normalize(text: str) -> Normalized:
    """Normalize `text` for matching (see the module docstring for the rules)."""
    origin: list[int] | None = None  # None: identity, the common case
    if text.isascii():
        # ASCII is NFKC-stable and its case folding is lower(). Control
        # characters are still removed, so the origin map is kept.
        folded, origin = _fold(text.lower(), None)
    else:
        folded, origin = _fold(*_casefold(text, None))
        if not unicodedata.is_normalized("NFKC", folded):
            # Combining marks composed differently in context than alone:
            # take the slower path that normalizes them with their base.
            folded, origin = _fold(*_casefold(*_nfkc_chunks(text)))
    deletions, runs = _collapse_spans(folded, origin)
    joined = _after(runs, deletions) if runs else ()
    folded, origin = _apply(folded, origin, deletions)
    return Normalized(folded, _identity(len(folded)) if origin is None else tuple(origin), joined)


def _after(
    runs: list[tuple[int, int]], deletions: list[tuple[int, int, str]]
) -> tuple[tuple[int, int], ...]:
    """Where `runs` lie once the sorted, disjoint `deletions` are made: by
    bisection over the deletions' running total, so that a text of many runs
    and many deletions costs n log n, not n squared."""
    starts = [start for start, _, _ in deletions]
    removed = [0]  # removed[k]: characters the first k deletions remove
    for start, end, _ in deletions:
        removed.append(removed[-1] + end - start)

    def moved(at: int) -> int:
        k = bisect.bisect_left(starts, at)  # the deletions that start before `at`
        if k == 0:
            return at
        _, end, _ = deletions[k - 1]  # the only one that may reach past `at`
        return at - removed[k] + max(end - at, 0)

    return tuple((moved(start), moved(end)) for start, end in runs)


_IDENTITY_SIZE: Final = 1 << 16
_IDENTITY: Final = tuple(range(_IDENTITY_SIZE))


def _identity(n: int) -> tuple[int, ...]:
    # Slicing a ready tuple shares its int objects: much cheaper than
    # building n new ones for every message.
    return _IDENTITY[:n] if n <= _IDENTITY_SIZE else tuple(range(n))


def normalize_term(term: str) -> str:
    """Normalize a policy term as messages are; "" if nothing is left of it."""
    return normalize(term).text.strip(" ")


# --- step 1 and 2: NFKC and case folding ------------------------------------

# Conjoining Hangul vowels and final consonants compose with what precedes.
_JAMO_VT: Final = ("\u1160", "\u11ff")


def _attaches(ch: str) -> bool:
    """Can NFKC compose `ch` with the character before it?"""
    return unicodedata.category(ch)[0] == "M" or _JAMO_VT[0] <= ch <= _JAMO_VT[1]


def _nfkc_chunks(text: str) -> tuple[str, list[int] | None]:
    """NFKC of each base character together with the marks that attach to it."""
    edits: list[tuple[int, int, str]] = []
    start = 0
    n = len(text)
    for i in range(1, n + 1):
        if i < n and _attaches(text[i]):
            continue
        chunk = text[start:i]
        normal = unicodedata.normalize("NFKC", chunk)
        if normal != chunk:
            edits.append((start, i, normal))
        start = i
    return _apply(text, None, edits)


def _expanders(ranges: Iterable[range], fold: Callable[[str], str]) -> re.Pattern[str]:
    """A character class of the characters that `fold` makes longer."""
    chars = (chr(cp) for r in ranges for cp in r if not 0xD800 <= cp < 0xE000)
    return re.compile("[" + "".join(re.escape(ch) for ch in chars if len(fold(ch)) > 1) + "]")


# Characters whose case folding is longer than themselves (ß -> ss, ŉ -> ʼn).
# All of them are in the BMP; _casefold checks the result anyway.
_CASEFOLD_EXPANDS: Final = _expanders((range(0x10000),), str.casefold)


def _casefold(text: str, origin: list[int] | None) -> tuple[str, list[int] | None]:
    folded = text.casefold()
    if folded == text:
        return text, origin
    if len(folded) == len(text):
        # Folding never removes a character, so equal length means one for one.
        return folded, origin
    edits = [(m.start(), m.end(), m.group().casefold()) for m in _CASEFOLD_EXPANDS.finditer(text)]
    out, new_origin = _apply(text, origin, edits)
    out = out.casefold()
    if out == folded:
        return out, new_origin
    # An expanding character this table does not know: fold one by one.
    edits = [(i, i + 1, ch.casefold()) for i, ch in enumerate(text) if ch.casefold() != ch]
    return _apply(text, origin, edits)


# --- step 1, 3 and 4: one character at a time -------------------------------

# What _FOLD gives for a character that does not fold to exactly one
# character; _SPECIAL then says what it folds to ("" or several characters).
_SENTINEL: Final = "\x00"
# Invisible yet printable: combining grapheme joiner, Hangul fillers,
# variation selectors.
_RARE_INVISIBLE: Final = re.compile(
    "[\u034f\u115f\u1160\u3164\uffa0\ufe00-\ufe0f\U000e0100-\U000e01ef]"
)
_T2S: Final = _t2s_table()


def _fold_char(ch: str) -> str:
    """Steps 1, 3 and 4 for one (already case-folded) character."""
    if ch.isspace():
        return " "
    if unicodedata.category(ch) in ("Cc", "Cf", "Cs") or _RARE_INVISIBLE.match(ch):
        return ""
    if "\u0300" <= ch <= "\u036f":
        # A combining diacritic that NFKC left apart (a second accent on one
        # letter: "e\u0301\u0301"): gone, as the letter's own accent is.
        return ""
    out = unicodedata.normalize("NFKC", ch).casefold()
    return "".join(
        " " if c.isspace() else "-" if _is_dash(c) else _T2S.get(ord(c), _unaccented(c))
        for c in out
        if not "\u0300" <= c <= "\u036f"  # as below, when NFKC gives one ("¨")
    )


# Hyphens, the figure and en dashes, the minus sign: "risk‑free" (U+2011) and
# "risk–free" are the "risk-free" of a policy term. Not the em dash, nor the
# Chinese 破折号 or wave dash: those part clauses ("risk—free advice",
# "保证——收益"), and folded to a hyphen they would join what they part.
_HYPHENS: Final = frozenset("\u2010\u2011\u2012\u2013\u2212\ufe63\uff0d")


def _is_dash(ch: str) -> bool:
    return ch in _HYPHENS


def _unaccented(ch: str) -> str:
    """A Latin letter with diacritics as its base letter (é -> e, ệ -> e):
    "guarantéed" must not slip past "guaranteed". Only where the base is an
    ASCII letter, so that no other script loses a distinction (か and が)."""
    if ch.isascii():
        return ch
    parts = unicodedata.normalize("NFD", ch)
    base, marks = parts[0], parts[1:]
    if base.isascii() and base.isalpha() and marks and all(unicodedata.combining(m) for m in marks):
        return base
    return ch


class _Fold(dict[int, str]):
    """str.translate table giving exactly one character for each character.

    Filled lazily: each code point is worked out once, then answered from the
    dict at C speed. A character that folds to nothing or to several
    characters gets _SENTINEL here and its fold in _SPECIAL, so translating
    keeps offsets and the rare special cases are placed afterwards.
    """

    def __init__(self) -> None:
        super().__init__()
        self.special: dict[str, str] = {}

    def __missing__(self, cp: int) -> str:
        ch = chr(cp)
        folded = _fold_char(ch)
        if len(folded) == 1 and folded != _SENTINEL:
            value = folded
        else:
            value = _SENTINEL
            self.special[ch] = folded
        self[cp] = value
        return value


_FOLD: Final = _Fold()
_SENTINELS: Final = re.compile(_SENTINEL)


def _may_fold() -> re.Pattern[str]:
    """A run of characters that the fold table changes.

    Translating only these keeps most text out of the per-character lookups
    (Chinese text is mostly characters that stay as they are, but for its
    full-width punctuation). The `regex` module's Unicode properties give
    the candidates in the BMP at C speed, each then checked against the
    table; its Unicode data may be newer than `unicodedata`'s, which only
    adds candidates. Characters beyond the BMP are all taken (emoji,
    mathematical letters: rare enough). A test checks the whole BMP.
    """
    props = regex.compile(
        r"[\p{Changes_When_Casefolded}\p{NFKC_QC=N}\p{NFKC_QC=M}\p{NFD_QC=N}\p{Cc}\p{Cf}"
        r"\p{Cs}\p{Default_Ignorable_Code_Point}\s\u0300-\u036f\u2010-\u2013\u2212\ufe63\uff0d]"
    )
    bmp = "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, 0x10000)))
    candidates = {ord(ch) for ch in props.findall(bmp)} | set(_T2S)
    # Exactly the ones that change (a space must not split ordinary text),
    # in the BMP: the class becomes a bitmap there, while each range beyond
    # it would be one more test per character.
    points = sorted(cp for cp in candidates if cp < 0x10000 and _FOLD[cp] != chr(cp))
    ranges: list[list[int]] = []
    for cp in points:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(re.escape(chr(low)) + "-" + re.escape(chr(high)) for low, high in ranges)
    # Plus what the property leaves out: characters whose full case folding
    # is longer (U+01F0 -> j and a combining caron) and the rare invisibles.
    extra = _CASEFOLD_EXPANDS.pattern[1:-1] + _RARE_INVISIBLE.pattern[1:-1]
    return re.compile(f"([{body}{extra}\U00010000-\U0010ffff\ud800-\udfff]+)")


_MAY_FOLD: Final = _may_fold()


def _fold(text: str, origin: list[int] | None) -> tuple[str, list[int] | None]:
    # split with a group gives the text that stays and the runs that change,
    # alternately; only the runs go through the table.
    if text.isascii():
        folded = text.translate(_FOLD)  # CPython translates ASCII at C speed
    else:
        parts = _MAY_FOLD.split(text)
        parts[1::2] = [run.translate(_FOLD) for run in parts[1::2]]
        folded = "".join(parts)
    if _SENTINEL not in folded:
        return folded, origin
    special = _FOLD.special
    edits = [(m.start(), m.end(), special[text[m.start()]]) for m in _SENTINELS.finditer(folded)]
    return _apply(folded, origin, edits)


# --- step 5: separators and whitespace ---------------------------------------

_SEP: Final = r" .\-_*~/|+·•‧∙⋅"
# Between spaced-out single letters commas are separators too (`f,r,e,e`,
# `稳，赚，不，赔`: NFKC made the full-width comma ASCII), though not between
# Chinese words, which commas part.
_SEP_SINGLES: Final = _SEP + ",、"
_SINGLE = r"[^\W_]"  # one letter or digit
# Between single letters: a run of separators, or one comma alone (`a, b, c`
# is a list, and stays one).
_GAP: Final = rf"(?:[{_SEP}]{{1,3}}|[,、])"
_SINGLES_RUN: Final = re.compile(rf"(?<!{_SINGLE}){_SINGLE}(?:{_GAP}{_SINGLE}(?!{_SINGLE})){{2,}}")
# Every run above holds a hint (its second letter, what surrounds it and its
# third letter): one scan for the hint rules most texts out.
_SINGLES_HINT: Final = re.compile(rf"[{_SEP_SINGLES}]{_SINGLE}{_GAP}{_SINGLE}(?!{_SINGLE})")
_SINGLE_BETWEEN_SEPS: Final = re.compile(rf"[{_SEP_SINGLES}]{_SINGLE}(?=[{_SEP_SINGLES}])")
_SEP_SINGLES_RUN: Final = re.compile(rf"[{_SEP_SINGLES}]+")
_SEP_RUN: Final = re.compile(rf"[{_SEP}]+")
_LETTERS: Final = re.compile(rf"{_SINGLE}+")
_HAN_CHAR: Final = re.compile(
    "[\u3040-\u30fa\u30fc-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]"
)
_SPACES: Final = re.compile(r"  +")
# A letter or digit of a script written with spaces (not Han or Kana).
_IS_SINGLE: Final = re.compile(
    "(?![\u3040-\u30fa\u30fc-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0003134f])" + _SINGLE
)
_MAX_SEP_RUN: Final = 3


def _collapse_spans(
    text: str, origin: list[int] | None
) -> tuple[list[tuple[int, int, str]], list[tuple[int, int]]]:
    """The deletions of step 5, and the runs of spaced-out letters they join."""
    starts = _written_starts(text, origin)
    if starts is None:
        spans, runs = _singles_spans(text)
    else:
        # Spaced-out letters as the sender wrote them: one character of the
        # original per letter, then the spans mapped back onto `text`.
        ends = [*starts, len(text)]
        proxy = "".join([text[i] for i in starts])
        found, proxy_runs = _singles_spans(proxy)
        spans = [(ends[start], ends[end], "") for start, end, _ in found]
        runs = [(ends[start], ends[end]) for start, end in proxy_runs]
    if not text.isascii() and _HAN_CHAR.search(text):
        spans.extend(_han_gaps(text))
    if "  " in text:
        spans.extend((m.start() + 1, m.end(), "") for m in _SPACES.finditer(text))
    return _merge(spans), runs


def _singles_spans(text: str) -> tuple[list[tuple[int, int, str]], list[tuple[int, int]]]:
    """The separator runs between at least 3 spaced-out single letters, and
    the (start, end) of each run of such letters."""
    spans: list[tuple[int, int, str]] = []
    runs: list[tuple[int, int]] = []
    if _has_singles_run(text):
        for run in _SINGLES_RUN.finditer(text):
            runs.append(run.span())
            spans.extend(
                (m.start(), m.end(), "") for m in _SEP_SINGLES_RUN.finditer(text, *run.span())
            )
    return spans, runs


def _written_starts(text: str, origin: list[int] | None) -> list[int] | None:
    """Where each letter the sender wrote starts in `text`, when one of them
    became several (`ß` -> `ss`) and so could stop standing alone; None when
    none did (the common case, checked cheaply first). An expansion with
    anything but letters in it (`㏂` -> `a.m.`) keeps its characters apart."""
    if origin is None or not _SINGLE_BETWEEN_SEPS.search(text):
        return None
    if len(set(origin)) == len(origin):
        return None  # nothing expanded
    starts: list[int] = []
    i, n = 0, len(origin)
    while i < n:
        end = i + 1
        while end < n and origin[end] == origin[i]:
            end += 1
        starts.extend([i] if _LETTERS.fullmatch(text, i, end) else range(i, end))
        i = end
    return starts


def _has_singles_run(text: str) -> bool:
    return _SINGLES_HINT.search(text) is not None


def _han_gaps(text: str) -> Iterable[tuple[int, int, str]]:
    """Separator runs (1 to 3 characters) with a Han or Kana character on both
    sides, or on one side with a short word of letters or digits on the other
    that no other such word follows (`回 T退订`, `回复 TD 退订`, `退订回 TD`:
    the letters belong to the Chinese words, and spacing them is only
    typesetting)."""
    for m in _SEP_RUN.finditer(text, 1):
        start, end = m.span()
        if end - start > _MAX_SEP_RUN or end == len(text):
            continue
        han_before = _HAN_CHAR.match(text, start - 1) is not None
        han_after = _HAN_CHAR.match(text, end) is not None
        if han_before and han_after:
            yield start, end, ""
        elif han_before:
            word = _SHORT_WORD_AT.match(text, end)
            if word is not None and _ends_words(text, word.end(), 1):
                yield start, end, ""
        elif han_after:
            word = _SHORT_WORD_BEFORE.search(text[max(start - _MAX_SHORT_WORD - 1, 0) : start])
            if word is not None and _ends_words(text, start - len(word.group()) - 1, -1):
                yield start, end, ""


_MAX_SHORT_WORD: Final = 4  # TD, APP, VIP, 1069: not a word of a sentence
# A letter or digit of a script written with spaces (one character).
_OTHER: Final = (
    "(?:(?![\u3040-\u30fa\u30fc-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0003134f])" + _SINGLE + ")"
)
# A whole short word of such letters starting here; one ending a text.
_SHORT_WORD_AT: Final = re.compile(f"{_OTHER}{{1,{_MAX_SHORT_WORD}}}(?!{_OTHER})")
_SHORT_WORD_BEFORE: Final = re.compile(f"(?<!{_OTHER}){_OTHER}{{1,{_MAX_SHORT_WORD}}}\\Z")


def _ends_words(text: str, i: int, step: int) -> bool:
    """Does no other word of letters or digits (Han and Kana aside) follow
    from i on, past up to 3 separators: Han or Kana, punctuation or the
    text's end? (`退订回 TD` at the end: TD is the instruction's.)"""
    for _ in range(_MAX_SEP_RUN + 1):
        if not 0 <= i < len(text) or _HAN_CHAR.match(text, i):
            return True
        if text[i] not in _SEP:
            return _IS_SINGLE.match(text, i) is None
        i += step
    return False


def _merge(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Union of deletion spans, sorted (they may overlap)."""
    if len(spans) < 2:
        return spans
    spans.sort()
    merged = [spans[0]]
    for start, end, _ in spans[1:]:
        last_start, last_end, _ = merged[-1]
        if start <= last_end:
            merged[-1] = (last_start, max(last_end, end), "")
        else:
            merged.append((start, end, ""))
    return merged


# --- edits with their offsets -------------------------------------------------


def _apply(
    text: str, origin: list[int] | None, edits: Sequence[tuple[int, int, str]]
) -> tuple[str, list[int] | None]:
    """Replace each (start, end) span by its text, carrying the origin map.

    Edits are sorted and disjoint. Characters of a replacement all take the
    origin of the first character they replace.
    """
    if not edits:
        return text, origin
    parts: list[str] = []
    new_origin: list[int] = []
    pos = 0
    for start, end, replacement in edits:
        parts.append(text[pos:start])
        new_origin.extend(_origins(origin, pos, start))
        if replacement:
            parts.append(replacement)
            at = start if origin is None else origin[start]
            new_origin.extend([at] * len(replacement))
        pos = end
    parts.append(text[pos:])
    new_origin.extend(_origins(origin, pos, len(text)))
    return "".join(parts), new_origin


def _origins(origin: list[int] | None, start: int, end: int) -> Iterable[int]:
    if origin is None:
        # Offsets from the ready tuple: no new int objects (see _identity).
        return _IDENTITY[start:end] if end <= _IDENTITY_SIZE else range(start, end)
    return origin[start:end]
