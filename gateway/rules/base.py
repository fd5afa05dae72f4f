"""What every rule type shares: matching, compiling, and shaping its result.

A rule is compiled once when its bundle loads. Pure rules answer `check`;
stateful rules (opt-outs, caps) name the facts they need and `judge` them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import phonenumbers

from gateway.model import Action, Channel, Code, Message, RecipientKind, Result, RuleResult
from gateway.policy.schema import Match, RuleBase
from gateway.text.normalize import Normalized, normalize


class RuleConfigError(ValueError):
    """A rule that passed the schema but cannot be compiled; `field` names where,
    and `others` holds the rule's further problems, so an author sees them all."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.others: list[RuleConfigError] = []
        super().__init__(message)

    @staticmethod
    def raise_all(problems: Sequence[RuleConfigError]) -> None:
        """Raise the first of `problems` carrying the rest; nothing if there are none."""
        if problems:
            first, *rest = problems
            first.others = [*first.others, *rest]
            raise first


@dataclass(frozen=True, slots=True)
class CompileContext:
    """Where a rule file lives, and how to read the files it names (so the
    bundle's version covers them)."""

    base_dir: Path
    read_text: Callable[[Path], str]

    # The policies folder the bundle is loaded from: a file a rule names must be
    # inside it. Pack files live in its packs/<name>/ folders, so it is not
    # always `base_dir`. None (a rule compiled on its own): `base_dir` is the bound.
    root: Path | None = None

    @property
    def policies_dir(self) -> Path:
        return self.root if self.root is not None else self.base_dir


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled `match`/`unless`: every named field must hold one of its values."""

    fields: tuple[tuple[str, frozenset[str]], ...]

    @classmethod
    def compile(cls, match: Match | None) -> Condition | None:
        if match is None:
            return None
        pairs = []
        for name, value in match.model_dump(exclude_none=True).items():
            values = [value] if isinstance(value, str) else list(value)
            pairs.append((name, frozenset(str(v) for v in values)))
        return cls(tuple(pairs))

    def holds(self, message: Message) -> bool:
        return all(_field_matches(message, name, values) for name, values in self.fields)

    def values(self, name: str) -> frozenset[str]:
        """The values the condition accepts for `name` (empty: no such condition)."""
        return next((values for field, values in self.fields if field == name), frozenset())


def _field_matches(message: Message, name: str, values: frozenset[str]) -> bool:
    # Categories and tags compare case-insensitively: a rule's are lower-cased
    # when it loads, and so are a message's (at ingress, and here for a message
    # made some other way).
    if name == "tags":
        return any(tag.lower() in values for tag in message.tags)
    if name == "category":
        return message.category.lower() in values
    if name == "country":
        return message.recipient.country in values
    if name == "area_code":
        national = national_number(message)
        return national is not None and national.startswith(tuple(values))
    return str(getattr(message, name)) in values


# The text fields of each channel (SPEC section 4): email adds a subject, push
# a title (and the payload that holds it with the body).
CHANNEL_FIELDS: dict[Channel, frozenset[str]] = {
    Channel.SMS: frozenset({"body"}),
    Channel.EMAIL: frozenset({"body", "subject"}),
    Channel.PUSH: frozenset({"body", "title", "payload"}),
}


def national_number(message: Message) -> str | None:
    """The digits after the country calling code of a phone recipient (E.164)."""
    recipient = message.recipient
    if recipient.kind is not RecipientKind.PHONE or recipient.country is None:
        return None
    calling_code = phonenumbers.country_code_for_region(recipient.country)
    prefix = f"+{calling_code}"
    return recipient.address[len(prefix) :] if recipient.address.startswith(prefix) else None


class TextCache:
    """One message's normalized texts, computed at most once however many rules ask."""

    def __init__(self, message: Message) -> None:
        self.message = message
        self._normalized: dict[str, Normalized] = {}
        self._remembered: dict[object, Any] = {}

    def remember(self, key: object, compute: Callable[[], Any]) -> Any:
        """`compute()`, once per key for this message (e.g. a field's segments,
        which several length rules read)."""
        if key not in self._remembered:
            self._remembered[key] = compute()
        return self._remembered[key]

    def normalized(self, field: str) -> Normalized | None:
        text = self.message.text(field)
        if text is None:
            return None
        if field not in self._normalized:
            self._normalized[field] = normalize(text)
        return self._normalized[field]


@dataclass(eq=False)
class Rule:
    """A compiled rule."""

    id: str
    action: Action
    match: Condition | None = None
    unless: Condition | None = None
    type: ClassVar[str] = ""
    stateful: ClassVar[bool] = False
    meta: dict[str, Any] = field(default_factory=dict)
    _skip: RuleResult | None = field(default=None, repr=False)

    @classmethod
    def base_args(cls, spec: RuleBase) -> dict[str, Any]:
        return {
            "id": spec.id,
            "action": spec.action,
            "match": Condition.compile(spec.match),
            "unless": Condition.compile(spec.unless),
        }

    def applies(self, message: Message) -> bool:
        if self.match is not None and not self.match.holds(message):
            return False
        return self.unless is None or not self.unless.holds(message)

    def area_codes(self) -> frozenset[str]:
        """Every area code the rule's conditions name."""
        return frozenset().union(
            *(c.values("area_code") for c in (self.match, self.unless) if c is not None)
        )

    @property
    def enforced(self) -> bool:
        return self.action is not Action.MONITOR

    def passed(self, detail: dict[str, Any]) -> RuleResult:
        return RuleResult(self.id, self.type, Result.PASS, self.action, detail)

    def failed(
        self,
        code: Code,
        message: str,
        detail: dict[str, Any],
        retry_at: datetime | None = None,
    ) -> RuleResult:
        result = Result.FAIL if self.enforced else Result.MONITOR
        return RuleResult(self.id, self.type, result, self.action, detail, code, message, retry_at)

    def skipped(self) -> RuleResult:
        # Always the same answer (results are immutable): made once per rule.
        if self._skip is None:
            self._skip = RuleResult(self.id, self.type, Result.SKIP, self.action, {})
        return self._skip


class PureRule(Rule):
    # True when `check` reads the message's texts and channel and nothing else
    # (not the time, not the recipient): its answer holds for every message
    # with the same texts, and the engine may reuse it.
    reads_texts_only: ClassVar[bool] = False

    def check(self, texts: TextCache, now: datetime) -> RuleResult:
        raise NotImplementedError
