"""`GET /v1/decisions/export`: every matching decision, streamed page by page.

NDJSON gives each decision whole, in the shape of `GET /v1/decisions`, one
per line. CSV gives one row per decision with the fields an auditor sorts
and filters by (COLUMNS); the trace stays in the NDJSON export and in
`GET /v1/decisions/{id}`.

The export starts from the newest decision at the time of the request and
pages back with the trail's cursor, so decisions made while it streams do
not shift it. If the trail fails after the answer has begun, the body is
left unfinished (no closing chunk): the client sees a cut-off transfer, never
an export that looks complete. A client that hangs up stops the reading.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.audit.base import AuditTrail, DecisionQuery
from gateway.errors import AuditUnavailable
from gateway.jsonio import dumps

log = logging.getLogger(__name__)

FORMATS = {
    "ndjson": ("application/x-ndjson", "decisions.ndjson"),
    "csv": ("text/csv; charset=utf-8", "decisions.csv"),
}
PAGE = 500  # decisions read from the trail at a time

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

Page = tuple[list[dict[str, Any]], int | None]  # records, and the next page's cursor


class Export(Response):
    """A streamed export whose first page has already been read."""

    def __init__(self, trail: AuditTrail, query: DecisionQuery, first: Page, form: str) -> None:
        media_type, filename = FORMATS[form]
        # As StreamingResponse does: no body, so no Content-Length (chunked).
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers({"content-disposition": f'attachment; filename="{filename}"'})
        self._pages = _pages(trail, query, first)
        self._encode = _ndjson if form == "ndjson" else _csv_rows
        self._header = _csv_line(COLUMNS) if form == "csv" else b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A client that hangs up stops the export: the rest of the trail is not read.
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
        if self._header:
            await send({"type": "http.response.body", "body": self._header, "more_body": True})
        try:
            async for records in self._pages:
                body = self._encode(records)
                await send({"type": "http.response.body", "body": body, "more_body": True})
        except AuditUnavailable as exc:
            log.error("a decisions export was cut short: %s", exc)
            return  # unfinished on purpose: see the module's docstring
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _hang_up(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _pages(trail: AuditTrail, query: DecisionQuery, first: Page) -> AsyncIterator[list[Any]]:
    records, more = first
    while True:
        if records:
            yield records
        if more is None:
            return
        records, more = await trail.query(replace(query, before=more))


def _ndjson(records: list[dict[str, Any]]) -> bytes:
    return b"".join([dumps(record) + b"\n" for record in records])


def _csv_rows(records: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(row(record) for record in records)
    return out.getvalue().encode("utf-8")


def _csv_line(fields: tuple[str, ...]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(fields)
    return out.getvalue().encode("utf-8")


def row(record: dict[str, Any]) -> list[str]:
    """One decision as CSV fields, in COLUMNS order ("" for what it lacks)."""
    upstream = record.get("upstream") or {}
    reasons = ";".join(f"{r['rule']}:{r['code']}" for r in record.get("reasons") or [])
    fields = dict(record, reasons=reasons)
    fields["upstream_status"] = upstream.get("status")
    fields["upstream_message_id"] = upstream.get("message_id")
    return ["" if fields.get(name) is None else str(fields[name]) for name in COLUMNS]
