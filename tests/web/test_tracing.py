"""Each decision carries the trace id of the request that made it, joined to
the sender's own trace when it sends a W3C traceparent header."""

from __future__ import annotations

import re
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from starlette.testclient import TestClient

from gateway.telemetry import _Provider, current_trace_id, request_trace
from tests.web.conftest import Make, sms

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_the_senders_trace_is_joined(client: TestClient) -> None:
    answer = client.post("/v1/messages", json=sms(), headers={"traceparent": PARENT})
    assert answer.json()["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    record = client.get(f"/v1/decisions/{answer.json()['decision_id']}").json()
    assert record["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_without_a_parent_each_request_starts_a_trace(client: TestClient) -> None:
    first = client.post("/v1/check", json=sms()).json()["trace_id"]
    second = client.post("/v1/check", json=sms()).json()["trace_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and re.fullmatch(r"[0-9a-f]{32}", second)
    assert first != second


def test_tracing_can_be_switched_off(make_client: Make) -> None:
    client = make_client(env={"GATEWAY_TRACING": "false"})
    answer = client.post("/v1/check", json=sms(), headers={"traceparent": PARENT})
    assert answer.json()["trace_id"] is None


def test_an_exporter_added_in_code_receives_each_requests_span(client: TestClient) -> None:
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        answer = client.post("/v1/check", json=sms(), headers={"traceparent": PARENT}).json()
        spans = exporter.get_finished_spans()
        assert [s.name for s in spans] == ["POST /v1/check"]
        assert format(spans[0].context.trace_id, "032x") == answer["trace_id"]
        assert spans[0].parent is not None and spans[0].parent.span_id == 0x00F067AA0BA902B7
    finally:
        exporter.shutdown()


def test_spans_only_once_someone_records_them_or_the_sender_sent_its_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = _Provider()  # a fresh one: the process's own may have an exporter by now
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    tracer = provider.get_tracer("gateway")
    scope: dict[str, Any] = {"method": "POST", "path": "/v1/check", "headers": []}

    with request_trace(tracer, scope) as nothing:  # nobody records: no span at all
        assert nothing is None and not trace.get_current_span().get_span_context().is_valid
        first = current_trace_id()
    with request_trace(tracer, scope):
        assert current_trace_id() not in (0, first)
    assert current_trace_id() == 0

    joined = scope | {"headers": [(b"traceparent", PARENT.encode())]}
    with request_trace(tracer, joined) as span:
        assert span is not None and current_trace_id() == int(PARENT.split("-")[1], 16)

    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with request_trace(tracer, scope) as span:
        assert span is not None and span.is_recording()
        recorded = current_trace_id()
    spans = exporter.get_finished_spans()
    assert [(s.name, s.context.trace_id) for s in spans] == [("POST /v1/check", recorded)]


async def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("method", "path", "failing"),
    [
        ("POST", "/v1/check", "gateway.check"),  # served as plain ASGI
        ("GET", "/v1/decisions", "trail.query"),  # served by starlette's router
    ],
)
def test_an_unexpected_error_is_recorded_on_the_requests_span(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, method: str, path: str, failing: str
) -> None:
    owner, name = failing.split(".")
    monkeypatch.setattr(getattr(client.app.state.runtime, owner), name, _boom)  # type: ignore[attr-defined]
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        with pytest.raises(RuntimeError):
            client.request(method, path, json=sms())
        (span,) = exporter.get_finished_spans()
        assert span.name == f"{method} {path}"
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "RuntimeError: boom"
        assert [e.name for e in span.events] == ["exception"]
    finally:
        exporter.shutdown()
