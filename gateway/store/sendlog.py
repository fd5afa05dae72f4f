"""The sends of one cap counter in time order, counted in a window by binary search.

A frequency cap asks, for every message, how many sends its counter holds in
[now - per, now]. A sender-wide cap's counter sees every message the sender
sends: counting its entries one by one made each check as slow as the window
was full (SQLite's count over 66,000 entries took 2 ms, for every message).
Here the stamps stay sorted, so a window is two binary searches whatever its
size. Sends arrive stamped now, in time order: adding one is an append, and
expiring old ones moves a start index (the list is cut once half of it has
expired). A stamp out of order, or a refund, shifts the part of the list
after it, and both are rare.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable

from gateway.store.base import CapCheck, CapCount

_CUT_FROM = 64  # expired entries kept before the list is cut (then half of it at least)


class SendLog:
    """`entries`: (send id, stamp in ms) pairs, each send id once."""

    def __init__(self, entries: Iterable[tuple[str, int]] = ()) -> None:
        pairs = sorted(entries, key=lambda entry: entry[1])
        self._times = [at for _, at in pairs]
        self._ids = [send_id for send_id, _ in pairs]
        self._at = dict(pairs)  # the live entries: send id -> stamp
        self._start = 0  # entries before this index have expired

    def __len__(self) -> int:
        return len(self._times) - self._start

    def add(self, send_id: str, at_ms: int) -> None:
        """Record a send; one the log holds already is recorded again at `at_ms`."""
        if send_id in self._at:
            self.discard(send_id)
        times = self._times
        if not times or at_ms >= times[-1]:
            times.append(at_ms)
            self._ids.append(send_id)
        else:
            at = bisect_right(times, at_ms, self._start)
            times.insert(at, at_ms)
            self._ids.insert(at, send_id)
        self._at[send_id] = at_ms

    def discard(self, send_id: str) -> None:
        """Forget a send (refunded); nothing if the log does not hold it."""
        at_ms = self._at.pop(send_id, None)
        if at_ms is None:
            return
        times, ids = self._times, self._ids
        index = bisect_left(times, at_ms, self._start)
        while ids[index] != send_id:  # among the sends stamped the same ms
            index += 1
        del times[index], ids[index]

    def expire(self, before_ms: int) -> None:
        """Drop the sends stamped before `before_ms`: no window ending now or
        later reaches back that far."""
        start = self._start
        end = bisect_left(self._times, before_ms, start)
        for send_id in self._ids[start:end]:
            del self._at[send_id]
        if end > _CUT_FROM and end * 2 > len(self._times):
            del self._times[:end], self._ids[:end]
            end = 0
        self._start = end

    def window(self, cap: CapCheck, now_ms: int) -> CapCount:
        """The sends in [now - per, now] and, when that is the limit or more,
        when the window has room again (see `CapCount`)."""
        times = self._times
        first = bisect_left(times, now_ms - cap.per_ms, self._start)
        count = bisect_right(times, now_ms, first) - first
        if count < cap.limit or cap.limit <= 0:  # a limit of 0 never has room
            return CapCount(count)
        return CapCount(count, times[first + count - cap.limit] + cap.per_ms + 1)
