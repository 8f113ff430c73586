"""OTLP over gRPC (issue 22 item 5): the same behaviour as OTLP/HTTP, against a real grpcio
server on 127.0.0.1 that decodes the spans: variables, metadata, gzip, retries by the
spec's code table, RetryInfo, partial success, deadlines, TLS with a CA, the missing
extra at configuration, and a forked gunicorn worker exporting.  Bounds are counts."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from helpers import PYTHON, TESTS, Server, gunicorn_argv, settled
from meshmetrics import instrument
from meshmetrics.config import ConfigError, MissingExtraError
from meshmetrics.testing.receivers import GrpcAnswer, OTLPGrpcCollector


@pytest.fixture
def grpc_collector() -> Iterator[OTLPGrpcCollector]:
    receiver = OTLPGrpcCollector()
    yield receiver
    receiver.close()


def traced_app(**options: Any) -> tuple[Flask, Any]:
    app = Flask("svc")
    inst = instrument(app, **options)
    app.add_url_rule("/items/<n>", "item", lambda n: {"n": n})
    return app, inst


def grpc_app(endpoint: str, **options: Any) -> tuple[Flask, Any]:
    return traced_app(tracing="otlp", trace_protocol="grpc", trace_endpoint=endpoint, **options)


def requests_then_flush(app: Flask, inst: Any, count: int = 1) -> str:
    client = app.test_client()
    for i in range(count):
        client.get(f"/items/{i}")
    # shutdown, not close(): close() returns once the queue is empty, while the last
    # batch may still be in flight (retrying)
    inst.tracing.tracer.shutdown(30)
    return client.get("/metrics").get_data(as_text=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_otlp_variables_select_grpc_and_each_is_honoured(
    grpc_collector: OTLPGrpcCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", grpc_collector.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "API-Key=s%20ecret,x-team=shop")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "4000")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orders")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod")
    app, inst = traced_app()
    assert (inst.config.tracing, inst.config.trace_protocol) == ("otlp", "grpc")
    assert inst.config.trace_endpoint.url == grpc_collector.endpoint  # no /v1/traces added
    text = requests_then_flush(app, inst, 3)
    spans = grpc_collector.wait_for(3)
    assert sorted(s.tags["url.path"] for s in spans) == ["/items/0", "/items/1", "/items/2"]
    assert {s.service for s in spans} == {"orders"}
    assert grpc_collector.resources[0]["deployment.environment"] == "prod"
    assert grpc_collector.calls[0]["api-key"] == "s ecret"  # a header, as gRPC metadata
    assert grpc_collector.calls[0]["x-team"] == "shop"
    assert "meshmetrics_spans_exported_total 3.0" in text


def test_unavailable_then_ok_is_retried_and_exported(grpc_collector: OTLPGrpcCollector) -> None:
    grpc_collector.answers = [GrpcAnswer("UNAVAILABLE"), GrpcAnswer("UNAVAILABLE")]
    app, inst = grpc_app(grpc_collector.endpoint, trace_timeout=10)
    text = requests_then_flush(app, inst)
    assert len(grpc_collector.calls) == 3
    assert len(grpc_collector.wait_for(1)) == 1
    assert "meshmetrics_spans_exported_total 1.0" in text


@pytest.mark.parametrize("code", ["INVALID_ARGUMENT", "UNAUTHENTICATED", "RESOURCE_EXHAUSTED"])
def test_codes_the_spec_says_not_to_retry_are_one_call_and_a_counted_drop(
    grpc_collector: OTLPGrpcCollector, code: str
) -> None:
    grpc_collector.default_answer = GrpcAnswer(code)
    app, inst = grpc_app(grpc_collector.endpoint, trace_timeout=5)
    text = requests_then_flush(app, inst)
    assert len(grpc_collector.calls) == 1
    assert 'meshmetrics_spans_dropped_total{reason="export_error"} 1.0' in text


def test_resource_exhausted_with_retry_info_is_retried(grpc_collector: OTLPGrpcCollector) -> None:
    grpc_collector.answers = [GrpcAnswer("RESOURCE_EXHAUSTED", retry_delay=0.2)]
    app, inst = grpc_app(grpc_collector.endpoint, trace_timeout=10)
    text = requests_then_flush(app, inst)
    assert len(grpc_collector.calls) == 2
    assert "meshmetrics_spans_exported_total 1.0" in text


@pytest.mark.parametrize("delay", [0.0, None])
def test_a_zero_retry_delay_cannot_make_a_call_storm(
    grpc_collector: OTLPGrpcCollector, delay: float | None
) -> None:
    """Always UNAVAILABLE (with RetryInfo 0, or none): a 3 s budget holds 3 calls at the
    0.5 s, 1 s, 2 s back-off."""
    grpc_collector.default_answer = GrpcAnswer("UNAVAILABLE", retry_delay=delay)
    app, inst = grpc_app(grpc_collector.endpoint, trace_timeout=3)
    text = requests_then_flush(app, inst)
    assert 1 <= len(grpc_collector.calls) <= 4
    assert 'meshmetrics_spans_dropped_total{reason="export_error"} 1.0' in text


def test_a_long_retry_delay_is_honoured_past_the_budget(grpc_collector: OTLPGrpcCollector) -> None:
    grpc_collector.default_answer = GrpcAnswer("UNAVAILABLE", retry_delay=60)
    app, inst = grpc_app(grpc_collector.endpoint, trace_timeout=3)
    text = requests_then_flush(app, inst)
    assert len(grpc_collector.calls) == 1
    assert 'meshmetrics_spans_dropped_total{reason="export_error"} 1.0' in text


def test_partial_success_counts_rejected_spans_and_is_not_retried(
    grpc_collector: OTLPGrpcCollector,
) -> None:
    grpc_collector.default_answer = GrpcAnswer(rejected=2, message="2 spans too old")
    app, inst = grpc_app(grpc_collector.endpoint)
    client = app.test_client()
    for i in range(5):
        client.get(f"/items/{i}")
    inst.tracing.tracer.shutdown(30)
    text = client.get("/metrics").get_data(as_text=True)
    assert len(grpc_collector.calls) == 1
    assert "meshmetrics_spans_exported_total 3.0" in text
    assert 'meshmetrics_spans_dropped_total{reason="rejected"} 2.0' in text


def test_a_slow_collector_is_cut_at_the_budget(grpc_collector: OTLPGrpcCollector) -> None:
    grpc_collector.default_answer = GrpcAnswer(pause=5)
    app, inst = grpc_app(grpc_collector.endpoint, trace_timeout=1)
    text = requests_then_flush(app, inst)
    assert len(grpc_collector.calls) == 1  # DEADLINE_EXCEEDED at the budget: no time left
    assert 'meshmetrics_spans_dropped_total{reason="export_error"} 1.0' in text


def test_a_refusing_collector_fails_no_request_and_counts_the_drop() -> None:
    app, inst = grpc_app(f"http://127.0.0.1:{free_port()}", trace_timeout=2)
    text = requests_then_flush(app, inst, 2)
    assert 'meshmetrics_spans_dropped_total{reason="export_error"} 2.0' in text
    assert "meshmetrics_spans_exported_total 0.0" in text


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
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
            *subject,
            *files,
        ],
        capture_output=True,
    )
    assert made.returncode == 0, made.stderr[-300:]
    return key, cert


def test_tls_with_the_configured_ca(tmp_path: Path) -> None:
    key, cert = _certificate(tmp_path)
    collector = OTLPGrpcCollector(tls=(key.read_bytes(), cert.read_bytes()))
    try:
        app, inst = grpc_app(collector.endpoint, trace_certificate=str(cert))
        text = requests_then_flush(app, inst)
        assert "meshmetrics_spans_exported_total 1.0" in text
        assert len(collector.wait_for(1)) == 1
        # the system CAs do not know it: the handshake fails, counted
        app, inst = grpc_app(collector.endpoint, trace_timeout=2)
        text = requests_then_flush(app, inst)
        assert 'meshmetrics_spans_dropped_total{reason="export_error"} 1.0' in text
        assert len(collector.spans) == 1
        # http:// is plain text, which a TLS-only collector refuses
        plain = collector.endpoint.replace("https://", "http://")
        app, inst = grpc_app(plain, trace_timeout=2, trace_certificate=str(cert))
        assert 'reason="export_error"} 1.0' in requests_then_flush(app, inst)
    finally:
        collector.close()


@pytest.mark.parametrize(
    ("insecure", "scheme"), [("true", "http"), ("false", "https"), (None, "https")]
)
def test_insecure_decides_tls_only_for_an_endpoint_without_scheme(
    monkeypatch: pytest.MonkeyPatch, insecure: str | None, scheme: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")
    if insecure is not None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", insecure)
    assert instrument(Flask("svc")).config.trace_endpoint.url == f"{scheme}://collector:4317"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert instrument(Flask("svc")).config.trace_endpoint.url == "http://collector:4317"


@pytest.mark.parametrize(
    ("variables", "says"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "port 4318 is OTLP/HTTP"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "X!y=1"}, "gRPC metadata"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "grpc-timeout=1"}, "gRPC metadata"),
        ({"OTEL_EXPORTER_OTLP_INSECURE": "maybe"}, "true or false"),
    ],
)
def test_bad_grpc_settings_are_config_errors(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], says: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        instrument(Flask("svc"))
    assert says in str(info.value)


def test_the_default_grpc_endpoint_is_the_collectors_4317(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    assert instrument(Flask("svc")).config.trace_endpoint.url == "http://localhost:4317"


def test_without_the_extra_the_error_is_at_configuration_and_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "grpc", None)  # import grpc -> ImportError
    with pytest.raises(MissingExtraError) as info:
        grpc_app("http://127.0.0.1:4317")
    assert info.value.extra == "otlp-grpc"
    assert "pip install 'meshmetrics[otlp-grpc]'" in str(info.value)
    assert info.value.option == "trace_protocol"


# -- fork safety ----------------------------------------------------------------------------


@pytest.mark.slow
def test_preloaded_gunicorn_workers_export_over_grpc(
    start_server: Callable[..., Server], grpc_collector: OTLPGrpcCollector, tmp_path: Path
) -> None:
    """``--preload``: the master instruments the app (and builds the exporter), the
    forked workers open their own channels and export."""
    argv = gunicorn_argv("apps.service:app", 2)
    argv.insert(argv.index("-c"), "--preload")
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": grpc_collector.endpoint,
    }
    server = start_server(argv, env=env)
    sent = 30
    pids = set()
    for _ in range(sent):
        with requests.Session() as session:
            pids.add(session.get(f"{server.base}/api/v1/items/pid", timeout=10).text)

    # The collector also gets the readiness probe's spans: wait for the requests' own.
    def pid_spans() -> list[Any]:
        return [s for s in grpc_collector.spans if s.operation == "items.pid"]

    assert settled(lambda: len(pid_spans()), sent) == sent
    spans = pid_spans()
    assert len({s.span_id for s in spans}) == sent
    server.stop()


def test_a_process_forked_after_exporting_opens_its_own_channel(
    grpc_collector: OTLPGrpcCollector,
) -> None:
    """The parent exported (its channel exists) before ``fork()``: the child exports
    through a channel of its own, and the parent keeps exporting through its one."""
    code = f"""
