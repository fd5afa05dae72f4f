"""Recipient time zones from phone numbers (phonenumbers 9.0.43 data)."""

from __future__ import annotations

import pytest

from gateway.recipients import parse_phone
from gateway.schedule.zones import number_zones, valid_zone

US_TOLL_FREE = "+18005550100"
RU_MOBILE = "+79165550100"
AU_MOBILE = "+61491570156"  # ACMA's range reserved for fiction
IDAHO = "+12085550123"  # area code 208: southern Idaho is Mountain, the panhandle Pacific


def test_fixed_line_has_one_zone() -> None:
    assert number_zones("+12125550100") == ("America/New_York",)
    assert number_zones("+33612345678") == ("Europe/Paris",)


def test_us_toll_free_spans_42_zones_from_guam_to_pago_pago() -> None:
    zones = number_zones(US_TOLL_FREE)
    assert len(zones) == 42
    assert {"Pacific/Guam", "Pacific/Pago_Pago", "America/St_Johns"} <= set(zones)
    assert list(zones) == sorted(set(zones))


def test_russian_mobile_has_the_whole_country_list() -> None:
    assert number_zones(RU_MOBILE) == (
        "Asia/Almaty",
        "Asia/Anadyr",
        "Asia/Aqtobe",
        "Asia/Irkutsk",
        "Asia/Kamchatka",
        "Asia/Krasnoyarsk",
        "Asia/Magadan",
        "Asia/Novosibirsk",
        "Asia/Omsk",
        "Asia/Sakhalin",
        "Asia/Vladivostok",
        "Asia/Yakutsk",
        "Asia/Yekaterinburg",
        "Europe/Bucharest",
        "Europe/Moscow",
        "Europe/Samara",
    )


def test_australian_mobile_has_eight_zones() -> None:
    assert number_zones(AU_MOBILE) == (
        "Australia/Adelaide",
        "Australia/Brisbane",
        "Australia/Eucla",
        "Australia/Lord_Howe",
        "Australia/Perth",
        "Australia/Sydney",
        "Indian/Christmas",
        "Indian/Cocos",
    )


def test_area_code_spanning_two_zones() -> None:
    assert number_zones(IDAHO) == ("America/Boise", "America/Los_Angeles")


@pytest.mark.parametrize(
    ("overlay", "base", "zones"),
    [
        # phonenumbers lists Central for Orlando's overlay; Orlando is Eastern.
        ("+16895550100", "+14075550100", ("America/New_York",)),
        # Overlays over areas that span two zones: one zone each in the data.
        ("+14485550100", "+18505550100", ("America/Chicago", "America/New_York")),
        ("+13645550100", "+12705550100", ("America/Chicago", "America/New_York")),
        ("+19305550100", "+18125550100", ("America/Chicago", "America/New_York")),
        ("+14585550100", "+15415550100", ("America/Denver", "America/Los_Angeles")),
    ],
)
def test_an_overlay_has_every_zone_of_its_base_area(
    overlay: str, base: str, zones: tuple[str, ...]
) -> None:
    """A number of an overlay may be anywhere in its base's area (NANPA's
    overlay list), so a window must be open in each of that area's zones."""
    assert number_zones(overlay) == zones
    assert parse_phone(overlay).zones == zones
    assert set(zones) >= set(number_zones(base))


@pytest.mark.parametrize(
    "number",
    [
        "+12005550100",  # area code 200 is not assigned
        "+4420",  # too short
        "+999123",  # no such country code
        "not a number",
        "",
    ],
)
def test_invalid_or_unparseable_numbers_have_no_zones(number: str) -> None:
    assert number_zones(number) == ()


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("America/New_York", True),
        ("Europe/Paris", True),
        ("UTC", True),
        ("", False),
        ("Etc/Unknown", False),
        ("localtime", False),  # the host's own setting, not a place
        ("America", False),  # a folder
        ("america/new_york", False),
        ("Mars/Olympus_Mons", False),
    ],
)
def test_valid_zone(name: str, valid: bool) -> None:
    assert valid_zone(name) is valid
