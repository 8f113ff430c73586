"""Regression tests of the second hardening round (issue 15): one test (or more) per item.

Each reproduces the attack or fault on 127.0.0.1 (real sockets where the behaviour
depends on them) and checks the fix; docs/reliability.md lists them with their figures.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import requests
from flask import Flask, request

from helpers import (
    IN_MEMORY,
    RawHTTPServer,
    canned,
    captured_spans,
    free_port,
    run_cli,
    serve_in_thread,
    trickle,
    wait_http,
)
from meshmetrics import instrument
from meshmetrics._http import BodyTooLargeError, DeadlineExceededError, fetch
from meshmetrics.config import ConfigError, HttpEndpoint
from meshmetrics.diagnose.exposition import check_url
from meshmetrics.diagnose.rates import scrape
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
    from meshmetrics.tracing.exporters import HttpSender, OTLPHTTPExporter

    return OTLPHTTPExporter("svc", HttpSender(HttpEndpoint(url), timeout=timeout), {})


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


# -- 4, 5, 8: the metrics port -----------------------------------------------------------


def config_token_required(view: Any) -> Any:
    """An auth decorator in the common style: the token lives in the app's config."""
    from functools import wraps

    from flask import current_app

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        expected = f"Bearer {current_app.config.get('METRICS_TOKEN')}"
        if request.headers.get("Authorization") != expected:
            return "unauthorized\n", 401
        return view(*args, **kwargs)

    return guarded


def test_metrics_port_auth_sees_the_apps_config_and_serves_no_static_files(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "secret.txt").write_text("do not serve me")
    monkeypatch.chdir(tmp_path)  # Flask's static folder is relative to the app's root
    port = free_port()
    app = Flask("svc", root_path=str(tmp_path))
    app.config["METRICS_TOKEN"] = "real-token"
    inst = instrument(
        app,
        service="svc",
        metrics_port=port,
        metrics_host="127.0.0.1",
        metrics_auth=config_token_required,
    )
    assert inst.start_metrics_server() is True
    metrics = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{metrics}/metrics")
        real = {"Authorization": "Bearer real-token"}
        assert requests.get(f"{metrics}/metrics", headers=real, timeout=5).status_code == 200
        none = {"Authorization": "Bearer None"}
        assert requests.get(f"{metrics}/metrics", headers=none, timeout=5).status_code == 401
        for path in ("/static/secret.txt", "/secret.txt"):
            answer = requests.get(f"{metrics}{path}", headers=real, timeout=5)
            assert answer.status_code == 404
            assert "do not serve me" not in answer.text
    finally:
        inst.uninstrument()


def test_metrics_port_binds_loopback_unless_in_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    laptop = instrument(Flask("laptop"), metrics_port=free_port())
    assert laptop.config.metrics_host == "127.0.0.1"
    assert laptop.config.source_of("metrics_host") == "default"
    try:
        assert laptop.start_metrics_server() is True
        server = laptop.metrics_server
        assert server is not None
        assert server._server is not None
        assert server._server.server_address[0] == "127.0.0.1"
    finally:
        laptop.uninstrument()
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    pod = instrument(Flask("pod"), metrics_port=free_port())
    assert pod.config.metrics_host == "0.0.0.0"
    assert "Kubernetes pod" in pod.config.source_of("metrics_host")
    pod.uninstrument()
    explicit = instrument(Flask("explicit"), metrics_port=free_port(), metrics_host="::1")
    assert explicit.config.metrics_host == "::1"
    explicit.uninstrument()


# -- 16: clear configuration errors --------------------------------------------------------


def _not_a_decorator(view: Any) -> None:
    return None


def _raising_decorator(view: Any) -> Any:
    raise TypeError("expected a token name")


