"""The gateway's own JSON API: `POST /v1/messages` and `POST /v1/check`."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.adapters.base import decode_text, loads, lone_surrogate
from gateway.errors import InputError
from gateway.model import Channel, Message
from gateway.policy.schema import NAME  # the names rules match on
from gateway.recipients import parse_recipient
from gateway.schedule.zones import valid_zone

# LF, CR and form feed are GSM characters; every other control character is
# refused, and so is a lone surrogate. One search finds either (most texts have
# neither), and only then is the first of each kind looked for, to name it. The
# standard `re`: for a plain set of characters it took 0.8 us on a 150-character
# text where `regex` took 1.3 us for each of the two sets.
_BAD = re.compile(r"[\x00-\x09\x0b\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_BAD_CONTROL = re.compile(r"[\x00-\x09\x0b\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _text_ok(value: str | None) -> str | None:
    if value is None or not _BAD.search(value):
        return value
    bad = _BAD_CONTROL.search(value)
    if bad:
        raise ValueError(f"control character U+{ord(bad.group()):04X} at offset {bad.start()}")
    lone = _SURROGATE.search(value)
    assert lone is not None
    raise ValueError(f"lone surrogate U+{ord(lone.group()):04X} at offset {lone.start()}")


_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _address_ok(value: str) -> str:
    """An address holds no control character at all (nor the message's LF),
    no line or paragraph separator and no invisible format character (a
    zero-width space): the rules read it without them, and the upstream
    would get them."""
    bad = _ANY_CONTROL.search(value)
    if bad:
        raise ValueError(f"control character U+{ord(bad.group()):04X} at offset {bad.start()}")
    if not value.isascii():
        for at, ch in enumerate(value):
            if unicodedata.category(ch) in _INVISIBLE:
                raise ValueError(f"invisible character U+{ord(ch):04X} at offset {at}")
    return _text_ok(value) or value


_INVISIBLE = frozenset({"Cf", "Zl", "Zp"})


class NativeMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    channel: Literal["sms", "email", "push"]
    to: Annotated[str, Field(min_length=1, max_length=4096)]
    body: str
    from_: Annotated[str | None, Field(alias="from", max_length=256)] = None
    subject: str | None = None
    title: str | None = None
    category: Annotated[str | None, Field(pattern=NAME)] = None
    sender: Annotated[str | None, Field(pattern=NAME)] = None
    # A factory: a plain `[]` default is deep-copied for every message.
    tags: list[Annotated[str, Field(pattern=NAME)]] = Field(default_factory=list)
    recipient_timezone: str | None = None
    idempotency_key: Annotated[str | None, Field(min_length=1, max_length=255)] = None

    _texts = field_validator("body", "subject", "title", "from_")(_text_ok)
    _address = field_validator("to")(_address_ok)

    @field_validator("recipient_timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and not valid_zone(value):
            # A lone surrogate cannot go into pydantic's error text (it raised
            # UnicodeEncodeError instead of ValidationError): shown escaped.
            shown = value.encode("utf-8", "backslashreplace").decode("utf-8")
            raise ValueError(f"'{shown}' is not an IANA time zone like America/New_York")
        return value


EARLIEST_AT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_AT = datetime(9000, 1, 1, tzinfo=UTC)


class CheckRequest(NativeMessage):
    at: datetime | None = Field(default=None, strict=False)

    @field_validator("at", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        # Not strict, so that a string parses; but a number would be taken as
        # seconds since 1970, which no sender means here.
        if value is not None and not isinstance(value, str):
            raise ValueError("give an ISO 8601 time, e.g. 2026-06-02T11:00:00-04:00")
        return value

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone offset, e.g. 2026-06-02T11:00:00-04:00")
        # Near datetime's own limits (years 1 and 9999) the rules' conversions to
        # local time and their 14-day look-ahead overflow: keep well inside them.
        if value is not None and not EARLIEST_AT <= value < LATEST_AT:
            raise ValueError("must be from 1970-01-01T00:00:00Z to before 9000-01-01T00:00:00Z")
        return value


M = TypeVar("M", bound="NativeMessage")


def decode_json(raw: bytes) -> Any:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass  # the standard parser says where, and takes what orjson refuses (lone surrogates)
    else:
        if _surely_once(raw, data):
            return data
        # Perhaps a key given twice (orjson keeps the last): the standard
        # parser, which `loads` makes refuse it, reads it again.
    # `loads` also turns the parser's other failures (nesting past the recursion
    # limit, an integer too long for int()) into a 400 instead of a 500.
    data = loads(decode_text(raw))
    if isinstance(data, dict):
        # pydantic blames another field for a key holding a lone surrogate (only
        # this parser lets one through); no field has such a name.
        for key in data:
            if lone_surrogate(key):
                shown = key.encode("utf-8", "backslashreplace").decode("utf-8")
                raise InputError(f"{shown}: unknown field", {shown: "unknown field"})
    return data


def field_errors(exc: ValidationError) -> dict[str, str]:
    out: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in error["loc"]) or "body"
        msg = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            msg = "unknown field"
        out.setdefault(loc, msg)
    return out


def parse_native(data: Any, model: type[M]) -> M:
    if not isinstance(data, dict):
        raise InputError("the body must be a JSON object (one message)")
    try:
        item = model.model_validate(data)
    except ValidationError as exc:
        fields = field_errors(exc)
        raise InputError(
            "the message is not valid: " + "; ".join(f"{k}: {v}" for k, v in fields.items()), fields
        ) from None
    if item.channel == "email" and item.subject is None:
        raise InputError(
            "the message is not valid: subject: required for email",
            {"subject": "required for email"},
        )
    return item


_BLANKS = (b" ", b"\t", b"\n", b"\r")


def _surely_once(raw: bytes, data: Any) -> bool:
    """True when no key of `raw` can have been given twice (most bodies, in
    about a microsecond); False when that cannot be told so cheaply.

    Written again by orjson, a document loses only what it does not need:
    blanks between tokens, escapes it writes shorter, and a repeated key's
    pair (never fewer bytes than its spaces). orjson writes no blank between
    tokens, so its spaces are those of the strings; JSON escapes every other
    blank in a string. So if the blanks outside strings account for the whole
    difference in length, nothing else, and no key twice, was lost."""
    again = orjson.dumps(data)
    blanks = sum(raw.count(blank) for blank in _BLANKS) - again.count(b" ")
    return len(raw) - blanks == len(again)


def to_message(item: NativeMessage, *, route: str, sender: str, category: str) -> Message:
    """The normalized message; raises InvalidRecipient for a bad address."""
    channel = Channel(item.channel)
    return Message(
        channel=channel,
        recipient=parse_recipient(channel, item.to),
        body=item.body,
        sender=item.sender or sender,
        route=route,
        # Case-folded, as rules compare them: `Marketing` must not slip past
        # the rules written for `marketing`.
        category=(item.category or category).lower(),
        from_=item.from_,
        subject=item.subject,
        title=item.title,
        tags=tuple(tag.lower() for tag in item.tags),
        recipient_timezone=item.recipient_timezone,
        idempotency_key=item.idempotency_key,
    )
