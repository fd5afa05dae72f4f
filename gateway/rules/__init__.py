"""Rule types: one module each, and the registry from `type` to its compiler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.rules.base import CompileContext, PureRule, Rule, RuleConfigError, TextCache
from gateway.rules.consent import Consent
from gateway.rules.content_length import ContentLength
from gateway.rules.frequency_cap import FrequencyCap
from gateway.rules.lists import ListRule
from gateway.rules.opt_out import OptOut
from gateway.rules.terms import BannedTerms, RequiredText
from gateway.rules.time_window import TimeWindow

COMPILERS: dict[str, Callable[[Any, CompileContext], Rule]] = {
    "opt_out": OptOut.compile,
    "consent": Consent.compile,
    "frequency_cap": FrequencyCap.compile,
    "content_length": ContentLength.compile,
    "banned_terms": BannedTerms.compile,
    "required_text": RequiredText.compile,
    "time_window": TimeWindow.compile,
}

__all__ = [
    "COMPILERS",
    "BannedTerms",
    "CompileContext",
    "Consent",
    "ContentLength",
    "FrequencyCap",
    "ListRule",
    "OptOut",
    "PureRule",
    "RequiredText",
    "Rule",
    "RuleConfigError",
    "TextCache",
    "TimeWindow",
]
