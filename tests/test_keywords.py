"""Reading a recipient's reply: the stop, start and help keywords, and nothing else."""

from __future__ import annotations

import pytest

from gateway.keywords import Ask, read


@pytest.mark.parametrize(
    "text",
    ["STOP", "Stop!", "stop.", " stop ", "STOPALL", "stop all", "UNSUBSCRIBE", "Cancel", "END",
     "quit", "REVOKE", "OPTOUT", "opt out", "Opt-Out", "ARRET", "arrêt", "TD", "T", "R",
     "退订", "回T退订", "Ｓｔｏｐ", "please stop", "Stop please", "Please stop texting me",
     "stop messaging me", "Unsubscribe me.", "remove me from your list", "take me off the list",
     "opt me out", "stop sending me messages", "STOP thank you",
     # Written apart or with invisible characters, as terms are read.
     "S T O P", "S.T.O.P", "st\u200bop", "STO\u00adP", "un-subscribe", "退 订",
     # Chinese refusals in plain words.
     "拒收", "取消", "不要再发了", "别发了", "別發了",
     # FCC 24-18: its words count wherever they stand in a reply.
     "Stop sending me these", "Revoke consent", "Cancel my subscription", "Stop now",
     "STOP STOP", "stop by our store", "I want to end this", "cancel my appointment",
     "Don't stop", "yes, stop", "please unsubscribe me from all of this", "I opt-out",
     "我要退订", "不要再发了，退订", "退訂", "回T退訂",
     # Revocation in plain words, without the FCC's (FCC 24-18: any reasonable means).
     "Do not text me", "Don't text me anymore", "do not text me again", "don’t message me",
     "dont contact me", "Never call me again", "No more texts", "No more messages please",
     "remove my number", "Please delete my number", "leave me alone", "unsub",
     "no longer text this number"],
)  # fmt: skip
def test_opt_out(text: str) -> None:
    assert read(text) is Ask.OPT_OUT


@pytest.mark.parametrize("text", ["START", "yes", "Unstop"])
def test_opt_in(text: str) -> None:
    assert read(text) is Ask.OPT_IN


@pytest.mark.parametrize("text", ["HELP", "info?"])
def test_help(text: str) -> None:
    assert read(text) is Ask.HELP


@pytest.mark.parametrize(
    "text",
    ["", "no", "ok", "stopwatch", "the backend", "endless", "help me find the store",
     "yes please", "Thanks, see you at 5", "T-shirt sizes?", "R u there", "I'll start tomorrow",
     "don't forget me", "more texts please", "unsubtle", "remove the item from my cart"],
)  # fmt: skip
def test_not_a_keyword(text: str) -> None:
    assert read(text) is None
