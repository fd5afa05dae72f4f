"""The shared store: Redis, so that every gateway process enforces one set of limits.

Key layout (`gw:` is the configurable prefix; the part in braces is the Redis
Cluster hash tag):

    gw:optout:{<recipient>}              hash   list name -> opt-out entry (JSON)
    gw:cap:{<tag>}:<counter>             zset   send id, scored by its time (ms)
    gw:idem:{<key>}                      string {"fp", "state", "response", "claim"} (JSON), PX ttl
    gw:idem:{<key>}:given-up             set    tokens of claims given up after a time-out
    gw:secret:{<name>}                   string the secret's bytes
    gw:policy:{reloads}                  string policy reloads made (workers follow it)
    gw:defer:{queue}:msg:<id>            hash   one deferred message
    gw:defer:{queue}:<index>             zsets and sets indexing the queue (lua/defer_lib.lua)

A recipient's opt-outs and its recipient-keyed counters share the recipient's
tag, so one message's keys mostly share a slot. The deferred queue is one slot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from gateway.errors import StoreUnavailable, translated
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
from gateway.store.multiplex import Endpoint, Multiplexer, NotSent, Script

_NO_LISTS: frozenset[str] = frozenset()
SCAN_COUNT = 1000  # keys a SCAN looks at per round trip, at least
GIVEN_UP_MS = 3_600_000  # how long a claim given up is remembered, should it land late


# OSError covers socket errors and TimeoutError too.
def _unavailable(exc: BaseException) -> StoreUnavailable:
    error = StoreUnavailable(f"redis store: {_kind(exc)}: {exc}")
    error.unsent = isinstance(exc, NotSent)
    return error


_translated = translated((RedisError, OSError), _unavailable)


def _kind(exc: BaseException) -> str:
    """The error's public name: the nearest class not private to the gateway."""
    return next(c.__name__ for c in type(exc).__mro__ if not c.__name__.startswith("_"))


def _lua(*names: str) -> str:
    folder = resources.files("gateway.store").joinpath("lua")
    return "\n".join(folder.joinpath(name).read_text(encoding="utf-8") for name in names)


