"""The store contract: one body of tests, run on memory, SQLite and real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.store.base import (
    CapCheck,
    CapCount,
    DeferredMessage,
    DeferStatus,
    Facts,
    FactsRequest,
    IdempotencyState,
    IdempotencyStatus,
    OptOutEntry,
    Store,
)

from .backends import Backend

T = 1_780_000_000_000  # an instant in 2026, in ms
HOUR = 3_600_000
DAY = 24 * HOUR
WEEK = 7 * DAY
ALICE = "hmac:a11ce"
BOB = "hmac:b0b"


def cap(
    limit: int,
    per_ms: int = DAY,
    *,
    rule: str = "caps",
    recipient: str = ALICE,
    enforced: bool = True,
) -> CapCheck:
    return CapCheck(f"cap:{rule}:{recipient}", recipient, limit, per_ms, enforced)


def ask(*caps: CapCheck, lists: tuple[tuple[str, bool], ...] = (), to: str = ALICE) -> FactsRequest:
    return FactsRequest(recipient=to, opt_out_lists=lists, caps=caps)


async def send(store: Store, request: FactsRequest, at: int, send_id: str) -> Facts:
    return await store.fetch(request, at, count=True, send_id=send_id)


async def peek(store: Store, request: FactsRequest, at: int) -> Facts:
    return await store.fetch(request, at, count=False, send_id="peek")


def opt_out(list_name: str = "global", recipient: str = ALICE, **kw: object) -> OptOutEntry:
    fields: dict[str, object] = {"hint": "+1212555****", "at_ms": T, "source": "api"}
    fields.update(kw)
    return OptOutEntry(list_name, recipient, **fields)  # type: ignore[arg-type]


def held(
    id_: str, deliver_at: int, *, sender: str = "acme", status: DeferStatus = DeferStatus.PENDING
) -> DeferredMessage:
    return DeferredMessage(
        id=id_,
        sender=sender,
        route="sms",
        recipient=ALICE,
        deliver_at_ms=deliver_at,
        created_at_ms=T - HOUR,
        payload={"message": {"to": "+12125550100", "body": "héllo 稳"}, "n": [1, 2.5, None]},
        status=status,
    )


# -- fetch: opt-outs and frequency caps -----------------------------------------


async def test_an_empty_request_finds_nothing(store: Store) -> None:
    facts = await store.fetch(ask(), T, count=False, send_id="s1")
    assert facts == Facts(opted_out=frozenset(), caps=(), counted=False)


async def test_a_send_with_nothing_to_stop_it_is_counted(store: Store) -> None:
    facts = await send(store, ask(cap(3)), T, "s1")
    assert facts == Facts(opted_out=frozenset(), caps=(CapCount(0),), counted=True)
    assert (await peek(store, ask(cap(3)), T)).caps == (CapCount(1),)


async def test_the_window_is_closed_at_both_ends(store: Store) -> None:
    await send(store, ask(cap(9)), T, "s1")
    assert (await peek(store, ask(cap(9)), T + DAY)).caps == (CapCount(1),)
    assert (await peek(store, ask(cap(9)), T + DAY + 1)).caps == (CapCount(0),)
    assert (await peek(store, ask(cap(9)), T - 1)).caps == (CapCount(0),)  # not yet sent


async def test_an_entry_exactly_per_old_counts_and_one_ms_older_does_not(store: Store) -> None:
    await send(store, ask(cap(9)), T - DAY - 1, "too-old")
    await send(store, ask(cap(9)), T - DAY, "just-in")
    assert (await peek(store, ask(cap(9)), T)).caps == (CapCount(1),)


async def test_a_full_window_refuses_the_count_and_says_when_it_frees_up(store: Store) -> None:
    await send(store, ask(cap(2)), T, "s1")
    await send(store, ask(cap(2)), T + HOUR, "s2")

    facts = await send(store, ask(cap(2)), T + 2 * HOUR, "s3")

    assert facts == Facts(frozenset(), (CapCount(2, T + DAY + 1),), counted=False)
    assert (await peek(store, ask(cap(2)), T + 2 * HOUR)).caps == (CapCount(2, T + DAY + 1),)
    assert (await send(store, ask(cap(2)), T + DAY, "s4")).counted is False
    assert (await send(store, ask(cap(2)), T + DAY + 1, "s5")).caps == (CapCount(1),)


async def test_retry_at_waits_for_enough_sends_to_leave_when_count_is_over_limit(
    store: Store,
) -> None:
    for i, at in enumerate((T, T + 10, T + 20)):
        await send(store, ask(cap(5)), at, f"s{i}")
    # A lowered limit: 3 in the window, room for 2 once the second one has left.
    assert (await peek(store, ask(cap(2)), T + 30)).caps == (CapCount(3, T + 10 + DAY + 1),)
    assert (await peek(store, ask(cap(0)), T + 30)).caps == (CapCount(3),)  # never has room


async def test_a_busy_counter_counts_its_window_exactly(store: Store) -> None:
    """A sender-wide cap sees every message: hundreds of sends in one window,
    counted exactly, with the instant it has room, a refund and expiry."""
    minute = 60_000
    busy = CapCheck("cap:sender:acme", "acme", 400, minute, True)
    counted = [(await send(store, ask(busy), T + i * 100, f"s{i}")).counted for i in range(500)]
    assert counted == [True] * 400 + [False] * 100  # full from the 401st on
    # The window is [now - 1 min, now]: the send at T leaves it 1 ms after T + 1 min.
    assert (await peek(store, ask(busy), T + 49_900)).caps == (CapCount(400, T + minute + 1),)
    assert (await peek(store, ask(busy), T + minute)).caps == (CapCount(400, T + minute + 1),)
    assert (await peek(store, ask(busy), T + minute + 1)).caps == (CapCount(399),)
    assert (await peek(store, ask(busy), T + minute + 250)).caps == (CapCount(397),)

    await store.refund(ask(busy), "s10")
    await store.refund(ask(busy), "s450")  # never counted: nothing to take back
    assert (await peek(store, ask(busy), T + 49_900)).caps == (CapCount(399),)

    again = await send(store, ask(busy), T + 50_000, "s0")  # the same id: counted once,
    assert again.counted and again.caps == (CapCount(399),)  # now at its later time
    assert (await peek(store, ask(busy), T + minute + 1)).caps == (CapCount(399),)

    later = await send(store, ask(busy), T + 10 * minute, "late")  # the rest has expired
    assert later.caps == (CapCount(0),) and later.counted
    assert (await peek(store, ask(busy), T + 10 * minute)).caps == (CapCount(1),)


async def test_several_windows_of_one_counter(store: Store) -> None:
    rule = (cap(2, DAY), cap(5, WEEK))
    sends = [T, T + HOUR, T + DAY + 2 * HOUR, T + DAY + 3 * HOUR, T + 2 * DAY + 4 * HOUR]
    for i, at in enumerate(sends):
        assert (await send(store, ask(*rule), at, f"s{i}")).counted

    third_today = await send(store, ask(*rule), T + 2 * DAY + 5 * HOUR, "x")
    assert third_today.caps == (CapCount(1), CapCount(5, T + WEEK + 1))
    assert third_today.counted is False

    two_today = await send(store, ask(*rule), T + DAY + 4 * HOUR, "y")
    assert two_today.caps == (CapCount(2, T + 2 * DAY + 2 * HOUR + 1), CapCount(4))
    assert two_today.counted is False


async def test_monitor_caps_are_counted_but_never_stop_the_count(store: Store) -> None:
    watched = cap(1, rule="watch", enforced=False)
    rule = (cap(5), watched)
    assert (await send(store, ask(*rule), T, "s1")).counted

    second = await send(store, ask(*rule), T + 1, "s2")

    assert second.counted is True
    assert second.caps == (CapCount(1), CapCount(1, T + DAY + 1))
    assert (await peek(store, ask(watched), T + 2)).caps == (CapCount(2, T + 1 + DAY + 1),)


async def test_an_enforced_full_cap_stops_the_count_in_every_counter(store: Store) -> None:
    other = cap(5, rule="other")
    await send(store, ask(cap(1)), T, "s1")
    assert (await send(store, ask(cap(1), other), T + 1, "s2")).counted is False
    assert (await peek(store, ask(other), T + 2)).caps == (CapCount(0),)


async def test_an_enforced_opt_out_stops_the_count(store: Store) -> None:
    await store.opt_out_put(opt_out("global"))

    facts = await send(store, ask(cap(5), lists=(("global", True), ("promo", True))), T, "s1")

    assert facts == Facts(frozenset({"global"}), (CapCount(0),), counted=False)
    assert (await peek(store, ask(cap(5)), T)).caps == (CapCount(0),)
    assert (await send(store, ask(lists=(("global", True),)), T, "s2")).counted is False


async def test_a_monitor_opt_out_is_reported_but_does_not_stop_the_count(store: Store) -> None:
    await store.opt_out_put(opt_out("global"))

    facts = await send(store, ask(cap(5), lists=(("global", False),)), T, "s1")

    assert facts == Facts(frozenset({"global"}), (CapCount(0),), counted=True)


async def test_opt_outs_are_per_list_and_per_recipient(store: Store) -> None:
    await store.opt_out_put(opt_out("sender:acme", BOB))
    lists = (("global", True), ("sender:acme", True))
    assert (await peek(store, ask(lists=lists, to=ALICE), T)).opted_out == frozenset()
    assert (await peek(store, ask(lists=lists, to=BOB), T)).opted_out == {"sender:acme"}


async def test_a_send_without_caps_is_counted_when_nothing_stops_it(store: Store) -> None:
    assert (await send(store, ask(lists=(("global", True),)), T, "s1")).counted is True


async def test_without_count_nothing_is_written(store: Store) -> None:
    for i in range(3):
        facts = await store.fetch(ask(cap(2)), T + i, count=False, send_id=f"s{i}")
        assert facts.counted is False
    assert (await peek(store, ask(cap(2)), T + 5)).caps == (CapCount(0),)


async def test_counting_one_send_id_twice_records_it_once(store: Store) -> None:
    await send(store, ask(cap(5)), T, "s1")
    await send(store, ask(cap(5)), T + 1, "s1")
    assert (await peek(store, ask(cap(5)), T + 2)).caps == (CapCount(1),)


async def test_refund_takes_back_exactly_that_send(store: Store) -> None:
    rule = (cap(5), cap(5, rule="other"))
    await send(store, ask(*rule), T, "s1")
    await send(store, ask(*rule), T + 1, "s2")

    await store.refund(ask(*rule), "s1")
    await store.refund(ask(*rule), "s1")  # twice: nothing more to take
    await store.refund(ask(*rule), "never-sent")

    assert (await peek(store, ask(*rule), T + 2)).caps == (CapCount(1), CapCount(1))
    await store.refund(ask(), "s2")  # no caps, nothing to do


# -- opt-outs ---------------------------------------------------------------------


async def test_opt_out_put_get_delete(store: Store) -> None:
    entry = opt_out("global", source="keyword", note="STOP by SMS")
    assert await store.opt_out_get("global", ALICE) is None

    assert await store.opt_out_put(entry) is True
    assert await store.opt_out_get("global", ALICE) == entry
    assert await store.opt_out_get("global", BOB) is None
    assert await store.opt_out_get("promo", ALICE) is None

    assert await store.opt_out_delete("global", ALICE) is True
    assert await store.opt_out_delete("global", ALICE) is False
    assert await store.opt_out_get("global", ALICE) is None


async def test_a_second_opt_out_keeps_the_first(store: Store) -> None:
    first = opt_out("global", note=None)
    assert await store.opt_out_put(first)
    assert await store.opt_out_put(opt_out("global", at_ms=T + 5, source="import")) is False
    assert await store.opt_out_get("global", ALICE) == first


async def all_pages(store: Store, list_name: str, size: int) -> list[OptOutEntry]:
    found: list[OptOutEntry] = []
    cursor = None
    for _ in range(10_000):  # bounded: a cursor that never ends fails the test
        page, cursor = await store.opt_out_page(list_name, cursor, size)
        found += page
        if cursor is None:
            return found
    raise AssertionError("the pages never ended")


async def test_opt_out_pages_give_every_entry_of_a_list(store: Store) -> None:
    entries = [opt_out("global", f"hmac:{n:040x}", note=f"n{n}") for n in range(25)]
    for entry in entries:
        await store.opt_out_put(entry)
    await store.opt_out_put(opt_out("promo", entries[0].recipient))
    await store.opt_out_put(opt_out("promo", "hmac:" + "f" * 40))
    found = await all_pages(store, "global", 10)
    # Redis's scan may repeat an entry; no store may leave one out or add another.
    assert {e.recipient: e for e in found} == {e.recipient: e for e in entries}
    assert [e.recipient for e in await all_pages(store, "promo", 3)].count("hmac:" + "f" * 40) >= 1
    assert await all_pages(store, "nobody", 10) == []


# -- idempotency ------------------------------------------------------------------


async def test_idempotency_claim_in_flight_then_done(store: Store) -> None:
    ttl = 60_000
    new = await store.idempotency_begin("acme:k1", "fp1", T, ttl)
    assert (new.status, new.response) == (IdempotencyStatus.NEW, None)
    assert await store.idempotency_begin("acme:k1", "fp1", T + 1, ttl) == IdempotencyState(
        IdempotencyStatus.IN_FLIGHT
    )

    response = {"status": 200, "body": "ok ✓", "n": [1, 2.5, None]}
    await store.idempotency_finish("acme:k1", response, T + 2, ttl)
    await store.idempotency_finish("acme:k1", {"status": 500}, T + 3, ttl)  # first answer stays

    done = IdempotencyState(IdempotencyStatus.DONE, response)
    assert await store.idempotency_begin("acme:k1", "fp1", T + 4, ttl) == done
    assert (await store.idempotency_begin("acme:k2", "fp1", T + 4, ttl)).status == "new"


async def test_idempotency_key_reused_with_another_message_conflicts(store: Store) -> None:
    conflict = IdempotencyState(IdempotencyStatus.CONFLICT)
    await store.idempotency_begin("acme:k1", "fp1", T, 60_000)
    assert await store.idempotency_begin("acme:k1", "fp2", T + 1, 60_000) == conflict
    await store.idempotency_finish("acme:k1", {"status": 200}, T + 2, 60_000)
    assert await store.idempotency_begin("acme:k1", "fp2", T + 3, 60_000) == conflict


async def test_an_abandoned_claim_is_free_again(store: Store) -> None:
    await store.idempotency_begin("acme:k1", "fp1", T, 60_000)
    await store.idempotency_abandon("acme:k1")
    assert (await store.idempotency_begin("acme:k1", "fp2", T + 1, 60_000)).status == "new"


async def test_an_abandon_by_claim_releases_that_claim_only(store: Store) -> None:
    first = await store.idempotency_begin("acme:k1", "fp1", T, 60_000)
    await store.idempotency_abandon("acme:k1", first.claim)
    retry = await store.idempotency_begin("acme:k1", "fp1", T + 1, 60_000)
    assert retry.status == "new"
    if first.claim is not None:  # a store whose claims can land late gives tokens
        await store.idempotency_abandon("acme:k1", first.claim)  # late: the retry keeps it
        assert (await store.idempotency_begin("acme:k1", "fp1", T + 2, 60_000)).status == (
            "in_flight"
        )


async def test_abandon_keeps_a_finished_answer(store: Store) -> None:
    await store.idempotency_begin("acme:k1", "fp1", T, 60_000)
    await store.idempotency_finish("acme:k1", {"status": 200}, T + 1, 60_000)
    await store.idempotency_abandon("acme:k1")
    assert (await store.idempotency_begin("acme:k1", "fp1", T + 2, 60_000)).status == "done"


async def test_finishing_a_key_that_is_gone_keeps_nothing(store: Store) -> None:
    await store.idempotency_finish("acme:k1", {"status": 200}, T, 60_000)
    assert (await store.idempotency_begin("acme:k1", "fp1", T + 1, 60_000)).status == "new"


async def _let_expire(backend: Backend) -> None:
    if backend.real_expiry:
        await asyncio.sleep(0.15)


async def test_an_idempotency_claim_expires_after_its_ttl(backend: Backend) -> None:
    store = backend.store
    await store.idempotency_begin("acme:k1", "fp1", T, 50)
    await _let_expire(backend)
    assert (await store.idempotency_begin("acme:k1", "fp2", T + 50, 60_000)).status == "new"


async def test_a_finished_idempotency_record_expires_after_its_ttl(backend: Backend) -> None:
    store = backend.store
    await store.idempotency_begin("acme:k1", "fp1", T, 60_000)
    await store.idempotency_finish("acme:k1", {"status": 200}, T + 10, 50)
    await _let_expire(backend)
    assert (await store.idempotency_begin("acme:k1", "fp1", T + 60, 60_000)).status == "new"


# -- deferred messages ------------------------------------------------------------


async def test_defer_put_get_round_trip(store: Store) -> None:
    message = held("m1", T + HOUR)
    message.result = {"decision_id": "d1", "reasons": [{"code": "x"}]}
    await store.defer_put(message)

    assert await store.defer_get("m1") == message
    assert await store.defer_get("nope") is None


async def test_defer_put_replaces_a_message_with_the_same_id(store: Store) -> None:
    await store.defer_put(held("m1", T + HOUR, sender="acme"))
    again = held("m1", T + 2 * HOUR, sender="other")
    await store.defer_put(again)

    assert await store.defer_get("m1") == again
    assert await store.defer_list(sender="acme") == []
    assert await store.defer_pending_count("acme") == 0
    assert await store.defer_pending_count("other") == 1


async def test_a_returned_message_is_a_copy(store: Store) -> None:
    message = held("m1", T)
    await store.defer_put(message)
    message.payload["message"]["body"] = "changed"
    got = await store.defer_get("m1")
    assert got is not None
    got.payload["n"].append(3)
    assert await store.defer_get("m1") == held("m1", T)


async def test_defer_list_newest_deliver_at_first_with_filters(store: Store) -> None:
    await store.defer_put(held("a", T + 1))
    await store.defer_put(held("b", T + 3))
    await store.defer_put(held("c", T + 2, sender="other"))
    await store.defer_put(held("d", T + 4, status=DeferStatus.SENT))
    await store.defer_put(held("e", T + 3))  # a tie with b: the greater id first

    def ids(found: list[DeferredMessage]) -> list[str]:
        return [m.id for m in found]

    assert ids(await store.defer_list()) == ["d", "e", "b", "c", "a"]
    assert ids(await store.defer_list(limit=3)) == ["d", "e", "b"]
    assert ids(await store.defer_list(sender="acme")) == ["d", "e", "b", "a"]
    assert ids(await store.defer_list(status=DeferStatus.PENDING)) == ["e", "b", "c", "a"]
    assert ids(await store.defer_list(sender="acme", status=DeferStatus.PENDING)) == [
        "e",
        "b",
        "a",
    ]
    assert ids(await store.defer_list(sender="acme", status=DeferStatus.PENDING, limit=1)) == ["e"]
    assert await store.defer_list(sender="nobody") == []
    assert await store.defer_list(status=DeferStatus.CANCELLED) == []


async def test_a_withdrawn_hold_is_never_sent_whether_it_landed_or_lands_later(
    store: Store,
) -> None:
    landed, late, claimed = held("landed", T), held("late", T), held("claimed", T)
    await store.defer_put(landed)
    assert await store.defer_withdraw(landed) is True
    assert await store.defer_withdraw(late) is True  # the hold's write is still on its way ...
    await store.defer_put(late)  # ... and lands: a cancellation is final
    for message_id in ("landed", "late"):
        got = await store.defer_get(message_id)
        assert got is not None and got.status is DeferStatus.CANCELLED and got.payload == {}
    await store.defer_put(claimed)
    assert [m.id for m in await store.defer_claim_due(T, 10, 1_000)] == ["claimed"]
    # Already claimed by a scheduler: too late, it is on its way (held after all).
    assert await store.defer_withdraw(claimed) is False
    got = await store.defer_get("claimed")
    assert got is not None and got.status is DeferStatus.SENDING
    assert await store.defer_pending_count("acme") == 0


async def test_defer_list_pages_from_a_place_in_its_order(store: Store) -> None:
    for n, at in enumerate([T + 1, T + 3, T + 3, T + 3, T + 2, T + 5]):
        await store.defer_put(held(f"m{n}", at, sender="other" if n == 4 else "acme"))

    async def walk(size: int, **filters: Any) -> list[list[str]]:
        pages, after = [], None
        while True:
            found = await store.defer_list(limit=size, after=after, **filters)
            if not found:
                return pages
            pages.append([m.id for m in found])
            after = (found[-1].deliver_at_ms, found[-1].id)

    order = ["m5", "m3", "m2", "m1", "m4", "m0"]
    assert [m.id for m in await store.defer_list()] == order
    # Pages of every size end where they should, ties on deliver_at included.
    for size in (1, 2, 4, 6):
        pages = await walk(size)
        assert [i for page in pages for i in page] == order
        assert all(len(page) == size for page in pages[:-1])
    assert await walk(2, sender="acme") == [["m5", "m3"], ["m2", "m1"], ["m0"]]
    assert await walk(3, status=DeferStatus.PENDING) == [["m5", "m3", "m2"], ["m1", "m4", "m0"]]
    # A place need not be a message that still exists.
    found = await store.defer_list(after=(T + 3, "m25"))
    assert [m.id for m in found] == ["m2", "m1", "m4", "m0"]


async def test_claim_due_takes_only_due_messages_oldest_first_up_to_limit(store: Store) -> None:
    for id_, at in (("late", T + HOUR), ("b", T - 10), ("a", T - 20), ("c", T), ("d", T - 10)):
        await store.defer_put(held(id_, at))

    claimed = await store.defer_claim_due(T, 3, 60_000)

    assert [m.id for m in claimed] == ["a", "b", "d"]
    assert all(m.status == DeferStatus.SENDING for m in claimed)
    assert all(m.lease_until_ms == T + 60_000 for m in claimed)
    assert await store.defer_get("a") == claimed[0]
    assert [m.id for m in await store.defer_claim_due(T, 10, 60_000)] == ["c"]
    assert await store.defer_claim_due(T, 10, 60_000) == []
    assert (await store.defer_get("late")).status == DeferStatus.PENDING  # type: ignore[union-attr]


async def test_a_claimed_message_is_claimed_again_only_when_its_lease_ends(store: Store) -> None:
    await store.defer_put(held("a", T - 10))
    await store.defer_claim_due(T, 10, 1_000)
    await store.defer_put(held("b", T + 500))

    assert [m.id for m in await store.defer_claim_due(T + 999, 10, 1_000)] == ["b"]
    again = await store.defer_claim_due(T + 1_000, 10, 1_000)
    assert [(m.id, m.lease_until_ms) for m in again] == [("a", T + 2_000)]


async def test_lapsed_leases_and_due_messages_are_claimed_in_deliver_at_order(
    store: Store,
) -> None:
    await store.defer_put(held("old", T - 100))
    await store.defer_claim_due(T - 50, 10, 10)
    await store.defer_put(held("newer", T - 20))
    await store.defer_put(held("newest", T - 10))

    claimed = await store.defer_claim_due(T, 2, 10)

    assert [m.id for m in claimed] == ["old", "newer"]


async def test_claim_due_with_zero_limit_claims_nothing(store: Store) -> None:
    await store.defer_put(held("a", T))
    assert await store.defer_claim_due(T, 0, 1_000) == []


async def test_defer_finish_records_the_fate(store: Store) -> None:
    await store.defer_put(held("a", T))
    await store.defer_claim_due(T, 10, 1_000)

    await store.defer_finish("a", DeferStatus.SENT, {"message_id": "SM1"})
    await store.defer_finish("nope", DeferStatus.SENT, {})

    done = await store.defer_get("a")
    assert done is not None
    assert (done.status, done.lease_until_ms, done.result) == (
        DeferStatus.SENT,
        None,
        {"message_id": "SM1"},
    )
    assert done.payload == {}  # a drop-in's held its sender's credentials
    assert await store.defer_claim_due(T + 5_000, 10, 1_000) == []
    assert [m.id for m in await store.defer_list(status=DeferStatus.SENT)] == ["a"]
    assert await store.defer_list(status=DeferStatus.SENDING) == []


async def test_defer_cancel_cancels_only_pending_messages(store: Store) -> None:
    await store.defer_put(held("a", T))
    await store.defer_put(held("b", T + 1))
    [claimed] = await store.defer_claim_due(T, 1, 1_000)

    cancelled = await store.defer_cancel("b")
    assert cancelled is not None and cancelled.status == DeferStatus.CANCELLED
    assert cancelled.payload == {}
    assert await store.defer_get("b") == cancelled
    assert await store.defer_cancel("a") == claimed  # sending: unchanged
    assert await store.defer_cancel("nope") is None
    assert await store.defer_claim_due(T + 10, 10, 1_000) == []


async def test_defer_purge_removes_finished_messages_due_before(store: Store) -> None:
    for status in DeferStatus:
        await store.defer_put(held(f"old-{status}", T - 10, status=status))
    await store.defer_put(held("recent-sent", T + 10, status=DeferStatus.SENT))
    await store.defer_put(held("older-sent", T - 20, status=DeferStatus.SENT))

    assert await store.defer_purge(T, 2) == 2  # oldest first
    assert await store.defer_get("older-sent") is None
    assert await store.defer_purge(T, 100) == 3
    left = {m.id for m in await store.defer_list(limit=100)}
    # Pending and sending messages stay whatever their age, and so do recent ones.
    assert left == {"old-pending", "old-sending", "recent-sent"}
    assert await store.defer_list(status=DeferStatus.SENT) == [
        held("recent-sent", T + 10, status=DeferStatus.SENT)
    ]
    assert await store.defer_purge(T, 100) == 0


async def test_pending_count_per_sender(store: Store) -> None:
    await store.defer_put(held("a", T))
    await store.defer_put(held("b", T + HOUR))
    await store.defer_put(held("c", T, sender="other"))
    await store.defer_put(held("d", T, status=DeferStatus.SENT))
    assert await store.defer_pending_count("acme") == 2

    await store.defer_claim_due(T, 1, 1_000)
    assert await store.defer_pending_count("acme") == 1
    await store.defer_cancel("b")
    assert await store.defer_pending_count("acme") == 0
    assert await store.defer_pending_count("other") == 1
    assert await store.defer_pending_count("nobody") == 0


async def test_a_message_put_back_as_pending_is_due_again(store: Store) -> None:
    await store.defer_put(held("a", T))
    [claimed] = await store.defer_claim_due(T, 1, 1_000)
    claimed.status, claimed.deliver_at_ms = DeferStatus.PENDING, T + HOUR
    await store.defer_put(claimed)

    assert await store.defer_claim_due(T + 1_000, 10, 1_000) == []
    assert [m.id for m in await store.defer_claim_due(T + HOUR, 10, 1_000)] == ["a"]


# -- secrets and health -----------------------------------------------------------


async def test_a_secret_is_made_once_and_kept(backend: Backend) -> None:
    made: list[bytes] = []

    def make() -> bytes:
        made.append(bytes([0, 255, len(made)]) * 8)
        return made[-1]

    first = await backend.store.secret("pseudonymization-key", make)
    assert await backend.store.secret("pseudonymization-key", make) == first
    other = await backend.reopen()
    assert await other.secret("pseudonymization-key", make) == first
    assert await other.secret("another", make) != first
    assert made[0] == first


async def test_reloads_are_counted(store: Store) -> None:
    assert await store.reloads() == 0
    assert await store.reloads(bump=True) == 1
    assert await store.reloads(bump=True) == 2
    assert await store.reloads() == 2


async def test_ping_answers(store: Store) -> None:
    await store.ping()
