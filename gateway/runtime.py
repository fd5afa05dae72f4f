"""The running pieces of one gateway process, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gateway.audit.base import AuditTrail
from gateway.audit.memory import MemoryTrail
from gateway.audit.sqlite import SqliteTrail
from gateway.clock import Clock, SystemClock
from gateway.errors import ConfigError, DataDirLocked, PolicyError, StoreUnavailable
from gateway.policy.bundle import Bundle
from gateway.policy.holder import Policies
from gateway.recipients import Pseudonymizer
from gateway.service import Gateway
from gateway.settings import Route, Settings
from gateway.store import pseudonym_key
from gateway.store.base import CUT_SHORT, SCOPE, Store
from gateway.store.sqlite import SqliteStore
from gateway.upstream.base import Upstream
from gateway.upstream.http import HttpUpstream
from gateway.upstream.sandbox import Sandbox

log = logging.getLogger("gateway")


@dataclass
class Runtime:
    settings: Settings
    policies: Policies
    store: Store
    trail: AuditTrail
    gateway: Gateway
    sandbox: Sandbox
    http: Upstream
    clock: Clock
    _lock: IO[str] | None = None
    _closers: list[Callable[[], object]] = field(default_factory=list)
    kept_key: bytes | None = None  # the pseudonymization key, when the shared store keeps it
    folder: Path | None = None  # the folder this process claimed (its trail, its metrics)
    worker: str | None = None  # shared mode: N of its worker-N folder
    # The store's count of reloads as last followed. From 0, a process that
    # starts after reloads were made loads the bundle once more: one that
    # came between its first load and its first look is not missed.
    reloads_seen: int = 0
    _reloading: asyncio.Lock = field(default_factory=asyncio.Lock)

    def upstream(self, route: Route) -> Upstream:
        return self.sandbox if route.upstream == "sandbox" else self.http

    async def reload_policies(self) -> tuple[Bundle, bool]:
        """Load the bundle again and tell the other workers to, and whether
        they could be told (PolicyError when the bundle is refused: the
        previous one keeps serving, here and there). Off the event loop: a
        large bundle takes seconds to read and compile, and messages go on
        being decided by the current one meanwhile."""
        async with self._reloading:
            bundle = await asyncio.to_thread(self.policies.reload)
            try:
                self.reloads_seen = await self.store.reloads(bump=True)
            except StoreUnavailable as exc:  # this process serves it all the same
                log.warning("policies reloaded here; the other processes were not told: %s", exc)
                return bundle, False
            return bundle, True

    async def follow_reloads(self) -> None:
        """Reload when another worker has (the store's count moved since)."""
        count = await self.store.reloads()
        if count == self.reloads_seen:
            return
        async with self._reloading:
            self.reloads_seen = count
            try:
                bundle = await asyncio.to_thread(self.policies.reload)
            except PolicyError as exc:
                log.warning("policies not reloaded as another worker did: %s", exc.problems[0])
                return
        log.info("policies reloaded as another worker did: version %s", bundle.version[:19])

    async def store_ready(self) -> None:
        """Raise unless the store answers (and, in shared mode, still holds the
        pseudonymization key: one lost with Redis's data is put back). A key
        not loaded yet (the store was down at start) is loaded now."""
        pseudonyms = self.gateway.pseudonyms
        if pseudonyms.missing:
            self.kept_key = await audit_key(self.settings, self.store)
            pseudonyms.set_key(self.kept_key)
            log.warning("the shared store answers: the pseudonymization key is loaded")
            return
        if self.kept_key is None:
            await self.store.ping()
            return
        try:
            await pseudonym_key.keep(self.store, self.kept_key)
        except ConfigError as exc:
            # Hashing with a key the other processes do not use would split
            # opt-outs and counts: refuse every message until it is settled.
            if pseudonyms.refused is None:
                log.error("%s; messages are refused until then", exc)
            pseudonyms.refused = str(exc)
            raise
        if pseudonyms.refused is not None:
            pseudonyms.refused = None
            log.warning("the shared store holds this process's pseudonymization key again")

    async def close(self) -> None:
        await self.http.close()
        await self.store.close()
        await self.trail.close()
        if self._lock is not None:
            self._lock.close()


def lock_data_dir(folder: Path) -> IO[str]:
    """Only one process may own a data folder: a second one refuses to start."""
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # made by an older version, or by hand: now ours alone
        folder.chmod(0o700)
    handle = open(folder / "gateway.lock", "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise DataDirLocked(
            f"the data folder {folder} is in use by {owner}; one gateway process owns a data "
            "folder: give this one another --data-dir, or run several on Redis (GATEWAY_REDIS_URL)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"gateway process {os.getpid()}")
    handle.flush()
    return handle


def needs_folder(settings: Settings, store: Store | None, trail: AuditTrail | None) -> bool:
    """Whether this process will write into the data folder (and so must own it)."""
    if settings.store == "memory":
        return False
    return trail is None or (store is None and not settings.shared)


def claim_folder(settings: Settings) -> tuple[Path, IO[str]]:
    """The folder this process writes its trail in. Embedded: the data folder.
    Shared: the first free `worker-N` in it, so restarts find their trail again."""
    if not settings.shared:
        return settings.data_dir, lock_data_dir(settings.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # the workers' folders are in it: ours alone too
        settings.data_dir.chmod(0o700)
    for slot in range(1, 257):
        folder = settings.data_dir / f"worker-{slot}"
        try:
            return folder, lock_data_dir(folder)
        except DataDirLocked:
            continue
    raise DataDirLocked(f"every worker folder under {settings.data_dir} is in use")


async def open_store(settings: Settings) -> Store:
    if settings.store == "memory":
        from gateway.store.memory import MemoryStore

        return MemoryStore()
    if settings.shared:
        from gateway.store.redis import RedisStore

        store = RedisStore(
            settings.store,
            prefix=settings.redis_prefix,
            timeout=settings.redis_timeout,
            **redis_options(settings),
        )
        with contextlib.suppress(StoreUnavailable):  # not up yet: loaded on first use
            await store.load_scripts()
        return store
    from gateway.store.sqlite import SqliteStore

    return SqliteStore(settings.data_dir / "state.db", synchronous_full=settings.synchronous_full)


def redis_options(settings: Settings) -> dict[str, Any]:
    """redis-py's TLS options for a rediss:// store."""
    if not settings.store.startswith("rediss://"):
        return {}
    tls = settings.redis_tls
    options: dict[str, Any] = {
        "ssl_cert_reqs": "required" if tls.verify else "none",
        "ssl_check_hostname": tls.verify,
    }
    for name, path in (
        ("ssl_ca_certs", tls.ca_file),
        ("ssl_certfile", tls.cert_file),
        ("ssl_keyfile", tls.key_file),
    ):
        if path is not None:
            options[name] = str(path)
    return options


async def start(
    settings: Settings,
    *,
    store: Store | None = None,
    trail: AuditTrail | None = None,
    upstream: Upstream | None = None,
    clock: Clock | None = None,
    policies: Policies | None = None,
    claim: tuple[Path, IO[str]] | None = None,
) -> Runtime:
    """Open everything a gateway process needs; the caller closes it. `claim`
    is the data folder this process already owns (see `claim_folder`)."""
    policies = policies or Policies(settings.policies, settings.packs)
    if claim is None and needs_folder(settings, store, trail):
        claim = claim_folder(settings)
    lock = claim[1] if claim else None
    if trail is None and settings.audit.url is not None:
        from gateway.audit.postgres import PostgresTrail

        trail = await PostgresTrail.open(
            settings.audit.url,
            settings.audit.table,
            writer=writer_name(claim),
            retention_seconds=settings.audit.retention_seconds,
        )
    if trail is None and claim is not None:
        trail = SqliteTrail(
            claim[0] / "audit.db",
            synchronous_full=settings.synchronous_full,
            retention_seconds=settings.audit.retention_seconds,
        )
    store = store or await open_store(settings)
    if claim is not None and isinstance(store, SqliteStore):
        # This process owns the folder: a claim in flight is one its predecessor left.
        cut = await store.interrupted(SCOPE, CUT_SHORT)
        if cut:
            log.warning("%d request(s) with an idempotency key were cut short by a stop", cut)
    trail = trail or MemoryTrail()
    key = await _first_key(settings, store)
    clock = clock or SystemClock()
    senders = settings.senders
    gateway = Gateway(
        bundle=policies.current,
        store=store,
        trail=trail,
        pseudonyms=Pseudonymizer(key),
        clock=clock,
        store_bodies=settings.audit.store_bodies,
        max_deferred=lambda s: senders[s].max_deferred if s in senders else 10_000,
    )
    http = upstream or HttpUpstream(
        settings.upstream_connect_timeout, settings.upstream_read_timeout
    )
    rt = Runtime(settings, policies, store, trail, gateway, Sandbox(), http, clock, lock)
    if claim is not None:
        rt.folder = claim[0]
        if settings.shared:
            rt.worker = claim[0].name.removeprefix("worker-")
    if settings.shared and not settings.audit.key:
        rt.kept_key = key
    return rt


async def _first_key(settings: Settings, store: Store) -> bytes | None:
    """The pseudonymization key; None when the shared store that keeps it is
    unreachable (the process then refuses what needs it, and `load_key_later`
    loads it once the store answers)."""
    try:
        return await audit_key(settings, store)
    except StoreUnavailable as exc:
        if not settings.shared or settings.audit.key:
            raise
        log.warning(
            "the shared store is unreachable (%s): messages are refused with 503 until it"
            " answers and the pseudonymization key it keeps is loaded",
            exc,
        )
        return None


async def load_key_later(rt: Runtime, every: float = 1.0) -> None:
    """Until the pseudonymization key is loaded: try again every `every` seconds."""
    while rt.gateway.pseudonyms.missing:
        try:
            await rt.store_ready()
        except StoreUnavailable:
            pass
        except ConfigError as exc:  # the store holds another key: stay refused, and say so
            log.error("%s", exc)
            every = max(every, 30.0)
        if rt.gateway.pseudonyms.missing:
            await asyncio.sleep(every)


def writer_name(claim: tuple[Path, IO[str]] | None) -> str:
    """Who writes to a shared trail: this host and the data folder it owns
    (one process at a time), so a restart takes up its chain where it stopped."""
    where = str(claim[0].resolve()) if claim is not None else f"pid-{os.getpid()}"
    return f"{socket.gethostname()}:{where}"


async def audit_key(settings: Settings, store: Store) -> bytes:
    """The configured key, else one generated once and kept by the store."""
    if settings.audit.key:
        if len(settings.audit.key) < 16:
            raise ConfigError("audit.key (GATEWAY_AUDIT_KEY) must be at least 16 characters")
        return settings.audit.key.encode("utf-8")
    if settings.shared:
        return await pseudonym_key.load(store, settings.data_dir)
    return await store.secret(pseudonym_key.NAME, lambda: secrets.token_bytes(32))


async def check_shared_store(settings: Settings) -> str | None:
    """Before serving in shared mode without a configured key: the store must
    hold the key this machine used before (ConfigError, one clear line, if
    not). Returns a warning when the store does not answer: the process may
    start, refusing messages until it does."""
    if not settings.shared or settings.audit.key:
        return None
    store = await open_store(settings)
    try:
        await audit_key(settings, store)
    except StoreUnavailable as exc:
        return (
            f"the shared store is unreachable ({exc}); it keeps the pseudonymization key, so"
            " messages are refused with 503 until it answers"
        )
    finally:
        await store.close()
    return None
