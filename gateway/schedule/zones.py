"""Which IANA time zones a phone number's holder may be in."""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import available_timezones

import phonenumbers
from phonenumbers import timezone as phone_timezone
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

# libphonenumber's answer when it knows nothing about a number.
UNKNOWN_ZONE = "Etc/Unknown"
# Files in the zone database that are not places: the host's own setting, a
# template, and the "zone unknown" placeholder.
_NOT_PLACES = frozenset({"", UNKNOWN_ZONE, "localtime", "posixrules", "Factory"})


@lru_cache(maxsize=65536)
def number_zones(e164: str) -> tuple[str, ...]:
    """Candidate zones for a number in international form, sorted and deduplicated.

    A fixed line usually has one zone; a mobile or toll-free number may have the
    whole country's list (42 for US toll-free). Returns `()` when the number
    cannot be parsed, is not a valid number, or the data knows no zone for it;
    callers then fall back to a configured zone or treat the window as closed.
    """
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return ()
    if not phonenumbers.is_valid_number(number):
        return ()
    return zones_of(number)


def zones_of(number: phonenumbers.PhoneNumber) -> tuple[str, ...]:
    """`number_zones` for a number already parsed and known to be valid."""
    zones = _places(phone_timezone.time_zones_for_number(number))
    if number.country_code == 1:
        return overlaid(str(number.national_number)[:3]) or zones
    return zones


# NANP overlays (a second area code over the same area) for which
# phonenumbers' data lists other zones than its base code's: one zone of an
# area that spans two (448 over 850, the Florida panhandle, Central and
# Eastern), or a wrong one (689 over 407, Orlando, Eastern, listed as
# Central). An overlay's numbers may be anywhere
# in its base's area, so they take all of its base's zones, as the contract
# asks of a number with several candidates. Source: NANPA's overlay list
# (nationalnanpa.com, "Area Code Overlays").
_OVERLAYS = {
    "448": "850",  # Florida panhandle
    "364": "270",  # western Kentucky
    "930": "812",  # southern Indiana
    "458": "541",  # Oregon
    "986": "208",  # Idaho
    "689": "407",  # Orlando
}


def zones_for_type(e164: str, country_code: int, number_type: int) -> tuple[str, ...]:
    """`zones_of` for a valid number whose PhoneNumberType is already known.

    time_zones_for_number would work the type out again (a dozen regular
    expressions) only to choose between the two lookups below; the choice is
    the same. Relies on phonenumbers' pinned data layout (pyproject.toml).
    """
    if number_type == phonenumbers.PhoneNumberType.UNKNOWN:
        return ()
    if not phonenumbers.is_number_type_geographical(number_type, country_code):
        return _country_zones(country_code)
    # time_zones_for_geographical_number: the longest known prefix of the digits.
    digits = e164[1:]
    if country_code == 1 and (zones := overlaid(digits[1:4])):
        return zones
    for length in range(min(TIMEZONE_LONGEST_PREFIX, len(digits)), 0, -1):
        zones = TIMEZONE_DATA.get(digits[:length])
        if zones is not None:
            return _places(zones)
    return ()


@lru_cache(maxsize=1024)  # a few hundred calling codes
def _country_zones(country_code: int) -> tuple[str, ...]:
    # Private, but it only reads the calling code; its prefix loop has quirks
    # that are simpler to call than to copy.
    number = phonenumbers.PhoneNumber(country_code=country_code)
    return _places(phone_timezone._country_level_time_zones_for_number(number))


@lru_cache(maxsize=4096)  # keyed by the data's own tuples, of which there are a few hundred
def _places(zones: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted({zone for zone in zones if zone != UNKNOWN_ZONE}))


@lru_cache(maxsize=1024)
def overlaid(area: str) -> tuple[str, ...] | None:
    """The zones of a NANP overlay's base area (`_OVERLAYS`); None for another area code."""
    base = _OVERLAYS.get(area)
    if base is None:
        return None
    prefix = "1" + base
    found = [
        zone for key, zones in TIMEZONE_DATA.items() if key.startswith(prefix) for zone in zones
    ]
    return _places(tuple(found))


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    # The keys zoneinfo lists, rather than whatever path ZoneInfo() manages to open.
    return frozenset(available_timezones()) - _NOT_PLACES


def valid_zone(name: str) -> bool:
    """Whether `name` is an IANA zone name that zoneinfo knows (e.g. "Europe/Paris").

    Rejects "", libphonenumber's "Etc/Unknown" placeholder, and database files
    that name no place ("localtime", "posixrules", "Factory"). Case matters.
    """
    return name in _known_zones()
