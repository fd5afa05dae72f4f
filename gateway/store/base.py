"""The store contract. Every backend (memory, SQLite, Redis) passes one contract suite.

Times are integer milliseconds since the epoch (UTC): exact, cheap to compare, and
the same in Lua, SQL and Python. Recipients arrive already pseudonymized
(`hmac:...`); the store never sees a plain address. Backends translate their
driver's errors into `StoreUnavailable` at their boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class CapCheck:
    """One window of one frequency-cap rule.

    `counter` names the rule's own counter for this subject (e.g.
    `cap:marketing-sms-caps:hmac:ab12…`); several windows of one rule share a
    counter and differ in `per_ms`. `tag` is what the counter is grouped by (the
    recipient or the sender): Redis uses it as the cluster hash tag.
    """

    counter: str
    tag: str
    limit: int
    per_ms: int
    enforced: bool


@dataclass(frozen=True, slots=True)
class FactsRequest:
    """Everything the rules of one message need to know from the store."""

    recipient: str
    # (list name, whether being on it stops the send: an enforced opt-out)
    opt_out_lists: tuple[tuple[str, bool], ...] = ()
    caps: tuple[CapCheck, ...] = ()


@dataclass(frozen=True, slots=True)
class CapCount:
    """Sends already in [now - per, now] (this one excluded; sends recorded
    after `now` are not in it) and, when the window is full (count >= limit),
    the first instant at which it has room: one ms after the entry at index
    (count - limit) of the window, oldest first, is `per` old. None when full
    with a limit of 0, which never has room."""

    count: int
    retry_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    # The requested lists that hold the recipient: opt-out and consent lists, monitor ones too.
    opted_out: frozenset[str]
    caps: tuple[CapCount, ...]  # parallel to FactsRequest.caps
    # The send was recorded in every cap counter: true whenever `count` was
    # asked and nothing enforced stopped it, also when the request has no caps.
    counted: bool


@dataclass(frozen=True, slots=True)
class OptOutEntry:
    """One opt-out. `hint` is the masked address, `source` how it was added
    (api, keyword, import, unsubscribe), `at_ms` when."""

    list: str
    recipient: str
    hint: str
    at_ms: int
    source: str = "api"
    note: str | None = None


class IdempotencyStatus(StrEnum):
    NEW = "new"  # the caller owns the key now and must finish or abandon it
    IN_FLIGHT = "in_flight"  # another request holds it; wait and ask again
    DONE = "done"  # `response` holds the first answer
    CONFLICT = "conflict"  # the key was used with a different message


@dataclass(frozen=True, slots=True)
class IdempotencyState:
    status: IdempotencyStatus
    response: dict[str, Any] | None = None
    claim: str | None = None  # NEW: the claim's token, for `idempotency_abandon`


class DeferStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # claimed by a scheduler, lease until `lease_until_ms`
    SENT = "sent"
    REJECTED = "rejected"  # refused by the re-check at send time
    FAILED = "failed"  # the upstream refused or gave no answer
    CANCELLED = "cancelled"


# The statuses a held message ends in: nothing will happen to it any more.
FINISHED = (DeferStatus.SENT, DeferStatus.REJECTED, DeferStatus.FAILED, DeferStatus.CANCELLED)


@dataclass(slots=True)
class DeferredMessage:
    """A held message. `payload` is whatever the route needs to send it later
    (the native JSON, or the original request's method, path, headers and body)."""

    id: str
    sender: str
    route: str
    recipient: str
    deliver_at_ms: int
    created_at_ms: int
    payload: dict[str, Any]
    status: DeferStatus = DeferStatus.PENDING
    lease_until_ms: int | None = None
    result: dict[str, Any] = field(default_factory=dict)


# The idempotency records of requests (web/once.py scopes each key to its
# sender under this prefix), and the answer kept for one whose process was
# stopped while it was in flight: it may have been sent (runtime.start).
SCOPE = "idem:"
CUT_SHORT: dict[str, Any] = {"cut_short": True}


class Store(Protocol):
    async def fetch(
        self, request: FactsRequest, now_ms: int, *, count: bool, send_id: str
    ) -> Facts:
        """Read the opt-outs and cap counts the request names, in one atomic step.

        With `count`, and when no enforced opt-out matched and no enforced cap
        window is full, record `send_id` at `now_ms` in every cap counter of the
        request (then `Facts.counted` is true). Monitor-mode caps are counted
        too but never stop the count. Counter entries expire after the longest
        window of their counter. Counting a `send_id` a counter already holds
        records it once, at the later time.

        A shared backend (several processes, clocks read before the call) may
        also count, for a send that counts, entries stamped up to a minute
        after `now_ms`: sends reach it out of the order of their stamps, and a
        send already counted must never be missed by the one after it.
        """
        ...

    async def refund(self, request: FactsRequest, send_id: str) -> None:
        """Take back the send recorded by `fetch(..., send_id=send_id)`: the
        upstream refused it, so it does not count."""
        ...

    async def opt_out_put(self, entry: OptOutEntry) -> bool:
        """Add or keep an opt-out; True when it is new (an existing one is kept as is)."""
        ...

    async def opt_out_delete(self, list_name: str, recipient: str) -> bool:
        """Remove an opt-out; True when there was one."""
        ...

    async def opt_out_get(self, list_name: str, recipient: str) -> OptOutEntry | None: ...

    async def opt_out_page(
        self, list_name: str, cursor: str | None, limit: int
    ) -> tuple[list[OptOutEntry], str | None]:
        """About `limit` entries of a list from `cursor` (None: the start), and
        the cursor of the next page (None: the end), for exports. Every entry
        on the list for the whole scan appears; one added or removed meanwhile
        may not. A page may be empty before the end. The Redis store scans its
        keys and may give an entry twice; the others give each once, in
        recipient order."""
        ...

    async def idempotency_begin(
        self, key: str, fingerprint: str, now_ms: int, ttl_ms: int
    ) -> IdempotencyState:
        """Claim `key` (already scoped to its sender) for a message with
        `fingerprint`. A claim or a finished record lasts `ttl_ms`: measured
        from `now_ms`, or on the server's clock by a store that expires keys
        itself (Redis)."""
        ...

    async def idempotency_finish(
        self, key: str, response: dict[str, Any], now_ms: int, ttl_ms: int
    ) -> None:
        """Keep the first answer for the key's remaining life: `ttl_ms` from now.

        Only an in-flight claim is finished; a finished key keeps its first
        answer, and a key that is gone (expired, abandoned) stays gone, since
        without its fingerprint a reuse with another message could not be told."""
        ...

    async def idempotency_abandon(self, key: str, claim: str | None = None) -> None:
        """Release a claim whose request never got an answer worth repeating.
        A finished key keeps its answer; with `claim` (the token `begin` gave),
        only that claim is released, not a later one an abandon arriving late
        would otherwise take from a retry in flight."""
        ...

    async def defer_put(self, message: DeferredMessage) -> None:
        """Hold `message`, replacing one with the same id, unless that one is
        cancelled (a cancellation is final)."""
        ...

    async def defer_claim_due(
        self, now_ms: int, limit: int, lease_ms: int
    ) -> list[DeferredMessage]:
        """Atomically move up to `limit` pending messages with deliver_at <= now
        (and sending ones whose lease ran out) to SENDING with a lease, oldest
        deliver_at first (then by id). A lease has run out when `lease_until_ms
        <= now`. Two schedulers never claim the same message at once."""
        ...

    async def defer_get(self, message_id: str) -> DeferredMessage | None: ...

    async def defer_list(
        self,
        *,
        sender: str | None = None,
        status: DeferStatus | None = None,
        limit: int = 100,
        after: tuple[int, str] | None = None,
    ) -> list[DeferredMessage]:
        """Newest deliver_at first (then by id, descending); with `after`, a
        (deliver_at_ms, id) place in that order, only the messages past it."""
        ...

    async def defer_finish(
        self, message_id: str, status: DeferStatus, result: dict[str, Any]
    ) -> None:
        """Record a claimed message's fate (sent, rejected, failed); the lease
        is cleared and the payload dropped (a drop-in's holds the sender's
        provider credentials, and nothing reads it again). An unknown id is
        ignored."""
        ...

    async def defer_withdraw(self, message: DeferredMessage) -> bool:
        """Take back a hold whose write failed, so that the message is never
        sent: held and pending, it is cancelled; not held (yet: a write that
        timed out may land later), it is kept as cancelled, and a cancelled
        message is never replaced by `defer_put`. False when it is too late:
        the hold landed and a scheduler has claimed or sent it since."""
        ...

    async def defer_cancel(self, message_id: str) -> DeferredMessage | None:
        """Cancel a pending message, dropping its payload; returns it as it now
        stands (unchanged if it was no longer pending), or None when there is
        no such message."""
        ...

    async def defer_pending_count(self, sender: str) -> int:
        """The sender's messages in PENDING (claimed ones no longer count)."""
        ...

    async def defer_purge(self, due_before_ms: int, limit: int) -> int:
        """Remove up to `limit` finished messages (FINISHED) that were due
        before `due_before_ms`, oldest first; returns how many were removed."""
        ...

    async def secret(self, name: str, make: Callable[[], bytes]) -> bytes:
        """Get a named secret, creating it with `make()` the first time, so that
        every process and every restart uses the same one."""
        ...

    async def reloads(self, *, bump: bool = False) -> int:
        """How many policy reloads the processes sharing this store have made;
        `bump` counts one more and returns the new count. Every worker follows
        the count, so a reload asked of one reaches them all. A store that one
        process owns may keep it in memory."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""
        ...

    async def close(self) -> None: ...
