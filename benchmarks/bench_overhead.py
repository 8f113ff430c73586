"""Per-request cost of metrics (and tracing) through the WSGI callable, variants side by side.

    python benchmarks/bench_overhead.py                  # median microseconds, all variants
    python benchmarks/bench_overhead.py --callgrind      # + instructions/request (valgrind)

Instructions come from two callgrind runs per variant (few and many requests): their
difference divided by the extra requests is the per-request count, free of start-up cost
and repeatable, unlike timings on a shared machine.  Timings are medians of interleaved
batches in one process, reported as ratios to bare Flask.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def make_app() -> Flask:
    app = Flask("bench")

    @app.route("/api/v1/user/<user_id>")
    def get_user(user_id: str) -> dict[str, str]:
        return {"user_id": user_id}

    return app


def bare() -> Flask:
    return make_app()


def pfe() -> Flask:
    from prometheus_client import CollectorRegistry
    from prometheus_flask_exporter import PrometheusMetrics

    app = make_app()
    PrometheusMetrics(app, registry=CollectorRegistry())
    return app


def minimal() -> Flask:
    """The least a before/after-request Histogram + Counter can do."""
    from flask import request
    from prometheus_client import CollectorRegistry, Counter, Histogram

    app = make_app()
    registry = CollectorRegistry()
    hist = Histogram("d_seconds", "d", ("method", "path", "status"), registry=registry)
    count = Counter("r_total", "r", ("method", "path", "status"), registry=registry)

    @app.before_request
    def start() -> None:
        request.environ["t0"] = time.perf_counter()

    @app.after_request
    def stop(response: Any) -> Any:
        labels = (request.method, request.url_rule.rule, str(response.status_code))  # type: ignore[union-attr]
        hist.labels(*labels).observe(time.perf_counter() - request.environ["t0"])
        count.labels(*labels).inc()
        return response

    return app


def meshmetrics() -> Flask:
    from meshmetrics import instrument

    app = make_app()
    instrument(app, service="bench")
    return app


#: A UDP port nobody listens on: datagrams are sent (and counted) but go nowhere.
AGENT = ("127.0.0.1", 6999)
FINISHERS: list[Callable[[], None]] = []


def pfe_opentracing(sampled: bool) -> Flask:
    """prometheus-flask-exporter + Flask-OpenTracing + jaeger-client, as the course wired them."""
    from flask_opentracing import FlaskTracing
    from jaeger_client import Config

    app = pfe()
    config = Config(
        config={
            "sampler": {"type": "const", "param": 1 if sampled else 0},
            "local_agent": {"reporting_host": AGENT[0], "reporting_port": AGENT[1]},
            # large enough that no span is dropped: the cost of sending them all
            "reporter_queue_size": 1_000_000,
            "logging": False,
        },
        service_name="bench",
        validate=True,
    )
    tracer = config.new_tracer()
    FlaskTracing(tracer, True, app)

    def finish() -> None:
        tracer.close()
        time.sleep(2)  # let the reporter thread send what it holds

    FINISHERS.append(finish)
    return app


def meshmetrics_tracing(sampled: bool) -> Flask:
    from meshmetrics import instrument

    app = make_app()
    inst = instrument(
        app,
        service="bench",
        tracing="jaeger",
        trace_endpoint=f"{AGENT[0]}:{AGENT[1]}",
        sampler="const:1" if sampled else "const:0",
        span_queue_size=1_000_000,
    )
    assert inst.tracing is not None
    tracing = inst.tracing
    FINISHERS.append(lambda: tracing.tracer.close())
    return app


#: Where the OTLP variants export: set by the parent for the callgrind runs (a collector
#: outside the measured process), else a collector started in this process.
OTLP_ENDPOINTS = {"http": "BENCH_OTLP_HTTP_ENDPOINT", "grpc": "BENCH_OTLP_GRPC_ENDPOINT"}
_RECEIVERS: list[Any] = []


def start_collector(protocol: str) -> str:
    """A real OTLP collector (HTTP or gRPC) on 127.0.0.1 that decodes and keeps nothing."""
    from meshmetrics.testing.receivers import OTLPCollector, OTLPGrpcCollector

    receiver = OTLPGrpcCollector() if protocol == "grpc" else OTLPCollector()
    receiver.spans = _Discard()
    _RECEIVERS.append(receiver)
    return str(receiver.endpoint)


class _Discard(list[Any]):
    """A span list that keeps nothing (a long benchmark would hold every span)."""

    def extend(self, items: Any) -> None:
        pass


def meshmetrics_otlp(protocol: str) -> Flask:
    """meshmetrics exporting every span over OTLP/HTTP or OTLP/gRPC to a real collector."""
    from meshmetrics import instrument

    endpoint = os.environ.get(OTLP_ENDPOINTS[protocol]) or start_collector(protocol)
    app = make_app()
    inst = instrument(
        app,
        service="bench",
        tracing="otlp",
        trace_protocol="grpc" if protocol == "grpc" else "http/protobuf",
        trace_endpoint=endpoint,
        span_queue_size=1_000_000,
    )
    assert inst.tracing is not None
    tracing = inst.tracing
    FINISHERS.append(lambda: tracing.tracer.shutdown(60))
    return app


def _otel_sdk() -> Any:
    """The OpenTelemetry SDK as an application sets it up: every trace sampled, a batch
    processor in front of an exporter that only counts (no network, so the figure is the
    SDK's and the instrumentation's own cost)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Counting(SpanExporter):
        def __init__(self) -> None:
            self.spans = 0

        def export(self, spans: Any) -> SpanExportResult:
            self.spans += len(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Counting(), max_queue_size=1_000_000))
    trace.set_tracer_provider(provider)
    FINISHERS.append(provider.shutdown)
    return provider


