"""Regression tests of the second hardening round (issue 15): one test (or more) per item.

Each reproduces the attack or fault on 127.0.0.1 (real sockets where the behaviour
depends on them) and checks the fix; docs/reliability.md lists them with their figures.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from flask import Flask, request

from helpers import (
    IN_MEMORY,
    RawHTTPServer,
    canned,
    captured_spans,
    run_cli,
    serve_in_thread,
    trickle,
)
from meshmetrics import instrument
from meshmetrics._http import BodyTooLargeError, DeadlineExceededError, fetch
from meshmetrics.config import HttpEndpoint
from meshmetrics.tools.check import check_url
from meshmetrics.tools.top import scrape
from meshmetrics.tracing.processor import BatchSpanProcessor, SpanCounters
from meshmetrics.tracing.propagation import forwarded
from meshmetrics.tracing.redaction import redact_url
from meshmetrics.tracing.sampling import ConstSampler
from meshmetrics.tracing.spans import MAX_ATTRIBUTE_LENGTH, MeshTracer

TRACE = "463ac35c9f6413ad48485a3953bb6124"
SPAN = "a2fb4a1d1a96d312"


def raw_request(port: int, head: bytes) -> bytes:
    """Send ``head`` as written (obsolete folding included) and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


# -- 2: an obsolete line-folded header must not make session() raise --------------------


