"""OTLP/HTTP to the exporter spec, and Zipkin v2 JSON to Zipkin's API, over real HTTP.

Each OpenTelemetry exporter variable is honoured (signal-specific over generic), bad
values are ConfigErrors at instrument(), 429/503 are retried as Retry-After says, and the
Zipkin spans validate against Zipkin's v2 span model.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from flask import Flask

from helpers import (
    RawHTTPServer,
    canned,
    serve_in_thread,
    trickle,
)
from meshmetrics import instrument
from meshmetrics.config import ConfigError, HttpEndpoint
from meshmetrics.diagnose.exposition import check_url
from meshmetrics.testing.receivers import OTLPCollector, ZipkinCollector
from meshmetrics.tracing.processor import BatchSpanProcessor, SpanCounters
from meshmetrics.tracing.sampling import ConstSampler
from meshmetrics.tracing.spans import MeshTracer

#: Zipkin's v2 span (openzipkin/zipkin-api, zipkin2-api.yaml, definitions Span, Endpoint,
#: Annotation, Tags), written as JSON Schema, strict about what meshmetrics sends.
HEX16 = {"type": "string", "pattern": "^[0-9a-f]{16}$"}
ZIPKIN_SPAN = {
    "type": "object",
    "required": ["traceId", "id"],
    "additionalProperties": False,
    "properties": {
        "traceId": {"type": "string", "pattern": "^([0-9a-f]{16}|[0-9a-f]{32})$"},
        "id": HEX16,
        "parentId": HEX16,
        "name": {"type": "string"},
        "kind": {"enum": ["CLIENT", "SERVER", "PRODUCER", "CONSUMER"]},
        "timestamp": {"type": "integer", "minimum": 1},
        "duration": {"type": "integer", "minimum": 1},
        "debug": {"type": "boolean"},
        "shared": {"type": "boolean"},
        "localEndpoint": {"$ref": "#/definitions/Endpoint"},
        "remoteEndpoint": {"$ref": "#/definitions/Endpoint"},
        "annotations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["timestamp", "value"],
                "additionalProperties": False,
                "properties": {"timestamp": {"type": "integer"}, "value": {"type": "string"}},
            },
        },
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "definitions": {
        "Endpoint": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "serviceName": {"type": "string"},
                "ipv4": {"type": "string"},
                "ipv6": {"type": "string"},
                "port": {"type": "integer"},
            },
        }
    },
}


@pytest.fixture
def otlp(collector: OTLPCollector) -> OTLPCollector:
    """The OTLP/HTTP collector of conftest, by the name these tests use."""
    return collector


def traced_app(**options: Any) -> tuple[Flask, Any]:
    app = Flask("svc")
    inst = instrument(app, **options)
    app.add_url_rule("/items/<n>", "item", lambda n: {"n": n})
    return app, inst


def flush(inst: Any) -> None:
    inst.tracing.tracer.close()


# -- Zipkin ------------------------------------------------------------------------------


def test_zipkin_spans_follow_zipkins_v2_model(zipkin: ZipkinCollector) -> None:
    downstream = Flask("downstream")
    downstream.add_url_rule("/x", "x", lambda: "ok")
    base, stop = serve_in_thread(downstream)
    app, inst = traced_app(service="front", tracing="zipkin", trace_endpoint=zipkin.endpoint)

    @app.route("/call")
    def call() -> str:
        return inst.session().get(f"{base}/x", timeout=5).text

    started = time.time()
    try:
        client = app.test_client()
        client.get(
            "/call", headers={"x-b3-flags": "1", "x-b3-traceid": "a" * 32, "x-b3-spanid": "b" * 16}
        )
        client.get("/items/1")
        flush(inst)
    finally:
        stop()
    spans = zipkin.wait_for(3)
    assert len(spans) == 3
    for span in zipkin.json_spans:
        jsonschema.validate(span, ZIPKIN_SPAN)
        assert span["localEndpoint"] == {"serviceName": "front"}
        assert started * 1e6 - 1e6 < span["timestamp"] < time.time() * 1e6  # microseconds
    by_kind = {s.get("kind"): s for s in zipkin.json_spans if s["name"] != "item"}
    server, client_span = by_kind["SERVER"], by_kind["CLIENT"]
    assert server["traceId"] == "a" * 32
    assert server["parentId"] == "b" * 16
    assert server["debug"] is True
    assert client_span["parentId"] == server["id"]
    assert client_span["tags"]["http.response.status_code"] == "200"
    assert server["tags"]["http.route"] == "/call"
    assert zipkin.requests[0][0] == "/api/v2/spans"
    assert zipkin.requests[0][1]["Content-Type"] == "application/json"
    text = client.get("/metrics").get_data(as_text=True)
    assert "meshmetrics_spans_exported_total 3.0" in text


def test_zipkin_rejection_is_an_export_error_not_an_export(zipkin: ZipkinCollector) -> None:
    zipkin.answers = [(400, {})]
    app, inst = traced_app(service="svc", tracing="zipkin", trace_endpoint=zipkin.endpoint)
    app.test_client().get("/items/1")
    flush(inst)
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'meshmetrics_spans_dropped_total{reason="export_error"} 1.0' in text
    assert "meshmetrics_spans_exported_total 0.0" in text


# -- OTLP: the exporter spec's variables ---------------------------------------------------


def test_signal_specific_variables_win_and_each_is_honoured(
    otlp: OTLPCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # generic: loses
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=generic,x-team=shop")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=s%20ecret")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orders")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,team=a%2Cb")
    app, inst = traced_app()
    config = inst.config
    assert (config.tracing, config.source_of("tracing")) == (
        "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    )
    assert config.service == "orders"
    assert config.trace_timeout == 2.5
    app.test_client().get("/items/1")
    flush(inst)
    (span,) = otlp.wait_for(1)
    path, headers = otlp.requests[0]
    assert path == "/v1/traces"
    assert headers["api-key"] == "s ecret"  # the traces variable replaces the generic one
    assert "x-team" not in headers
    assert headers["Content-Encoding"] == "gzip"
    assert span.service == "orders"
    assert otlp.resources[0]["deployment.environment"] == "prod"
    assert otlp.resources[0]["team"] == "a,b"
    assert span.tags["http.request.method"] == "GET"


def test_the_generic_endpoint_gets_the_traces_path(
    otlp: OTLPCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.base)
    _, inst = traced_app()
    assert inst.config.trace_endpoint.url == otlp.endpoint


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "http/json is not supported"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317", "port 4317 is OTLP/gRPC"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli", "gzip or none"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon", "timeout"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "no-equals-sign", "key=value"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/no/such/ca.pem", "PEM file"),
    ],
)
def test_bad_exporter_variables_are_config_errors(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    if variable != "OTEL_EXPORTER_OTLP_ENDPOINT":
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        instrument(Flask("svc"))
    assert info.value.source == variable
    assert says in str(info.value)


@pytest.mark.parametrize(
    ("variables", "backend"),
    [
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "off"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "off"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "zipkin"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
    ],
)
def test_sdk_switches_choose_the_backend(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], backend: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert instrument(Flask("svc")).config.tracing == backend


def test_429_and_503_are_retried_as_retry_after_says(otlp: OTLPCollector) -> None:
    otlp.answers = [(429, {"Retry-After": "1"}), (503, {})]
    app, inst = traced_app(tracing="otlp", trace_endpoint=otlp.endpoint, trace_timeout=5)
    app.test_client().get("/items/1")
    started = time.monotonic()
    flush(inst)
    assert len(otlp.wait_for(1)) == 1
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    assert len(otlp.requests) == 3
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert "meshmetrics_spans_exported_total 1.0" in text


def test_a_retry_past_the_budget_is_a_counted_drop(otlp: OTLPCollector) -> None:
    otlp.answers = [(429, {"Retry-After": "30"})]
    app, inst = traced_app(tracing="otlp", trace_endpoint=otlp.endpoint, trace_timeout=2)
    app.test_client().get("/items/1")
    started = time.monotonic()
    flush(inst)
    assert time.monotonic() - started < 2.0  # not waited for: it would pass the budget
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'meshmetrics_spans_dropped_total{reason="export_error"} 1.0' in text


def test_an_https_collector_verified_with_the_configured_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import http.server
    import ssl
    import threading

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    made = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
    )
    if made.returncode != 0:
        pytest.skip(f"openssl cannot make a certificate here: {made.stderr[-200:]!r}")
    received: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/v1/traces"
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(cert))
        app, inst = traced_app()
        app.test_client().get("/items/1")
        flush(inst)
        assert len(received) == 1
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_CERTIFICATE")  # the system CAs do not know it
        app2, inst2 = traced_app()
        app2.test_client().get("/items/1")
        flush(inst2)
        assert len(received) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_check_reports_tracing_health(otlp: OTLPCollector) -> None:

    def findings(endpoint: str) -> list[str]:
        app, inst = traced_app(tracing="otlp", trace_endpoint=endpoint)
        for i in range(3):
            app.test_client().get(f"/items/{i}")
        flush(inst)
        base, stop = serve_in_thread(app)
        try:
            return [f.line() for f in check_url(base) if "span" in f.message]
        finally:
            stop()

    healthy = findings(otlp.endpoint)
    assert any(line.startswith("OK") and "3 spans delivered" in line for line in healthy)
    refused = findings("http://127.0.0.1:9/v1/traces")
    assert any(line.startswith("WARN") and "(export_error)" in line for line in refused)


def test_check_names_spans_the_collector_rejected() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from meshmetrics.diagnose.tracing import tracing_health

    page = (
        "# TYPE meshmetrics_spans_exported counter\n"
        "meshmetrics_spans_exported_total 8\n"
        "# TYPE meshmetrics_spans_dropped counter\n"
        'meshmetrics_spans_dropped_total{reason="rejected"} 2\n'
    )
    lines = [f.line() for f in tracing_health("u", list(text_string_to_metric_families(page)))]
    assert any(line.startswith("WARN") and "2 spans dropped (rejected)" in line for line in lines)


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
