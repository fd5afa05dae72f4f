"""The trail in memory: for tests, checks and policy tests."""

from __future__ import annotations

import copy
from typing import Any

from gateway.audit import chain, verify
from gateway.audit.base import DecisionQuery, failures


class MemoryTrail:
    def __init__(self) -> None:
        self._records: list[tuple[int, int, dict[str, Any]]] = []  # (seq, at_ms, record)
        self._by_id: dict[str, int] = {}
        # The same chain as the journal's, so both answer `verify` alike.
        self._report = verify.Report(trail="memory")
        self._head = chain.GENESIS
        self._links: set[str] = set()

    async def append(self, record: dict[str, Any], at_ms: int) -> None:
        self._chained(chain.decision(record, at_ms), "d")
        self._by_id[record["decision_id"]] = len(self._records)
        self._records.append((len(self._records) + 1, at_ms, copy.deepcopy(record)))

    async def update(self, decision_id: str, changes: dict[str, Any]) -> None:
        self.amend(decision_id, changes)

    def amend(self, decision_id: str, changes: dict[str, Any]) -> None:
        self._chained(chain.amendment(decision_id, changes), "a")
        index = self._by_id.get(decision_id)
        if index is not None:
            self._records[index][2].update(copy.deepcopy(changes))

    async def get(self, decision_id: str) -> dict[str, Any] | None:
        index = self._by_id.get(decision_id)
        return None if index is None else copy.deepcopy(self._records[index][2])

    async def query(self, query: DecisionQuery) -> tuple[list[dict[str, Any]], int | None]:
        found: list[tuple[int, dict[str, Any]]] = []
        for seq, at_ms, record in reversed(self._records):
            if _matches(query, seq, at_ms, record):
                found.append((seq, record))
                if len(found) > query.limit:
                    break
        page = found[: query.limit]
        more = found[query.limit - 1][0] if len(found) > query.limit else None
        return [copy.deepcopy(r) for _, r in page], more

    async def ping(self) -> None:
        return None

    def _chained(self, entry: bytes, kind: str) -> None:
        self._head = chain.link(self._head, entry)
        self._links.add(self._head.hex())
        report = self._report
        report.entries += 1
        report.decisions += kind == "d"
        report.amendments += kind == "a"
        report.head = self._head.hex()

    async def verify(self, head: str | None = None) -> dict[str, Any]:
        report = copy.copy(self._report)
        report.heads_found = {head} & self._links if head is not None else set()
        return verify.summary([report], head)

    async def close(self) -> None:
        return None


def _matches(q: DecisionQuery, seq: int, at_ms: int, record: dict[str, Any]) -> bool:
    if q.before is not None and seq >= q.before:
        return False
    if q.since_ms is not None and at_ms < q.since_ms:
        return False
    if q.until_ms is not None and at_ms >= q.until_ms:
        return False
    for key in ("recipient", "sender", "decision"):
        wanted = getattr(q, key)
        if wanted is not None and record.get(key) != wanted:
            return False
    fails = failures(record)
    if q.rule is not None and all(rule != q.rule for rule, _ in fails):
        return False
    return q.code is None or any(code == q.code for _, code in fails)
