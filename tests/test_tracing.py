"""Server spans: concurrency, tags, errors, exemplars, the Flask-OpenTracing API, exporters."""

from __future__ import annotations

import concurrent.futures
import socket
import threading
from typing import Any

import pytest
import requests
from flask import Flask, abort

from helpers import IN_MEMORY, captured_spans, serve_in_thread, value
from meshmetrics import instrument
from meshmetrics.testing.receivers import JaegerAgent, OTLPCollector
from meshmetrics.tracing.redaction import redact_url


def make_app(endpoint: str, backend: str = "jaeger", **options: Any) -> tuple[Flask, Any]:
    app = Flask("traced")
    inst = instrument(app, service="traced", tracing=backend, trace_endpoint=endpoint, **options)
    return app_with_views(app, inst)


def in_memory_app(**options: Any) -> tuple[Flask, Any, Any]:
    """An app whose spans are kept in memory as they finish: ``spans()`` lists them."""
    app = Flask("traced")
    inst = instrument(app, service="traced", **{**IN_MEMORY, **options})
    spans = captured_spans(inst)
    return (*app_with_views(app, inst), spans)


def app_with_views(app: Flask, inst: Any) -> tuple[Flask, Any]:
    tracing = inst.tracing
    barrier = threading.Barrier(16, timeout=10)

    @app.route("/together")
    def together() -> str:
        barrier.wait()
        return "ok"

    @app.route("/items/<item_id>")
    def item(item_id: str) -> Any:
        if item_id == "boom":
            raise LookupError("no such shelf")
        if item_id == "unavailable":
            abort(503)
        return {"id": item_id}

    @app.route("/plain")
    @tracing.trace("path", "method")
    def plain() -> str:
        return "a plain string"  # Flask-OpenTracing 2.0.0's trace() turned this into a 500

    @app.route("/child")
    def child() -> str:
        with tracing.tracer.start_active_span("load-cart") as scope:
            scope.span.set_tag("cart.items", 3)
        return "ok"

    return app, inst


def test_16_concurrent_requests_give_16_root_spans() -> None:
    app, inst, finished = in_memory_app()
    base, stop = serve_in_thread(app)
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = list(
                pool.map(
                    lambda _: requests.get(f"{base}/together", timeout=20).status_code, range(16)
                )
            )
        assert statuses == [200] * 16
        spans = finished()
        assert len(spans) == 16
        assert all(s.parent_id == 0 for s in spans), (
            "a leaked scope became another request's parent"
        )
        assert len({s.trace_id for s in spans}) == 16
        assert all(s.operation == "together" for s in spans)
        # nothing leaked: later requests on the same server threads are roots too
        for _ in range(8):
            requests.get(f"{base}/items/1", timeout=10)
        later = finished()[16:]
        assert len(later) == 8
        assert all(s.parent_id == 0 for s in later)
        assert inst.tracing.tracer.active_span is None
    finally:
        stop()


def test_tags_errors_and_request_id() -> None:
    app, _, finished = in_memory_app()
    client = app.test_client()
    client.get("/items/7", headers={"x-request-id": "req-abc-123"})
    app.testing = False
    assert client.get("/items/boom").status_code == 500
    assert client.get("/items/unavailable").status_code == 503
    client.get("/does/not/exist")
    spans = {s.tags.get("url.path", "").rsplit("/", 1)[-1]: s for s in finished()}
    ok = spans["7"]
    assert ok.operation == "item"
    assert ok.tags["span.kind"] == "server"
    # OpenTelemetry's stable HTTP semantic conventions
    assert ok.tags["http.request.method"] == "GET"
    assert ok.tags["url.scheme"] == "http"
    assert ok.tags["url.path"] == "/items/7"
    assert ok.tags["server.address"] == "localhost"
    assert ok.tags["http.route"] == "/items/<item_id>"
    assert ok.tags["http.response.status_code"] == 200
    assert not {"http.method", "http.url", "http.status_code", "component"} & set(ok.tags)
    assert ok.tags["guid:x-request-id"] == "req-abc-123"
    assert "error" not in ok.tags
    boom = spans["boom"]
    assert boom.tags["error"] is True
    assert boom.tags["http.response.status_code"] == 500
    assert boom.tags["error.type"] == "LookupError"
    assert boom.logs[0]["event"] == "error"
    assert boom.logs[0]["error.kind"] == "LookupError"
    assert "no such shelf" in boom.logs[0]["message"]
    assert spans["unavailable"].tags["error"] is True
    assert spans["exist"].operation == "unmatched"


