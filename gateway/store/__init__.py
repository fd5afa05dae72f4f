"""State: opt-outs, frequency counters, idempotency records, deferred messages."""

from gateway.store.base import (
    CapCheck,
    CapCount,
    DeferredMessage,
    DeferStatus,
    Facts,
    FactsRequest,
    IdempotencyState,
    OptOutEntry,
    Store,
)

__all__ = [
    "CapCheck",
    "CapCount",
    "DeferStatus",
    "DeferredMessage",
    "Facts",
    "FactsRequest",
    "IdempotencyState",
    "OptOutEntry",
    "Store",
]
