"""parse_phone against phonenumbers' public API, over every region's example numbers.

parse_phone redoes part of phonenumbers by hand (its own parse of plain
"+digits" input, the number type computed once); these tests pin it to what the
plain public calls answer, valid or not, for inputs on both sides of every rule.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from phonenumbers.phonemetadata import PhoneMetadata

from gateway.errors import InvalidRecipient
from gateway.model import Recipient, RecipientKind
from gateway.recipients import parse_phone
from gateway.schedule.zones import number_zones, zones_of

UNPARSEABLE, INVALID = "unparseable", "invalid"
_DESCS = ("fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost")
_DESCS += ("personal_number", "voip", "pager", "uan", "voicemail")


def reference(text: str) -> Recipient | str:
    """What parse_phone answered when it was written with the public API only."""
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return UNPARSEABLE
    if not phonenumbers.is_valid_number(number):
        return INVALID
    region = phonenumbers.region_code_for_number(number)
    return Recipient(
        phonenumbers.format_number(number, PhoneNumberFormat.E164),
        RecipientKind.PHONE,
        region if region not in ("ZZ", "001") else None,
        zones_of(number),  # time_zones_for_number, with the NANP overlays' corrections
    )


def actual(text: str) -> Recipient | str:
    """parse_phone without its cache, with its two refusals told apart by message."""
    try:
        return parse_phone.__wrapped__(text)
    except InvalidRecipient as error:
        assert error.fields == {"to": "not a valid phone number"}
        if str(error) == f"'{text}' is not a valid phone number":
            return INVALID
        assert str(error) == (
            f"'{text}' is not a phone number in international form (+ and country code)"
        )
        return UNPARSEABLE


def mismatches(texts: Iterable[str]) -> list[tuple[str, Recipient | str, Recipient | str]]:
    seen: set[str] = set()
    found = []
    for text in texts:
        if text in seen:
            continue
        seen.add(text)
        expected, got = reference(text), actual(text)
        if expected != got:
            found.append((text, expected, got))
    return found


def examples() -> Iterator[phonenumbers.PhoneNumber]:
    """phonenumbers' example number of every type, for every region and entity."""
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for number_type in PhoneNumberType.values():
            number = phonenumbers.example_number_for_type(region, number_type)
            if number is not None:
                yield number
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        metadata = PhoneMetadata.metadata_for_nongeo_region(code)
        assert metadata is not None
        for name in _DESCS:
            desc = getattr(metadata, name)
            if desc is not None and desc.example_number:
                yield phonenumbers.parse(f"+{code}{desc.example_number}")


def variants(number: phonenumbers.PhoneNumber) -> Iterator[str]:
    """The number as people write it, and near misses on either side of validity."""
    code = f"+{number.country_code}"
    nsn = phonenumbers.national_significant_number(number)
    yield code + nsn
    yield phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    yield phonenumbers.format_number(number, PhoneNumberFormat.RFC3966)  # tel:+1-...
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    yield f"{code} {national}"  # "+44 020 7946 0000", "+1 (201) 555-0123"
    yield f"{code}-{nsn[:3]}-{nsn[3:6]}-{nsn[6:]}"
    yield f"{code}.{nsn[:2]}.{nsn[2:]}"
    yield f"{code} ({nsn[:3]}) {nsn[3:]}"
    yield f" {code}{nsn} "  # outside the fast path: leading and trailing spaces
    yield f"{code}{nsn} ext. 12"
    for digit in "0159":
        yield code + nsn[:-1] + digit
    yield code + nsn[:-2] + "00"
    yield code + nsn + "7"
    yield code + nsn[:-1]
    yield code + nsn[1:]
    region = phonenumbers.region_code_for_country_code(number.country_code)
    prefix = phonenumbers.ndd_prefix_for_region(region, True) or ""
    for extra in {prefix, "0", "00", "1"}:
        yield f"{code}{extra}{nsn}"
        yield f"{code} ({extra}) {nsn}"