def test_flask_opentracing_api() -> None:
    app, inst, finished = in_memory_app()
    client = app.test_client()
    plain = client.get("/plain")
    assert plain.status_code == 200
    assert plain.get_data(as_text=True) == "a plain string"
    client.get("/child")
    spans = finished()
    assert len(spans) == 3
    by_name = {s.operation: s for s in spans}
    assert by_name["plain"].tags["path"] == "/plain"
    assert by_name["plain"].tags["method"] == "GET"
    assert by_name["load-cart"].parent_id == by_name["child"].span_id
    assert by_name["load-cart"].trace_id == by_name["child"].trace_id
    assert by_name["load-cart"].tags["cart.items"] == 3
    with app.test_request_context("/"):
        assert inst.tracing.get_span() is None  # no request being traced


@pytest.mark.parametrize(
    ("headers", "exported", "parent"),
    [
        (
            {
                "x-b3-traceid": "463ac35c9f6413ad48485a3953bb6124",
                "x-b3-spanid": "a2fb4a1d1a96d312",
                "x-b3-sampled": "1",
            },
            True,
            0xA2FB4A1D1A96D312,
        ),
        (
            {
                "x-b3-traceid": "463ac35c9f6413ad",
                "x-b3-spanid": "a2fb4a1d1a96d312",
                "x-b3-sampled": "true",
            },
            True,
            0xA2FB4A1D1A96D312,
        ),
        (
            {
                "x-b3-traceid": "463ac35c9f6413ad",
                "x-b3-spanid": "a2fb4a1d1a96d312",
                "x-b3-flags": "1",
            },
            True,
            0xA2FB4A1D1A96D312,
        ),
        (
            {"x-b3-traceid": "463ac35c9f6413ad", "x-b3-spanid": "a2fb4a1d1a96d312"},
            True,
            0xA2FB4A1D1A96D312,
        ),
        (
            {
                "x-b3-traceid": "463ac35c9f6413ad",
                "x-b3-spanid": "a2fb4a1d1a96d312",
                "x-b3-sampled": "0",
            },
            False,
            None,
        ),
        ({"b3": "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1"}, True, 0xA2FB4A1D1A96D312),
        ({"b3": "0"}, False, None),
        (
            {"traceparent": "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01"},
            True,
            0xA2FB4A1D1A96D312,
        ),
        ({"traceparent": "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-00"}, False, None),
    ],
    ids=[
        "b3-128bit",
        "sampled-true",
        "debug-flag",
        "no-decision",
        "not-sampled",
        "b3-single",
        "b3-deny",
        "w3c",
        "w3c-unsampled",
    ],
)
def test_envoy_style_inbound_context(
    headers: dict[str, str], exported: bool, parent: int | None
) -> None:
    app, _, finished = in_memory_app()
    assert app.test_client().get("/items/1", headers=headers).status_code == 200
    mine = finished()
    if not exported:
        assert mine == []
        return
    (span,) = mine
    assert span.parent_id == parent
    expected_trace = (
        headers.get("x-b3-traceid")
        or (headers.get("b3") or headers.get("traceparent", "")).replace("00-", "", 1)[:32]
    )
    assert span.trace_id == int(expected_trace, 16)


def test_exemplar_carries_the_trace_id() -> None:
    app, _, _ = in_memory_app()
    client = app.test_client()
    client.get(
        "/items/1",
        headers={
            "x-b3-traceid": "0af7651916cd43dd8448eb211c80319c",
            "x-b3-spanid": "b7ad6b7169203331",
            "x-b3-sampled": "1",
        },
    )
    om = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    text = om.get_data(as_text=True)
    assert '# {trace_id="0af7651916cd43dd8448eb211c80319c"}' in text
    plain = client.get("/metrics").get_data(as_text=True)
    assert "trace_id" not in plain  # the 0.0.4 text format has no exemplars


def test_otlp_backend_and_counters(collector: OTLPCollector) -> None:
    app, inst = make_app(collector.endpoint, backend="otlp")
    client = app.test_client()
    for i in range(5):
        client.get(f"/items/{i}")
    inst.tracing.tracer.close()  # the batch is counted once its export returned
    spans = collector.wait_for(5)
    assert len(spans) == 5
    assert {s.service for s in spans} == {"traced"}
    assert all(s.tags["http.route"] == "/items/<item_id>" for s in spans)
    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "meshmetrics_spans_exported_total") == 5
    assert value(text, "meshmetrics_spans_dropped_total") == 0


def test_unreachable_collector_fails_no_request_and_counts_drops() -> None:

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once closed
    app, inst = make_app(f"http://127.0.0.1:{port}/v1/traces", backend="otlp")
    client = app.test_client()
    assert [client.get(f"/items/{i}").status_code for i in range(20)] == [200] * 20
    inst.tracing.tracer.close()
    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "meshmetrics_spans_dropped_total", reason="export_error") == 20
    assert value(text, "meshmetrics_spans_exported_total") == 0


