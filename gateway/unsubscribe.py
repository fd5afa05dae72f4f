"""One-click unsubscribe links (RFC 8058): what they carry and how their
requests read. Pure: no I/O.

A mail client that honours `List-Unsubscribe-Post: List-Unsubscribe=One-Click`
POSTs `List-Unsubscribe=One-Click` to the https URI of `List-Unsubscribe`,
with no cookie and no credentials (RFC 8058 section 3.1). So the URI itself
must say who unsubscribes from what, and must not be forgeable: it carries a
token, the list and the address signed with a key only the gateway has.

    token = base64url(list "\\n" address) "." base64url(HMAC-SHA256(key, that)[:16])

The key is derived from the pseudonymization key, so every worker of a
shared gateway reads the others' links, and links keep working across
restarts. Tokens do not expire: a message may be read months after it was
sent, and its unsubscribe link must still work.
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import parse_qs

from gateway.errors import InputError

PURPOSE = b"one-click unsubscribe"  # what the key is derived for
ONE_CLICK = "List-Unsubscribe=One-Click"
_SIGNATURE_BYTES = 16
MAX_TOKEN = 2048


@dataclass(frozen=True, slots=True)
class Link:
    list: str
    address: str  # normalized


def token(key: bytes, link: Link) -> str:
    """The token of `link`, signed with `key`."""
    payload = f"{link.list}\n{link.address}".encode()
    return f"{_b64(payload)}.{_b64(_signature(key, payload))}"


def read_token(key: bytes, text: str) -> Link:
    """The link a token carries; InputError if it is not one this key signed."""
    bad = InputError(
        "token: not an unsubscribe link of this gateway (altered, cut short, or signed"
        " with another key)",
        {"token": "invalid"},
    )
    if len(text) > MAX_TOKEN or text.count(".") != 1:
        raise bad
    payload_text, signature_text = text.split(".")
    try:
        payload, signature = _unb64(payload_text), _unb64(signature_text)
    except (binascii.Error, ValueError):
        raise bad from None
    if not hmac.compare_digest(signature, _signature(key, payload)):
        raise bad
    list_name, _, address = payload.decode("utf-8", "replace").partition("\n")
    return Link(list_name, address)


def is_one_click(content_type: str, body: bytes) -> bool:
    """Whether a POST body says List-Unsubscribe=One-Click, form-encoded or
    multipart/form-data (RFC 8058 asks for the latter, allows the former)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        return _multipart_field(content_type, body, "List-Unsubscribe") == "One-Click"
    try:
        # A line break after the form (curl --data-binary @file) is no part of it.
        text = body.decode("utf-8").rstrip("\r\n")
        form = parse_qs(text, keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return False
    return form.get("List-Unsubscribe") == ["One-Click"]


def _multipart_field(content_type: str, body: bytes, name: str) -> str | None:
    """One field of a small multipart/form-data body, read with the standard
    library's MIME parser (the body is capped before it gets here)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    try:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    except (ValueError, TypeError, UnicodeError):
        return None
    if not message.is_multipart():
        return None
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == name:
            payload = part.get_payload(decode=True)
            return payload.decode("utf-8", "replace").strip() if isinstance(payload, bytes) else ""
    return None


def _signature(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("not base64")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