@pytest.mark.parametrize(
    ("auth", "says"),
    [
        (_not_a_decorator, "it returned NoneType"),
        (_raising_decorator, "applying it raised TypeError: expected a token name"),
        (42, "a decorator"),
        ("os.path:sep", "a decorator"),
    ],
)
def test_metrics_auth_that_is_not_a_decorator_is_a_config_error(auth: Any, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        instrument(Flask("svc"), metrics_auth=auth)
    assert info.value.option == "metrics_auth"
    assert says in str(info.value)


def test_metrics_auth_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MESHMETRICS_METRICS_AUTH", "test_hardening:_not_a_decorator")
    with pytest.raises(ConfigError) as info:
        instrument(Flask("svc"))
    assert info.value.source == "MESHMETRICS_METRICS_AUTH"


def test_metrics_path_with_a_converter_never_reaches_a_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MESHMETRICS_METRICS_PATH", "/<x>")
    with pytest.raises(ConfigError) as info:
        instrument(Flask("svc"))
    assert (info.value.option, info.value.source) == ("metrics_path", "MESHMETRICS_METRICS_PATH")


def test_configuration_errors_end_at_the_users_line() -> None:
    import traceback

    with pytest.raises(ConfigError) as info:
        instrument(Flask("svc"), buckets="not numbers")  # the user's line
    frames = traceback.extract_tb(info.value.__traceback__)
    inside = [f for f in frames if "/meshmetrics/" in f.filename]
    assert len(inside) == 1
    assert inside[0].name == "instrument"
    assert frames[0].filename == __file__
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


# -- 14: manifests refuses bad input in one line, and writes all files or none ------------


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--dashboard-label", "a/b/c=1"], "--dashboard-label"),
        (["--dashboard-label", "Bad Key=1"], "--dashboard-label"),
        (["--dashboard-label", "grafana_dashboard=-1-"], "--dashboard-label"),
        (["--error-ratio", "nan"], "--error-ratio"),
        (["--error-ratio", "-1"], "--error-ratio"),
        (["--error-ratio", "7"], "--error-ratio"),
        (["--latency-p95", "inf"], "--latency-p95"),
        (["--latency-p95", "0"], "--latency-p95"),
        (["--latency-p95", "60"], "p95 latency threshold 60s"),
        (["--path", "/<path:p>"], "--path"),
    ],
)
def test_bad_manifest_options_exit_2_in_one_line_writing_nothing(
    tmp_path: Any, args: list[str], flag: str
) -> None:
    out = tmp_path / "k8s"
    result = run_cli("manifests", "--service", "svc", *args, "--out", str(out))
    assert result.returncode == 2
    assert flag in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()


def test_a_directory_in_place_of_an_output_file_changes_nothing(tmp_path: Any) -> None:
    out = tmp_path / "k8s"
    out.mkdir()
    (out / "svc-dashboard.yaml").write_text("old dashboard\n")
    (out / "svc-servicemonitor.yaml").mkdir()
    result = run_cli("manifests", "--service", "svc", "--out", str(out))
    assert result.returncode == 2
    assert "svc-servicemonitor.yaml: it exists and is not a regular file" in result.stderr
    assert (out / "svc-dashboard.yaml").read_text() == "old dashboard\n"
    assert sorted(p.name for p in out.iterdir()) == [
        "svc-dashboard.yaml",
        "svc-servicemonitor.yaml",
    ]


def test_a_write_failing_half_way_puts_every_file_back(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    out = tmp_path / "k8s"
    out.mkdir()
    for name in ("svc-servicemonitor.yaml", "svc-dashboard.yaml", "svc-rules.yaml"):
        (out / name).write_text(f"old {name}\n")
    real_replace = os.replace
    calls = {"n": 0}

    def flaky_replace(src: Any, dst: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    result = run_cli("manifests", "--service", "svc", "--out", str(out))
    assert result.returncode == 2
    assert "nothing was changed" in result.stderr
    for name in ("svc-servicemonitor.yaml", "svc-dashboard.yaml", "svc-rules.yaml"):
        assert (out / name).read_text() == f"old {name}\n"
    assert sorted(p.name for p in out.iterdir()) == [
        "svc-dashboard.yaml",
        "svc-rules.yaml",
        "svc-servicemonitor.yaml",
    ]


def test_check_against_a_file_that_is_not_utf8_shows_a_diff(tmp_path: Any) -> None:
    out = tmp_path / "k8s"
    assert run_cli("manifests", "--service", "svc", "--out", str(out)).returncode == 0
    (out / "svc-rules.yaml").write_bytes(b"\xff\xfe not utf-8\n")
    result = run_cli("manifests", "--service", "svc", "--check", str(out))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "svc-rules.yaml" in result.stdout
