"""The rule-file schema: strict (unknown keys are errors), one model per rule type.

The JSON Schema of this module is what `gateway policy schema` prints for editors.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

from gateway.model import Action, Channel

RULE_ID = r"^[A-Za-z0-9._-]+$"
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


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(Strict):
    """Conditions on a message; a list means any of its values."""

    channel: Channel | list[Channel] | None = None
    category: OneOrMany | None = None
    sender: OneOrMany | None = None
    route: OneOrMany | None = None
    country: OneOrMany | None = None
    # Digits the recipient's national number starts with (US: the three-digit
    # area code); phone recipients only.
    area_code: OneOrMany | None = None
    tags: OneOrMany | None = None

    @field_validator("area_code")
    @classmethod
    def _area_codes(cls, value: OneOrMany | None) -> OneOrMany | None:
        for code in [value] if isinstance(value, str) else value or []:
            if not re.fullmatch(r"[0-9]{1,6}", code):
                raise ValueError(f"'{code}' is not an area code (1 to 6 digits, e.g. '305')")
        return value

    @field_validator("country")
    @classmethod
    def _country_codes(cls, value: OneOrMany | None) -> OneOrMany | None:
        for code in [value] if isinstance(value, str) else value or []:
            if not re.fullmatch(r"[A-Z]{2}", code):
                raise ValueError(f"'{code}' is not an ISO 3166 country code like US or CN")
        return value


class RuleBase(Strict):
    id: Annotated[str, Field(pattern=RULE_ID, max_length=128)]
    match: Match | None = None
    unless: Match | None = None
    action: Action = Action.REJECT
    description: str | None = None

    defers: ClassVar[bool] = False  # may hold a message (action: defer)

    @field_validator("action")
    @classmethod
    def _defer_only_for_windows(cls, action: Action) -> Action:
        # A field's own check (cls is the rule type's model), so the problem
        # names `action` and its line.
        if action is Action.DEFER and not cls.defers:
            raise ValueError("'defer' is only for time_window rules")
        return action


def _known_placeholders(name: str) -> str:
    """A list name as str.format will fill it in for each message, so that a
    name that passes here cannot fail there (a lone '{' or '}' would)."""
    try:
        parts = list(string.Formatter().parse(name))
    except ValueError:
        raise ValueError(
            f"'{name}' has a '{{' or '}}' without its pair (write {{{{ or }}}} for one)"
        ) from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        placeholder = field + (f"!{conversion}" if conversion else "")
        placeholder += f":{spec}" if spec else ""
        if placeholder not in ("sender", "route", "channel", "category"):
            raise ValueError(
                f"'{name}' uses {{{placeholder}}}; use {{sender}}, {{route}}, {{channel}} or"
                " {category}"
            )
    return name


class ListsRule(RuleBase):
    """A rule that reads the recipient's lists (opt-outs, consents)."""

    # Each name checked on its own, so that every bad one is reported.
    lists: Annotated[
        list[Annotated[str, Field(min_length=1), AfterValidator(_known_placeholders)]],
        Field(min_length=1),
    ]


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
    terms: list[str] = []
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
    any_of: Annotated[list[str], Field(min_length=1)] | None = None
    all_of: Annotated[list[str], Field(min_length=1)] | None = None
    field: TextField = "body"

    @model_validator(mode="after")
    def _one_list(self) -> RequiredTextRule:
        if (self.any_of is None) == (self.all_of is None):
            raise ValueError("give exactly one of any_of, all_of")
        return self


class Allow(Strict):
    hours: str | Annotated[list[str], Field(min_length=1)]
    days: list[str] | None = None


class TimeWindowRule(RuleBase):
    defers: ClassVar[bool] = True

    type: Literal["time_window"]
    allow: Allow
    exclude_holidays: Annotated[bool, Field(strict=True)] = False
    holiday_calendar: str | None = None
    fallback_timezone: str | None = None


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
