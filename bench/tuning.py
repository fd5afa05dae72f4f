"""An experiment the benchmark can switch on (`--gc-tune`): once the app has
started, move everything alive into the permanent generation (gc.freeze) and
collect the youngest generation less often."""

from __future__ import annotations

import gc

from starlette.types import ASGIApp, Message, Receive, Scope, Send

GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)


class GcTuned:
    """Wraps an ASGI app: tunes the collector when its lifespan startup completes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def tuned_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                tune_gc()
            await send(message)

        await self.app(scope, receive, tuned_send)
