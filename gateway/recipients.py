"""Recipient addresses: validation, normalization, pseudonyms and masked hints."""

from __future__ import annotations

import functools
import hashlib
import hmac

import phonenumbers
import regex

from gateway.errors import InvalidRecipient
from gateway.model import Channel, Recipient, RecipientKind
from gateway.schedule.zones import zones_of

# Deliberately plain: one @, a dotted domain, no spaces or control characters.
_EMAIL = regex.compile(r"^[^@\s\p{Cc}]{1,64}@(?:[^@\s\p{Cc}.]{1,63}\.)+[^@\s\p{Cc}.]{2,63}$")
_TOKEN = regex.compile(r"^[A-Za-z0-9_:\-.]{1,4096}$")
_PHONEISH = regex.compile(r"^[\d\s+().\-]+$")
_TOPIC = regex.compile(r"^[A-Za-z0-9_\-.~%]{1,900}$")


@functools.lru_cache(maxsize=65536)  # parsing is the costliest step of a small message
def parse_phone(text: str) -> Recipient:
    """+1 (415) 555-0100 -> +14155550100, with its country; raise InvalidRecipient."""
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise InvalidRecipient(
            f"'{text}' is not a phone number in international form (+ and country code)",
            {"to": "not a valid phone number"},
        ) from None
    # is_valid_number, with the region looked up once instead of twice.
    region = phonenumbers.region_code_for_number(number)
    if region is None or not phonenumbers.is_valid_number_for_region(number, region):
        raise InvalidRecipient(
            f"'{text}' is not a valid phone number", {"to": "not a valid phone number"}
        )
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    country = region if region not in ("ZZ", "001") else None
    # The zones come from the number just parsed, so time windows never parse it again.
    return Recipient(e164, RecipientKind.PHONE, country, zones_of(number))


def parse_email(text: str) -> Recipient:
    address = text.strip()
    if not _EMAIL.match(address):
        raise InvalidRecipient(
            f"'{text}' is not an email address", {"to": "not a valid email address"}
        )
    local, domain = address.rsplit("@", 1)
    return Recipient(f"{local}@{domain.lower()}", RecipientKind.EMAIL)


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


def normalize_address(text: str) -> str:
    """Any address as the opt-out endpoints take it: phone, email or push token."""
    if "@" in text:
        return parse_email(text).address
    if _PHONEISH.match(text):
        return parse_phone(text).address
    return parse_push(text).address


class Pseudonymizer:
    """Keyed HMAC of normalized addresses: stable, not reversible without the key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def token(self, address: str) -> str:
        digest = hmac.new(self._key, address.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"hmac:{digest[:40]}"


def hint(address: str) -> str:
    """A masked form a person can recognise: +1415…0100, j…@example.com."""
    if "@" in address:
        local, domain = address.rsplit("@", 1)
        return f"{local[:1]}…@{domain}"
    if address.startswith("+"):
        return f"{address[:5]}…{address[-4:]}" if len(address) > 9 else f"{address[:3]}…"
    return f"{address[:6]}…" if len(address) > 6 else "…"
