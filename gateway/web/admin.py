"""Opt-outs, decisions, deferred messages, policies and health."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from starlette.requests import Request
from starlette.responses import Response

from gateway import optouts
from gateway.adapters.base import lone_surrogate
from gateway.adapters.native import decode_json, field_errors
from gateway.audit import chain, reader, verify
from gateway.audit.base import DecisionQuery
from gateway.audit.sqlite import SqliteTrail
from gateway.audit.workers import Decisions, OneTrail, worker_trails
from gateway.errors import (
    AuditUnavailable,
    GatewayError,
    InputError,
    InvalidRecipient,
    PolicyError,
    StoreUnavailable,
)
from gateway.model import CODES, iso
from gateway.policy.bundle import route_warnings
from gateway.policy.schema import NAME
from gateway.recipients import hint, normalize_address, stored_form, stored_recipient
from gateway.runtime import Runtime
from gateway.store.base import DeferredMessage, DeferStatus, OptOutEntry
from gateway.web import export
from gateway.web.auth import bound_senders, may_act
from gateway.web.http import json_response, query_int, read_body
from gateway.web.messages import runtime

LIST_NAME = NAME  # the names rules may give lists (gateway/policy/schema.py)


class OptOutBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    source: str = "api"
    note: str | None = None

    @field_validator("source", "note")
    @classmethod
    def _encodable(cls, value: str | None) -> str | None:
        # decode_json's fallback parser turns "\ud800" into a lone surrogate,
        # which the store cannot write as UTF-8.
        problem = lone_surrogate(value) if value else None
        if problem:
            raise ValueError(problem)
        return value


def _entry_json(entry: OptOutEntry) -> dict[str, Any]:
    return {
        "list": entry.list,
        "recipient": entry.recipient,
        "recipient_hint": entry.hint,
        "added_at": iso(datetime.fromtimestamp(entry.at_ms / 1000, UTC)),
        "source": entry.source,
        "note": entry.note,
    }


def _list_name(request: Request) -> str:
    import regex

    name: str = request.path_params["list"]
    # fullmatch: with match, the pattern's $ also matches before a final newline.
    if not regex.fullmatch(LIST_NAME, name):
        raise InputError(f"'{name}' is not a list name", {"list": "letters, digits, . _ : @ -"})
    return name


def _list_and_recipient(request: Request) -> tuple[str, str, str]:
    """(list, address, stored recipient); a stored recipient (`hmac:…`, as
    an export gives it) stands for itself, its address unknown."""
    name = _list_name(request)
    text = request.path_params["address"]
    stored = stored_recipient(text)
    if stored is not None:
        return name, stored, stored
    address = normalize_address(text)
    return name, address, runtime(request).gateway.pseudonyms.token(address)


async def opt_out_put(request: Request) -> Response:
    rt = runtime(request)
    name, address, token = _list_and_recipient(request)
    raw = await read_body(request, 16 * 1024)
    body = OptOutBody()
    if raw.strip():
        try:
            body = OptOutBody.model_validate(decode_json(raw))
        except ValidationError as exc:
            raise InputError("the opt-out is not valid", field_errors(exc)) from None
    at_ms = int(rt.clock.now().timestamp() * 1000)
    shown = "…" if address == token else hint(address)  # a stored recipient hides it
    entry = OptOutEntry(name, token, shown, at_ms, body.source, body.note)
    created = await rt.store.opt_out_put(entry)
    stored = await rt.store.opt_out_get(name, token)
    return json_response(_entry_json(stored or entry), 201 if created else 200)


async def opt_out_get(request: Request) -> Response:
    name, _, token = _list_and_recipient(request)
    entry = await runtime(request).store.opt_out_get(name, token)
    if entry is None:
        return json_response({"error": "not on this list"}, 404)
    return json_response(_entry_json(entry))


async def opt_out_delete(request: Request) -> Response:
    name, _, token = _list_and_recipient(request)
    if not await runtime(request).store.opt_out_delete(name, token):
        return json_response({"error": "not on this list"}, 404)
    return Response(status_code=204)


IMPORT_LIMIT = 4 * 1024 * 1024  # bytes of CSV in one import request (~250,000 numbers)


async def opt_out_import(request: Request) -> Response:
    """Add every address of a CSV body to the list, or none (gateway/optouts.py)."""
    rt = runtime(request)
    name = _list_name(request)
    raw = await read_body(request, IMPORT_LIMIT)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problem = f"the import is not UTF-8 text (byte {exc.start})"
        raise InputError(problem, {"body": "not UTF-8"}) from None
    rows = await optouts.parse_between_messages(text)
    at_ms = int(rt.clock.now().timestamp() * 1000)
    done = await optouts.add_all(rt.store, rt.gateway.pseudonyms, name, rows, at_ms)
    return json_response(
        {"list": name, "rows": len(rows), "added": done.added, "already": done.already}
    )


async def opt_out_export(request: Request) -> Response:
    """The list as CSV, recipients pseudonymized, that the import takes back."""
    rt = runtime(request)
    name = _list_name(request)
    first = await rt.store.opt_out_page(name, None, export.PAGE)  # a 503 before answering
    return export.opt_outs(rt.store, name, first)


def _time_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{name}: '{raw}' is not an ISO 8601 time", {name: "invalid"}) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)


def _refuse_unknown(request: Request, allowed: frozenset[str], what: str = "parameter") -> None:
    """InputError naming the query parameters an endpoint does not take: a
    misspelt filter must not quietly widen the answer."""
    unknown = set(request.query_params) - allowed
    if unknown:
        raise InputError(
            f"unknown {what}: {', '.join(sorted(unknown))}", dict.fromkeys(unknown, "unknown")
        )


_FILTERS = frozenset({"recipient", "sender", "decision", "rule", "code", "since", "until"})
# What a decision record can say: "partial" describes a request of several
# recipients, each of which has a decision of its own.
_VERDICTS = frozenset({"allow", "reject", "defer"})


def _decision_query(request: Request, allowed: frozenset[str], limit: int) -> DecisionQuery:
    """The filters of `GET /v1/decisions` (and its export) as a query."""
    rt = runtime(request)
    params = request.query_params
    _refuse_unknown(request, allowed, "filter")
    # An empty value is a filter left unfilled (a script's empty variable), not
    # "any": answered as an error rather than with the whole trail.
    names = [name for name, _ in params.multi_items()]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InputError(
            f"{', '.join(twice)}: given more than once", dict.fromkeys(twice, "more than once")
        )
    empty = sorted(name for name, value in params.multi_items() if not value.strip())
    if empty:
        raise InputError(
            f"{', '.join(empty)}: empty; leave a filter out to match every decision",
            dict.fromkeys(empty, "empty"),
        )
    decision = params.get("decision")
    if decision is not None and decision not in _VERDICTS:
        raise InputError(
            f"decision: '{decision}' is not allow, reject or defer",
            {"decision": "allow, reject or defer"},
        )
    code = params.get("code")
    if code is not None and code not in CODES:
        raise InputError(
            f"code: '{code}' is not a reason code ({', '.join(CODES)})", {"code": "unknown"}
        )
    recipient, stored = params.get("recipient"), None
    if recipient:
        try:
            stored = stored_form(rt.gateway.pseudonyms, recipient)
        except InvalidRecipient as exc:
            # A query string reads "+" as a space: "+1212..." arrives as " 1212...".
            plus = " (a + in a query string is written %2B)" if recipient[:1] == " " else ""
            why = f"{exc}{plus}"
            raise InputError(f"recipient: {why}", {"recipient": why}) from None
    return DecisionQuery(
        recipient=stored,
        sender=params.get("sender"),
        decision=decision,
        rule=params.get("rule"),
        code=params.get("code"),
        since_ms=_time_param(request, "since"),
        until_ms=_time_param(request, "until"),
        limit=limit,
    )


def _decisions(rt: Runtime) -> Decisions:
    """The trails a query answers for: with workers on this machine, all of theirs."""
    others = _other_workers_trails(rt)
    if others and isinstance(rt.trail, SqliteTrail) and rt.worker is not None:
        return worker_trails(rt.trail, rt.worker, others)
    return OneTrail(rt.trail)


async def decisions(request: Request) -> Response:
    limit = query_int(request, "limit", 50, 1, 1000)
    query = _decision_query(request, _FILTERS | {"cursor", "limit"}, limit)
    page = _decisions(runtime(request)).page
    records, more = await page(query, request.query_params.get("cursor"))
    return json_response({"decisions": records, "next_cursor": more})


async def decisions_export(request: Request) -> Response:
    """Every matching decision, newest first, streamed as NDJSON or CSV. The
    first page is read before answering, so a trail that cannot be read is a
    503 rather than an empty export."""
    form = request.query_params.get("format", "ndjson")
    if form not in export.FORMATS:
        raise InputError(f"format: '{form}' is not ndjson or csv", {"format": "ndjson or csv"})
    query = _decision_query(request, _FILTERS | {"format"}, export.PAGE)
    found = _decisions(runtime(request))
    first = await found.page(query, None)
    return export.decisions(found, query, first, form)


async def audit_verify(request: Request) -> Response:
    """The hash chain of this process's trail, checked: 200 with `intact`
    true or false (an altered trail is an answer, not an error); `head`, a
    link kept from an earlier answer, must be found in it."""
    _refuse_unknown(request, frozenset({"head"}))
    head = request.query_params.get("head")
    if head is not None:
        head = head.strip().lower()
        if not chain.is_head(head):
            raise InputError(
                "head: not a link of the trail (64 hexadecimal digits, as `head` answers)",
                {"head": "64 hexadecimal digits"},
            )
    rt = runtime(request)
    answer = await rt.trail.verify(head)
    others = _other_workers_trails(rt)
    if others:
        # Shared mode: the other workers' trails are in the same data folder.
        heads = () if head is None else (head,)
        more = await asyncio.to_thread(lambda: [verify.trail(path, heads) for path in others])
        answer = verify.with_more(answer, more, head)
    return json_response(answer)


def _other_workers_trails(rt: Runtime) -> list[Path]:
    """In shared mode with trails in the data folder, the other workers' ones."""
    settings = rt.settings
    if not settings.shared or settings.audit.url is not None or rt.folder is None:
        return []
    own = (rt.folder / "audit.db").resolve()
    try:
        found = reader.index_files(settings.data_dir)
    except GatewayError:
        return []
    return [path for path in found if path.resolve() != own]


