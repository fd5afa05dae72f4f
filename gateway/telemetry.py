"""Tracing: the only module that touches the OpenTelemetry SDK.

Everything else depends on the API alone (`opentelemetry.trace`): the service
reads the current span's trace id into each decision (`service.trace_id`), so an auditor can find
a decision from a trace and the other way round. Each request gets a span,
joined to the sender's trace when it sends a W3C `traceparent` header. No
exporter is configured here: an operator adds one with the SDK's usual
environment or code; without one, spans cost a little and go nowhere.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from contextvars import ContextVar
from types import TracebackType

from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import Attributes
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
        trace.set_tracer_provider(_Provider())
    _configured = True


class _Provider(TracerProvider):
    """The SDK's provider, recording spans only once a span processor (an
    exporter) is added: until then each request gets a trace id for its
    decisions, and not a span that nobody reads (a third of the cost)."""

    def __init__(self) -> None:
        super().__init__()
        self._gate = _UntilConsumed(self.sampler)  # the sampler the SDK chose (env or default)
        self.sampler = self._gate

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self._gate.consumed = True

    @property
    def recording(self) -> bool:
        """Whether spans are recorded (a span processor was added)."""
        return self._gate.consumed


class _UntilConsumed(Sampler):
    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler
        self.consumed = False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if not self.consumed:
            return SamplingResult(Decision.DROP)
        return self._sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"UntilConsumed{{{self._sampler.get_description()}}}"


class Tracing:
    """Pure ASGI middleware: one span per HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.tracer = trace.get_tracer("gateway")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNTRACED:
            await self.app(scope, receive, send)
            return
        with request_trace(self.tracer, scope):
            await self.app(scope, receive, send)


class RequestSpan:
    """The current span of one HTTP request: a SERVER span named "METHOD path",
    child of the sender's context. It behaves as `start_as_current_span` with
    its defaults (an Exception is recorded on a recording span and sets its
    status to ERROR; the span ends on exit) without that call's two nested
    generator-based context managers, which cost nearly as much as the span."""

    __slots__ = ("_span", "_token")

    def __init__(self, tracer: trace.Tracer, scope: Scope) -> None:
        self._span = tracer.start_span(
            f"{scope['method']} {scope['path']}",
            context=_remote_context(scope),
            kind=trace.SpanKind.SERVER,
        )

    def __enter__(self) -> trace.Span:
        self._token = context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        span = self._span
        context.detach(self._token)
        if isinstance(exc, Exception) and span.is_recording():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()


def _remote_context(scope: Scope) -> Context | None:
    """The sender's context from its W3C headers; None (a new trace) without them,
    which spares most requests the propagator's work."""
    if not _propagated(scope):
        return None
    headers = scope["headers"]
    return propagate.extract({k.decode("latin-1"): v.decode("latin-1") for k, v in headers})


def _propagated(scope: Scope) -> bool:
    """Whether the sender sent trace context (traceparent, tracestate, baggage)."""
    for name, _ in scope["headers"]:  # noqa: SIM110 - any() over a generator costs more
        if name in _PROPAGATED:
            return True
    return False


# The trace id of a request served without a span (see `request_trace`).
_LOCAL_TRACE: ContextVar[int] = ContextVar("gateway_trace_id", default=0)


class LocalTrace:
    """A request's own trace id, with no OpenTelemetry span: what a request
    gets while spans would go nowhere. A span that nobody records still cost
    about 10 us (ids, sampler, span and context objects, attach and detach);
    this costs about 1."""

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        # As the SDK's RandomIdGenerator: 128 random bits, never the invalid 0.
        self._token = _LOCAL_TRACE.set(random.getrandbits(128) or 1)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _LOCAL_TRACE.reset(self._token)


def request_trace(tracer: trace.Tracer, scope: Scope) -> RequestSpan | LocalTrace:
    """The trace of one request: a span when one can be recorded (an exporter
    was added, or the provider is not ours) or when the sender sent its trace
    context (so the decision joins the sender's trace); else a `LocalTrace`."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, _Provider) and not provider.recording and not _propagated(scope):
        return LocalTrace()
    return RequestSpan(tracer, scope)


def current_trace_id() -> int:
    """The trace id of the request being served (0 outside one)."""
    local = _LOCAL_TRACE.get()
    if local:
        return local
    span_context = trace.get_current_span().get_span_context()
    return span_context.trace_id if span_context.is_valid else 0
