"""The rule-file schema: strict (unknown keys are errors), one model per rule type.

The JSON Schema of this module is what `gateway policy schema` prints for editors.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Any, ClassVar, Literal

from phonenumbers import SUPPORTED_REGIONS
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.model import Action, Channel
from gateway.schedule.window import Window, WindowError
from gateway.schedule.zones import valid_zone
from gateway.text.terms import term_problem

RULE_ID = r"^[A-Za-z0-9._-]+$"
# The names of categories, tags and senders that the native API takes
# (gateway/adapters/native.py) and of the lists that the opt-out API and CLI
# take (gateway/web/admin.py). The pure core may not import those layers; a
# test holds the three copies equal.
NAME = r"^[A-Za-z0-9._:@-]{1,128}$"
# ASCII digits only: `\d` alone also takes other scripts' digits (Arabic-Indic `٢٤h`).
_DURATION = re.compile(r"^\s*([0-9]+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# The longest cap window. Longer ones would put a capped send's retry time
# past the dates and the store's integers (999999999999d overflows both).
MAX_DURATION = 3650 * 86400


def parse_duration(text: str) -> int:
    """'24h' -> 86400 seconds. Units: s, m, h, d, w; at most 3650d."""
    found = _DURATION.match(text)
    # Counted before int(): it refuses numbers of thousands of digits.
    if found and len(found.group(1).lstrip("0")) > 12:
        raise ValueError(f"'{text}' is longer than 3650d (ten years)")
    if not found or int(found.group(1)) == 0:
        raise ValueError(f"'{text}' is not a duration (use e.g. 30s, 15m, 24h, 7d)")
    seconds = int(found.group(1)) * _UNIT_SECONDS[found.group(2)]
    if seconds > MAX_DURATION:
        raise ValueError(f"'{text}' is longer than 3650d (ten years)")
    return seconds


OneOrMany = str | list[str]

_NAMES = "letters, digits, . _ : @ -, at most 128"
# What the values of each condition must be (else no message has them):
# pattern, what a value is, whether it compares case-insensitively.
_VALUES: dict[str, tuple[str, str, bool]] = {
    "category": (NAME, f"a category name ({_NAMES}), so no message has it", True),
    "tags": (NAME, f"a tag ({_NAMES}), so no message has it", True),
    "sender": (NAME, f"a sender name ({_NAMES}), so no message has it", False),
    "route": (RULE_ID, "a route name (letters, digits, . _ -), so no message has it", False),
    "country": (r"[A-Z]{2}", "an ISO 3166 country code like US or CN", False),
    "area_code": (r"[0-9]{1,6}", "an area code (1 to 6 digits, e.g. '305')", False),
}


def _no_country(code: str) -> str:
    known = {"UK": "GB", "EL": "GR"}  # the EU's own codes for two of its members
    hint = f" (use {known[code]})" if code in known else " (an ISO 3166 code like US or CN)"
    return f"'{code}' is not the country of any phone number, so no message has it{hint}"


# The gateway's own reasons name these in place of a rule: a rule of the same
# id could not be told from them in a decision or an audit query.
RESERVED_IDS = {
    "recipient": "the reason for a recipient that is not a valid address",
    "deferred-limit": "the reason for a sender's full queue of held messages",
    "carried-with": "the reason for a recipient whose request could not be sent",
    "store": "the reason for a refusal while the state store is unreachable",
    "trail": "the reason for a refusal while the audit trail is unreachable",
    "upstream": "the reason for an upstream's refusal or silence",
    "scheduler": "the reason for a held message that could not be sent",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(Strict):
    """Conditions on a message; a list means any of its values. Categories and
    tags compare case-insensitively (kept lower-cased, as ingress keeps a
    message's), senders and the rest as written."""

    channel: Channel | list[Channel] | None = None
    category: OneOrMany | None = None
    sender: OneOrMany | None = None
    route: OneOrMany | None = None
    country: OneOrMany | None = None
    # Digits the recipient's national number starts with (US: the three-digit
    # area code); phone recipients only.
    area_code: OneOrMany | None = None
    tags: OneOrMany | None = None

    @field_validator("*")
    @classmethod
    def _values(cls, value: Any, info: ValidationInfo) -> Any:
        if value == []:
            raise ValueError("is empty, so no message matches it (leave the key out)")
        if value is None or info.field_name not in _VALUES:
            return value
        pattern, what, fold = _VALUES[info.field_name]
        for each in [value] if isinstance(value, str) else value:
            if not re.fullmatch(pattern, each):
                raise ValueError(f"'{each}' is not {what}")
            if info.field_name == "country" and each not in SUPPORTED_REGIONS:
                raise ValueError(_no_country(each))
        if not fold:
            return value
        return value.lower() if isinstance(value, str) else [each.lower() for each in value]


class RuleBase(Strict):
    id: Annotated[str, Field(pattern=RULE_ID, max_length=128)]
    match: Match | None = None
    unless: Match | None = None
    action: Action = Action.REJECT
    description: str | None = None

    defers: ClassVar[bool] = False  # may hold a message (action: defer)

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_IDS:
            raise ValueError(f"'{value}' is the gateway's own id ({RESERVED_IDS[value]})")
        return value

    @field_validator("action")
    @classmethod
    def _defer_only_for_windows(cls, action: Action) -> Action:
        # A field's own check (cls is the rule type's model), so the problem
        # names `action` and its line.
        if action is Action.DEFER and not cls.defers:
            raise ValueError("'defer' is only for time_window rules")
        return action


_PLACEHOLDERS = ("sender", "route", "channel", "category")


def _list_name(name: str) -> str:
    """A list name as str.format will fill it in for each message: it must
    parse (a lone '{' or '}' would fail there), use known placeholders only,
    and, filled in, be a name the opt-out API takes, or no address could ever
    be on the list. Each placeholder is tried with a one-letter value, as any
    message's sender, route, channel and category are valid names."""
    try:
        parts = list(string.Formatter().parse(name))
    except ValueError:
        raise ValueError(f"'{name}' has a '{{' or '}}' without its pair") from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        placeholder = field + (f"!{conversion}" if conversion else "")
        placeholder += f":{spec}" if spec else ""
        if placeholder not in _PLACEHOLDERS:
            raise ValueError(
                f"'{name}' uses {{{placeholder}}}; use {{sender}}, {{route}}, {{channel}} or"
                " {category}"
            )
    filled = "".join(text + ("x" if field is not None else "") for text, field, _, _ in parts)
    if not re.fullmatch(NAME, filled):
        raise ValueError(f"'{name}' is not a list name ({_NAMES}), so no address can be on it")
    return name


class ListsRule(RuleBase):
    """A rule that reads the recipient's lists (opt-outs, consents)."""

    # Each name checked on its own, so that every bad one is reported.
    lists: Annotated[list[Annotated[str, AfterValidator(_list_name)]], Field(min_length=1)]


class OptOutRule(ListsRule):
    type: Literal["opt_out"]


class ConsentRule(ListsRule):
    type: Literal["consent"]


class Limit(Strict):
    count: Annotated[int, Field(ge=1, strict=True)]
    per: str

    @field_validator("per")
    @classmethod
    def _duration(cls, per: str) -> str:
        parse_duration(per)
        return per

    @property
    def per_seconds(self) -> int:
        return parse_duration(self.per)


class FrequencyCapRule(RuleBase):
    type: Literal["frequency_cap"]
    limits: Annotated[list[Limit], Field(min_length=1)]
    key: Literal["recipient", "sender_recipient", "sender"] = "recipient"


TextField = Literal["body", "subject", "title"]
LengthField = Literal["body", "subject", "title", "payload"]

# pyahocorasick stores a term as one trie node per UTF-8 byte and frees the
# nodes recursively: a term of a few hundred thousand bytes overflows the
# stack and kills the process when its bundle is dropped. No real term comes
# near this limit (normalizing may grow a term, but by far less than the margin).
MAX_TERM_CHARS = 1000


def term_fault(term: str) -> str | None:
    """Why `term` cannot be used (too long, empty, nothing left once normalized), or None."""
    if len(term) > MAX_TERM_CHARS:
        return f"term is {len(term)} characters long (at most {MAX_TERM_CHARS})"
    return term_problem(term)


def _term(term: str) -> str:
    if (why := term_fault(term)) is not None:
        raise ValueError(why)
    return term


Term = Annotated[str, AfterValidator(_term)]


class ContentLengthRule(RuleBase):
    # Where a problem of the rule as a whole is shown (the one field to add).
    whole_rule_field: ClassVar[str] = "max_segments"
    type: Literal["content_length"]
    field: LengthField = "body"
    max_segments: Annotated[int, Field(ge=1, strict=True)] | None = None
    max_chars: Annotated[int, Field(ge=1, strict=True)] | None = None
    max_bytes: Annotated[int, Field(ge=1, strict=True)] | None = None

    @model_validator(mode="after")
    def _some_limit(self) -> ContentLengthRule:
        if self.max_segments is None and self.max_chars is None and self.max_bytes is None:
            raise ValueError("give at least one of max_segments, max_chars, max_bytes")
        return self


class BannedTermsRule(RuleBase):
    # Where a problem of the rule as a whole is shown (the one field to add).
    whole_rule_field: ClassVar[str] = "terms"
    type: Literal["banned_terms"]
    terms: list[Term] = []
    terms_file: str | None = None
    fields: Annotated[list[TextField], Field(min_length=1)] = ["body", "subject", "title"]

    @model_validator(mode="after")
    def _some_terms(self) -> BannedTermsRule:
        if not self.terms and not self.terms_file:
            raise ValueError("give terms, terms_file, or both")
        return self


class RequiredTextRule(RuleBase):
    # Where a problem of the rule as a whole is shown (the one field to add).
    whole_rule_field: ClassVar[str] = "any_of"
    type: Literal["required_text"]
    any_of: Annotated[list[Term], Field(min_length=1)] | None = None
    all_of: Annotated[list[Term], Field(min_length=1)] | None = None
    field: TextField = "body"

    @model_validator(mode="after")
    def _one_list(self) -> RequiredTextRule:
        if (self.any_of is None) == (self.all_of is None):
            raise ValueError("give exactly one of any_of, all_of")
        return self


def _window_part(**part: Any) -> None:
    """Window.parse on one part of a window (the rest left valid), so that the
    schema reports each part's problems together with the rule's others."""
    try:
        Window.parse(**({"hours": "00:00-24:00"} | part))
    except WindowError as exc:
        raise ValueError(str(exc)) from None


def _hours(text: str) -> str:
    _window_part(hours=text)
    return text


def _day(name: str) -> str:
    _window_part(days=[name])
    return name


Hours = Annotated[str, AfterValidator(_hours)]
Day = Annotated[str, AfterValidator(_day)]


class Allow(Strict):
    hours: Hours | list[Hours]
    days: list[Day] | None = None

    @field_validator("hours", "days")
    @classmethod
    def _some(cls, value: object, info: ValidationInfo) -> object:
        if value == []:
            _window_part(**{str(info.field_name): value})
        return value


class TimeWindowRule(RuleBase):
    defers: ClassVar[bool] = True

    type: Literal["time_window"]
    allow: Allow
    exclude_holidays: Annotated[bool, Field(strict=True)] = False
    holiday_calendar: str | None = None
    fallback_timezone: str | None = None

    @field_validator("holiday_calendar")
    @classmethod
    def _calendar(cls, code: str | None, info: ValidationInfo) -> str | None:
        # When exclude_holidays is wrong itself, the calendar is judged alone.
        _window_part(
            exclude_holidays=info.data.get("exclude_holidays", True), holiday_calendar=code
        )
        return code

    @field_validator("fallback_timezone")
    @classmethod
    def _zone(cls, zone: str | None) -> str | None:
        if zone is not None and not valid_zone(zone):
            raise ValueError(f"'{zone}' is not an IANA time zone like America/New_York")
        return zone


RULE_MODELS: dict[str, type[RuleBase]] = {
    "opt_out": OptOutRule,
    "consent": ConsentRule,
    "frequency_cap": FrequencyCapRule,
    "content_length": ContentLengthRule,
    "banned_terms": BannedTermsRule,
    "required_text": RequiredTextRule,
    "time_window": TimeWindowRule,
}

AnyRule = Annotated[
    OptOutRule
    | ConsentRule
    | FrequencyCapRule
    | ContentLengthRule
    | BannedTermsRule
    | RequiredTextRule
    | TimeWindowRule,
    Field(discriminator="type"),
]


class RuleFile(Strict):
    rules: list[AnyRule]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of one rule file."""
    schema: dict[str, Any] = TypeAdapter(RuleFile).json_schema()
    schema["title"] = "Message compliance gateway rule file"
    return schema
