"""SendGrid's v3 mail send: `POST /v3/mail/send`, JSON, every address in
`personalizations[].to`, `cc` and `bcc` a recipient of its own.

A personalization goes out only while one of its `to` addresses may be sent
to: SendGrid refuses one without `to`, and the gateway never moves a copied
address into `to`. Its allowed cc and bcc are then dropped with it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gateway.adapters import mailtext
from gateway.adapters.base import (
    Answer,
    Context,
    Incoming,
    Item,
    decode_object,
    explain,
    json_answer,
)
from gateway.errors import InputError, InvalidRecipient
from gateway.jsonio import dumps
from gateway.model import Channel, Decision, Message
from gateway.recipients import parse_email

MAX_RECIPIENTS = 1000  # SendGrid's own limit per request
KINDS = ("to", "cc", "bcc")
Slot = tuple[int, str, int]  # personalization, kind, position


# A provider that sends later would deliver after the gateway judged the
# moment: its time windows would not hold. The gateway holds messages itself.
LATER = "not taken: the gateway decides when a message goes (it holds what waits for a window)"


# SendGrid's own field names, at every level. A name that differs from one
# only in case ("Bcc", "Enable", "Email") is ignored by the gateway, but no
# one can say SendGrid would ignore it too: an address or a text there could
# go out unchecked, or a dry run be delivered. Such a name is refused.
TOP = frozenset(
    {"personalizations", "from", "reply_to", "reply_to_list", "subject", "content"}
    | {"attachments", "template_id", "sections", "headers", "categories", "custom_args"}
    | {"send_at", "batch_id", "asm", "ip_pool_name", "mail_settings", "tracking_settings"}
)
PERSONALIZATION = frozenset(
    {"to", "cc", "bcc", "from", "subject", "headers", "substitutions"}
    | {"dynamic_template_data", "custom_args", "send_at"}
)
NESTED = frozenset(
    {"email", "name", "type", "value", "content", "filename", "disposition", "content_id"}
    | {"enable", "text", "html", "group_id", "groups_to_display", "footer", "sandbox_mode"}
    | {"bypass_list_management", "bypass_spam_management", "bypass_bounce_management"}
    | {"bypass_unsubscribe_management", "bcc", "spam_check", "threshold", "post_to_url"}
    | {"click_tracking", "enable_text", "open_tracking", "substitution_tag"}
    | {"subscription_tracking", "ganalytics", "utm_source", "utm_medium", "utm_term"}
    | {"utm_content", "utm_campaign"}
)
# The sender's own names live under these: no name there is SendGrid's.
_SENDERS_NAMES = frozenset(
    {"dynamic_template_data", "custom_args", "headers", "substitutions", "sections"}
)
_FOLDED = {name.lower(): name for name in TOP | PERSONALIZATION | NESTED}


def _same_but_case(data: dict[str, Any]) -> None:
    """InputError naming the first field that is one of SendGrid's in another
    case (a loop: the document may be nested as deep as the parser took)."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            for name, inner in value.items():
                meant = _FOLDED.get(name.lower())
                if meant is not None and meant != name:
                    raise _fail(f"{where}{name}", f"unknown field; SendGrid's is '{meant}'")
                if name not in _SENDERS_NAMES:
                    stack.append((f"{where}{name}.", inner))
        elif isinstance(value, list):
            stack.extend((f"{where}{n}.", item) for n, item in enumerate(value))


def _fail(field: str, message: str) -> InputError:
    return InputError(f"{field}: {message}", {field: message})


def _list(value: Any, field: str, *, required: bool) -> list[Any]:
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value):
        raise _fail(field, "must be a non-empty list" if required else "must be a list")
    return value


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise _fail(field, "must be a string")
    return value


def slots(data: dict[str, Any]) -> list[Slot]:
    """Every recipient's place, in reading order; checks the shape on the way."""
    found: list[Slot] = []
    _same_but_case(data)
    personalizations = _list(data.get("personalizations"), "personalizations", required=True)
    if "send_at" in data:
        raise _fail("send_at", LATER)
    settings = data.get("mail_settings")
    bcc = settings.get("bcc") if isinstance(settings, dict) else None
    if isinstance(bcc, dict) and bcc.get("enable") is not False:
        # An address there would get every mail with no decision of its own.
        raise _fail("mail_settings.bcc", "not taken: give the address in personalizations bcc")
    for p, block in enumerate(personalizations):
        if not isinstance(block, dict):
            raise _fail(f"personalizations.{p}", "must be an object")
        if "send_at" in block:
            raise _fail(f"personalizations.{p}.send_at", LATER)
        for kind in KINDS:
            entries = _list(block.get(kind), f"personalizations.{p}.{kind}", required=kind == "to")
            found.extend((p, kind, j) for j in range(len(entries)))
    if len(found) > MAX_RECIPIENTS:
        raise _fail("personalizations", f"holds {len(found)} recipients, at most {MAX_RECIPIENTS}")
    return found


def _content(data: dict[str, Any]) -> list[tuple[Any, str]]:
    parts = _list(data.get("content"), "content", required="template_id" not in data)
    found = []
    for n, part in enumerate(parts):
        if not isinstance(part, dict):
            raise _fail(f"content.{n}", "must be an object with type and value")
        found.append((part.get("type"), _text(part.get("value"), f"content.{n}.value")))
    return found


