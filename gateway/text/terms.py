"""Banned and required terms: many terms matched against a message at once.

Terms and messages are normalized alike (`gateway.text.normalize`), then an
Aho-Corasick automaton (pyahocorasick) finds every term in one pass over the
message: the cost grows with the message, not with the number of terms, and
no input can make it backtrack, so no match can stall on a pathological
message (the "match timeout" holds by construction; no regular expression
ever runs over the term list).

The automaton works on the UTF-8 bytes of the normalized text (carried in a
latin-1 string): pyahocorasick finds a node's child by a linear scan, and
bytes keep every node's fan-out under 256 where thousands of distinct CJK
first characters would make each step slow.

Letters spaced out one by one (`f r e e`, `n o r i s k`) are joined by the
normalization, which also says where; inside such a run, where the sender's
words began is lost, so a term may begin or end at any of its letters (`a f
r e e` -> `afree` holds `free`), and a term of several words also matches
spelled out without its spaces (`norisk` for `no risk`).

A term written with a hyphen also matches written with a space or closed
up (`risk-free`: `risk free`, `riskfree`), and one of several words also
matches hyphenated (`no risk`: `no-risk`): each spelling is a key of the
automaton, pointing at the same term.

Word edges: in space-delimited scripts a term matches whole words only. A
term whose first (last) character is a letter or digit of such a script
needs a non-word character or the text's edge before (after) it: `ass`
matches neither `class` nor `assess`, `free` matches `FREE!!`. Characters of
scripts written without spaces (Han, Kana, Hangul, Thai, Lao, Khmer,
Myanmar) never count as word characters, so `稳赚不赔` is found inside
unspaced text and `回T退订` inside `请回T退订。`.
"""

from __future__ import annotations

import bisect
import pathlib
import re
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import ahocorasick

from gateway.text.normalize import Normalized, normalize, normalize_term

__all__ = ["TermError", "TermMatch", "TermMatcher", "load_terms_file", "term_problem"]


class TermError(ValueError):
    """A term or a terms file that cannot be used.

    `index` is the term's position in the list given to `TermMatcher.compile`
    (for `load_terms_file`: the 1-based line, or 0 when the file as a whole
    is unusable); `term` is the term as written ("" for file errors); `why`,
    also the exception's text, is one line that quotes the offending value.
    """

    def __init__(self, index: int, term: str, why: str) -> None:
        super().__init__(why)
        self.index = index
        self.term = term
        self.why = why


@dataclass(frozen=True, slots=True)
class TermMatch:
    """Where a term was found."""

    term: str  # the term exactly as written in the policy
    index: int  # its position in the list given to TermMatcher.compile()
    offset: int  # code-point offset of the match in the ORIGINAL text


@dataclass(frozen=True, slots=True)
class _Key:
    """One distinct normalized term and the policy terms that normalize to it."""

    length: int  # in UTF-8 bytes of the normalized form
    chars: int  # in code points of the normalized form
    word_start: bool  # must start at a word edge
    word_end: bool  # must end at a word edge
    indices: tuple[int, ...]  # ascending
    # Terms of several words, written out letter by letter ("n o r i s k"):
    # this key is their letters without spaces, found only inside a run of
    # spaced-out letters that normalization joined.
    joined_only: tuple[int, ...] = ()