def test_full_queue_drops_are_counted_not_silent() -> None:

    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(100)  # accepts connections, never answers: the exporter blocks
    port = blackhole.getsockname()[1]
    try:
        app, _ = make_app(f"http://127.0.0.1:{port}/v1/traces", backend="otlp", span_queue_size=5)
        client = app.test_client()
        assert [client.get(f"/items/{i}").status_code for i in range(50)] == [200] * 50
        text = client.get("/metrics").get_data(as_text=True)
        dropped = value(text, "meshmetrics_spans_dropped_total", reason="queue_full")
        assert dropped >= 40
    finally:
        blackhole.close()


def test_span_larger_than_a_datagram_is_counted(agent: JaegerAgent) -> None:
    app, inst = make_app(agent.endpoint)

    @app.route("/huge")
    def huge() -> str:
        span = inst.tracing.get_span()
        for i in range(30):
            span.set_tag(f"blob.{i}", "x" * 4096)
        return "ok"

    client = app.test_client()
    client.get("/huge")
    for i in range(3):
        client.get(f"/items/{i}")
    inst.tracing.tracer.close()
    assert len(agent.wait_for(3)) == 3
    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "meshmetrics_spans_dropped_total", reason="too_large") == 1
    # UDP confirms nothing: the datagrams count as sent, never as exported
    assert value(text, "meshmetrics_spans_sent_total") == 3
    assert value(text, "meshmetrics_spans_exported_total") == 0


def test_sampler_off_exports_nothing() -> None:
    app, _, finished = in_memory_app(sampler="const:0")
    client = app.test_client()
    for i in range(10):
        client.get(f"/items/{i}")
    assert finished() == []
    # const:0 is absolute: a client cannot force traces out of it (b3: 1, or debug)
    for forced in ("463ac35c9f6413ad-a2fb4a1d1a96d312-1", "463ac35c9f6413ad-a2fb4a1d1a96d312-d"):
        client.get("/items/x", headers={"b3": forced})
    client.get("/items/x", headers={"x-b3-sampled": "1"})
    assert finished() == []


def test_an_upstream_decision_wins_over_a_probabilistic_sampler() -> None:
    app, _, finished = in_memory_app(sampler="probabilistic:0")
    client = app.test_client()
    client.get("/items/1")
    assert finished() == []
    client.get("/items/x", headers={"b3": "463ac35c9f6413ad-a2fb4a1d1a96d312-1"})
    assert len(finished()) == 1


def test_tracing_off_has_no_tracer() -> None:
    app = Flask("off")
    inst = instrument(app, tracing="off")
    assert inst.tracing is None
    assert app.test_client().get("/metrics").status_code == 200


def test_probes_and_scrapes_make_no_spans() -> None:
    app, _, finished = in_memory_app()

    @app.route("/health")
    def health() -> str:
        return "ok"

    client = app.test_client()
    client.get("/health")
    client.get("/metrics")
    client.get("/items/1")
    assert [s.operation for s in finished()] == ["item"]


def test_server_and_client_spans_redact_credentials_and_secret_query_values() -> None:
    downstream = Flask("downstream")
    downstream.add_url_rule("/x", "x", lambda: "ok")
    down_base, stop_down = serve_in_thread(downstream)
    app = Flask("front")
    inst = instrument(app, service="front", **IN_MEMORY)
    spans = captured_spans(inst)
    port = down_base.rsplit(":", 1)[1]

    @app.route("/items/<n>")
    def item(n: str) -> str:
        url = f"http://alice:s3cret@127.0.0.1:{port}/x?api_key=K1&page=2&Signature=S1"
        return inst.session().get(url, timeout=5).text

    try:
        assert app.test_client().get("/items/1?token=T1&page=3&X-Goog-Signature=G").status_code
    finally:
        stop_down()
    urls = {s.tags["span.kind"]: s.tags.get("url.full") or s.tags["url.query"] for s in spans()}
    assert urls["server"] == "token=REDACTED&page=3&X-Goog-Signature=REDACTED"  # url.query
    assert urls["client"] == (
        f"http://REDACTED:REDACTED@127.0.0.1:{port}/x?api_key=REDACTED&page=2&Signature=REDACTED"
    )
    for url in urls.values():
        assert not any(secret in url for secret in ("alice", "s3cret", "K1", "S1", "T1"))


def test_the_sensitive_list_is_an_option() -> None:
    app = Flask("svc")
    inst = instrument(app, service="svc", sensitive_query_params="session, Ticket", **IN_MEMORY)
    spans = captured_spans(inst)
    app.add_url_rule("/p", "p", lambda: "ok")
    app.test_client().get("/p?ticket=1&token=2&session=3")
    assert spans()[0].tags["url.query"] == "ticket=REDACTED&token=2&session=REDACTED"
    assert (
        redact_url("https://u@h/p#f?token=1", frozenset({"token"}))
        == "https://REDACTED:REDACTED@h/p#f?token=1"
    )
    assert redact_url("/p?%74oken=1&a", frozenset({"token"})) == "/p?%74oken=REDACTED&a"
