"""What a recipient's reply asks for: to stop, to start again, or for help.

The keywords: the US carriers' (CTIA) STOP, STOPALL,
UNSUBSCRIBE, CANCEL, END, QUIT, with Twilio's REVOKE and OPTOUT, AWS's ARRET
and TD; START, YES, UNSTOP; HELP, INFO. China's 退订, TD, T (as in 回T退订)
and R (as in 拒收请回复R). FCC 24-18 counts "stop, quit, end, revoke, opt
out, cancel, unsubscribe" in a reply, and other wording a reasonable person
reads as revocation: a reply that is one of the short phrases below
("please stop", "stop texting me") counts too, and so does one that says it
plainly anywhere ("do not text me", "no more messages", "remove my number",
"leave me alone", "unsub").

A reply is read as banned terms are (gateway/text/normalize.py: NFKC, case
and accents folded, traditional Chinese as simplified, invisible characters
dropped, spaced-out letters joined: "S T O P" is "stop"), trimmed, with
spaces, hyphens and underscores read as one space and the punctuation around
it dropped. Chinese replies that refuse in plain words (拒收, 取消, 不要再发,
别发了) opt out as 退订 does. FCC 24-18's words count wherever they stand in the reply,
as whole words ("Stop sending me these", "Cancel my subscription", even
"stop by our store"): the gateway sends no clarifying question, and a
revocation missed is a violation where one too many is a lost contact.
So does 退订 anywhere in a reply. The other keywords count as the whole
reply only: T, R and TD are letters of many replies, and consent (START,
YES) is never read into a longer text.
"""

from __future__ import annotations

from enum import StrEnum

import regex

from gateway.text.normalize import normalize


class Ask(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


_STOP_WORDS = ("stop", "quit", "end", "revoke", "opt out", "optout", "cancel", "unsubscribe")
OPT_OUT = frozenset(
    [*_STOP_WORDS, "stopall", "stop all", "arret", "arrêt", "td", "t", "r", "退订", "回t退订"]
)
OPT_IN = frozenset(["start", "yes", "unstop"])
HELP = frozenset(["help", "info"])
# Short replies that plainly revoke consent (FCC 24-18: any reasonable means).
_POLITE = regex.compile(
    r"(?:please )?(?:(?:stop|quit|end|cancel)(?: all)?(?: (?:texting|messaging|sending|"
    r"contacting|txting)(?: me)?(?: messages| texts)?)?|unsubscribe(?: me)?|opt me out|"
    r"remove me(?: from (?:this|your|the) list)?|take me off(?: (?:this|your|the) list)?)"
    r"(?: please)?(?: thanks| thank you)?"
)
# The FCC words as whole words anywhere in the reply (letters or digits around
# a word make another word: "stopwatch", "backend"), and the plain ways of
# saying it without them that a reasonable person reads as revocation: "do not
# text me", "no more messages", "remove my number", "leave me alone", "unsub".
_CONTACT = (
    r"(?:text(?:ing)?|txt|messag(?:e|ing)|msg|sms|contact(?:ing)?|e ?mail(?:ing)?"
    r"|call(?:ing)?|send(?:ing)?|writ(?:e|ing))"
)
_REVOKES = regex.compile(
    r"(?<![\p{L}\p{N}])(?:stop(?:all)?|quit|end|revoke|opt ?out|optout|cancel|un ?subscribe"
    rf"|(?:do ?n[o'’]?t|never|no longer) (?:ever )?{_CONTACT} (?:me|to me|this number|us)"
    r"|no more (?:texts?|txts?|text messages|messages|msgs|sms|emails?)"
    r"|(?:remove|delete) (?:me|my number|this number)|take me off|leave me alone|unsub)"
    r"(?![\p{L}\p{N}])|退[订訂]"  # and its traditional form, as written in Taiwan and Hong Kong
    # The plain Chinese ways: refuse to receive, cancel, don't send any more.
    r"|拒收|取消|(?:不要|别|不用)再?[发發]|[别別][发發]了"
)
_EDGES = regex.compile(r"^[\p{P}\p{S}\s]+|[\p{P}\p{S}\s]+$")
_SPACES = regex.compile(r"[\s_-]+")  # "opt-out" reads as "opt out"


def read(reply: str) -> Ask | None:
    """What the reply asks for, or None when it is not a keyword."""
    # As terms are matched: spaced and dotted letters ("S T O P", "s.t.o.p")
    # and invisible characters ("st\u200bop") read as the word they spell.
    text = _SPACES.sub(" ", _EDGES.sub("", normalize(reply).text))
    if text in OPT_OUT or _POLITE.fullmatch(text) or _REVOKES.search(text):
        return Ask.OPT_OUT
    if text in OPT_IN:
        return Ask.OPT_IN
    if text in HELP:
        return Ask.HELP
    return None