class TermMatcher:
    """Finds policy terms in messages; build one with `TermMatcher.compile`."""

    def __init__(self, terms: tuple[str, ...], automaton: ahocorasick.Automaton | None) -> None:
        self._terms = terms
        self._automaton = automaton
        self._max_length = 0
        if automaton is not None:
            self._max_length = max(key.length for key in automaton.values())

    @classmethod
    def compile(cls, terms: Sequence[str]) -> TermMatcher:
        """Build a matcher over `terms`.

        Raises TermError for an empty term or one that normalizes to nothing.
        """
        by_key: dict[str, list[int]] = {}
        spelled: dict[str, list[int]] = {}
        for index, term in enumerate(terms):
            key = _term_key(index, term)
            for variant in _variants(key):
                indices = by_key.setdefault(variant, [])
                if not indices or indices[-1] != index:  # ascending, once each
                    indices.append(index)
            if " " in key:
                spelled.setdefault(key.replace(" ", ""), []).append(index)
        if not by_key:
            return cls(tuple(terms), None)
        automaton = ahocorasick.Automaton(ahocorasick.STORE_ANY, ahocorasick.KEY_STRING)
        for key in by_key.keys() | spelled.keys():
            made = _make_key(key, by_key.get(key, []), spelled.get(key, []))
            automaton.add_word(_to_bytes(key), made)
        automaton.make_automaton()
        return cls(tuple(terms), automaton)

    def __len__(self) -> int:
        return len(self._terms)

    def first(self, text: str) -> TermMatch | None:
        """The earliest match in `text` (at equal offsets: the longest term)."""
        return self.first_normalized(normalize(text))

    def found(self, text: str) -> dict[int, TermMatch]:
        """Every term index present in `text` -> its first match."""
        return self.found_normalized(normalize(text))

    def first_normalized(self, norm: Normalized) -> TermMatch | None:
        """`first` on a text normalized once for many rules."""
        best: tuple[int, int, int] | None = None  # (start, -chars, index)
        for end, start, key, indices in self._matches(norm.text, norm.joined):
            if best is not None and end - self._max_length + 1 > best[0]:
                # Matches come in order of their end: no later one can start
                # at or before the best start any more.
                break
            candidate = (start, -key.chars, indices[0])
            if best is None or candidate[:2] < best[:2]:
                best = candidate
        if best is None:
            return None
        start, _, index = best
        return TermMatch(self._terms[index], index, norm.origin[start])

    def found_normalized(self, norm: Normalized) -> dict[int, TermMatch]:
        """`found` on a text normalized once for many rules."""
        result: dict[int, TermMatch] = {}
        for _, start, _, indices in self._matches(norm.text, norm.joined):
            for index in indices:
                if index not in result:  # matches of one key come in text order
                    result[index] = TermMatch(self._terms[index], index, norm.origin[start])
        return result

    def _matches(
        self, text: str, joined: tuple[tuple[int, int], ...] = ()
    ) -> Iterator[tuple[int, int, _Key, tuple[int, ...]]]:
        """(end, start, key, term indices) of each match at proper word edges,
        in order of end.

        `end` (inclusive) is in the automaton's units (bytes, which are also
        characters for ASCII text) and `start` in characters of `text`;
        byte and character offsets grow together, so a caller may compare
        `end` against the longest key to stop early. Inside a `joined` run
        of spaced-out letters any letter may begin or end a word.
        """
        if self._automaton is None or not text:
            return
        ascii_text = text.isascii()
        data = text if ascii_text else _to_bytes(text)
        cursor = (0, 0)
        for end, key in self._automaton.iter(data):
            start_byte = end - key.length + 1
            if ascii_text:
                start = start_byte
            else:
                start, cursor = _char_offset(data, start_byte, cursor)
            stop = start + key.chars
            if not joined:
                if key.indices and _edges_ok(text, start, stop, key):
                    yield end, start, key, key.indices
                continue
            indices = _in_runs(text, start, stop, key, joined)
            if indices:
                yield end, start, key, indices


def term_problem(term: str) -> str | None:
    """Why `term` cannot be matched (empty, or nothing left once normalized), or None."""
    if not term:
        return "term is empty"
    if not normalize_term(term):
        return (
            f"term {term!r} normalizes to nothing (only spaces, separators or invisible characters)"
        )
    return None


def _term_key(index: int, term: str) -> str:
    key = normalize_term(term) if term else ""
    if not key:
        why = term_problem(term)
        raise TermError(index, term, why or "term is empty")
    return key


_HYPHEN: Final = re.compile(r"(?<=[^\W_])-(?=[^\W_])")


def _variants(key: str) -> set[str]:
    """The spellings of a normalized term that count as the term: a compound
    written with a hyphen, with a space or closed up (`risk-free`, `risk free`,
    `riskfree`), and words written apart, hyphenated too (`no risk`, `no-risk`)."""
    found = {key}
    if _HYPHEN.search(key):
        found |= {_HYPHEN.sub(" ", key), _HYPHEN.sub("", key)}
    if " " in key:
        found.add(key.replace(" ", "-"))
    return found


def _make_key(key: str, indices: list[int], joined_only: list[int]) -> _Key:
    return _Key(
        length=len(_to_bytes(key)),
        chars=len(key),
        word_start=_is_word(key[0]),
        word_end=_is_word(key[-1]),
        indices=tuple(indices),
        joined_only=tuple(joined_only),
    )


