from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.clock import FixedClock, SystemClock


def test_fixed_clock_moves_only_when_told() -> None:
    clock = FixedClock(datetime(2026, 6, 2, 9, 0, tzinfo=timezone(timedelta(hours=-4))))
    assert clock.now() == datetime(2026, 6, 2, 13, 0, tzinfo=UTC)
    clock.advance(timedelta(minutes=5))
    assert clock.now() == datetime(2026, 6, 2, 13, 5, tzinfo=UTC)


def test_fixed_clock_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FixedClock(datetime(2026, 6, 2, 9, 0))


def test_system_clock_is_aware() -> None:
    assert SystemClock().now().tzinfo is UTC