import os, sys, time
from flask import Flask
from meshmetrics import instrument
app = Flask('forking')
inst = instrument(app, service='forking', tracing='otlp', trace_protocol='grpc',
                  trace_endpoint='{grpc_collector.endpoint}')
app.add_url_rule('/', 'index', lambda: 'ok')
client = app.test_client()

def exported(count):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if f'meshmetrics_spans_exported_total {{count}}.0' in client.get('/metrics').text:
            return True
        time.sleep(0.05)
    return False

client.get('/')
assert exported(1)  # the parent's channel exists now
pid = os.fork()
client.get('/')
ok = exported(2)
inst.tracing.tracer.shutdown(10)
if pid == 0:
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status) or (0 if ok else 4))
"""
    subprocess.run([PYTHON, "-c", code], cwd=TESTS, check=True, timeout=60)
    assert len(grpc_collector.wait_for(3, 10)) == 3


class ByteCountingRelay:
    """A TCP relay on 127.0.0.1 counting the bytes a client sends through it."""

    def __init__(self, port: int, listen: int = 0) -> None:
        import threading

        self.sent = 0
        self._target = ("127.0.0.1", port)
        self._listener = socket.create_server(("127.0.0.1", listen), reuse_port=False)
        self.port = self._listener.getsockname()[1]
        self._threads = threading
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            self._threads.Thread(
                target=self._pipe, args=(client, upstream, True), daemon=True
            ).start()
            self._threads.Thread(
                target=self._pipe, args=(upstream, client, False), daemon=True
            ).start()

    def _pipe(self, source: socket.socket, target: socket.socket, count: bool) -> None:
        try:
            while data := source.recv(65536):
                if count:
                    self.sent += len(data)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                sock.close()

    def close(self) -> None:
        self._listener.close()


def test_gzip_compresses_the_batch_on_the_wire(grpc_collector: OTLPGrpcCollector) -> None:
    sent = {}
    for compression in ("none", "gzip"):
        relay = ByteCountingRelay(grpc_collector.port)
        try:
            app, inst = grpc_app(f"http://127.0.0.1:{relay.port}", trace_compression=compression)
            requests_then_flush(app, inst, 50)  # 50 alike spans: very compressible
            sent[compression] = relay.sent
        finally:
            relay.close()
    assert len(grpc_collector.wait_for(100)) == 100
    assert sent["gzip"] < sent["none"] / 2, sent


@pytest.mark.parametrize(
    "message",
    [
        "bad span\nWARNING meshmetrics: forged line\r\x1b[2J\u2028end",
        "x" * 15000,  # under grpc's 16 KiB metadata limit: delivered whole
    ],
)
def test_a_collectors_status_message_stays_one_bounded_log_line(
    grpc_collector: OTLPGrpcCollector, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The status message is the peer's text: the warning it ends up in is one line
    without control characters, and bounded (as the partial-success message is)."""
    grpc_collector.default_answer = GrpcAnswer("INVALID_ARGUMENT", message=message)
    app, inst = grpc_app(grpc_collector.endpoint, trace_timeout=5)
    with caplog.at_level("WARNING", logger="meshmetrics"):
        text = requests_then_flush(app, inst)
    assert 'meshmetrics_spans_dropped_total{reason="export_error"} 1.0' in text
    warnings = [r.getMessage() for r in caplog.records if "span export failed" in r.getMessage()]
    assert len(warnings) == 1, caplog.records
    assert warnings[0].isprintable(), repr(warnings[0])
    assert len(warnings[0]) < 1000