async def decision(request: Request) -> Response:
    # Ids are Crockford base32, written in capitals but case-insensitive.
    record = await _decisions(runtime(request)).get(request.path_params["id"].upper())
    if record is None:
        return json_response({"error": "no such decision"}, 404)
    return json_response(record)


def _deferred_json(item: DeferredMessage) -> dict[str, Any]:
    return {
        "id": item.id,
        "status": item.status.value,
        "sender": item.sender,
        "route": item.route,
        "recipient": item.recipient,
        "deliver_at": iso(datetime.fromtimestamp(item.deliver_at_ms / 1000, UTC)),
        "created_at": iso(datetime.fromtimestamp(item.created_at_ms / 1000, UTC)),
        "result": item.result,
    }


_DEFERRED_PARAMS = frozenset({"status", "sender", "limit", "cursor"})
_DEFERRED_CURSOR = re.compile(r"([0-9]{1,16})\.([0-9A-Za-z_-]{1,100})")


def _deferred_cursor(request: Request) -> tuple[int, str] | None:
    """The place a previous page ended: its last message's deliver_at and id."""
    cursor = request.query_params.get("cursor")
    if cursor is None:
        return None
    found = _DEFERRED_CURSOR.fullmatch(cursor)
    if found is None:
        raise InputError("cursor: not a cursor from a previous page", {"cursor": "invalid"})
    return int(found[1]), found[2]


