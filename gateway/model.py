"""The nouns every layer shares: messages, rule results, decisions, reason codes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"
    PUSH = "push"


class Verdict(StrEnum):
    ALLOW = "allow"
    REJECT = "reject"
    DEFER = "defer"
    PARTIAL = "partial"


class Result(StrEnum):
    PASS = "pass"
    FAIL = "fail"  # failed, and the rule is enforced
    MONITOR = "monitor"  # failed, but the rule only records
    SKIP = "skip"  # the rule does not apply to this message


class Action(StrEnum):
    REJECT = "reject"
    DEFER = "defer"
    MONITOR = "monitor"


class Code(StrEnum):
    """Reason codes: stable, part of the public contract."""

    OPTED_OUT = "opted_out"
    NO_CONSENT = "no_consent"
    FREQUENCY_CAPPED = "frequency_capped"
    CONTENT_TOO_LONG = "content_too_long"
    BANNED_TERM = "banned_term"
    MISSING_REQUIRED_TEXT = "missing_required_text"
    OUTSIDE_TIME_WINDOW = "outside_time_window"
    INVALID_RECIPIENT = "invalid_recipient"
    STORE_UNAVAILABLE = "store_unavailable"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_UNKNOWN = "upstream_unknown"


CODES = tuple(code.value for code in Code)


class RecipientKind(StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    TOKEN = "token"  # a push device token
    TOPIC = "topic"  # a push topic


@dataclass(frozen=True, slots=True)
class Recipient:
    """A normalized address: E.164 for phones, lower-cased for email."""

    address: str
    kind: RecipientKind
    country: str | None = None  # ISO 3166-1 alpha-2, phones only
    zones: tuple[str, ...] = ()  # phones: the time zones the number may be in


@dataclass(frozen=True, slots=True)
class Message:
    """One message to one recipient, whatever provider shape it came in."""

    channel: Channel
    recipient: Recipient
    body: str
    sender: str = "default"
    route: str = "native"
    category: str = "marketing"
    from_: str | None = None
    subject: str | None = None
    title: str | None = None
    tags: tuple[str, ...] = ()
    recipient_timezone: str | None = None
    idempotency_key: str | None = None

    def text(self, name: str) -> str | None:
        """The text of a content field: body, subject, title, or `payload` (a push
        notification as providers measure it: its title and body as JSON)."""
        if name == "payload":
            if self.channel is not Channel.PUSH:
                return None
            return json.dumps({"title": self.title, "body": self.body}, ensure_ascii=False)
        value: str | None = getattr(self, name)
        return value


@dataclass(frozen=True, slots=True)
class Reason:
    rule: str
    code: Code
    message: str

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "code": self.code.value, "message": self.message}


@dataclass(frozen=True, slots=True)
class RuleResult:
    """What one rule saw and decided. `code`/`message` are set when it failed."""

    rule: str
    type: str
    result: Result
    action: Action
    detail: dict[str, Any] = field(default_factory=dict)
    code: Code | None = None
    message: str | None = None
    retry_at: datetime | None = None  # frequency caps: when the window has room again
    # Rules hand out the same result to many messages (a skip, an open window):
    # its JSON is then built once too. Never changed in place by readers.
    _json: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def failed(self) -> bool:
        return self.result in (Result.FAIL, Result.MONITOR)

    def reason(self) -> Reason:
        assert self.code is not None and self.message is not None
        return Reason(self.rule, self.code, self.message)

    def to_json(self) -> dict[str, Any]:
        if self._json is not None:
            return self._json
        out: dict[str, Any] = {
            "rule": self.rule,
            "type": self.type,
            "result": self.result.value,
            "detail": self.detail,
        }
        if self.failed:
            out["code"] = self.code.value if self.code else None
            out["message"] = self.message
        object.__setattr__(self, "_json", out)  # a cache, not a change of value
        return out


def iso(at: datetime | None) -> str | None:
    """An instant as RFC 3339 in UTC with a Z, to the second (milliseconds if any)."""
    if at is None:
        return None
    at = at.astimezone(UTC)  # isoformat then ends in +00:00, replaced by Z
    return at.isoformat(timespec="milliseconds" if at.microsecond else "seconds")[:-6] + "Z"


@dataclass(slots=True)
class Decision:
    """The gateway's verdict on one message, and the trace behind it (SPEC section 5)."""

    decision_id: str
    decision: Verdict
    at: datetime
    policy_version: str
    route: str
    sender: str
    channel: Channel
    category: str
    recipient: str  # keyed HMAC of the normalized address
    recipient_hint: str
    reasons: list[Reason]
    trace: list[RuleResult]
    deliver_at: datetime | None = None
    retry_at: datetime | None = None
    upstream: dict[str, Any] | None = None
    trace_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The trace is final once decided, and is most of the document: built once
    # for the record and reused for the answer (so is the instant, as text).
    _trace_json: list[dict[str, Any]] | None = field(default=None, compare=False, repr=False)
    _at_json: str | None = field(default=None, compare=False, repr=False)

    @property
    def capped_only(self) -> bool:
        """True when every enforced failure is a frequency cap (answered with 429)."""
        return bool(self.reasons) and all(r.code is Code.FREQUENCY_CAPPED for r in self.reasons)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "decision_id": self.decision_id,
            "decision": self.decision.value,
            "at": self._at_json or self._at(),
            "policy_version": self.policy_version,
            "route": self.route,
            "sender": self.sender,
            "channel": self.channel.value,
            "category": self.category,
            "recipient": self.recipient,
            "recipient_hint": self.recipient_hint,
            "reasons": [r.to_json() for r in self.reasons],
            "trace": self._traced(),
            "deliver_at": iso(self.deliver_at),
            "upstream": self.upstream,
            "trace_id": self.trace_id,
        }
        if self.retry_at is not None:
            out["retry_at"] = iso(self.retry_at)
        out.update(self.extra)
        return out

    def _at(self) -> str | None:
        self._at_json = iso(self.at)
        return self._at_json

    def _traced(self) -> list[dict[str, Any]]:
        if self._trace_json is None:
            self._trace_json = [r.to_json() for r in self.trace]
        return self._trace_json
