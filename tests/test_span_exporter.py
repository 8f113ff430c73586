"""The span-exporter seam: ``span_exporter=`` hands the tracer an exporter, behind the
real batch processor; exporters answer an ``ExportResult``; ``capture_spans()`` in each
tracing mode that exports from meshmetrics' own tracer (``otel``: tests/test_otel.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from flask import Flask

from helpers import value
from meshmetrics import instrument
from meshmetrics.config import ConfigError, ExportResult, MeshConfig, SpanExporter
from meshmetrics.testing import InMemorySpanExporter, capture_spans
from meshmetrics.tracing.spans import MeshSpan


def make_app(name: str = "seam", **options: Any) -> tuple[Flask, Any]:
    app = Flask(name)
    app.add_url_rule("/items/<n>", "item", lambda n: n)
    return app, instrument(app, **options)


def metrics(app: Flask) -> str:
    return app.test_client().get("/metrics").get_data(as_text=True)


def test_the_exporter_gets_the_spans_through_the_batch_processor_and_its_counters() -> None:
    exporter = InMemorySpanExporter()
    app, inst = make_app(tracing="otlp", span_exporter=exporter)
    client = app.test_client()
    for i in range(3):
        client.get(f"/items/{i}")
    assert exporter.spans == []  # queued: the export thread sends batches
    inst.tracing.tracer.close()  # a flush: the real processor's
    assert [s.tags["http.route"] for s in exporter.spans] == ["/items/<n>"] * 3
    assert value(metrics(app), "meshmetrics_spans_exported_total") == 3
    inst.uninstrument()
    assert exporter.closed


class Answering:
    """An exporter answering ``result`` for every batch (it keeps nothing)."""

    def __init__(self, result: ExportResult) -> None:
        self.result = result
        self.batches: list[int] = []

    def export(self, spans: list[MeshSpan]) -> ExportResult:
        self.batches.append(len(spans))
        return self.result

    def shutdown(self) -> None:
        pass


@pytest.mark.parametrize(
    ("result", "counted"),
    [
        (ExportResult(), {"exported": 4, "sent": 0}),
        (ExportResult(confirmed=False), {"exported": 0, "sent": 4}),
        (ExportResult(too_large=1, rejected=2), {"exported": 1, "too_large": 1, "rejected": 2}),
        (ExportResult(error=ConnectionResetError("gone")), {"exported": 0, "export_error": 4}),
    ],
)
def test_an_export_result_is_counted_as_it_says(
    result: ExportResult, counted: dict[str, int]
) -> None:
    exporter = Answering(result)
    app, inst = make_app(tracing="zipkin", span_exporter=exporter)
    for i in range(4):
        app.test_client().get(f"/items/{i}")
    inst.tracing.tracer.close()
    assert exporter.batches == [4]
    text = metrics(app)
    for name in ("exported", "sent"):
        assert value(text, f"meshmetrics_spans_{name}_total") == counted.get(name, 0)
    for reason in ("too_large", "rejected", "export_error"):
        dropped = value(text, "meshmetrics_spans_dropped_total", reason=reason)
        assert dropped == counted.get(reason, 0), reason
    inst.uninstrument()


def test_a_failed_result_backs_off_like_a_raised_error() -> None:
    exporter = Answering(ExportResult(error=TimeoutError("slow")))
    app, inst = make_app(tracing="otlp", span_exporter=exporter)
    processor = inst.tracing.tracer.processor._processor
    app.test_client().get("/items/1")
    inst.tracing.tracer.close()
    assert processor._backoff == 0.5
    assert ExportResult(error=TimeoutError()).success is False
    assert ExportResult(rejected=3).success
    inst.uninstrument()


def test_the_protocol_is_what_the_built_in_and_testing_exporters_implement() -> None:
    from meshmetrics.tracing.exporters import JaegerUDPExporter, OTLPHTTPExporter, ZipkinExporter
    from meshmetrics.tracing.otlp_grpc import OTLPGrpcExporter

    for exporter in (JaegerUDPExporter, OTLPHTTPExporter, ZipkinExporter, OTLPGrpcExporter):
        assert callable(exporter.export)
        assert callable(exporter.shutdown)
        assert not hasattr(exporter, "confirms_delivery")
        assert not hasattr(exporter, "close")
    assert isinstance(InMemorySpanExporter(), SpanExporter)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"tracing": "otlp", "span_exporter": "pkg.mod:exporter"}, "export.spans. and shutdown"),
        ({"tracing": "otlp", "span_exporter": object()}, "export.spans. and shutdown"),
        ({"span_exporter": InMemorySpanExporter()}, "not 'off'; set tracing='otlp'"),
        (
            {"tracing": "otel", "span_exporter": InMemorySpanExporter()},
            "under 'otel' spans go to the OpenTelemetry SDK",
        ),
    ],
)
def test_a_misused_exporter_is_a_one_line_config_error(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says) as raised:
        instrument(Flask("bad"), **options)
    assert raised.value.option == "span_exporter"
    assert str(raised.value).startswith("meshmetrics: invalid span_exporter ")
    assert "\n" not in str(raised.value)


def test_the_exporter_is_never_read_from_app_config_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = Flask("conf")
    app.config["MESHMETRICS_SPAN_EXPORTER"] = InMemorySpanExporter()
    with pytest.raises(ConfigError, match=r"argument of instrument\(\) only") as raised:
        instrument(app, tracing="otlp")
    assert raised.value.source == "app.config['MESHMETRICS_SPAN_EXPORTER']"
    monkeypatch.setenv("MESHMETRICS_SPAN_EXPORTER", "pkg.mod:exporter")
    with pytest.raises(ConfigError, match=r"argument of instrument\(\) only") as raised:
        instrument(Flask("env"), tracing="otlp")
    assert raised.value.source == "MESHMETRICS_SPAN_EXPORTER"


@dataclasses.dataclass
class ValueEqual:
    """Equal to any other of its kind, and so unhashable: a key by value would merge them."""

    spans: list[MeshSpan] = dataclasses.field(default_factory=list)

    def export(self, spans: list[MeshSpan]) -> ExportResult:
        self.spans.extend(spans)
        return ExportResult()

    def shutdown(self) -> None:
        pass


def test_an_exporter_keys_the_config_and_the_shared_processor_by_identity() -> None:
    first, second = ValueEqual(), ValueEqual()
    assert first == second
    a = MeshConfig(service="a", tracing="otlp", span_exporter=first)
    b = MeshConfig(service="a", tracing="otlp", span_exporter=second)
    assert hash(a) == hash(b)  # a config stays hashable and equal by value ...
    assert a == b
    assert not a.same_as(b)  # ... and tells its exporters apart
    assert a.same_as(MeshConfig(service="a", tracing="otlp", span_exporter=first))
    assert "span_exporter=ValueEqual(" in repr(a)
    one, inst_one = make_app("one", service="svc", tracing="otlp", span_exporter=first)
    two, inst_two = make_app("two", service="svc", tracing="otlp", span_exporter=second)
    same, inst_same = make_app("same", service="svc", tracing="otlp", span_exporter=first)
    shared = inst_one.tracing.tracer.processor._processor
    assert inst_same.tracing.tracer.processor._processor is shared
    assert inst_two.tracing.tracer.processor._processor is not shared
    for app in (one, two, same):
        app.test_client().get("/items/1")
    for inst in (inst_one, inst_two, inst_same):
        inst.tracing.tracer.close()
    assert (len(first.spans), len(second.spans)) == (2, 1)
    assert instrument(one, service="svc", tracing="otlp", span_exporter=first) is inst_one
    with pytest.raises(RuntimeError, match="already instrumented"):
        instrument(one, service="svc", tracing="otlp", span_exporter=second)
    for inst in (inst_one, inst_two, inst_same):
        inst.uninstrument()


@pytest.mark.parametrize(
    "options",
    [
        {"tracing": "jaeger"},
        {"tracing": "zipkin"},
        {"tracing": "otlp"},
        {"tracing": "otlp", "trace_protocol": "grpc"},
        {"tracing": "otlp", "span_exporter": InMemorySpanExporter()},
    ],
    ids=["jaeger", "zipkin", "otlp", "otlp-grpc", "span_exporter"],
)
def test_capture_spans_in_each_mode_of_meshmetrics_tracer(options: dict[str, Any]) -> None:
    app, inst = make_app("captured", **options)
    captured = capture_spans(inst)
    app.test_client().get("/items/7")
    assert [(s.operation_name, s.tags["http.route"]) for s in captured.spans] == [
        ("item", "/items/<n>")
    ]
    captured.clear()
    assert captured.spans == []
    inst.uninstrument()


def test_capture_spans_refuses_an_instrumentation_that_does_not_trace() -> None:
    _, inst = make_app("untraced")
    with pytest.raises(ValueError, match="tracing='off'"):
        capture_spans(inst)
    inst.uninstrument()