async def deferred_list(request: Request) -> Response:
    _refuse_unknown(request, _DEFERRED_PARAMS)
    after = _deferred_cursor(request)
    status = request.query_params.get("status")
    if status is not None and status not in DeferStatus.__members__.values():
        raise InputError(
            f"status: '{status}' is not one of {', '.join(DeferStatus)}", {"status": "invalid"}
        )
    sender = request.query_params.get("sender")
    if sender == "":
        raise InputError("sender: empty; leave it out to list every sender's", {"sender": "empty"})
    if sender is not None:
        may_act(request.scope, sender)
    store, limit = runtime(request).store, query_int(request, "limit", 100, 1, 1000)
    # A key bound to senders sees theirs only: one query each, merged in the store's order.
    bound: list[str | None] = [*bound_senders(request.scope)]
    senders = [sender] if sender is not None else bound or [None]
    items = [
        item
        for one in senders
        for item in await store.defer_list(
            sender=one, status=DeferStatus(status) if status else None, limit=limit, after=after
        )
    ]
    items.sort(key=lambda m: (m.deliver_at_ms, m.id), reverse=True)
    shown = items[:limit]
    # A full page may have more behind it; the next page starts after its last.
    more = f"{shown[-1].deliver_at_ms}.{shown[-1].id}" if len(shown) == limit else None
    return json_response({"deferred": [_deferred_json(i) for i in shown], "next_cursor": more})


