"""The variants of ``bench_mix.py``: bare Flask, meshmetrics' configurations and its peers,
each the mix's app (``_mix_app.py``) set up as an application would set it up.

Each variant builds its app given the endpoint of its span sink (a receiver in another
process, see ``_mix_sinks.py``) and returns what flushes every span before the process
ends, so the export work is in the count.  Exporter queues are large enough that no span is
dropped; ``bench_mix.py`` checks the sink received every one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _mix_app import make_app
from flask import Flask

SERVICE = "bench"
#: Queue sizes that hold every span of a run (no drop makes a variant look cheap).
QUEUE = 1_000_000


@dataclass
class Built:
    """A variant's app; what to call before the process exits (flush every span); for an
    exporter inside the process, how many spans it exported; and what exports the spans
    queued so far and waits until they are sent (after the warm-up: its spans are not
    exported by the measured requests, by a number that would depend on timing)."""

    app: Flask
    finish: Callable[[], None] = lambda: None
    exported: Callable[[], int] | None = None
    drain: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class Variant:
    """One configuration measured: its table label, how to build it, the sink its spans go
    to (``jaeger``, ``otlp-http``, ``otlp-grpc``, ``zipkin``), whether the mix's requests
    arrive sampled, the mix (``unmatched``: all 404s), the app's extra routes, and the
    environment its process needs before any import."""

    label: str
    build: Callable[[str | None], Built]
    sink: str | None = None
    sampled: bool = True
    unmatched: bool = False
    extra_routes: int = 0
    #: Environment variables naming a fresh directory, set by the parent for each run (a
    #: process reads them at import time, before the variant is built).
    fresh_dirs: tuple[str, ...] = ()
    #: Needs a process of its own (global state: the OpenTelemetry SDK, multiprocess mode).
    isolated: bool = False
    #: Spans the variant exports per request served (0: none expected).
    spans_per_request: int = 0


def bare(extra_routes: int = 0) -> Callable[[str | None], Built]:
    return lambda _: Built(make_app(extra_routes))


def pfe_app() -> Flask:
    from prometheus_client import CollectorRegistry
    from prometheus_flask_exporter import PrometheusMetrics

    app = make_app()
    PrometheusMetrics(app, registry=CollectorRegistry())
    return app


def minimal(_: str | None) -> Built:
    """The least a before/after-request Histogram + Counter can do (a floor, not a peer)."""
    import time

    from flask import request
    from prometheus_client import CollectorRegistry, Counter, Histogram

    app = make_app()
    registry = CollectorRegistry()
    labels = ("method", "path", "status")
    hist = Histogram("d_seconds", "d", labels, registry=registry)
    count = Counter("r_total", "r", labels, registry=registry)

    @app.before_request
    def start() -> None:
        request.environ["t0"] = time.perf_counter()

    @app.after_request
    def stop(response: Any) -> Any:
        rule = request.url_rule
        values = (request.method, rule.rule if rule else "<unmatched>", str(response.status_code))
        hist.labels(*values).observe(time.perf_counter() - request.environ["t0"])
        count.labels(*values).inc()
        return response

    return Built(app)


def meshmetrics(extra_routes: int = 0, **options: Any) -> Callable[[str | None], Built]:
    """meshmetrics with ``options``; a tracing backend exports to the sink's endpoint."""

    def build(endpoint: str | None) -> Built:
        from meshmetrics import instrument

        app = make_app(extra_routes)
        sink = {} if endpoint is None else {"trace_endpoint": endpoint}
        inst = instrument(app, service=SERVICE, **options, **sink)
        tracing = inst.tracing
        if tracing is None or options.get("tracing") == "otel":
            return Built(app)
        tracer = tracing.tracer
        return Built(app, lambda: tracer.shutdown(120), drain=tracer.close)

    return build


def pfe_opentracing(endpoint: str | None) -> Built:
    """prometheus-flask-exporter + Flask-OpenTracing + jaeger-client, as the course wired
    them, with B3 propagation (joining the trace Envoy started) and every trace sampled."""
    import time

    from flask_opentracing import FlaskTracing
    from jaeger_client import Config

    assert endpoint is not None
    host, port = endpoint.rsplit(":", 1)
    app = pfe_app()
    config = Config(
        config={
            "sampler": {"type": "const", "param": 1},
            "local_agent": {"reporting_host": host, "reporting_port": int(port)},
            "propagation": "b3",
            # large enough that no span is dropped (its default of 100 drops most)
            "reporter_queue_size": QUEUE,
            "logging": False,
        },
        service_name=SERVICE,
        validate=True,
    )
    tracer = config.new_tracer()
    FlaskTracing(tracer, True, app)

    def finish() -> None:
        done = tracer.close()  # resolved once the reporter sent its whole queue
        while not done.done():
            time.sleep(0.05)

    def drain() -> None:
        time.sleep(0.3)  # reported spans reach the queue through the reporter's IO loop
        while tracer.reporter.queue._unfinished_tasks:  # done when sent
            time.sleep(0.05)

    return Built(app, finish, drain=drain)


