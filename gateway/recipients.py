"""Recipient addresses: validation, normalization, pseudonyms and masked hints."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

import phonenumbers
import regex
from phonenumbers import phonenumberutil as pnu
from phonenumbers.phonemetadata import PhoneMetadata

from gateway.errors import InvalidRecipient, StoreUnavailable
from gateway.model import Channel, Recipient, RecipientKind
from gateway.schedule.zones import zones_for_type

# Deliberately plain: one @, a dotted domain, no spaces or control characters,
# none of the characters that only a quoted local part may hold, no empty or
# leading/trailing dot in the local part, no label that starts or ends with "-".
_EMAIL_CHAR = r'[^@\s\p{Cc}"(),:;<>\[\]\\]'
_LABEL_CHAR = r'[^@\s\p{Cc}"(),:;<>\[\]\\.]'
_LABEL_EDGE = r'[^@\s\p{Cc}"(),:;<>\[\]\\.\-]'
_EMAIL = regex.compile(
    rf"(?=[^@]{{1,64}}@)(?!\.)(?!.*\.\.)(?!.*\.@){_EMAIL_CHAR}+"
    rf"@(?:{_LABEL_EDGE}(?:{_LABEL_CHAR}{{0,61}}{_LABEL_EDGE})?\.)+"
    rf"{_LABEL_EDGE}{_LABEL_CHAR}{{0,61}}{_LABEL_EDGE}"
)
_TOKEN = regex.compile(r"^[A-Za-z0-9_:\-.]{1,4096}$")
_PHONEISH = regex.compile(r"^[\d\s+().\-]+$")
_TOPIC = regex.compile(r"^[A-Za-z0-9_\-.~%]{1,900}$")


@functools.lru_cache(maxsize=65536)  # parsing is the costliest step of a small message
def parse_phone(text: str) -> Recipient:
    """+1 (415) 555-0100 -> +14155550100, with its country; raise InvalidRecipient.

    Same answers as phonenumbers' public API (parse, is_valid_number,
    region_code_for_number, format_number E164, timezone.time_zones_for_number;
    tests/test_phone_fastpath.py compares the two), at under a third of the cost:
    the common "+digits and separators" input skips phonenumbers.parse, and the
    number type, which each of those calls works out again, is computed once.
    """
    parsed = _country_and_nsn(text)
    if parsed is None:
        raise InvalidRecipient(
            f"'{text}' is not a phone number in international form (+ and country code)",
            {"to": "not a valid phone number"},
        )
    country_code, nsn = parsed
    found = _region_and_type(country_code, nsn)
    if found is None:
        raise InvalidRecipient(
            f"'{text}' is not a valid phone number", {"to": "not a valid phone number"}
        )
    region, number_type = found
    # format_number(E164) of a parsed number is exactly this (extensions dropped).
    e164 = f"+{country_code}{nsn}"
    country = region if region not in ("ZZ", "001") else None
    return Recipient(
        e164, RecipientKind.PHONE, country, zones_for_type(e164, country_code, number_type)
    )


# What follows redoes phonenumbers' parse, region_code_for_number and
# is_valid_number_for_region step by step, keeping the number type that each of
# them would compute again. `_phonenumbers_type` copies its _number_type_helper,
# its private helpers are used in `_phonenumbers_strip_prefix` only, and its
# constants are copied here; phonenumbers is pinned (pyproject.toml), and on a
# version bump these functions must be re-read against phonenumberutil.py
# (tests/test_phone_fastpath.py compares the results with its public API).
_REGIONS_BY_CODE = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
# "+", then only ASCII digits and the separators people type. phonenumbers.parse
# finds no extension, RFC 3966 part, letters or second number in such a string,
# and the string is a viable number once it has 3 digits, so its work reduces to
# `_parse_digits`. Anything else goes through phonenumbers.parse itself.
_PLAIN_INTERNATIONAL = re.compile(r"\+[0-9][0-9 ().\-]*[0-9]")
_SEPARATORS = str.maketrans("", "", " ().-")
_MAX_INPUT = 250  # _MAX_INPUT_STRING_LENGTH: parse() refuses longer input
_NSN_LENGTHS = range(2, 18)  # _MIN_LENGTH_FOR_NSN to _MAX_LENGTH_FOR_NSN
_UNKNOWN = phonenumbers.PhoneNumberType.UNKNOWN
_UNSTRIPPABLE = (
    phonenumbers.ValidationResult.TOO_SHORT,
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    phonenumbers.ValidationResult.INVALID_LENGTH,
)


def _phonenumbers_type(nsn: str, metadata: PhoneMetadata) -> int:
    """The PhoneNumberType of a national significant number in a region; UNKNOWN
    means not valid there. number_type, is_valid_number_for_region and
    region_code_for_number (for shared calling codes) all call this.

    pnu._number_type_helper step for step, with each description's lengths
    and compiled pattern looked up once per region instead of on every call:
    a new number took 9.5 us to parse, 7.0 now."""
    rules = _type_rules(metadata)
    if not _matches(rules.general, nsn):
        return _UNKNOWN
    for desc, number_type in rules.specific:
        if _matches(desc, nsn):
            return number_type
    if _matches(rules.fixed_line, nsn):
        if rules.same_mobile_and_fixed_line or _matches(rules.mobile, nsn):
            return _FIXED_LINE_OR_MOBILE
        return _FIXED_LINE
    if not rules.same_mobile_and_fixed_line and _matches(rules.mobile, nsn):
        return _MOBILE
    return _UNKNOWN


# What _is_number_matching_desc reads of a PhoneNumberDesc: the possible
# lengths (None: any) and the compiled pattern; None for a description that
# matches nothing (absent, or without a pattern).
_Desc = tuple[frozenset[int] | None, re.Pattern[str]] | None
_TYPES = phonenumbers.PhoneNumberType
_FIXED_LINE, _MOBILE = _TYPES.FIXED_LINE, _TYPES.MOBILE
_FIXED_LINE_OR_MOBILE = _TYPES.FIXED_LINE_OR_MOBILE
# The types _number_type_helper tries before fixed line and mobile, in its order.
_SPECIFIC = (
    ("premium_rate", _TYPES.PREMIUM_RATE),
    ("toll_free", _TYPES.TOLL_FREE),
    ("shared_cost", _TYPES.SHARED_COST),
    ("voip", _TYPES.VOIP),
    ("personal_number", _TYPES.PERSONAL_NUMBER),
    ("pager", _TYPES.PAGER),
    ("uan", _TYPES.UAN),
    ("voicemail", _TYPES.VOICEMAIL),
)


@dataclass(frozen=True, slots=True)
class _TypeRules:
    general: _Desc
    specific: tuple[tuple[_Desc, int], ...]  # only those that can match
    fixed_line: _Desc
    mobile: _Desc
    same_mobile_and_fixed_line: bool


def _desc(desc: Any) -> _Desc:
    if desc is None or not desc.national_number_pattern:
        return None
    lengths = frozenset(desc.possible_length) if desc.possible_length else None
    return lengths, re.compile(desc.national_number_pattern)  # as phonenumbers compiles it


def _matches(desc: _Desc, nsn: str) -> bool:
    if desc is None:
        return False
    lengths, pattern = desc
    return (lengths is None or len(nsn) in lengths) and pattern.fullmatch(nsn) is not None


# By id(): metadata objects are not hashable; each lives as long as the
# process, and is kept beside its rules so that its id stays its own.
_RULES_OF: dict[int, tuple[PhoneMetadata, _TypeRules]] = {}


def _type_rules(metadata: PhoneMetadata) -> _TypeRules:
    found = _RULES_OF.get(id(metadata))
    if found is not None and found[0] is metadata:
        return found[1]
    specific = tuple((_desc(getattr(metadata, name)), kind) for name, kind in _SPECIFIC)
    rules = _TypeRules(
        general=_desc(metadata.general_desc),
        specific=tuple((desc, kind) for desc, kind in specific if desc is not None),
        fixed_line=_desc(metadata.fixed_line),
        mobile=_desc(metadata.mobile),
        same_mobile_and_fixed_line=bool(metadata.same_mobile_and_fixed_line_pattern),
    )
    _RULES_OF[id(metadata)] = (metadata, rules)
    return rules


def _phonenumbers_strip_prefix(national: str, metadata: PhoneMetadata) -> str:
    """What parse() keeps of the digits after the calling code: without a national
    prefix ("+44 (0)20 ...", "+1 1 415 ...") where the number stays viable and of
    a possible length without it."""
    _, stripped, _ = pnu._maybe_strip_national_prefix_carrier_code(national, metadata)
    if pnu._test_number_length(stripped, metadata) in _UNSTRIPPABLE:
        return national
    return stripped


def _country_and_nsn(text: str) -> tuple[int, str] | None:
    """(calling code, national significant number) as phonenumbers.parse(text, None)
    reads them, or None where it raises NumberParseException."""
    if len(text) <= _MAX_INPUT and _PLAIN_INTERNATIONAL.fullmatch(text):
        return _parse_digits(text[1:].translate(_SEPARATORS))
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return None
    return number.country_code or 0, phonenumbers.national_significant_number(number)


def _parse_digits(digits: str) -> tuple[int, str] | None:
    """phonenumbers.parse of "+" and `digits`: _maybe_extract_country_code, then
    the national prefix stripping and length checks at the end of parse()."""
    if len(digits) <= 2 or digits[0] == "0":  # TOO_SHORT_AFTER_IDD, INVALID_COUNTRY_CODE
        return None
    for size in (1, 2, 3):  # _extract_country_code: the shortest known code wins
        country_code = int(digits[:size])
        if country_code in _REGIONS_BY_CODE:
            break
    else:
        return None
    national = digits[size:]
    metadata = _candidates(country_code)[0][1]  # the calling code's main region
    if len(national) < 2 or metadata is None:
        return None
    national = _phonenumbers_strip_prefix(national, metadata)
    # The NSN keeps any leading zeros (Italy): parse() stores them as
    # italian_leading_zero/number_of_leading_zeros, which give them back exactly.
    return (country_code, national) if len(national) in _NSN_LENGTHS else None


_Candidate = tuple[str, PhoneMetadata | None, re.Pattern[str] | None]


@functools.cache  # one entry per calling code phonenumbers knows: bounded
def _candidates(country_code: int) -> tuple[_Candidate, ...]:
    """The regions of a calling code, in phonenumbers' order, with their metadata
    and compiled leading-digits pattern (looked up on every call otherwise)."""
    regions = phonenumbers.region_codes_for_country_code(country_code)
    candidates: list[_Candidate] = []
    for region in regions:
        if len(regions) == 1:  # may be "001", the non-geographic entities
            metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
        else:  # as _region_code_for_number_from_list looks them up
            metadata = PhoneMetadata.metadata_for_region(region, None)
        leading = metadata.leading_digits if metadata is not None else None
        candidates.append((region, metadata, re.compile(leading) if leading is not None else None))
    return tuple(candidates)


def _region_and_type(country_code: int, nsn: str) -> tuple[str, int] | None:
    """region_code_for_number and the number type, or None where
    is_valid_number_for_region(number, region) is False."""
    found = _region_of(_candidates(country_code), nsn)
    if found is None:
        return None
    region, metadata, number_type = found
    # is_valid_number_for_region: the region must belong to the calling code.
    if metadata is None or (region != "001" and metadata.country_code != country_code):
        return None
    if number_type is None:
        number_type = _phonenumbers_type(nsn, metadata)
    if number_type == _UNKNOWN:
        return None
    return region, number_type


def _region_of(
    candidates: tuple[_Candidate, ...], nsn: str
) -> tuple[str, PhoneMetadata | None, int | None] | None:
    """region_code_for_number: (region, metadata, number type if it was computed)."""
    if len(candidates) == 1:
        region, metadata, _ = candidates[0]
        return region, metadata, None
    # _region_code_for_number_from_list: a region's leading digits decide if it
    # has them, else whether the number has a type there (kept: it is the type).
    for region, metadata, leading in candidates:
        if metadata is None:
            continue
        if leading is not None:
            if leading.match(nsn):
                return region, metadata, None
        else:
            number_type = _phonenumbers_type(nsn, metadata)
            if number_type != _UNKNOWN:
                return region, metadata, number_type
    return None


def parse_email(text: str) -> Recipient:
    address = text.strip()
    if not _EMAIL.fullmatch(address):
        raise InvalidRecipient(
            f"'{text}' is not an email address", {"to": "not a valid email address"}
        )
    # The whole address in lower case: RFC 5321 lets a server tell local parts
    # apart by case, but mail providers deliver B@ and b@ to one mailbox, and an
    # opt-out given as one must stop mail sent to the other.
    return Recipient(address.lower(), RecipientKind.EMAIL)


def parse_push(text: str) -> Recipient:
    if text.startswith("/topics/") or text.startswith("topic:"):
        topic = text.split("/", 2)[-1] if text.startswith("/topics/") else text[6:]
        if _TOPIC.match(topic):
            return Recipient(f"topic:{topic}", RecipientKind.TOPIC)
    elif _TOKEN.match(text):
        return Recipient(text, RecipientKind.TOKEN)
    raise InvalidRecipient(
        f"'{text[:80]}' is not a push token or topic", {"to": "not a valid push token"}
    )


def parse_recipient(channel: Channel, text: str) -> Recipient:
    if channel is Channel.SMS:
        return parse_phone(text)
    if channel is Channel.EMAIL:
        return parse_email(text)
    return parse_push(text)


# A recipient as the trail and the store keep it (`Pseudonymizer.token`).
STORED_RECIPIENT = re.compile(r"hmac:[0-9a-f]{40}")


def stored_recipient(text: str) -> str | None:
    """`text` as a stored recipient (`hmac:` and 40 hex digits, in any case,
    as copied from an export or a decision), else None."""
    if text[:5].lower() != "hmac:":
        return None
    lowered = text.lower()
    return lowered if STORED_RECIPIENT.fullmatch(lowered) else None


def normalize_address(text: str) -> str:
    """Any address as the opt-out endpoints take it: phone, email or push token."""
    if text[:5].lower() == "hmac:":  # never a push token: a stored recipient, mistyped
        raise InvalidRecipient(
            f"'{text[:80]}' is not a stored recipient (hmac: and 40 hex digits)",
            {"address": "not a stored recipient"},
        )
    if "@" in text:
        return parse_email(text).address
    if _PHONEISH.match(text):
        return parse_phone(text).address
    return parse_push(text).address


def stored_form(pseudonyms: Pseudonymizer, text: str) -> str:
    """How the store and the trail know a recipient: a stored recipient (copied
    from an export or a decision) as it is, any other address pseudonymized."""
    return stored_recipient(text) or pseudonyms.token(normalize_address(text))


class Pseudonymizer:
    """Keyed HMAC of normalized addresses: stable, not reversible without the key.

    The key may come later (`key` None: a process started while the shared
    store that keeps it was unreachable); until `set_key`, every use raises
    StoreUnavailable, so what needs it is refused with a 503. So does every
    use while `refused` says why (the shared store holds another key).
    """

    def __init__(self, key: bytes | None) -> None:
        self._key = key
        self.refused: str | None = None  # why the key may not be used now

    @property
    def missing(self) -> bool:
        return self._key is None

    def set_key(self, key: bytes) -> None:
        self._key = key

    def _known(self) -> bytes:
        if self._key is None:
            raise StoreUnavailable(
                "the pseudonymization key is not loaded: the shared store that keeps it"
                " has not answered since this process started"
            )
        if self.refused is not None:
            raise StoreUnavailable(self.refused)
        return self._key

    def token(self, address: str) -> str:
        digest = hmac.new(self._known(), address.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"hmac:{digest[:40]}"

    def derived(self, purpose: bytes) -> bytes:
        """A key for another purpose (signing unsubscribe links), derived from
        this one so that it is kept and shared as this one is."""
        return hmac.new(self._known(), b"derived:" + purpose, hashlib.sha256).digest()


def hint(address: str) -> str:
    """A masked form a person can recognise: +1415…0100, j…@example.com."""
    if "@" in address:
        local, domain = address.rsplit("@", 1)
        return f"{local[:1]}…@{domain}"
    if address.startswith("+"):
        return f"{address[:5]}…{address[-4:]}" if len(address) > 9 else f"{address[:3]}…"
    return f"{address[:6]}…" if len(address) > 6 else "…"
