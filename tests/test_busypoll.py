"""Busy polling (gateway/busypoll.py): the loop keeps turning, and so uses CPU,
until the window after the last kick has passed, and then sleeps again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.busypoll import BusyPoll
from gateway.errors import ConfigError
from gateway.settings import load_settings


async def _cpu_while_sleeping(seconds: float) -> float:
    """CPU seconds this process uses while the loop waits `seconds`."""
    before = time.process_time()
    await asyncio.sleep(seconds)
    return time.process_time() - before


async def test_a_kick_keeps_the_loop_polling_for_the_window_then_it_sleeps() -> None:
    poll = BusyPoll(0.2)
    assert not poll.polling
    idle = await _cpu_while_sleeping(0.1)
    poll.kick()
    assert poll.polling
    busy = await _cpu_while_sleeping(0.1)  # inside the window: the loop spins
    await asyncio.sleep(0.15)  # the window ends meanwhile
    assert not poll.polling
    after = await _cpu_while_sleeping(0.1)
    # Generous bounds: a spinning loop uses most of 100 ms, a sleeping one next to none.
    assert busy > 0.03 > idle
    assert after < 0.03


async def test_each_kick_extends_the_window() -> None:
    poll = BusyPoll(0.05)
    for _ in range(4):
        poll.kick()
        await asyncio.sleep(0.03)
        assert poll.polling  # 120 ms in all, never 50 ms without a kick
    await asyncio.sleep(0.1)
    assert not poll.polling


def test_a_poll_left_on_a_closed_loop_starts_again_on_the_next_one() -> None:
    poll = BusyPoll(10.0)

    async def kick_and_leave() -> None:
        poll.kick()

    asyncio.run(kick_and_leave())  # the loop closes while still polling

    async def kick_again() -> bool:
        poll.window = 0.02
        poll.kick()
        turned = poll.polling
        await asyncio.sleep(0.08)
        return turned and not poll.polling

    assert asyncio.run(kick_again())


def test_the_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        BusyPoll(0)


def test_the_setting_is_checked(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("busy_poll_us: -5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="busy_poll_us"):
        load_settings(config, {})
    config.write_text("busy_poll_us: 500\n", encoding="utf-8")
    assert load_settings(config, {}).busy_poll_us == 500