def test_folded_inbound_header_is_forwarded_trimmed_over_real_sockets() -> None:
    seen: dict[str, str] = {}
    downstream = Flask("downstream")

    @downstream.route("/echo")
    def echo() -> str:
        seen.update(request.headers)
        return "ok"

    down_base, stop_down = serve_in_thread(downstream)
    app = Flask("front")
    inst = instrument(app, service="front")

    @app.route("/call")
    def call() -> str:
        return inst.session().get(f"{down_base}/echo", timeout=5).text

    base, stop = serve_in_thread(app)
    port = int(base.rsplit(":", 1)[1])
    try:
        answer = raw_request(
            port,
            b"GET /call HTTP/1.1\r\nHost: x\r\nX-Request-Id:\r\n   folded-id\r\n"
            b"Connection: close\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert seen["X-Request-Id"] == "folded-id"
    finally:
        stop()
        stop_down()


def test_forwarded_values_are_trimmed_and_empty_ones_dropped() -> None:
    environ = {"HTTP_X_REQUEST_ID": "   abc\t", "HTTP_TRACESTATE": "   ", "HTTP_BAGGAGE": "k=v"}
    assert forwarded(environ) == {"x-request-id": "abc", "baggage": "k=v"}


# -- 6: credentials and secret query values never reach a span ---------------------------


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
    urls = {s.tags["span.kind"]: s.tags["http.url"] for s in spans()}
    assert urls["server"] == (
        "http://localhost/items/1?token=REDACTED&page=3&X-Goog-Signature=REDACTED"
    )
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
    assert (
        spans()[0].tags["http.url"] == "http://localhost/p?ticket=REDACTED&token=2&session=REDACTED"
    )
    assert (
        redact_url("https://u@h/p#f?token=1", frozenset({"token"}))
        == "https://REDACTED:REDACTED@h/p#f?token=1"
    )
    assert redact_url("/p?%74oken=1&a", frozenset({"token"})) == "/p?%74oken=REDACTED&a"


# -- 7: only the headers Istio names are relayed, not any x-datadog-* ---------------------


def test_arbitrary_x_datadog_headers_are_not_relayed() -> None:
    environ = {
        "HTTP_X_DATADOG_TRACE_ID": "1",
        "HTTP_X_DATADOG_PARENT_ID": "2",
        "HTTP_X_DATADOG_SAMPLING_PRIORITY": "1",
        "HTTP_X_DATADOG_API_KEY": "attacker-chosen",
        "HTTP_X_DATADOG_ANYTHING": "x",
    }
    assert set(forwarded(environ)) == {
        "x-datadog-trace-id",
        "x-datadog-parent-id",
        "x-datadog-sampling-priority",
    }


# -- 10: an OTLP endpoint that trickles, redirects, or is not http(s) --------------------


def _exporter(url: str, timeout: float = 1.0) -> Any:
    from meshmetrics.tracing.exporters import OTLPHTTPExporter

    return OTLPHTTPExporter("svc", HttpEndpoint(url), {}, timeout=timeout)


def _span() -> Any:
    tracer = MeshTracer(ConstSampler(True), None)
    span = tracer.start_span("op")
    span.finish()
    return span


def test_trickling_otlp_endpoint_is_cut_at_the_deadline() -> None:
    server = RawHTTPServer(trickle(seconds=30, every=0.05))
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            _exporter(f"{server.url}/v1/traces", timeout=1.0).export([_span()])
        assert time.monotonic() - started < 3.0  # the trickle would last 30 s
    finally:
        server.close()


def test_a_redirected_otlp_post_is_an_export_error_not_exported() -> None:
    server = RawHTTPServer(canned("302 Found", Location="http://127.0.0.1:9/sink"))
    counters = SpanCounters(None)
    processor = BatchSpanProcessor(_exporter(f"{server.url}/v1/traces"), counters, interval=60)
    try:
        processor.on_end(_span())
        processor.flush()
        assert counters.exported._value.get() == 0
        assert counters.export_error._value.get() == 1
    finally:
        processor.shutdown()
        server.close()


def test_fetch_bounds_size_and_time() -> None:
    big = RawHTTPServer(canned("200 OK", b"x" * 200_000))
    slow = RawHTTPServer(trickle(seconds=30, every=0.05))
    try:
        with pytest.raises(BodyTooLargeError):
            fetch(big.url, max_bytes=100_000)
        assert len(fetch(big.url).body) == 200_000
        with pytest.raises(DeadlineExceededError):
            fetch(slow.url, timeout=0.5)
    finally:
        big.close()
        slow.close()


# -- 12: the span queue is bounded in bytes, attributes in size, const:0 is absolute -----


class _Stuck:
    """An exporter that never returns while the test runs (a black-holing collector)."""

    def __init__(self) -> None:
        import threading

        self.release = threading.Event()

    def export(self, spans: list[Any]) -> int:
        self.release.wait(30)
        return 0

    def close(self) -> None:
        self.release.set()


def test_queue_is_bounded_in_bytes_and_spans_are_capped_when_they_finish() -> None:
    stuck = _Stuck()
    counters = SpanCounters(None)
    processor = BatchSpanProcessor(
        stuck, counters, queue_size=100_000, queue_bytes=1024 * 1024, interval=60
    )
    tracer = MeshTracer(ConstSampler(True), processor)
    huge = "u" * 1_000_000
    try:
        for _ in range(2000):
            span = tracer.start_span("GET")
            span.set_tag("http.url", huge)
            for i in range(500):
                span.set_tag(f"k{i}", i)
            span.finish()
            assert len(span.tags["http.url"]) == MAX_ATTRIBUTE_LENGTH
            assert len(span.tags) == 128
        queued = processor._bytes
        assert 1024 * 1024 - 2 * span.size < queued <= 1024 * 1024  # full, by bytes
        assert 5_000 < span.size < 8_000  # capped: 1 MB URL + 500 attributes
        assert counters.queue_full._value.get() > 1500
    finally:
        stuck.release.set()
        processor.shutdown(1)


# -- 15: check and top end on time, bound what they read, and reject invalid UTF-8 --------


def test_check_and_top_end_within_their_timeout_against_a_trickle() -> None:
    server = RawHTTPServer(trickle(seconds=30, every=0.05))
    try:
        started = time.monotonic()
        findings = check_url(server.url, timeout=1.0)
        assert findings[0].severity == "ERROR"
        assert "within 1 s" in findings[0].message
        with pytest.raises(TimeoutError):
            scrape(server.url, timeout=1.0)
        assert time.monotonic() - started < 5.0
    finally:
        server.close()


def test_check_refuses_a_body_past_its_limit() -> None:
    server = RawHTTPServer(canned("200 OK", b"# x\n" * 100_000, Content_Type="text/plain"))
    try:
        findings = check_url(server.url, max_bytes=100_000)
        assert findings[0].severity == "ERROR"
        assert "more than 100000" in findings[0].message
        assert run_cli("check", server.url, "--max-bytes", "100000").returncode == 1
    finally:
        server.close()


def test_invalid_utf8_label_values_are_an_error() -> None:
    body = b'flask_http_request_total{path="/caf\xe9"} 1\n'
    server = RawHTTPServer(canned("200 OK", body, Content_Type="text/plain; version=0.0.4"))
    try:
        findings = check_url(server.url)
        assert [f.severity for f in findings] == ["OK", "ERROR"]
        assert "not valid UTF-8 at byte 35" in findings[1].message
        with pytest.raises(ValueError, match="UTF-8"):
            scrape(server.url)
    finally:
        server.close()


# -- 17: B3's debug flag survives the hop ------------------------------------------------


@pytest.mark.parametrize(
    "inbound",
    [{"b3": f"{TRACE}-{SPAN}-d"}, {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-flags": "1"}],
)
def test_b3_debug_flag_is_forwarded_as_debug(inbound: dict[str, str]) -> None:
    app = Flask("svc")
    inst = instrument(app, service="svc", sampler="probabilistic:0", **IN_MEMORY)
    captured_spans(inst)
    sent: dict[str, str] = {}

    @app.route("/call")
    def call() -> str:
        from meshmetrics.tracing.client import forward_headers

        sent.update(forward_headers())
        return "ok"

    app.test_client().get("/call", headers=inbound)
    assert sent["x-b3-flags"] == "1"
    assert "x-b3-sampled" not in sent
    assert sent["b3"].split("-")[2] == "d"
    assert sent["traceparent"].endswith("-01")