class RedisStore:
    """State in Redis. `timeout` bounds each connect and each reply (seconds).

    A broken connection is retried once (`retries`), at once, so a pooled
    connection that died with a restarted server costs no failed request; a
    time-out is never retried, since the command may have run. Remaining
    keyword arguments go to `redis.asyncio.Redis.from_url`.

    `fetch`, run for every message, goes over one shared pipelined connection
    of its own (gateway.store.multiplex), at about a quarter of redis-py's CPU
    cost per call; everything else goes through redis-py. The same contract
    holds there, more strictly: only a command that was never written is sent
    again. A connection that died with a restarted server is seen closed as
    soon as it is (that connection is always being read), not when next used.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "gw:",
        timeout: float = 0.5,
        retries: int = 1,
        **connection_kwargs: Any,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("the key prefix must not contain braces: they mark hash tags")
        self.prefix = prefix
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), retries, supported_errors=(RedisConnectionError,)),
            **connection_kwargs,
            "decode_responses": True,  # the parsing below expects text
        }
        self._redis: aioredis.Redis = aioredis.Redis.from_url(url, **options)
        # Connects to what redis-py's pool would; None where it cannot (a
        # credential provider): fetch then stays with redis-py too.
        endpoint = Endpoint.of(self._redis.connection_pool)
        self._multiplexer = (
            Multiplexer(endpoint, timeout=timeout, retries=retries) if endpoint else None
        )
        # Registered once: each call is an EVALSHA, loading the script again
        # only when the server answers NOSCRIPT (after a restart, a flush).
        self._fetch = self._hot_script("fetch.lua")
        self._idem_begin = self._script("idempotency_begin.lua")
        self._idem_finish = self._script("idempotency_finish.lua")
        self._idem_abandon = self._script("idempotency_abandon.lua")
        self._idem_release = self._script("idempotency_release.lua")
        self._defer_put = self._script("defer_lib.lua", "defer_put.lua")
        self._defer_claim = self._script("defer_lib.lua", "defer_claim.lua")
        self._defer_finish = self._script("defer_lib.lua", "defer_finish.lua")
        self._defer_cancel = self._script("defer_lib.lua", "defer_cancel.lua")
        self._defer_withdraw = self._script("defer_lib.lua", "defer_withdraw.lua")
        self._defer_list = self._script("defer_lib.lua", "defer_list.lua")
        self._defer_purge = self._script("defer_lib.lua", "defer_purge.lua")

    def _script(self, *names: str) -> AsyncScript:
        return self._redis.register_script(_lua(*names))

    def _hot_script(self, name: str) -> Script | AsyncScript:
        if self._multiplexer is None:
            return self._script(name)
        return self._multiplexer.script(_lua(name))

    @_translated
    async def load_scripts(self) -> None:
        """Load every script now (one pipelined round trip), so that the first
        message after start costs one EVALSHA like every other, not a NOSCRIPT
        answer, a SCRIPT LOAD and a second EVALSHA."""
        scripts = [
            self._fetch,
            self._idem_begin,
            self._idem_finish,
            self._idem_abandon,
            self._idem_release,
            self._defer_put,
            self._defer_claim,
            self._defer_finish,
            self._defer_cancel,
            self._defer_withdraw,
            self._defer_list,
            self._defer_purge,
        ]
        async with self._redis.pipeline(transaction=False) as pipe:
            for script in scripts:  # the server answers with the sha each already has
                pipe.script_load(script.script)
            await pipe.execute()

    # -- keys --------------------------------------------------------------

    def _optout_key(self, recipient: str) -> str:
        return f"{self.prefix}optout:{{{recipient}}}"

    def _cap_key(self, cap: CapCheck) -> str:
        return f"{self.prefix}cap:{{{cap.tag}}}:{cap.counter}"

    def _idem_key(self, key: str) -> str:
        return f"{self.prefix}idem:{{{key}}}"

    def _secret_key(self, name: str) -> str:
        return f"{self.prefix}secret:{{{name}}}"

    @property
    def _queue(self) -> str:
        return f"{self.prefix}defer:{{queue}}:"

    # -- opt-outs and caps -------------------------------------------------

    @_translated
    async def fetch(
        self, request: FactsRequest, now_ms: int, *, count: bool, send_id: str
    ) -> Facts:
        counter_keys = self._counter_keys(request.caps)
        position = {key: i for i, key in enumerate(counter_keys, start=1)}
        spec = [
            now_ms,
            int(count),
            send_id,
            [[name, int(enforced)] for name, enforced in request.opt_out_lists],
            [
                [position[self._cap_key(cap)], cap.limit, cap.per_ms, int(cap.enforced)]
                for cap in request.caps
            ],
        ]
        args = [orjson.dumps(spec)]
        # Single Redis: all keys go to one script. Redis Cluster allows a script
        # only keys of one slot, and sender-keyed counters carry another tag than
        # the recipient's: a Cluster version would run this once per tag group
        # (the keys are already grouped by tag) and count only if all groups pass.
        keys = [self._optout_key(request.recipient), *counter_keys]
        opted, counts, counted = await self._fetch(keys=keys, args=args)
        lists = request.opt_out_lists
        # The script's numbers arrive as ints (RESP integers).
        return Facts(
            opted_out=frozenset([lists[i][0] for i, hit in enumerate(opted) if hit])
            if any(opted)
            else _NO_LISTS,
            caps=tuple(
                [
                    CapCount(n, None if at < 0 else at)
                    for n, at in zip(counts[::2], counts[1::2], strict=True)
                ]
            ),
            counted=bool(counted),
        )

    def _counter_keys(self, caps: Sequence[CapCheck]) -> list[str]:
        """The distinct counter keys of `caps`, grouped by hash tag."""
        by_tag = sorted(caps, key=lambda cap: cap.tag)
        return list(dict.fromkeys(self._cap_key(cap) for cap in by_tag))

    @_translated
    async def refund(self, request: FactsRequest, send_id: str) -> None:
        if not request.caps:
            return
        # MULTI spans the tags of the request, like `fetch`: a Cluster version
        # would send one per tag group.
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in self._counter_keys(request.caps):
                pipe.zrem(key, send_id)
            await pipe.execute()

    @_translated
    async def opt_out_put(self, entry: OptOutEntry) -> bool:
        value = json.dumps(
            {"hint": entry.hint, "at_ms": entry.at_ms, "source": entry.source, "note": entry.note}
        )
        created = await self._redis.hsetnx(self._optout_key(entry.recipient), entry.list, value)
        return bool(created)

    @_translated
    async def opt_out_delete(self, list_name: str, recipient: str) -> bool:
        return bool(await self._redis.hdel(self._optout_key(recipient), list_name))

    @_translated
    async def opt_out_get(self, list_name: str, recipient: str) -> OptOutEntry | None:
        raw = await self._redis.hget(self._optout_key(recipient), list_name)
        return None if raw is None else _opt_out_entry(list_name, recipient, raw)

    @_translated
    async def opt_out_page(
        self, list_name: str, cursor: str | None, limit: int
    ) -> tuple[list[OptOutEntry], str | None]:
        # Opt-outs are kept per recipient (one hash, a field per list), so a
        # list is found by scanning the recipients' keys: SCAN may repeat one.
        start = self._optout_key("")[:-1]  # "<prefix>optout:{"
        pattern = _glob_escape(start) + "*"
        # COUNT is the keys looked at, of every kind: at least a thousand a
        # round trip, or a list among millions of counters takes forever.
        count = max(limit, SCAN_COUNT)
        after, keys = await self._redis.scan(int(cursor or 0), match=pattern, count=count)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(key, list_name)
            values = await pipe.execute()
        page = [
            _opt_out_entry(list_name, _text(key)[len(start) : -1], raw)
            for key, raw in zip(keys, values, strict=True)
            if raw is not None
        ]
        return page, None if int(after) == 0 else str(after)

    # -- idempotency -------------------------------------------------------
    # Expiry is Redis's own (PX), on the server's clock; `now_ms` is not needed.

    @_translated
    async def idempotency_begin(
        self, key: str, fingerprint: str, now_ms: int, ttl_ms: int
    ) -> IdempotencyState:
        token = secrets.token_hex(8)
        record = {"fp": fingerprint, "state": "in_flight", "response": None, "claim": token}
        claim = json.dumps(record)
        keys = [self._idem_key(key), self._idem_key(key) + ":given-up"]
        try:
            answer = await self._idem_begin(keys=keys, args=[fingerprint, ttl_ms, claim, token])
        except (RedisError, OSError):
            # The claim may land later (a time-out is no refusal): given up now,
            # it cannot hold the key in flight for the whole window while the
            # sender, told 503, retries. Best effort: Redis may not answer.
            with contextlib.suppress(RedisError, OSError):
                await self._idem_release(keys=keys, args=[token, GIVEN_UP_MS])
            raise
        status = IdempotencyStatus(answer[0])
        if status is IdempotencyStatus.DONE:
            return IdempotencyState(status, json.loads(answer[1])["response"])
        return IdempotencyState(status, claim=token if status is IdempotencyStatus.NEW else None)

    @_translated
    async def idempotency_finish(
        self, key: str, response: dict[str, Any], now_ms: int, ttl_ms: int
    ) -> None:
        await self._idem_finish(keys=[self._idem_key(key)], args=[json.dumps(response), ttl_ms])

    @_translated
    async def idempotency_abandon(self, key: str, claim: str | None = None) -> None:
        await self._idem_abandon(keys=[self._idem_key(key)], args=[claim or ""])

    # -- deferred messages -------------------------------------------------

    @_translated
    async def defer_put(self, message: DeferredMessage) -> None:
        fields = [item for pair in _deferred_fields(message).items() for item in pair]
        await self._defer_put(keys=[self._queue + "all"], args=[self._queue, message.id, *fields])

    @_translated
    async def defer_withdraw(self, message: DeferredMessage) -> bool:
        gone = dataclasses.replace(message, status=DeferStatus.CANCELLED, payload={})
        fields = [item for pair in _deferred_fields(gone).items() for item in pair]
        withdrawn = await self._defer_withdraw(
            keys=[self._queue + "all"], args=[self._queue, message.id, *fields]
        )
        return bool(withdrawn)

    @_translated
    async def defer_claim_due(
        self, now_ms: int, limit: int, lease_ms: int
    ) -> list[DeferredMessage]:
        claimed = await self._defer_claim(
            keys=[self._queue + "all"], args=[self._queue, now_ms, limit, now_ms + lease_ms]
        )
        return [_deferred_message(flat) for flat in claimed]

    @_translated
    async def defer_get(self, message_id: str) -> DeferredMessage | None:
        # The client decodes replies, so keys and values are text.
        fields = cast(
            "dict[str, str]", await self._redis.hgetall(self._queue + "msg:" + message_id)
        )
        return _deferred_message(fields) if fields else None

    @_translated
    async def defer_list(
        self,
        *,
        sender: str | None = None,
        status: DeferStatus | None = None,
        limit: int = 100,
        after: tuple[int, str] | None = None,
    ) -> list[DeferredMessage]:
        # Walk the narrowest index that answers the question; filter the status
        # in the script only when both a sender and a status are asked for.
        if sender is not None:
            index, wanted = f"sender:{sender}", status or ""
        elif status is not None:
            index, wanted = f"status:{status}", ""
        else:
            index, wanted = "all", ""
        found = await self._defer_list(
            keys=[self._queue + index],
            args=[self._queue, limit, str(wanted), *(after or ("", ""))],
        )
        return [_deferred_message(flat) for flat in found]

    @_translated
    async def defer_finish(
        self, message_id: str, status: DeferStatus, result: dict[str, Any]
    ) -> None:
        await self._defer_finish(
            keys=[self._queue + "all"],
            args=[self._queue, message_id, str(status), json.dumps(result)],
        )

    @_translated
    async def defer_cancel(self, message_id: str) -> DeferredMessage | None:
        flat = await self._defer_cancel(keys=[self._queue + "all"], args=[self._queue, message_id])
        return _deferred_message(flat) if flat else None

    @_translated
    async def defer_purge(self, due_before_ms: int, limit: int) -> int:
        finished = [str(status) for status in FINISHED]
        removed = await self._defer_purge(
            keys=[self._queue + "all"],
            args=[self._queue, due_before_ms, max(limit, 0), *finished],
        )
        return int(removed)

    @_translated
    async def defer_pending_count(self, sender: str) -> int:
        return int(await self._redis.scard(self._queue + "pending:" + sender))

    # -- the rest ----------------------------------------------------------

    @_translated
    async def secret(self, name: str, make: Callable[[], bytes]) -> bytes:
        # Stored as hex: the client decodes replies as text. SET NX makes the
        # first writer win; everyone then reads what won.
        key = self._secret_key(name)
        stored = await self._redis.get(key)
        if stored is None:
            await self._redis.set(key, make().hex(), nx=True)
            stored = await self._redis.get(key)
        if stored is None:
            raise StoreUnavailable(f"redis store: secret {name!r} vanished after it was set")
        return bytes.fromhex(str(stored))

    @_translated
    async def reloads(self, *, bump: bool = False) -> int:
        key = f"{self.prefix}policy:{{reloads}}"
        return int(await self._redis.incr(key) if bump else await self._redis.get(key) or 0)

    @_translated
    async def ping(self) -> None:
        await self._redis.ping()

    @_translated
    async def close(self) -> None:
        try:
            if self._multiplexer is not None:
                await self._multiplexer.aclose()
        finally:
            await self._redis.aclose()


def _deferred_fields(m: DeferredMessage) -> dict[str, str | int]:
    fields: dict[str, str | int] = {
        "id": m.id,
        "sender": m.sender,
        "route": m.route,
        "recipient": m.recipient,
        "deliver_at_ms": m.deliver_at_ms,
        "created_at_ms": m.created_at_ms,
        "payload": json.dumps(m.payload),
        "status": str(m.status),
        "result": json.dumps(m.result),
    }
    if m.lease_until_ms is not None:
        fields["lease_until_ms"] = m.lease_until_ms
    return fields


def _deferred_message(fields: dict[str, str] | list[str]) -> DeferredMessage:
    """A message from its hash, as HGETALL gives it (a dict, or a flat list from Lua)."""
    if isinstance(fields, list):
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    lease = fields.get("lease_until_ms")
    return DeferredMessage(
        id=fields["id"],
        sender=fields["sender"],
        route=fields["route"],
        recipient=fields["recipient"],
        deliver_at_ms=int(fields["deliver_at_ms"]),
        created_at_ms=int(fields["created_at_ms"]),
        payload=json.loads(fields["payload"]),
        status=DeferStatus(fields["status"]),
        lease_until_ms=int(lease) if lease is not None else None,
        result=json.loads(fields["result"]),
    )


def _opt_out_entry(list_name: str, recipient: str, raw: bytes | str) -> OptOutEntry:
    fields = json.loads(raw)
    return OptOutEntry(
        list=list_name,
        recipient=recipient,
        hint=fields["hint"],
        at_ms=fields["at_ms"],
        source=fields["source"],
        note=fields["note"],
    )


def _glob_escape(text: str) -> str:
    """`text` matched literally in a SCAN pattern (a prefix may hold * ? [ ] \\)."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