class _Counting:
    """An OpenTelemetry SDK span exporter that only counts (no network)."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def sdk_exporter() -> str:
    """What the OpenTelemetry variants export with: the SDK's own OTLP/HTTP exporter when
    opentelemetry-exporter-otlp-proto-http is installed, else an in-process counter."""
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
    except ImportError:
        return "counting"
    return "otlp-http"


def otel_sdk(endpoint: str | None) -> Callable[[Flask], Built]:
    """The OpenTelemetry SDK as an application sets it up for Istio: a ``TracerProvider``
    with a ``BatchSpanProcessor`` (queue large enough for every span) in front of the OTLP/
    HTTP exporter (or a counter), W3C and B3 propagators.  Returns what makes the variant
    of an app instrumented since."""
    from opentelemetry import propagate, trace
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.b3 import B3MultiFormat
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagate.set_global_textmap(
        CompositePropagator(
            [TraceContextTextMapPropagator(), W3CBaggagePropagator(), B3MultiFormat()]
        )
    )
    exported: Callable[[], int] | None = None
    if sdk_exporter() == "otlp-http" and endpoint is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter: Any = OTLPSpanExporter(endpoint=endpoint)
    else:
        exporter = counter = _Counting()
        exported = lambda: counter.spans  # noqa: E731
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_queue_size=QUEUE, max_export_batch_size=512)
    )
    trace.set_tracer_provider(provider)

    def drain() -> None:
        provider.force_flush(60_000)

    return lambda app: Built(app, provider.shutdown, exported, drain)


def otel_flask(endpoint: str | None) -> Built:
    """OpenTelemetry's Flask instrumentation and SDK (metrics: prometheus-flask-exporter)."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    sdk = otel_sdk(endpoint)
    app = pfe_app()
    FlaskInstrumentor().instrument_app(app)
    return sdk(app)


def meshmetrics_otel(endpoint: str | None) -> Built:
    """meshmetrics with ``tracing="otel"``: its server span made through the SDK."""
    from meshmetrics import instrument

    sdk = otel_sdk(endpoint)
    app = make_app()
    instrument(app, service=SERVICE, tracing="otel")
    return sdk(app)


#: Sampled meshmetrics tracing: variant -> (label, sink, options beside the backend's).
EXPORTS = {
    "jaeger": ("Jaeger UDP", "jaeger", {"tracing": "jaeger"}),
    "otlp-http": ("OTLP/HTTP", "otlp-http", {"tracing": "otlp"}),
    "otlp-grpc": ("OTLP/gRPC", "otlp-grpc", {"tracing": "otlp", "trace_protocol": "grpc"}),
    "zipkin": ("Zipkin", "zipkin", {"tracing": "zipkin"}),
}


def _exporting(label: str, sink: str, options: dict[str, Any]) -> Variant:
    return Variant(
        f"meshmetrics + tracing sampled, {label} export",
        meshmetrics(**options, sampler="const:1", span_queue_size=QUEUE),
        sink=sink,
        spans_per_request=1,
    )


ROUTE_COUNTS = (100, 10_000)
OTEL = "otlp-http"  # the OpenTelemetry variants' sink when the SDK's exporter is installed

VARIANTS: dict[str, Variant] = {
    "bare": Variant("bare Flask", bare()),
    "pfe": Variant("prometheus-flask-exporter defaults", lambda _: Built(pfe_app())),
    "minimal": Variant("minimal before/after Histogram + Counter", minimal),
    "meshmetrics": Variant("meshmetrics, metrics only", meshmetrics()),
    "meshmetrics-multiproc": Variant(
        "meshmetrics, `PROMETHEUS_MULTIPROC_DIR` set",
        meshmetrics(),
        fresh_dirs=("PROMETHEUS_MULTIPROC_DIR",),
        isolated=True,
    ),
    "meshmetrics-unsampled": Variant(
        "meshmetrics + tracing, unsampled (`x-b3-sampled: 0`, sampler off)",
        meshmetrics(tracing="jaeger", sampler="const:0", span_queue_size=QUEUE),
        sink="jaeger",
        sampled=False,
    ),
    **{f"meshmetrics-{name}": _exporting(*spec) for name, spec in EXPORTS.items()},
    "pfe-opentracing": Variant(
        "pfe + Flask-OpenTracing + jaeger-client, sampled, Jaeger UDP export",
        pfe_opentracing,
        sink="jaeger",
        spans_per_request=1,
    ),
    **{
        f"{name}{suffix}": Variant(
            f"{label}, sampled, {exporter}", build, sink=sink, isolated=True, spans_per_request=1
        )
        for name, label, build in (
            ("meshmetrics-otel", '`tracing="otel"` with the OpenTelemetry SDK', meshmetrics_otel),
            ("pfe-otel-flask", "pfe + OpenTelemetry FlaskInstrumentor + SDK", otel_flask),
        )
        for suffix, exporter, sink in (
            ("", "the SDK's exporter", OTEL),
            ("-counting", "an SDK exporter that only counts", None),
        )
    },
    **{
        f"{name}-routes-{n}": Variant(f"{label}, {n:,} routes", build(n - 4), extra_routes=n - 4)
        for n in ROUTE_COUNTS
        for name, label, build in (
            ("bare", "bare Flask", bare),
            ("meshmetrics", "meshmetrics, metrics only", meshmetrics),
        )
    },
    "bare-unmatched": Variant("bare Flask, unmatched paths only", bare(), unmatched=True),
    "meshmetrics-unmatched": Variant(
        "meshmetrics, metrics only, unmatched paths only", meshmetrics(), unmatched=True
    ),
}


def check_environment(variant: Variant) -> None:
    """In a variant's process, before it is built: the directories it needs are set."""
    missing = [name for name in variant.fresh_dirs if not os.environ.get(name)]
    assert not missing, f"{variant.label}: set {missing} (bench_mix.py makes fresh ones)"
