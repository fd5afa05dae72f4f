"""The one place where everything is wired: settings in, an ASGI app out."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from gateway import metrics, scheduler
from gateway import runtime as runtime_module
from gateway.audit.base import AuditTrail
from gateway.busypoll import BusyPoll
from gateway.clock import Clock
from gateway.errors import ConfigError, StoreUnavailable
from gateway.policy.holder import Policies
from gateway.settings import Settings
from gateway.store.base import Store
from gateway.telemetry import configure
from gateway.upstream.base import Upstream
from gateway.web import admin, dropin, inbound, messages, unsubscribe
from gateway.web.direct import GatewayApp
from gateway.web.errors import HANDLERS

log = logging.getLogger("gateway")

ANY = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
ROUTES = [
    Route("/v1/messages", messages.send, methods=["POST"]),
    Route("/v1/check", messages.check, methods=["POST"]),
    Route("/v1/sandbox/messages", messages.sandbox_messages, methods=["GET"]),
    # Drop-in provider paths; each answers 404 unless a route with its adapter is configured.
    # Drop-in paths take every method: a wrong one is answered in the provider's shape.
    Route("/2010-04-01/Accounts/{account}/Messages.json", dropin.twilio, methods=ANY),
    Route("/v3/mail/send", dropin.sendgrid, methods=ANY),
    Route("/v1/inbound/twilio", inbound.twilio, methods=["POST"]),
    Route("/v1/projects/{project}/messages:send", dropin.fcm, methods=ANY),
    Route("/v1/unsubscribe", unsubscribe.one_click, methods=["POST"]),
    Route("/v1/unsubscribe", unsubscribe.confirm, methods=["GET"]),
    Route("/v1/unsubscribe/links", unsubscribe.make_link, methods=["POST"]),
    Route("/v1/decisions", admin.decisions, methods=["GET"]),
    Route("/v1/decisions/export", admin.decisions_export, methods=["GET"]),
    Route("/v1/decisions/{id}", admin.decision, methods=["GET"]),
    Route("/v1/audit/verify", admin.audit_verify, methods=["GET"]),
    Route("/v1/deferred", admin.deferred_list, methods=["GET"]),
    Route("/v1/deferred/{id}", admin.deferred_get, methods=["GET"]),
    Route("/v1/deferred/{id}", admin.deferred_cancel, methods=["DELETE"]),
    Route("/v1/opt-outs/{list}/import", admin.opt_out_import, methods=["POST"]),
    Route("/v1/opt-outs/{list}/export", admin.opt_out_export, methods=["GET"]),
    Route("/v1/opt-outs/{list}/{address}", admin.opt_out_put, methods=["PUT"]),
    Route("/v1/opt-outs/{list}/{address}", admin.opt_out_get, methods=["GET"]),
    Route("/v1/opt-outs/{list}/{address}", admin.opt_out_delete, methods=["DELETE"]),
    # Consent lists are lists too: the same calls, under a name that reads better.
    Route("/v1/consents/{list}/import", admin.opt_out_import, methods=["POST"]),
    Route("/v1/consents/{list}/export", admin.opt_out_export, methods=["GET"]),
    Route("/v1/consents/{list}/{address}", admin.opt_out_put, methods=["PUT"]),
    Route("/v1/consents/{list}/{address}", admin.opt_out_get, methods=["GET"]),
    Route("/v1/consents/{list}/{address}", admin.opt_out_delete, methods=["DELETE"]),
    Route("/v1/policies", admin.policies, methods=["GET"]),
    Route("/v1/policies/reload", admin.policies_reload, methods=["POST"]),
    Route("/healthz", admin.healthz, methods=["GET"]),
    Route("/readyz", admin.readyz, methods=["GET"]),
    Route("/metrics", admin.metrics, methods=["GET"]),
]


# The hot routes, served as plain ASGI before starlette's stack (web/direct.py);
# their entries in ROUTES still serve them under a root path, and answer 405
# for other methods.
DIRECT = {
    "/v1/messages": ("POST", messages.send_body),
    "/v1/check": ("POST", messages.check_body),
}


def _tune_gc() -> None:
    """Everything built at start-up (bundle, matchers, zone data) lives as long
    as the process: keep it out of every collection, and collect the young
    generation less often. Measured in `make bench` (docs/performance.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


async def _snapshots(counts: metrics.Metrics, folder: Path) -> None:
    """Shared mode: this worker's counts, for the others to serve (gateway/metrics.py)."""
    while True:
        await asyncio.sleep(metrics.SNAPSHOT_EVERY)
        metrics.write_snapshot(counts, folder)


FOLLOW_RELOADS_S = 1.0


async def _follow_reloads(rt: runtime_module.Runtime) -> None:
    """Every second, reload the policies when another process sharing the
    store has (a store that does not answer is tried again the next second),
    and check that the store still holds this process's pseudonymization key:
    one lost with Redis's data is put back at once, before a process started
    meanwhile makes another; one replaced by another refuses every message."""
    while True:
        await asyncio.sleep(FOLLOW_RELOADS_S)
        if rt.kept_key is not None:
            try:
                await rt.store_ready()  # first: a reload may take seconds
            except (StoreUnavailable, ConfigError):
                pass  # refused, and logged, until settled; tried again next second
            except Exception:
                log.exception("checking the shared store's pseudonymization key failed")
        try:
            await rt.follow_reloads()
        except StoreUnavailable:
            continue
        except Exception:  # the next second tries again; the process serves on
            log.exception("following the other processes' policy reloads failed")


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    trail: AuditTrail | None = None,
    upstream: Upstream | None = None,
    clock: Clock | None = None,
    policies: Policies | None = None,
    run_scheduler: bool = True,
    tune_gc: bool = False,
) -> GatewayApp:
    """An app whose lifespan opens the store, trail and upstream client, runs
    the deferred-message scheduler, and closes them all on shutdown. A server
    process passes `tune_gc` (see `_tune_gc`)."""
    if policies is None:
        policies = Policies(settings.policies, settings.packs)  # a broken bundle stops us here
    if settings.tracing:
        configure()
    # Claimed now, not in the lifespan, so a second process fails with one clear line.
    claim = (
        runtime_module.claim_folder(settings)
        if runtime_module.needs_folder(settings, store, trail)
        else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        rt = await runtime_module.start(
            settings,
            store=store,
            trail=trail,
            upstream=upstream,
            clock=clock,
            policies=policies,
            claim=claim,
        )
        app.state.runtime = rt
        if tune_gc:
            _tune_gc()
        tasks = []
        if run_scheduler:
            tasks.append(asyncio.create_task(scheduler.loop(rt, settings.scheduler_interval)))
        if rt.worker is not None and rt.folder is not None:
            tasks.append(asyncio.create_task(_snapshots(rt.gateway.metrics, rt.folder)))
        if settings.shared:  # a reload asked of another process reaches this one
            tasks.append(asyncio.create_task(_follow_reloads(rt)))
        if rt.gateway.pseudonyms.missing:
            tasks.append(asyncio.create_task(runtime_module.load_key_later(rt)))
        try:
            yield {}
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if rt.worker is not None and rt.folder is not None:
                metrics.write_snapshot(rt.gateway.metrics, rt.folder)
            await rt.close()

    return GatewayApp(
        direct=DIRECT,
        tracing=settings.tracing,
        keys=settings.api_keys,
        routes=ROUTES,
        exception_handlers=HANDLERS,
        busy_poll=BusyPoll(settings.busy_poll_us / 1e6) if settings.busy_poll_us else None,
        lifespan=lifespan,
    )
