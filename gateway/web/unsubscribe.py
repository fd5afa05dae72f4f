"""One-click unsubscribe (RFC 8058) over HTTP.

- `POST /v1/unsubscribe?token=...` with `List-Unsubscribe=One-Click`: what a
  mail client sends when its user presses "unsubscribe". Open to anyone (the
  RFC forbids credentials); the signed token says who leaves which list.
- `GET /v1/unsubscribe?token=...`: a page with one button that sends that
  POST, for a person who opens the link. A GET never unsubscribes: mail
  scanners open links to look at them.
- `POST /v1/unsubscribe/links` (sender): the link for an address and list,
  and the two headers to put in the message.
"""

from __future__ import annotations

import html
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Scope

from gateway import unsubscribe
from gateway.adapters.native import decode_json, field_errors
from gateway.errors import Forbidden, InputError, InvalidRecipient
from gateway.recipients import hint, normalize_address, stored_recipient
from gateway.rules.consent import Consent
from gateway.rules.lists import ListRule
from gateway.runtime import Runtime
from gateway.store.base import OptOutEntry
from gateway.web.auth import bound_senders, may_act
from gateway.web.http import json_response, read_body
from gateway.web.messages import runtime

MAX_BODY = 16 * 1024
NOTE = "one-click unsubscribe (RFC 8058)"


def _key(request: Request) -> bytes:
    return runtime(request).gateway.pseudonyms.derived(unsubscribe.PURPOSE)


def _link(request: Request) -> tuple[unsubscribe.Link, str]:
    """The link the request's token carries, and the token."""
    text = request.query_params.get("token")
    if not text:
        raise InputError("token: missing; use the whole unsubscribe link", {"token": "required"})
    return unsubscribe.read_token(_key(request), text), text


async def one_click(request: Request) -> Response:
    link, _ = _link(request)
    body = await read_body(request, MAX_BODY)
    if not unsubscribe.is_one_click(request.headers.get("content-type", ""), body):
        raise InputError(
            f"the body must be {unsubscribe.ONE_CLICK} (RFC 8058), as a form",
            {"List-Unsubscribe": "One-Click"},
        )
    rt = runtime(request)
    token = rt.gateway.pseudonyms.token(link.address)
    if _consent_list(rt, link.list):
        # Unsubscribing from a list of consents withdraws the consent: the
        # address leaves it. A link never puts anyone on such a list, or any
        # holder of a sender key could grant itself consent for anyone.
        await rt.store.opt_out_delete(link.list, token)
        return _page("Unsubscribed", f"{hint(link.address)} no longer consents ({link.list}).")
    at_ms = int(rt.clock.now().timestamp() * 1000)
    entry = OptOutEntry(link.list, token, hint(link.address), at_ms, "unsubscribe", NOTE)
    await rt.store.opt_out_put(entry)
    return _page("Unsubscribed", f"{hint(link.address)} is unsubscribed ({link.list}).")


def _may_link(rt: Runtime, scope: Scope, list_name: str) -> None:
    """Forbidden when a key bound to senders asks for a link to another
    sender's list: `sender:<name>`, or one a list rule names for another
    sender (`consent:{sender}`). The link would take people off it."""
    bound = bound_senders(scope)
    if not bound:
        return
    if list_name.startswith("sender:"):
        may_act(scope, list_name.removeprefix("sender:"))
    for rule in rt.policies.current().rules:
        if isinstance(rule, ListRule) and rule.names_for_others(list_name, bound):
            raise Forbidden(
                f"this key acts for {', '.join(bound)} only, and rule '{rule.id}'"
                f" names list '{list_name}' for another sender"
            )


def _consent_list(rt: Runtime, list_name: str) -> bool:
    """Whether a consent rule of the bundle in force reads the list."""
    rules = rt.policies.current().rules
    return any(isinstance(rule, Consent) and rule.may_name(list_name) for rule in rules)


async def confirm(request: Request) -> Response:
    link, text = _link(request)
    button = (
        f'<form method="post" action="?token={quote(text, safe="")}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    return _page("Unsubscribe", f"Unsubscribe {hint(link.address)} ({link.list})?", button)


def _page(title: str, text: str, extra: str = "") -> Response:
    body = (
        f'<!doctype html><html lang="en"><meta charset="utf-8"><title>{title}</title>'
        f'<meta name="viewport" content="width=device-width">'
        f"<p>{html.escape(text)}</p>{extra}</html>"
    )
    return HTMLResponse(body, headers={"Cache-Control": "no-store"})


class LinkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    address: str = Field(min_length=1, max_length=512)
    list: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._:@-]{1,128}$")


async def make_link(request: Request) -> Response:
    raw = await read_body(request, MAX_BODY)
    try:
        asked = LinkRequest.model_validate(decode_json(raw))
    except ValidationError as exc:
        raise InputError("the link request is not valid", field_errors(exc)) from None
    if stored_recipient(asked.address):
        why = "a link names the plain address it is sent to, not a stored recipient (hmac:...)"
        raise InputError(f"address: {why}", {"address": why})
    try:
        address = normalize_address(asked.address)
    except InvalidRecipient as exc:
        raise InputError(f"address: {exc}", {"address": str(exc)}) from None
    settings = runtime(request).settings
    link = unsubscribe.Link(asked.list or settings.unsubscribe.list, address)
    _may_link(runtime(request), request.scope, link.list)
    base = settings.unsubscribe.url or f"{str(request.base_url).rstrip('/')}/v1/unsubscribe"
    url = f"{base}?token={unsubscribe.token(_key(request), link)}"
    return json_response(
        {
            "url": url,
            "list": link.list,
            "recipient_hint": hint(address),
            "headers": {
                "List-Unsubscribe": f"<{url}>",
                "List-Unsubscribe-Post": unsubscribe.ONE_CLICK,
            },
        }
    )
