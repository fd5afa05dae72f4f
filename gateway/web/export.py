"""Exports over HTTP: the decision trail (`GET /v1/decisions/export`) and an
opt-out list (`GET /v1/opt-outs/{list}/export`), streamed page by page.

Decisions as NDJSON come whole, in the shape of `GET /v1/decisions`, one per
line; as CSV, one row per decision with the fields an auditor sorts and
filters by (COLUMNS), the trace left to the NDJSON export. An opt-out list
comes as CSV (OPT_OUT_COLUMNS) that `POST /v1/opt-outs/{list}/import` takes
back: recipients as the gateway stores them, pseudonymized.

The decisions start from the newest at the time of the request and page back
with the trail's cursor, so decisions made while it streams do not shift it.
The first page is read before answering, so a trail or store that cannot be
read is a 503. If one fails after the answer has begun, the body is left
unfinished (no closing chunk): the client sees a cut-off transfer, never an
export that looks complete. A client that hangs up stops the reading.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.audit.base import DecisionQuery
from gateway.audit.workers import Decisions, Page
from gateway.errors import AuditUnavailable, StoreUnavailable
from gateway.jsonio import dumps
from gateway.model import iso
from gateway.store.base import OptOutEntry, Store

log = logging.getLogger(__name__)

FORMATS = {
    "ndjson": ("application/x-ndjson", "decisions.ndjson"),
    "csv": ("text/csv; charset=utf-8", "decisions.csv"),
}
PAGE = 500  # decisions or opt-outs read at a time

COLUMNS = (
    "decision_id",
    "at",
    "decision",
    "route",
    "sender",
    "channel",
    "category",
    "recipient",
    "recipient_hint",
    "policy_version",
    "reasons",  # rule:code of every enforced failure, separated by ;
    "deliver_at",
    "upstream_status",
    "upstream_message_id",
    "trace_id",
)
OPT_OUT_COLUMNS = ("recipient", "recipient_hint", "added_at", "source", "note")


class Streamed(Response):
    """An export: `chunks` streamed as they come, cut off if a read fails."""

    def __init__(self, chunks: AsyncIterator[bytes], media_type: str, filename: str) -> None:
        # As StreamingResponse does: no body, so no Content-Length (chunked).
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers({"content-disposition": f'attachment; filename="{filename}"'})
        self._chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A client that hangs up stops the export: the rest is not read.
        streaming = asyncio.ensure_future(self._stream(send))
        hung_up = asyncio.ensure_future(_hang_up(receive))
        try:
            await asyncio.wait((streaming, hung_up), return_when=asyncio.FIRST_COMPLETED)
        finally:
            hung_up.cancel()
            streaming.cancel()
        if streaming.done() and not streaming.cancelled():
            streaming.result()  # an unexpected error goes to the server, as any other

    async def _stream(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        try:
            async for chunk in self._chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (AuditUnavailable, StoreUnavailable) as exc:
            log.error("an export was cut short: %s", exc)
            return  # unfinished on purpose: see the module's docstring
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _hang_up(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def decisions(found: Decisions, query: DecisionQuery, first: Page, form: str) -> Streamed:
    """The decisions export, its first page already read."""
    media_type, filename = FORMATS[form]
    return Streamed(_decision_chunks(found, query, first, form), media_type, filename)


async def _decision_chunks(
    found: Decisions, query: DecisionQuery, first: Page, form: str
) -> AsyncIterator[bytes]:
    if form == "csv":
        yield csv_lines([COLUMNS])
    records, more = first
    while True:
        if records:
            yield csv_lines(map(row, records)) if form == "csv" else _ndjson(records)
        if more is None:
            return
        records, more = await found.page(query, more)


def opt_outs(store: Store, list_name: str, first: tuple[list[OptOutEntry], str | None]) -> Streamed:
    """The opt-out list's export, its first page already read."""
    filename = f"opt-outs-{list_name.replace(':', '-')}.csv"
    return Streamed(_opt_out_chunks(store, list_name, first), FORMATS["csv"][0], filename)


async def _opt_out_chunks(
    store: Store, list_name: str, first: tuple[list[OptOutEntry], str | None]
) -> AsyncIterator[bytes]:
    yield csv_lines([OPT_OUT_COLUMNS])
    entries, cursor = first
    while True:
        if entries:
            yield csv_lines(map(opt_out_row, entries))
        if cursor is None:
            return
        entries, cursor = await store.opt_out_page(list_name, cursor, PAGE)


def _ndjson(records: list[dict[str, Any]]) -> bytes:
    # orjson writes NEL, U+2028 and U+2029 raw; some line readers end a line there.
    lines = b"".join([dumps(record) + b"\n" for record in records])
    for raw, escaped in _BREAKS:
        lines = lines.replace(raw, escaped)
    return lines


_BREAKS = [(b"\xc2\x85", b"\\u0085"), (b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029")]


def csv_lines(rows: Iterable[Iterable[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8")


def row(record: dict[str, Any]) -> list[str]:
    """One decision as CSV fields, in COLUMNS order ("" for what it lacks)."""
    upstream = record.get("upstream") or {}
    reasons = ";".join(f"{r['rule']}:{r['code']}" for r in record.get("reasons") or [])
    fields = dict(record, reasons=reasons)
    fields["upstream_status"] = upstream.get("status")
    fields["upstream_message_id"] = upstream.get("message_id")
    return ["" if fields.get(name) is None else str(fields[name]) for name in COLUMNS]


def opt_out_row(entry: OptOutEntry) -> list[str]:
    """One opt-out as CSV fields, in OPT_OUT_COLUMNS order."""
    added = iso(datetime.fromtimestamp(entry.at_ms / 1000, UTC)) or ""
    return [entry.recipient, entry.hint, added, entry.source, entry.note or ""]