def test_every_example_number_and_its_variants() -> None:
    assert mismatches(text for number in examples() for text in variants(number)) == []


def test_nanp_area_codes_and_toll_free() -> None:
    texts = [
        f"+1 ({area}) {line}" for area in range(200, 1000) for line in ("555-0100", "234-5678")
    ]
    for area in (800, 833, 844, 855, 866, 877, 888, 900):
        texts += [f"+1 {area} {exchange} 0199" for exchange in (200, 555, 911, 999)]
    texts += ["+1 1 415 555 0100", "+1 (1) 415 555 0100", "+11 415 555 0100", "+1 415 555 010"]
    assert mismatches(texts) == []


def test_leading_zeros_and_non_geographic_codes() -> None:
    texts = [
        *("+39 06 6982 0000", "+39 02 1234 5678", "+39 0 6 6982", "+39 00 1234 5678"),
        *("+39 0039 06 6982", "+39 312 345 6789", "+39 3", "+39 06", "+39 000", "+225 01 23 45 67"),
        *("+800 1234 5678", "+800 0000 0000", "+808 1234 5678", "+870 301 234 567"),
        *("+878 1012 3456 7890", "+881 6 1234 5678", "+882 1234 5678", "+882 3421 2345"),
        *("+883 5100 1234 5678", "+888 1234 5678 901", "+979 1234 5678"),
    ]
    assert mismatches(texts) == []


@pytest.mark.parametrize(
    "text",
    [
        *("", "+", "++", "+0", "+1", "+12", "+123", "+1 555", "+999 1234", "+01 234 5678"),
        *("12125550100", "hello", "+1 800 FLOWERS", "+1 415 555 0100 #", "+1-415-555-0100."),
        *("++1 415 555 0100", "+ 1 415 555 0100", "+1 (415) 555-0100)", "(+1) 212 555 0100"),
        *("+１ ４１５ ５５５ ０１００", "＋1 415 555 0100", "+1\u00a0415\u00a0555\u00a00100"),
        *("tel:+1-415-555-0100", "+1-415-555-0100;phone-context=+1", "+1 415 555 0100 x 7"),
        *("+44 20 7946 0000/x12", "+33 1 23 45 67 89 00 00 00 00 00", "+7 " + "9" * 20),
        "+1 415 555 0100" + " " * 240,
        "+1" + " " * 250 + "4155550100",
    ],
)
def test_odd_input(text: str) -> None:
    assert mismatches([text]) == []


def test_random_digit_strings() -> None:
    rng = random.Random(20240611)
    texts = []
    for _ in range(3000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 19)))
        texts.append(
            "+" + "".join(d + rng.choice(["", "", "", " ", "-", ".", "(", ")"]) for d in digits)
        )
    for _ in range(500):
        texts.append(
            "".join(rng.choice("+0123456789 ().-x#,;/") for _ in range(rng.randint(1, 22)))
        )
    assert mismatches(texts) == []


def test_plain_input_never_reaches_phonenumbers_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("phonenumbers.parse was called")

    monkeypatch.setattr(phonenumbers, "parse", refuse)
    assert actual("+1 (415) 555-0100") == Recipient(
        "+14155550100", RecipientKind.PHONE, "US", ("America/Los_Angeles",)
    )
    assert actual("+44 (0)20 7946.0000") == Recipient(
        "+442079460000", RecipientKind.PHONE, "GB", ("Europe/London",)
    )
    assert actual("+39 02 1234 5678") == Recipient(  # the leading zero is kept
        "+390212345678", RecipientKind.PHONE, "IT", ("Europe/Rome",)
    )
    assert actual("+1 5") == UNPARSEABLE and actual("+1 415 555 010") == INVALID


def test_number_zones_agrees_for_valid_numbers() -> None:
    for number in examples():
        e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
        expected = reference(e164)
        zones = expected.zones if isinstance(expected, Recipient) else ()
        assert number_zones.__wrapped__(e164) == zones, e164
