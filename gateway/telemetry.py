"""Tracing: the only module that touches the OpenTelemetry SDK.

Everything else depends on the API alone (`opentelemetry.trace`): the service
reads the current span's trace id into each decision (`service.trace_id`), so an auditor can find
a decision from a trace and the other way round. Each request gets a span,
joined to the sender's trace when it sends a W3C `traceparent` header. No
exporter is configured here: an operator adds one with the SDK's usual
environment or code; without one, spans cost a little and go nowhere.
"""

from __future__ import annotations

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from starlette.types import ASGIApp, Receive, Scope, Send

_configured = False
# Probes that a load balancer calls every few seconds: a trace each is noise.
_UNTRACED = frozenset({"/healthz", "/readyz"})
# The headers the default propagators (W3C trace context, baggage) read.
_PROPAGATED = frozenset({b"traceparent", b"tracestate", b"baggage"})


def configure() -> None:
    """Install an SDK tracer provider once per process, unless one is already set."""
    global _configured
    if _configured:
        return
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())
    _configured = True


class Tracing:
    """Pure ASGI middleware: one span per HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.tracer = trace.get_tracer("gateway")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNTRACED:
            await self.app(scope, receive, send)
            return
        name = f"{scope['method']} {scope['path']}"
        with self.tracer.start_as_current_span(
            name, context=_remote_context(scope), kind=trace.SpanKind.SERVER
        ):
            await self.app(scope, receive, send)


def _remote_context(scope: Scope) -> Context | None:
    """The sender's context from its W3C headers; None (a new trace) without them,
    which spares most requests the propagator's work."""
    headers = scope["headers"]
    if not any(k in _PROPAGATED for k, _ in headers):
        return None
    return propagate.extract({k.decode("latin-1"): v.decode("latin-1") for k, v in headers})
