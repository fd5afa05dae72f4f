"""`POST /v1/inbound/twilio`: recipients' replies update the opt-out lists.

Point a Twilio number's incoming-message webhook at the gateway. Each reply
is read (gateway/keywords.py): STOP and its kin put the sender on the
configured list (`inbound.twilio.list`), START and its kin take them off,
HELP and everything else change nothing. Twilio's own reading wins when it
sends one (`OptOutType`, with Advanced Opt-Out).

The request is Twilio's only if its `X-Twilio-Signature` is the HMAC-SHA1,
keyed with the account's auth token, of the configured URL followed by every
parameter's name and value, sorted (Twilio's published scheme): anything
else is refused with 403 before it is read further. The answer is an empty
TwiML document: Twilio's Advanced Opt-Out sends the confirmation texts.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging

from starlette.requests import Request
from starlette.responses import Response

from gateway.adapters.twilio import parse_form
from gateway.errors import InputError, InvalidRecipient, StoreUnavailable
from gateway.keywords import Ask, read
from gateway.recipients import hint, parse_phone
from gateway.service import ms
from gateway.settings import Settings, TwilioInbound
from gateway.store.base import IdempotencyStatus, OptOutEntry
from gateway.web.http import json_response, read_body
from gateway.web.messages import runtime

log = logging.getLogger("gateway")

MAX_BODY = 64 * 1024
REPLAY_MEMORY = 400 * 24 * 3600  # seconds a reply's MessageSid is remembered
CLAIM_MS = 60_000  # how long a reply being applied holds its MessageSid
_APPLIED = {"status": 200, "headers": {}, "body": ""}
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
_TWILIO_ASK = {"STOP": Ask.OPT_OUT, "START": Ask.OPT_IN, "HELP": Ask.HELP}


def signature(config: TwilioInbound, form: dict[str, list[str]]) -> str:
    """What Twilio signs a form-encoded webhook with (X-Twilio-Signature)."""
    signed = config.url + "".join(
        name + value for name in sorted(form) for value in sorted(set(form[name]))
    )
    digest = hmac.new(config.auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


async def twilio(request: Request) -> Response:
    rt = runtime(request)
    config = rt.settings.inbound.twilio
    if config is None:
        return json_response({"error": "inbound Twilio replies are not configured"}, 404)
    form = parse_form(await read_body(request, MAX_BODY))
    given = request.headers.get("x-twilio-signature", "")
    if not hmac.compare_digest(given.encode(), signature(config, form).encode()):
        return json_response({"error": "X-Twilio-Signature does not match"}, 403)
    ask = _TWILIO_ASK.get(_one(form, "OptOutType").upper()) or read(_one(form, "Body"))
    if ask is not Ask.OPT_OUT and ask is not Ask.OPT_IN:
        return _twiml()
    list_name = _list_for(rt.settings, config, _one(form, "AccountSid"))

    sid = _one(form, "MessageSid")
    if not sid:
        await _apply(request, ask, form, list_name)
        return _twiml()
    # Twilio signs no timestamp: a captured reply stays valid for ever, and a
    # START sent again after a STOP would take the number off the list. Each
    # reply is applied once, by its MessageSid (Twilio's own retries repeat it),
    # remembered once it is applied: a claim whose process died lapses in a
    # minute, so that the reply can still be applied.
    key = f"inbound:twilio:{sid}"
    fingerprint = hashlib.sha256(signature(config, form).encode()).hexdigest()
    now_ms = ms(rt.clock.now())
    claim = await rt.store.idempotency_begin(key, fingerprint, now_ms, CLAIM_MS)
    if claim.status is not IdempotencyStatus.NEW:  # applied, being applied, or not Twilio's
        if claim.status is IdempotencyStatus.CONFLICT:
            log.warning("inbound Twilio reply %s not applied: other words, same sid", sid)
        return _twiml()
    try:
        await _apply(request, ask, form, list_name)
    except BaseException:
        with contextlib.suppress(StoreUnavailable):  # the apply's own error is the answer
            await rt.store.idempotency_abandon(key, claim.claim)
        raise
    await rt.store.idempotency_finish(key, _APPLIED, now_ms, REPLAY_MEMORY * 1000)
    return _twiml()


def _twiml() -> Response:
    return Response(EMPTY_TWIML, media_type="application/xml")


async def _apply(request: Request, ask: Ask, form: dict[str, list[str]], list_name: str) -> None:
    rt = runtime(request)
    try:
        address = parse_phone(_one(form, "From")).address
    except InvalidRecipient as exc:
        raise InputError(f"From: {exc}", {"From": "not a phone number"}) from None
    recipient = rt.gateway.pseudonyms.token(address)
    if ask is Ask.OPT_IN:
        await rt.store.opt_out_delete(list_name, recipient)
        return
    words = " ".join(_one(form, "Body").split())[:100]
    note = f'replied "{words}" (Twilio {_one(form, "MessageSid") or "message"})'
    at_ms = int(rt.clock.now().timestamp() * 1000)
    await rt.store.opt_out_put(
        OptOutEntry(list_name, recipient, hint(address), at_ms, "keyword", note)
    )


def _list_for(settings: Settings, config: TwilioInbound, account: str) -> str:
    """The list, for the sender the account belongs to: as drop-in requests
    find it (gateway/relay.py), so a STOP lands where that sender's rules look."""
    sender = next(
        (n for n, s in settings.senders.items() if account and account in s.accounts), None
    )
    route = settings.adapter_route("twilio")
    return config.list.format(sender=sender or (route and route.default_sender) or "default")


def _one(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name)
    return values[0] if values else ""
