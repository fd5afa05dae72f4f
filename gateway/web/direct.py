"""The hot routes served as plain ASGI, ahead of starlette's middleware and router.

`POST /v1/messages` and `POST /v1/check` carry nearly all the traffic, and
starlette's layers (error and exception middleware, router, Request and
Response objects, and a coroutine frame each that every await resumes through)
took about a sixth of a `/v1/check`'s CPU. `GatewayApp` serves those routes
itself, with the answers the starlette stack gives them, in the same order:

    500 for anything unhandled  (ServerErrorMiddleware: answered, then re-raised)
    └── the request's span      (Tracing)
        └── 401 / 403           (ApiKeyAuth)
            └── the project's errors as answers (the handlers in web/errors.py)
                └── body (413 past the limit), then the endpoint

Every other request, and these paths under a root path, go to starlette.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from opentelemetry import trace
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from gateway.busypoll import BusyPoll
from gateway.runtime import Runtime
from gateway.settings import ApiKey
from gateway.telemetry import Tracing, request_trace
from gateway.web.auth import ApiKeyAuth, ApiKeys
from gateway.web.http import receive_body

Endpoint = Callable[[Runtime, bytes, Scope], Awaitable[Response]]
Handler = Callable[[Request, Exception], Awaitable[Response]]

_NO_SPAN = contextlib.nullcontext()


class GatewayApp(Starlette):
    """Starlette with Tracing (when `tracing`) and ApiKeyAuth around its routes,
    and `direct` routes (path -> method, endpoint) served first, the same way.

    An endpoint takes the runtime, the request's body and scope and returns the
    answer; its errors go to `exception_handlers` as starlette's would (they
    must be coroutines). With `busy_poll`, every HTTP request kicks it as it
    starts and as it ends."""

    def __init__(
        self,
        *,
        direct: Mapping[str, tuple[str, Endpoint]],
        tracing: bool,
        keys: list[ApiKey],
        exception_handlers: Mapping[type[Exception], Handler],
        busy_poll: BusyPoll | None = None,
        **kwargs: Any,
    ) -> None:
        middleware = [
            *([Middleware(Tracing)] if tracing else []),
            Middleware(ApiKeyAuth, keys=keys),
        ]
        super().__init__(middleware=middleware, exception_handlers=exception_handlers, **kwargs)
        self._direct = direct
        self._tracer = trace.get_tracer("gateway") if tracing else None
        self._keys = ApiKeys(keys)
        self._handled = {k: v for k, v in exception_handlers.items() if k is not Exception}
        self._unhandled = exception_handlers.get(Exception)
        self._busy_poll = busy_poll

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        poll = self._busy_poll if scope["type"] == "http" else None
        if poll is None:
            await self._route(scope, receive, send)
            return
        poll.kick()
        try:
            await self._route(scope, receive, send)
        finally:
            poll.kick()  # the sender's next request may be on its way

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            route = self._direct.get(scope["path"])
            if route is not None and route[0] == scope["method"]:
                scope["app"] = self  # as starlette sets it: an error handler's request.app
                await self._serve(route[1], scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _serve(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        started = False
        try:
            with request_trace(self._tracer, scope) if self._tracer else _NO_SPAN:
                response = await self._respond(endpoint, scope, receive)
                started = True
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status_code,
                        "headers": response.raw_headers,
                    }
                )
                await send({"type": "http.response.body", "body": response.body})
        except Exception as exc:
            if not started:
                await self._answer_unhandled(exc, scope, receive, send)
            raise  # so the server logs it, as starlette's ServerErrorMiddleware does

    async def _respond(self, endpoint: Endpoint, scope: Scope, receive: Receive) -> Response:
        refusal = self._keys.refusal(scope)
        if refusal is not None:
            return refusal
        try:
            rt: Runtime = self.state.runtime
            raw = await receive_body(scope, receive, rt.settings.max_body_bytes)
            return await endpoint(rt, raw, scope)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = await handler(Request(scope, receive), exc)
            # As starlette does: a reused exception instance would pile up tracebacks.
            exc.__traceback__ = None
            return response

    def _handler(self, exc: Exception) -> Handler | None:
        """The handler of the nearest class in `exc`'s MRO, as starlette looks it up."""
        for cls in type(exc).__mro__:
            if cls in self._handled:
                return self._handled[cls]
        return None

    async def _answer_unhandled(
        self, exc: Exception, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if self._unhandled is None:
            response: Response = PlainTextResponse("Internal Server Error", status_code=500)
        else:
            response = await self._unhandled(Request(scope), exc)
        await response(scope, receive, send)