def otel_flask() -> Flask:
    """OpenTelemetry's Flask instrumentation and SDK (metrics: prometheus-flask-exporter)."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    _otel_sdk()
    app = pfe()
    FlaskInstrumentor().instrument_app(app)
    return app


def meshmetrics_otel() -> Flask:
    """meshmetrics with tracing=otel: its server span made through the OpenTelemetry SDK."""
    from meshmetrics import instrument

    _otel_sdk()
    app = make_app()
    inst = instrument(app, service="bench")
    assert inst.config.tracing == "otel"
    return app


VARIANTS: dict[str, Callable[[], Flask]] = {
    "bare": bare,
    "pfe": pfe,
    "minimal": minimal,
    "meshmetrics": meshmetrics,
    "pfe+opentracing-unsampled": lambda: pfe_opentracing(False),
    "pfe+opentracing-sampled": lambda: pfe_opentracing(True),
    "meshmetrics+tracing-unsampled": lambda: meshmetrics_tracing(False),
    "meshmetrics+tracing-sampled": lambda: meshmetrics_tracing(True),
    "pfe+otel-flask-sampled": otel_flask,
    "meshmetrics+otel-sampled": meshmetrics_otel,
    "meshmetrics+otlp-http-sampled": lambda: meshmetrics_otlp("http"),
    "meshmetrics+otlp-grpc-sampled": lambda: meshmetrics_otlp("grpc"),
}


def environ(i: int) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": f"/api/v1/user/{i % 100}",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8080",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def _start_response(status: str, headers: Any, exc_info: Any = None) -> None:
    assert status.startswith("200"), status


def drive(app: WsgiApp, n: int) -> None:
    for i in range(n):
        for _ in app(environ(i), _start_response):
            pass


def run_requests(variant: str, n: int) -> None:
    """Worker mode: build the variant, warm it, serve ``n`` requests."""
    app = VARIANTS[variant]()
    drive(app, 50)
    drive(app, n)
    for finish in FINISHERS:
        finish()


def callgrind_instructions(variant: str, n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--worker",
                variant,
                str(n),
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), flags=re.M)
        assert match, "no totals in callgrind output"
        return int(match.group(1))


def per_request_instructions(variant: str, few: int = 200, many: int = 1200) -> float:
    return (callgrind_instructions(variant, many) - callgrind_instructions(variant, few)) / (
        many - few
    )


def median_microseconds(
    variants: list[str], batches: int = 15, batch: int = 400
) -> dict[str, float]:
    apps = {name: VARIANTS[name]() for name in variants}
    for app in apps.values():
        drive(app, 200)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(batches):  # interleaved so machine noise hits every variant alike
        for name, app in apps.items():
            started = time.perf_counter()
            drive(app, batch)
            times[name].append((time.perf_counter() - started) / batch * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", nargs=2, metavar=("VARIANT", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--callgrind", action="store_true", help="also count instructions")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--no-timing", action="store_true", help="instructions only")
    args = parser.parse_args()
    if args.worker:
        run_requests(args.worker[0], int(args.worker[1]))
        return
    variants = args.variants.split(",")
    micros = (
        {v: float("nan") for v in variants} if args.no_timing else median_microseconds(variants)
    )
    if args.callgrind:  # the measured processes export to collectors outside them
        for protocol, variable in OTLP_ENDPOINTS.items():
            if any(f"otlp-{protocol}" in v for v in variants):
                os.environ[variable] = start_collector(protocol)
    instructions = {v: per_request_instructions(v) for v in variants} if args.callgrind else {}
    for finish in FINISHERS:  # export what is queued while the collectors still listen
        finish()
    for receiver in _RECEIVERS:
        receiver.close()
    from importlib.metadata import version

    print(f"Flask {version('flask')}, Python {sys.version.split()[0]}, one process, WSGI callable")
    print(
        "| variant | median µs/request | ratio to bare | instructions/request | added over bare |"
    )
    print("|---|---|---|---|---|")
    for v in variants:
        ins = instructions.get(v)
        added = (
            f"{(ins - instructions['bare']) / 1000:+,.0f}k"
            if ins and "bare" in instructions
            else ""
        )
        print(
            f"| {v} | {micros[v]:.1f} | {micros[v] / micros.get('bare', micros[v]):.2f} | "
            f"{f'{ins / 1000:,.0f}k' if ins else ''} | {added} |"
        )


if __name__ == "__main__":
    main()