@pytest.mark.slow
def test_a_collector_back_after_an_outage_receives_the_next_batches() -> None:
    """grpcio's channel backs off reconnecting on its own (1 s growing by 1.6 to 120 s):
    after a 30 s outage the exporter kept failing fast with UNAVAILABLE for some 20 s
    while the collector was back (the HTTP exporter connects on each attempt).  Our
    retries own the back-off: the channel is ready to reconnect by our next attempt."""
    from meshmetrics.config import HttpEndpoint
    from meshmetrics.tracing.otlp_grpc import OTLPGrpcExporter

    port = free_port()
    exporter = OTLPGrpcExporter("svc", HttpEndpoint(f"http://127.0.0.1:{port}"), {}, timeout=1)
    failed = 0
    outage = time.monotonic() + 30  # the collector is down for 30 s, spans keep coming
    while time.monotonic() < outage:
        with pytest.raises(OSError, match=r"UNAVAILABLE|DEADLINE_EXCEEDED|no success"):
            exporter.export([])
        failed += 1
    collector = OTLPGrpcCollector()
    relay = ByteCountingRelay(collector.port, listen=port)  # the collector is back
    try:
        outcomes = []
        for _ in range(4):
            try:
                exporter.export([])
            except OSError as exc:
                outcomes.append(type(exc).__name__)
            else:
                outcomes.append("ok")
                break
        assert outcomes[-1] == "ok", outcomes
    finally:
        exporter.shutdown()
        relay.close()
        collector.close()
    assert failed > 0


