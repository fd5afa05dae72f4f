"""SendLog against the plain definition of a window, over random histories."""

from __future__ import annotations

import random

import pytest

from gateway.store.base import CapCheck, CapCount
from gateway.store.sendlog import SendLog


def reference(sends: dict[str, int], cap: CapCheck, now_ms: int) -> CapCount:
    """The window as the contract words it: the sends in [now - per, now],
    oldest first; when full, one ms after the one at (count - limit) is per old."""
    inside = sorted(at for at in sends.values() if now_ms - cap.per_ms <= at <= now_ms)
    if len(inside) < cap.limit or cap.limit <= 0:
        return CapCount(len(inside))
    return CapCount(len(inside), inside[len(inside) - cap.limit] + cap.per_ms + 1)


@pytest.mark.parametrize("seed", range(12))
def test_windows_match_the_definition_through_adds_refunds_and_expiry(seed: int) -> None:
    rng = random.Random(seed)
    log, sends = SendLog(), {}
    now, made = 0, 0
    for _ in range(3000):
        now += rng.choice((0, 0, 1, 5, 40))
        roll = rng.random()
        if roll < 0.6:  # a send stamped now, now and then a little late, or an id again
            at = now - rng.choice((0, 0, 0, 0, 3, 50))
            send_id = rng.choice(list(sends)) if sends and rng.random() < 0.05 else f"s{made}"
            made += 1
            log.add(send_id, at)
            sends[send_id] = at
        elif roll < 0.67 and sends:  # a refund, of a send or of one never made
            send_id = rng.choice([*sends, "nobody"])
            log.discard(send_id)
            sends.pop(send_id, None)
        elif roll < 0.75:
            before = now - rng.choice((100, 400, 2000))
            log.expire(before)
            sends = {k: at for k, at in sends.items() if at >= before}
        cap = CapCheck("c", "r", rng.choice((0, 1, 5, 50, 400)), rng.choice((10, 300, 5000)), True)
        assert log.window(cap, now) == reference(sends, cap, now)
        assert len(log) == len(sends)


def test_a_log_starts_from_stored_entries_in_any_order() -> None:
    log = SendLog([("b", 30), ("a", 10), ("c", 20)])
    cap = CapCheck("c", "r", 2, 100, True)
    assert log.window(cap, 30) == CapCount(3, 20 + 100 + 1)
    log.discard("c")
    assert log.window(cap, 30) == CapCount(2, 10 + 100 + 1)
    log.expire(11)
    assert log.window(cap, 30) == CapCount(1) and len(log) == 1
