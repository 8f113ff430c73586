"""meshmetrics next to the OpenTelemetry SDK: one server span per request, the inbound B3
trace continued, exemplars and outgoing headers naming OpenTelemetry's spans.

In process, with OpenTelemetry's InMemorySpanExporter behind a SimpleSpanProcessor.  The
SDK's global TracerProvider can be set once per process; each test resets OpenTelemetry's
globals afterwards, as OpenTelemetry's own test utilities do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from helpers import serve_in_thread
from meshmetrics import instrument

ENVOY = {
    "x-request-id": "envoy-req-7",
    "x-b3-traceid": "463ac35c9f6413ad48485a3953bb6124",
    "x-b3-spanid": "a2fb4a1d1a96d312",
    "x-b3-sampled": "1",
}


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """An SDK TracerProvider set as the global one, for this test only."""
    monkeypatch.delenv("OTEL_PROPAGATORS", raising=False)
    default_propagator = propagate.get_global_textmap()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    import meshmetrics.tracing.otel as mesh_otel

    monkeypatch.setattr(mesh_otel, "_b3_done", False)
    yield exporter
    provider.shutdown()
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    propagate.set_global_textmap(default_propagator)


def make_app(with_instrumentor: bool) -> tuple[Flask, Any, list[dict[str, str]]]:
    app = Flask("svc")
    if with_instrumentor:
        FlaskInstrumentor().instrument_app(app)
    inst = instrument(app, service="svc")
    sent: list[dict[str, str]] = []

    @app.route("/items/<n>")
    @inst.tracing.trace("path", "method")  # Flask-OpenTracing's decorator keeps working
    def item(n: str) -> dict[str, str]:
        from meshmetrics import forward_headers

        sent.append(forward_headers())
        span = inst.tracing.get_span()
        span.set_tag("item", n)  # OpenTracing code keeps working
        return {"n": n}

    return app, inst, sent


@pytest.mark.parametrize("with_instrumentor", [True, False], ids=["FlaskInstrumentor", "SDK only"])
def test_one_server_span_per_request_and_b3_continued(
    otel: InMemorySpanExporter, with_instrumentor: bool
) -> None:
    app, inst, sent = make_app(with_instrumentor)
    assert inst.config.tracing == "otel"
    assert "OpenTelemetry SDK TracerProvider" in inst.config.source_of("tracing")
    assert not hasattr(inst.tracing.tracer, "processor")  # nothing exported of its own
    client = app.test_client()
    assert client.get("/items/1", headers=ENVOY).status_code == 200
    assert client.get("/items/2").status_code == 200
    spans = otel.get_finished_spans()
    servers = [s for s in spans if s.kind == trace.SpanKind.SERVER]
    assert len(servers) == 2, [s.name for s in spans]
    continued, fresh = servers
    assert f"{continued.context.trace_id:032x}" == ENVOY["x-b3-traceid"]
    assert f"{continued.parent.span_id:016x}" == ENVOY["x-b3-spanid"]
    assert f"{fresh.context.trace_id:032x}" != ENVOY["x-b3-traceid"]
    assert continued.attributes["item"] == "1"
    assert continued.attributes["path"] == "/items/1"
    assert continued.attributes["method"] == "GET"
    if not with_instrumentor:
        assert continued.attributes["http.route"] == "/items/<n>"
        assert continued.attributes["http.response.status_code"] == 200
    headers = sent[0]
    server_span = f"{continued.context.span_id:016x}"
    assert headers["x-request-id"] == "envoy-req-7"
    assert headers["traceparent"].split("-")[1] == ENVOY["x-b3-traceid"]
    assert headers["traceparent"].split("-")[2] == server_span
    assert headers["x-b3-traceid"] == ENVOY["x-b3-traceid"]
    assert headers["x-b3-spanid"] == server_span  # B3 and W3C name the same parent
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "meshmetrics_spans_" not in metrics


@pytest.mark.parametrize("with_instrumentor", [True, False], ids=["FlaskInstrumentor", "SDK only"])
def test_exemplars_carry_opentelemetrys_trace_ids(
    otel: InMemorySpanExporter, with_instrumentor: bool
) -> None:
    app, _, _ = make_app(with_instrumentor)
    client = app.test_client()
    client.get("/items/1", headers=ENVOY)
    om = client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text;version=1.0.0"}
    ).get_data(as_text=True)
    exemplars = {
        line.split('trace_id="')[1].split('"')[0] for line in om.splitlines() if "trace_id=" in line
    }
    assert exemplars == {ENVOY["x-b3-traceid"]}


def test_session_opens_a_client_span_that_both_formats_name(otel: InMemorySpanExporter) -> None:
    seen: list[dict[str, str]] = []
    downstream = Flask("downstream")

    @downstream.route("/echo")
    def echo() -> str:
        from flask import request

        seen.append(dict(request.headers))
        return "ok"

    base, stop = serve_in_thread(downstream)
    app = Flask("front")
    inst = instrument(app, service="front")

    @app.route("/call")
    def call() -> str:
        return inst.session().get(f"{base}/echo", timeout=5).text

    try:
        assert app.test_client().get("/call", headers=ENVOY).status_code == 200
    finally:
        stop()
    spans = otel.get_finished_spans()
    (client_span,) = [s for s in spans if s.kind == trace.SpanKind.CLIENT]
    (server_span,) = [s for s in spans if s.kind == trace.SpanKind.SERVER]
    assert client_span.parent.span_id == server_span.context.span_id
    assert client_span.attributes["http.response.status_code"] == 200
    headers = {k.lower(): v for k, v in seen[0].items()}
    assert headers["x-request-id"] == "envoy-req-7"
    assert headers["x-b3-spanid"] == f"{client_span.context.span_id:016x}"
    assert headers["traceparent"].split("-")[2] == f"{client_span.context.span_id:016x}"


def test_otel_propagators_set_by_the_user_are_left_alone(
    otel: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_PROPAGATORS", "tracecontext")
    before = propagate.get_global_textmap()
    instrument(Flask("svc"), service="svc")
    assert propagate.get_global_textmap() is before


def test_explicit_otel_without_the_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from meshmetrics.config import MissingExtraError

    real_import = builtins.__import__

    def no_shim(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry.shim"):
            raise ImportError("No module named 'opentelemetry.shim'")
        return real_import(name, *args, **kwargs)

    import sys

    monkeypatch.delitem(sys.modules, "meshmetrics.tracing.otel", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_shim)
    with pytest.raises(MissingExtraError, match=r"meshmetrics\[otel\]"):
        instrument(Flask("svc"), service="svc", tracing="otel")


@pytest.mark.parametrize("with_instrumentor", [True, False], ids=["FlaskInstrumentor", "SDK only"])
def test_capture_spans_keeps_the_sdks_spans(
    otel: InMemorySpanExporter, with_instrumentor: bool
) -> None:
    """Under tracing='otel' capture_spans() adds the SDK's own in-memory exporter: the
    same spans the application's processors get, synchronously."""
    from meshmetrics.testing import OTelSpanCapture, capture_spans

    app, inst, _ = make_app(with_instrumentor)
    captured = capture_spans(inst)
    assert isinstance(captured, OTelSpanCapture)
    app.test_client().get("/items/1", headers=ENVOY)
    (server,) = [s for s in captured.spans if s.kind == trace.SpanKind.SERVER]
    assert f"{server.context.trace_id:032x}" == ENVOY["x-b3-traceid"]
    assert server.attributes["item"] == "1"
    assert [s.context for s in captured.spans] == [s.context for s in otel.get_finished_spans()]
    captured.clear()
    assert captured.spans == []
    captured.shutdown()  # stops keeping spans; the application's exporters go on
    app.test_client().get("/items/2")
    assert captured.spans == []
    assert len(otel.get_finished_spans()) > len([server])


