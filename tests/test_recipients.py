"""Addresses as the gateway reads them: normalized, validated, hinted."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidRecipient
from gateway.model import RecipientKind
from gateway.recipients import Pseudonymizer, hint, normalize_address, parse_email, parse_phone
from gateway.schedule.zones import number_zones


def test_phone_numbers_are_normalized_with_country_and_zones() -> None:
    number = parse_phone("+1 (208) 555-0100")
    assert number.address == "+12085550100" and number.kind is RecipientKind.PHONE
    assert number.country == "US"
    assert (
        number.zones
        == number_zones("+12085550100")
        == (
            "America/Boise",
            "America/Los_Angeles",
        )
    )
    assert parse_phone("+8613800138000").country == "CN"


@pytest.mark.parametrize("text", ["12125550100", "+1 555", "+999 1234", "hello"])
def test_invalid_numbers(text: str) -> None:
    with pytest.raises(InvalidRecipient):
        parse_phone(text)


def test_email_and_opt_out_addresses() -> None:
    assert parse_email("Jane.Doe@Example.COM").address == "jane.doe@example.com"
    assert normalize_address("(+1) 212 555 0100") == "+12125550100"
    assert normalize_address("a@EXAMPLE.com") == "a@example.com"
    with pytest.raises(InvalidRecipient):
        parse_email("not-an-address")
    assert parse_email("用户@例子.中国").address == "用户@例子.中国"
    assert parse_email("a+b@sub.ex-ample.org").address == "a+b@sub.ex-ample.org"


@pytest.mark.parametrize(
    "text",
    [
        "a@-example.com",
        "a@example-.com",
        'a"b@example.com',
        "a<b@example.com",
        ".a@b.com",
        "a..b@example.com",
        "a.@example.com",
        "a@b.c",
        "a@example..com",
        "a@b@example.com",
    ],
)
def test_not_email_addresses(text: str) -> None:
    with pytest.raises(InvalidRecipient):
        parse_email(text)


def test_pseudonyms_and_hints() -> None:
    one, other = Pseudonymizer(b"k" * 32), Pseudonymizer(b"j" * 32)
    assert one.token("+12125550100") == one.token("+12125550100")
    assert one.token("+12125550100") != other.token("+12125550100")
    assert one.token("+12125550100").startswith("hmac:")
    assert hint("+14155550100") == "+1415…0100"
    assert hint("jane@example.com") == "j…@example.com"