async def _deferred(request: Request) -> DeferredMessage | None:
    """The held message the path names, if the request's key may see it: to a
    key bound to other senders, it does not exist."""
    item = await runtime(request).store.defer_get(request.path_params["id"].upper())
    bound = bound_senders(request.scope)
    return None if item is None or (bound and item.sender not in bound) else item


async def deferred_get(request: Request) -> Response:
    item = await _deferred(request)
    if item is None:
        return json_response({"error": "no such deferred message"}, 404)
    return json_response(_deferred_json(item))


async def deferred_cancel(request: Request) -> Response:
    """Cancel a pending message; 409 when it is already sent, refused or cancelled."""
    store = runtime(request).store
    before = await _deferred(request)
    if before is None:
        return json_response({"error": "no such deferred message"}, 404)
    after = await store.defer_cancel(before.id) if before.status is DeferStatus.PENDING else None
    if after is None or after.status is not DeferStatus.CANCELLED:
        item = after or before
        return json_response(_deferred_json(item) | {"error": f"already {item.status.value}"}, 409)
    return json_response(_deferred_json(after))


async def policies(request: Request) -> Response:
    bundle = runtime(request).policies.current()
    return json_response(
        {"version": bundle.version, "files": list(bundle.files), "rules": bundle.describe()}
    )


async def policies_reload(request: Request) -> Response:
    rt = runtime(request)
    try:
        bundle, told = await rt.reload_policies()
    except PolicyError as exc:
        return json_response(
            {
                "error": "the bundle was refused; the previous one keeps serving",
                "problems": exc.problems,
                "version": rt.policies.current().version,
            },
            422,
        )
    answer: dict[str, Any] = {"version": bundle.version, "rules": len(bundle.rules)}
    routes = route_warnings(bundle, [route.name for route in rt.settings.routes])
    if routes:
        answer["warnings"] = routes
    if not told:
        answer["warning"] = (
            "this process serves the new bundle, but the other processes could not be told"
            " (the state store is unreachable): ask again once it answers"
        )
    return json_response(answer)


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def metrics(request: Request) -> Response:
    """Prometheus text: this process's counts and, in shared mode, the other
    workers' latest snapshots (gateway/metrics.py)."""
    from gateway import metrics as counting

    rt = runtime(request)
    found = counting.gather(rt.gateway.metrics, rt.worker, rt.settings.data_dir)
    text = counting.render(found, rt.policies.current().version)
    return Response(text, media_type=counting.CONTENT_TYPE)


async def readyz(request: Request) -> Response:
    rt = runtime(request)
    problems = {}
    for name, ping in (("store", rt.store_ready), ("audit", rt.trail.ping)):
        try:
            await ping()
        except (StoreUnavailable, AuditUnavailable) as exc:
            what = "state store" if name == "store" else "audit trail"
            problems[name] = f"the {what} is unreachable: {exc}"
        except Exception as exc:  # any failure means not ready; say which
            problems[name] = str(exc) or type(exc).__name__
    body = {
        "status": "ready" if not problems else "not ready",
        "policy_version": rt.policies.current().version,
        "problems": problems,
    }
    return json_response(body, 200 if not problems else 503)