def test_capture_spans_without_an_sdk_provider_says_what_to_set() -> None:
    from meshmetrics.testing import capture_spans

    inst = instrument(Flask("nosdk"), service="nosdk", tracing="otel")
    with pytest.raises(ValueError, match=r"set_tracer_provider\(TracerProvider\(\)\)"):
        capture_spans(inst)


def test_uninstrument_under_otel_stops_spans_and_leaves_the_sdk_running(
    otel: InMemorySpanExporter,
) -> None:
    """``uninstrument()`` under tracing='otel' (it raised AttributeError: the OpenTracing
    shim has no ``shutdown``): afterwards no server span from meshmetrics, while the SDK's
    provider, the application's, still takes spans."""
    app = Flask("svc")
    inst = instrument(app, service="svc")
    app.add_url_rule("/items/<n>", "item", lambda n: {"n": n})
    client = app.test_client()
    client.get("/items/1", headers=ENVOY)
    assert [s.kind for s in otel.get_finished_spans()] == [trace.SpanKind.SERVER]
    inst.uninstrument()
    otel.clear()
    assert client.get("/items/2", headers=ENVOY).status_code == 200
    assert otel.get_finished_spans() == ()
    with trace.get_tracer("app").start_as_current_span("own"):
        pass
    assert [s.name for s in otel.get_finished_spans()] == ["own"]
