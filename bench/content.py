"""Content checks: normalize + term match, and SMS segment counting, timed.

Builds matchers over 10, 1,000 and 10,000 synthetic banned terms (Latin words
and phrases, and CJK terms, from a seeded generator) and times one check
(normalize the message, then find the first banned term) on messages of 160
and 1,000 characters, English and Chinese, without a match and with one near
the end. Run `python -m bench.content`; it prints one table and finishes in
well under 20 seconds. It measures, it asserts nothing.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable

from gateway.text.normalize import normalize
from gateway.text.sms import sms_segments
from gateway.text.terms import TermMatcher

SEED = 20240601
TERM_COUNTS = (10, 1_000, 10_000)
_TARGET_S = 0.03  # length of one timed run
_REPEATS = 5  # the best run counts: other load on the machine only slows runs

_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"
# Common Han characters, simplified and traditional, for CJK terms.
_HAN = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可"
    "她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三"
    "已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女"
    "問題們個來時學對會說經過現開發動種點無實與當應賺賠穩錢貸款優惠註冊領取紅包彩票博彩"
)
_EN_TEXT = (
    "Hi Anna, your order #48213 has shipped and will arrive on Tuesday between 9am and 5pm. "
    "Track it at https://example.com/t/48213 or reply HELP for help. Thanks for shopping with "
    "us, we hope you enjoy your new running shoes and see you again soon at our downtown store. "
)
_ZH_TEXT = (
    "您好，您的订单已发货，预计周二上午九点到下午五点之间送达。请通过链接查询物流信息，如有疑问"
    "请回复本短信或致电客服热线。感谢您的支持，期待您再次光临我们的门店。"
)


def _word(rng: random.Random) -> str:
    syllables = rng.randint(2, 4)
    return "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))


def synthetic_terms(count: int, seed: int = SEED) -> list[str]:
    """`count` distinct terms: 45% Latin words, 15% Latin phrases, 40% CJK."""
    rng = random.Random(seed)
    terms: list[str] = []
    seen: set[str] = set()
    while len(terms) < count:
        kind = rng.random()
        if kind < 0.45:
            term = _word(rng)
        elif kind < 0.60:
            term = " ".join(_word(rng) for _ in range(rng.randint(2, 3)))
        else:
            term = "".join(rng.choice(_HAN) for _ in range(rng.randint(2, 4)))
        if term not in seen:
            seen.add(term)
            terms.append(term)
    return terms


def _message(base: str, size: int, ending: str = "") -> str:
    body = (base * (size // len(base) + 1))[: size - len(ending)]
    return body + ending


def _per_call_us(fn: Callable[[], object]) -> float:
    """Microseconds per call: the best of _REPEATS runs of about _TARGET_S seconds."""
    fn()
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - start >= _TARGET_S:
            break
        calls *= 2
    best = float("inf")
    for _ in range(_REPEATS):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / calls * 1e6


def _check(matcher: TermMatcher, text: str) -> Callable[[], object]:
    return lambda: matcher.first_normalized(normalize(text))


def run(print_table: bool = True) -> list[dict[str, object]]:
    """Time the content checks; return one row per figure (and print a table)."""
    rows: list[dict[str, object]] = []
    for count in TERM_COUNTS:
        terms = synthetic_terms(count)
        started = time.perf_counter()
        matcher = TermMatcher.compile(terms)
        compile_ms = (time.perf_counter() - started) * 1e3
        latin_hit = next(t for t in terms if t.isascii())
        han_hit = next(t for t in terms if not t.isascii())
        for language, base, hit in (("en", _EN_TEXT, " " + latin_hit), ("zh", _ZH_TEXT, han_hit)):
            # 1 KB: 1,000 characters, and for Chinese also 1 KB of UTF-8.
            sizes = (160, 1_000) if language == "en" else (160, 341, 1_000)
            for size in sizes:
                for label, ending in (("no match", ""), ("match at end", hit)):
                    text = _message(base, size, ending)
                    found = matcher.first(text)
                    assert (found is not None) == bool(ending), (count, language, size, label)
                    us = _per_call_us(_check(matcher, text))
                    rows.append(
                        {
                            "check": f"normalize+match {language}, {label}",
                            "terms": count,
                            "chars": len(text),
                            "utf8_bytes": len(text.encode()),
                            "us": round(us, 1),
                            "per_s": round(1e6 / us),
                            "compile_ms": round(compile_ms),
                        }
                    )
    for language, base in (("en", _EN_TEXT), ("zh", _ZH_TEXT)):
        for size in (160, 1_000):
            text = _message(base, size)
            us = _per_call_us(functools.partial(sms_segments, text))
            rows.append(
                {
                    "check": f"sms_segments {language}",
                    "terms": 0,
                    "chars": len(text),
                    "utf8_bytes": len(text.encode()),
                    "us": round(us, 1),
                    "per_s": round(1e6 / us),
                    "compile_ms": 0,
                }
            )
    if print_table:
        _print(rows)
    return rows


def _print(rows: list[dict[str, object]]) -> None:
    header = f"{'check':<40} {'terms':>6} {'chars':>6} {'bytes':>6} {'us/check':>9} {'checks/s':>9}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['check']!s:<40} {row['terms']!s:>6} {row['chars']!s:>6}"
            f" {row['utf8_bytes']!s:>6} {row['us']!s:>9} {row['per_s']!s:>9}"
        )


if __name__ == "__main__":
    run()
