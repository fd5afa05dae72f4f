"""Drop-in provider requests between the web handlers, the service and the
scheduler: who sent them, what the gateway adds to them, where they go, and
how a held one is rebuilt to be sent later.

A held (deferred) drop-in message keeps the request as it must be sent: its
method, path, headers (the sender's credentials included, since the config
holds only their hashes) and the body for that one recipient.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import regex

from gateway.adapters import fcm, sendgrid, twilio
from gateway.adapters.base import Adapter, Context, Incoming
from gateway.errors import InputError
from gateway.model import Message
from gateway.policy.schema import NAME
from gateway.schedule.zones import valid_zone
from gateway.settings import Route, Settings
from gateway.store.base import DeferredMessage
from gateway.upstream.base import Outbound
from gateway.upstream.http import hop_by_hop

ADAPTERS: dict[str, Adapter] = {a.name: a for a in (twilio.ADAPTER, sendgrid.ADAPTER, fcm.ADAPTER)}
# Read by the gateway and never forwarded; so is every X-Message-* and
# X-Gateway-* header (docs/providers.md).
OWN_HEADERS = frozenset({"x-message-category", "x-message-tags", "x-recipient-timezone"})
_OWN_PREFIXES = ("x-gateway-", "x-message-")
IDEMPOTENCY_HEADERS = ("Idempotency-Key", "I-Twilio-Idempotency-Token")
_NAME = regex.compile(NAME)


def own(name: str) -> bool:
    lowered = name.lower()
    return lowered in OWN_HEADERS or lowered.startswith(_OWN_PREFIXES)


def forwardable(headers: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The sender's headers as they go upstream: the gateway's own and the
    hop-by-hop ones removed, everything else (credentials too) untouched."""
    dropped = hop_by_hop(v for k, v in headers if k.lower() == "connection")
    return tuple((k, v) for k, v in headers if not own(k) and k.lower() not in dropped)


def credential_digests(authorization: str | None) -> set[str]:
    """sha256 hex of the secret in an Authorization header: the decoded
    `user:password` of Basic, the token of Bearer, and the whole value. The
    scheme may be followed by any whitespace, and Basic's base64 may lack its
    padding: a server that reads it so must not find another sender than ours."""
    if not authorization:
        return set()
    secrets = {authorization.strip()}
    scheme, token = [*authorization.split(None, 1), ""][:2]
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        secrets.add(token)
    elif scheme.lower() == "basic" and token:
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            padded = token + "=" * (-len(token) % 4)
            secrets.add(base64.b64decode(padded, validate=True).decode("utf-8"))
    return {hashlib.sha256(s.encode("utf-8")).hexdigest() for s in secrets}


def senders_named(settings: Settings, incoming: Incoming) -> list[str]:
    """The configured senders a drop-in request names: by its credential, then
    by the account or project in its path."""
    digests = credential_digests(incoming.header("authorization"))
    account = incoming.params.get("account") or incoming.params.get("project")
    by_credential = [
        name
        for name, sender in settings.senders.items()
        if any(hmac.compare_digest(d, c) for d in digests for c in sender.credentials)
    ]
    by_account = [
        name for name, sender in settings.senders.items() if account and account in sender.accounts
    ]
    return by_credential + by_account


def identify(
    settings: Settings, route: Route, incoming: Incoming, bound: tuple[str, ...] = ()
) -> str:
    """The sender: by credential, then by the account or project in the path,
    then the first sender the gateway key is `bound` to, then the route's
    default sender, else `default`."""
    named = senders_named(settings, incoming)
    return next(iter(named + list(bound)), None) or route.default_sender or "default"


def context(settings: Settings, route: Route, sender: str, headers: Mapping[str, str]) -> Context:
    """Category, tags and time zone from the gateway's headers, else the config."""
    configured = settings.senders.get(sender)
    category = (
        headers.get("x-message-category")
        or route.default_category
        or (configured.default_category if configured else None)
        or "marketing"
    )
    if not _NAME.match(category):
        raise InputError(f"X-Message-Category: '{category[:60]}' is not a category name")
    tags = tuple(t.strip() for t in headers.get("x-message-tags", "").split(",") if t.strip())
    for tag in tags:
        if not _NAME.match(tag):
            raise InputError(f"X-Message-Tags: '{tag[:60]}' is not a tag name")
    zone = headers.get("x-recipient-timezone")
    if zone is not None and not valid_zone(zone):
        raise InputError(f"X-Recipient-Timezone: '{zone[:60]}' is not an IANA time zone")
    # Case-folded, as rules compare them (the native API does the same).
    return Context(route.name, sender, category.lower(), tuple(t.lower() for t in tags), zone)


def outbound(route: Route, adapter: Adapter, incoming: Incoming, body: bytes) -> Outbound:
    """Upstream URLs come from the config only: the route's upstream and the path."""
    url = f"sandbox:{adapter.name}" if route.upstream == "sandbox" else route.upstream
    return Outbound(incoming.method, url + incoming.path, incoming.headers, body)


def held_payload(
    route: Route, adapter: Adapter, incoming: Incoming, ctx: Context, index: int
) -> dict[str, Any]:
    return {
        "kind": adapter.name,
        "route": route.name,
        "method": incoming.method,
        "path": incoming.path,
        "params": dict(incoming.params),
        "headers": [list(pair) for pair in incoming.headers],
        "body": adapter.held_body(incoming, index).decode("utf-8"),
        "context": {"category": ctx.category, "tags": list(ctx.tags), "timezone": ctx.timezone},
    }


def prepare(settings: Settings, item: DeferredMessage) -> tuple[Message, Outbound, Route] | None:
    """A held drop-in message as it is sent now: read again by its adapter (the
    scheduler checks it again), or None when its route is gone."""
    payload = item.payload
    route = settings.route(payload["route"])
    if route is None or route.adapter != payload["kind"]:
        return None
    adapter = ADAPTERS[payload["kind"]]
    incoming = Incoming(
        payload["method"],
        payload["path"],
        tuple((k, v) for k, v in payload["headers"]),
        payload["body"].encode("utf-8"),
        payload["params"],
    )
    saved = payload["context"]
    ctx = Context(
        route.name, item.sender, saved["category"], tuple(saved["tags"]), saved["timezone"]
    )
    message = adapter.items(incoming, ctx)[0].message
    return message, outbound(route, adapter, incoming, incoming.body), route