def _address(data: dict[str, Any], slot: Slot) -> str:
    p, kind, j = slot
    entry = data["personalizations"][p][kind][j]
    where = f"personalizations.{p}.{kind}.{j}.email"
    if not isinstance(entry, dict):
        raise _fail(where.removesuffix(".email"), "must be an object with an email")
    return _text(entry.get("email"), where)


def _tags(data: dict[str, Any], context: Context) -> tuple[str, ...]:
    categories = _list(data.get("categories"), "categories", required=False)
    return context.tags + tuple(_text(c, "categories") for c in categories)


def _subject(data: dict[str, Any], p: int) -> str | None:
    subject = data["personalizations"][p].get("subject", data.get("subject"))
    if subject is None and "template_id" not in data:
        raise _fail("subject", "required (here or in each personalization)")
    return None if subject is None else mailtext.replace_tags(data, p, _text(subject, "subject"))


class SendGridAdapter:
    name = "sendgrid"
    query: frozenset[str] = frozenset()

    def items(self, incoming: Incoming, context: Context) -> list[Item]:
        data = decode_object(incoming.body)
        places = slots(data)
        origin = data.get("from")
        if not isinstance(origin, dict):
            raise _fail("from", "must be an object with an email")
        from_ = _text(origin.get("email"), "from.email")
        content, tags = _content(data), _tags(data, context)
        items: list[Item] = []
        seen: set[tuple[int, str]] = set()
        blocks = range(len(data["personalizations"]))
        bodies = [mailtext.body(data, content, p) for p in blocks]
        for slot in places:
            address, where = _address(data, slot), "personalizations.{}.{}.{}.email".format(*slot)
            try:
                recipient = parse_email(address)
            except InvalidRecipient:
                raise _fail(where, "does not contain a valid address") from None
            if (slot[0], recipient.address.lower()) in seen:
                raise _fail(where, "each address may appear once in to, cc and bcc")
            seen.add((slot[0], recipient.address.lower()))
            message = Message(
                channel=Channel.EMAIL,
                recipient=recipient,
                body=bodies[slot[0]],
                sender=context.sender,
                route=context.route,
                category=context.category,
                from_=from_,
                subject=_subject(data, slot[0]),
                tags=tags,
                recipient_timezone=context.timezone,
            )
            items.append(Item(message, where))
        return items

    def forward_body(
        self, incoming: Incoming, allowed: Sequence[int]
    ) -> tuple[bytes, dict[int, int]]:
        data = json.loads(incoming.body)
        places = slots(data)
        if len(allowed) == len(places):
            return incoming.body, {}
        keep, kept, dropped = set(allowed), [], {}
        for p, block in enumerate(data["personalizations"]):
            mine = [(i, kind, j) for i, (q, kind, j) in enumerate(places) if q == p]
            if not any(i in keep and kind == "to" for i, kind, _ in mine):
                cause = next(i for i, kind, _ in mine if kind == "to")
                dropped.update({i: cause for i, _, _ in mine if i in keep})
                continue
            block = dict(block)
            for kind in KINDS:
                entries = [block[kind][j] for i, k, j in mine if k == kind and i in keep]
                block.pop(kind, None)
                if entries:
                    block[kind] = entries
            kept.append(block)
        data["personalizations"] = kept
        return _dump(data), dropped

    def held_body(self, incoming: Incoming, index: int) -> bytes:
        data = json.loads(incoming.body)
        p, kind, j = slots(data)[index]
        block = dict(data["personalizations"][p])
        block["to"] = [block[kind][j]]
        block.pop("cc", None)
        block.pop("bcc", None)
        data["personalizations"] = [block]
        return _dump(data)

    def dry_run(self, incoming: Incoming) -> bool:
        settings = decode_object(incoming.body).get("mail_settings")
        sandbox = settings.get("sandbox_mode") if isinstance(settings, dict) else None
        return isinstance(sandbox, dict) and sandbox.get("enable") is True

    def held(self, incoming: Incoming, decisions: Sequence[Decision]) -> Answer:
        """SendGrid's own acceptance: 202, no body, the gateway's id as X-Message-Id."""
        return Answer(202, (("X-Message-Id", decisions[0].decision_id),), b"")

    def refused(self, items: Sequence[Item], decisions: Sequence[Decision], capped: bool) -> Answer:
        errors = [
            {
                "message": f"{d.recipient_hint}: {explain(d)}",
                "field": item.where,
                "help": None,
            }
            for item, d in zip(items, decisions, strict=True)
        ]
        return json_answer(429 if capped else 400, {"errors": errors})

    def error(self, status: int, message: str) -> Answer:
        return json_answer(status, {"errors": [{"message": message, "field": None, "help": None}]})

    def bad_input(self, error: InputError, decision: Decision | None = None) -> Answer:
        # A mail whose address is not one is refused whole, before any decision.
        errors = [
            {"message": str(error), "field": field, "help": None} for field in error.fields
        ] or [{"message": str(error), "field": None, "help": None}]
        return json_answer(error.status, {"errors": errors})


def _dump(data: dict[str, Any]) -> bytes:
    return dumps(data)


ADAPTER = SendGridAdapter()