def test_a_binary_metadata_key_is_refused_at_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """gRPC sends a ``-bin`` key's value as bytes: grpcio raises ``TypeError`` on every
    Export with the string a header value is, so each batch was dropped as an export error
    while the configuration had been accepted: such keys are refused at configuration."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-token-bin=abc")
    with pytest.raises(ConfigError) as info:
        instrument(Flask("svc"))
    assert "trace_headers" in str(info.value)
    assert "-bin" in str(info.value)


class FaultyPeer:
    """A TCP server on 127.0.0.1 that is no gRPC server: it accepts and stays silent, or
    answers each connection with an HTTP/1.1 400.  Counts the connections."""

    def __init__(self, answer: bytes | None) -> None:
        import threading

        self.connections = 0
        self._answer = answer
        self._held: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            if self._answer is None:
                self._held.append(conn)  # never a byte back
                continue
            try:
                conn.recv(65536)
                conn.sendall(self._answer)
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self._listener.close()
        for conn in self._held:
            conn.close()


@pytest.mark.parametrize(
    ("answer", "scheme", "says"),
    [
        (None, "http", "DEADLINE_EXCEEDED"),  # accepts, never speaks HTTP/2
        (None, "https", "DEADLINE_EXCEEDED"),  # TLS to a port that never answers
        (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "http", "UNAVAILABLE"),
        (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "https", "UNAVAILABLE"),
    ],
)
def test_a_peer_that_is_no_grpc_server_costs_one_budget_and_a_few_connections(
    answer: bytes | None, scheme: str, says: str
) -> None:
    """Each export ends within its budget with an error naming the status; the
    reconnects it causes are counted, not a storm."""
    from meshmetrics.config import HttpEndpoint
    from meshmetrics.tracing.exporters import ExportRejectedError
    from meshmetrics.tracing.otlp_grpc import OTLPGrpcExporter

    peer = FaultyPeer(answer)
    exporter = OTLPGrpcExporter(
        "svc", HttpEndpoint(f"{scheme}://127.0.0.1:{peer.port}"), {}, timeout=2
    )
    try:
        with pytest.raises(ExportRejectedError, match=says) as failed:
            exporter.export([])
        assert str(failed.value).isprintable()
        assert 1 <= peer.connections <= 6, peer.connections
    finally:
        exporter.shutdown()
        peer.close()
