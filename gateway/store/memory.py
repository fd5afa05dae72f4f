"""The in-memory store: the reference behaviour of the contract, kept in dicts.

Used by tests and by `gateway policy test`. Every operation runs without an
`await` in between its reads and writes, so it is atomic on one event loop.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gateway.store.base import (
    FINISHED,
    CapCheck,
    CapCount,
    DeferredMessage,
    DeferStatus,
    Facts,
    FactsRequest,
    IdempotencyState,
    IdempotencyStatus,
    OptOutEntry,
)
from gateway.store.sendlog import SendLog

_NO_SENDS = SendLog()  # never added to: the log of a counter not seen yet


def longest_windows(caps: Iterable[CapCheck]) -> dict[str, int]:
    """Each counter of `caps` with its longest window: how long its entries matter."""
    longest: dict[str, int] = {}
    for cap in caps:
        longest[cap.counter] = max(cap.per_ms, longest.get(cap.counter, 0))
    return longest


def is_blocked(
    request: FactsRequest, opted_out: frozenset[str], caps: tuple[CapCount, ...]
) -> bool:
    """True when an enforced opt-out matched or an enforced cap window is full."""
    if any(enforced and name in opted_out for name, enforced in request.opt_out_lists):
        return True
    return any(
        check.enforced and found.count >= check.limit
        for check, found in zip(request.caps, caps, strict=True)
    )


@dataclass(slots=True)
class _IdempotencyRecord:
    fingerprint: str
    expires_at_ms: int
    response: dict[str, Any] | None = None  # None while in flight


class MemoryStore:
    """Everything in dicts; lost when the process ends."""

    def __init__(self) -> None:
        self._opt_outs: dict[tuple[str, str], OptOutEntry] = {}
        self._sends: dict[str, SendLog] = {}  # by counter
        self._idempotency: dict[str, _IdempotencyRecord] = {}
        self._deferred: dict[str, DeferredMessage] = {}
        self._secrets: dict[str, bytes] = {}
        self._reloads = 0

    # -- opt-outs and caps -------------------------------------------------

    async def fetch(
        self, request: FactsRequest, now_ms: int, *, count: bool, send_id: str
    ) -> Facts:
        opted_out = frozenset(
            name for name, _ in request.opt_out_lists if (name, request.recipient) in self._opt_outs
        )
        caps = tuple(
            (self._sends.get(cap.counter) or _NO_SENDS).window(cap, now_ms) for cap in request.caps
        )
        counted = count and not is_blocked(request, opted_out, caps)
        if counted:
            self._record(request.caps, now_ms, send_id)
        return Facts(opted_out=opted_out, caps=caps, counted=counted)

    def _record(self, caps: Iterable[CapCheck], now_ms: int, send_id: str) -> None:
        for counter, longest in longest_windows(caps).items():
            sends = self._sends.get(counter)
            if sends is None:
                sends = self._sends[counter] = SendLog()
            sends.expire(now_ms - longest)
            sends.add(send_id, now_ms)

    async def refund(self, request: FactsRequest, send_id: str) -> None:
        for counter in longest_windows(request.caps):
            sends = self._sends.get(counter)
            if sends is not None:
                sends.discard(send_id)

    async def opt_out_put(self, entry: OptOutEntry) -> bool:
        key = (entry.list, entry.recipient)
        if key in self._opt_outs:
            return False
        self._opt_outs[key] = entry
        return True

    async def opt_out_delete(self, list_name: str, recipient: str) -> bool:
        return self._opt_outs.pop((list_name, recipient), None) is not None

    async def opt_out_get(self, list_name: str, recipient: str) -> OptOutEntry | None:
        return self._opt_outs.get((list_name, recipient))

    async def opt_out_page(
        self, list_name: str, cursor: str | None, limit: int
    ) -> tuple[list[OptOutEntry], str | None]:
        after = cursor or ""
        recipients = sorted(r for name, r in self._opt_outs if name == list_name and r > after)
        page = [self._opt_outs[(list_name, r)] for r in recipients[:limit]]
        return page, page[-1].recipient if len(recipients) > limit else None

    # -- idempotency -------------------------------------------------------

    async def idempotency_begin(
        self, key: str, fingerprint: str, now_ms: int, ttl_ms: int
    ) -> IdempotencyState:
        record = self._live_record(key, now_ms)
        if record is None:
            self._idempotency[key] = _IdempotencyRecord(fingerprint, now_ms + ttl_ms)
            return IdempotencyState(IdempotencyStatus.NEW)
        if record.fingerprint != fingerprint:
            return IdempotencyState(IdempotencyStatus.CONFLICT)
        if record.response is None:
            return IdempotencyState(IdempotencyStatus.IN_FLIGHT)
        return IdempotencyState(IdempotencyStatus.DONE, copy.deepcopy(record.response))

    def _live_record(self, key: str, now_ms: int) -> _IdempotencyRecord | None:
        record = self._idempotency.get(key)
        if record is not None and record.expires_at_ms <= now_ms:
            del self._idempotency[key]
            return None
        return record

    async def idempotency_finish(
        self, key: str, response: dict[str, Any], now_ms: int, ttl_ms: int
    ) -> None:
        record = self._live_record(key, now_ms)
        if record is None or record.response is not None:
            return
        record.response = copy.deepcopy(response)
        record.expires_at_ms = now_ms + ttl_ms

    async def idempotency_abandon(self, key: str, claim: str | None = None) -> None:
        record = self._idempotency.get(key)
        if record is not None and record.response is None:
            del self._idempotency[key]

    # -- deferred messages -------------------------------------------------

    async def defer_put(self, message: DeferredMessage) -> None:
        held = self._deferred.get(message.id)
        if held is None or held.status != DeferStatus.CANCELLED:
            self._deferred[message.id] = copy.deepcopy(message)

    async def defer_withdraw(self, message: DeferredMessage) -> bool:
        if message.id not in self._deferred:
            self._deferred[message.id] = _cancelled(message)
        now = await self.defer_cancel(message.id)
        return now is None or now.status not in _ON_ITS_WAY

    async def defer_claim_due(
        self, now_ms: int, limit: int, lease_ms: int
    ) -> list[DeferredMessage]:
        due = sorted(
            (m for m in self._deferred.values() if _claimable(m, now_ms)),
            key=lambda m: (m.deliver_at_ms, m.id),
        )[: max(limit, 0)]
        for message in due:
            message.status = DeferStatus.SENDING
            message.lease_until_ms = now_ms + lease_ms
        return [copy.deepcopy(m) for m in due]

    async def defer_get(self, message_id: str) -> DeferredMessage | None:
        message = self._deferred.get(message_id)
        return copy.deepcopy(message) if message is not None else None

    async def defer_list(
        self,
        *,
        sender: str | None = None,
        status: DeferStatus | None = None,
        limit: int = 100,
        after: tuple[int, str] | None = None,
    ) -> list[DeferredMessage]:
        found = [
            m
            for m in self._deferred.values()
            if (sender is None or m.sender == sender)
            and (status is None or m.status == status)
            and (after is None or (m.deliver_at_ms, m.id) < after)
        ]
        found.sort(key=lambda m: (m.deliver_at_ms, m.id), reverse=True)
        return [copy.deepcopy(m) for m in found[: max(limit, 0)]]

    async def defer_finish(
        self, message_id: str, status: DeferStatus, result: dict[str, Any]
    ) -> None:
        message = self._deferred.get(message_id)
        if message is None:
            return
        message.status = status
        message.lease_until_ms = None
        message.result = copy.deepcopy(result)
        message.payload = {}

    async def defer_cancel(self, message_id: str) -> DeferredMessage | None:
        message = self._deferred.get(message_id)
        if message is None:
            return None
        if message.status == DeferStatus.PENDING:
            message.status = DeferStatus.CANCELLED
            message.payload = {}
        return copy.deepcopy(message)

    async def defer_purge(self, due_before_ms: int, limit: int) -> int:
        done = sorted(
            (m.deliver_at_ms, m.id)
            for m in self._deferred.values()
            if m.status in FINISHED and m.deliver_at_ms < due_before_ms
        )[: max(limit, 0)]
        for _, message_id in done:
            del self._deferred[message_id]
        return len(done)

    async def defer_pending_count(self, sender: str) -> int:
        return sum(
            1
            for m in self._deferred.values()
            if m.sender == sender and m.status == DeferStatus.PENDING
        )

    # -- the rest ----------------------------------------------------------

    async def secret(self, name: str, make: Callable[[], bytes]) -> bytes:
        if name not in self._secrets:
            self._secrets[name] = make()
        return self._secrets[name]

    async def reloads(self, *, bump: bool = False) -> int:
        self._reloads += bump
        return self._reloads

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _claimable(message: DeferredMessage, now_ms: int) -> bool:
    """Pending and due, or sending with a lease that has run out."""
    if message.status == DeferStatus.PENDING:
        return message.deliver_at_ms <= now_ms
    if message.status == DeferStatus.SENDING:
        return message.lease_until_ms is None or message.lease_until_ms <= now_ms
    return False


def _cancelled(message: DeferredMessage) -> DeferredMessage:
    """A message as it is kept once withdrawn: cancelled, without its payload."""
    return dataclasses.replace(message, status=DeferStatus.CANCELLED, payload={})


_ON_ITS_WAY = (DeferStatus.SENDING, DeferStatus.SENT)