def _in_runs(
    text: str, start: int, stop: int, key: _Key, joined: tuple[tuple[int, int], ...]
) -> tuple[int, ...]:
    """The term indices a match text[start:stop] counts for, given the runs of
    joined spaced-out letters: an edge inside a run needs no word edge, and
    a term spelled out without its spaces counts only within one run."""
    around_start, around_stop = _run_at(joined, start), _run_at(joined, stop)
    free_start = around_start[0] < start < around_start[1]
    free_stop = around_stop[0] < stop < around_stop[1]
    if key.word_start and not free_start and start > 0 and _is_word(text[start - 1]):
        return ()
    if key.word_end and not free_stop and stop < len(text) and _is_word(text[stop]):
        return ()
    if key.joined_only and around_start[0] <= start and stop <= around_start[1]:
        return key.indices + key.joined_only
    return key.indices


_NO_RUN: Final = (-1, -1)


def _run_at(joined: tuple[tuple[int, int], ...], at: int) -> tuple[int, int]:
    """The run (sorted, disjoint) that starts last at or before `at`, found by
    bisection: a text of many runs and many matches stays n log n."""
    k = bisect.bisect_right(joined, (at, sys.maxsize))
    return joined[k - 1] if k else _NO_RUN


def _to_bytes(text: str) -> str:
    """UTF-8 bytes of `text`, one character per byte (see the module docstring)."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


def _char_offset(
    data: str, byte_offset: int, cursor: tuple[int, int]
) -> tuple[int, tuple[int, int]]:
    """Code-point offset of a byte offset that starts a character, and the new cursor.

    `cursor` is a (byte, code point) offset pair already known. Counting from
    it rather than from the start of the text keeps a message with many
    matches linear: decoding the whole prefix for each match made a 100 KB
    text full of near misses (`classé` against `ass`) take quadratic time.
    Matches come in order of their end, so a start lies at most one term
    length before the furthest start seen: the cursor only moves forward.
    """
    at_byte, at_char = cursor
    if byte_offset >= at_byte:
        chars = at_char + _chars(data[at_byte:byte_offset])
        return chars, (byte_offset, chars)
    return at_char - _chars(data[byte_offset:at_byte]), cursor


def _chars(data: str) -> int:
    """Code points in UTF-8 bytes (carried in a latin-1 string) that are whole characters."""
    return len(data.encode("latin-1").decode("utf-8", "surrogatepass"))


def _edges_ok(text: str, start: int, end: int, key: _Key) -> bool:
    """Is the match text[start:end] at word edges where the term needs them?"""
    if key.word_start and start > 0 and _is_word(text[start - 1]):
        return False
    return not (key.word_end and end < len(text) and _is_word(text[end]))


# Scripts written without spaces between words: a term may start or end
# anywhere inside them.
_UNSPACED: Final = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x9FFF),  # CJK radicals, Kana, CJK symbols, Han
    (0xA960, 0xA97F),  # Hangul Jamo Extended-A
    (0xAC00, 0xD7FF),  # Hangul syllables, Jamo Extended-B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFFDC),  # half-width Kana and Hangul
    (0x20000, 0x3FFFF),  # Han, supplementary planes
)


def _is_word(ch: str) -> bool:
    """A letter, digit or mark of a space-delimited script."""
    if not (ch.isalnum() or _is_mark(ch)):
        return False
    cp = ord(ch)
    return not any(low <= cp <= high for low, high in _UNSPACED)


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch)[0] == "M"


# --- terms files ---------------------------------------------------------------


def load_terms_file(path: pathlib.Path) -> list[tuple[int, str]]:
    """Read a terms file: one term per line.

    Returns (1-based line number, term) for each term; surrounding whitespace
    is stripped, and blank lines and lines starting with `#` are skipped (a
    `#` later in a line is part of the term). A leading byte order mark is
    ignored. Raises TermError with a one-line message when the file is
    missing, unreadable or not UTF-8, or a term holds a control character.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TermError(0, "", f"terms file '{path}' not found") from None
    except OSError as exc:
        raise TermError(0, "", f"cannot read terms file '{path}': {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        why = f"terms file '{path}' is not UTF-8: byte 0x{data[exc.start]:02x} on line {line}"
        raise TermError(line, "", why) from None
    terms: list[tuple[int, str]] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        term = raw.strip()
        if term and not term.startswith("#"):
            control = _CONTROL.search(term)
            if control is not None:  # a binary file, or a term no one can read
                why = (
                    f"terms file '{path}' line {number}: control character"
                    f" U+{ord(control.group()):04X} (is it a text file?)"
                )
                raise TermError(number, term, why)
            terms.append((number, term))
    return terms


_CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
