"""The trail contract, and the filter every backend applies the same way."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DecisionQuery:
    """Filters of `GET /v1/decisions`. `recipient` is already pseudonymized;
    `rule` and `code` match enforced or monitored failures; times are ms."""

    recipient: str | None = None
    sender: str | None = None
    decision: str | None = None
    rule: str | None = None
    code: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    before: int | None = None  # cursor: only records older than this sequence number
    limit: int = 50


def failures(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(rule, code) of every failed or monitored rule, and every reason."""
    out = [(r["rule"], r["code"]) for r in record.get("reasons", [])]
    out += [
        (t["rule"], t.get("code") or "")
        for t in record.get("trace", [])
        if t.get("result") in ("fail", "monitor")
    ]
    return out


def readable(decision_id: str, document: object) -> dict[str, Any]:
    """`document` if it is the record of `decision_id`; else (a damaged
    index or table) what stands for it, `damaged`, and a warning in the log:
    a query or an export shows it and goes on."""
    if isinstance(document, dict) and document.get("decision_id") == decision_id:
        return document
    return damaged(decision_id)


def damaged(decision_id: str) -> dict[str, Any]:
    """A decision whose record, or one of its amendments, cannot be read:
    its id and a word on it. `gateway audit verify` names the damage."""
    log.warning("audit trail: decision %s has a record that cannot be read", decision_id)
    return {"decision_id": decision_id, "damaged": DAMAGED}


DAMAGED = "the trail holds a record of this decision that cannot be read: run gateway audit verify"


class AuditTrail(Protocol):
    async def append(self, record: dict[str, Any], at_ms: int) -> None:
        """Store a decision record; durable when this returns."""
        ...

    async def update(self, decision_id: str, changes: dict[str, Any]) -> None:
        """Merge top-level fields (the upstream's answer, late reasons) into a
        record; durable when this returns."""
        ...

    def amend(self, decision_id: str, changes: dict[str, Any]) -> None:
        """`update` without waiting: written with the next group commit, which
        readers of this process see, and by `close`. The record it amends is
        already durable; a crash before that commit loses only these changes."""
        ...

    async def get(self, decision_id: str) -> dict[str, Any] | None: ...

    async def query(self, query: DecisionQuery) -> tuple[list[dict[str, Any]], int | None]:
        """Matching records newest first, and the cursor of the next page (or None)."""
        ...

    async def ping(self) -> None:
        """Raise AuditUnavailable unless the trail can be written."""
        ...

    async def verify(self, head: str | None = None) -> dict[str, Any]:
        """Check the hash chain of everything written so far, and whether
        `head` (a link an auditor kept) is in it: the summary of
        gateway/audit/verify.py, `intact` true or false. Raise
        AuditUnavailable only if the trail cannot be read at all."""
        ...

    async def close(self) -> None: ...
