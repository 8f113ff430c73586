"""Spans kept in memory, exported synchronously: span tests without a backend or a wait.

:class:`InMemorySpanExporter` is a :class:`~meshmetrics.config.SpanExporter`: pass it as
``instrument(app, tracing="otlp", span_exporter=InMemorySpanExporter())`` to see the spans
through the real queue and batches (they arrive when the processor flushes), or let
:func:`capture_spans` put it behind a synchronous processor.  Under ``tracing="otel"`` the
spans are the OpenTelemetry SDK's: :func:`capture_spans` keeps them with the SDK's own
in-memory exporter (:class:`OTelSpanCapture`).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol

from ..config.export import SUCCESS, ExportResult
from ..tracing.processor import SimpleSpanProcessor, SpanCounters

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

    from ..instrumentation import Instrumentation
    from ..tracing.spans import MeshSpan


class SpanCapture(Protocol):
    """What :func:`capture_spans` hands back, in every tracing mode: the finished spans
    (meshmetrics' :class:`~meshmetrics.tracing.spans.MeshSpan`, or the OpenTelemetry SDK's
    ``ReadableSpan`` under ``tracing="otel"``) and a way to forget them."""

    @property
    def spans(self) -> list[Any]: ...

    def clear(self) -> None: ...


class InMemorySpanExporter:
    """Keeps every exported span; ``spans`` is a snapshot, ``clear()`` empties it."""

    def __init__(self) -> None:
        self._spans: list[MeshSpan] = []
        self._lock = threading.Lock()
        self.closed = False

    def export(self, spans: list[MeshSpan]) -> ExportResult:
        with self._lock:
            self._spans.extend(spans)
        return SUCCESS

    def shutdown(self) -> None:
        self.closed = True

    @property
    def spans(self) -> list[MeshSpan]:
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()


class OTelSpanCapture:
    """The spans the process' OpenTelemetry SDK finishes from now on (``tracing="otel"``),
    kept synchronously by the SDK's ``InMemorySpanExporter`` behind a
    ``SimpleSpanProcessor`` added to its ``TracerProvider``.  The SDK's other processors
    go on exporting; it cannot remove a processor, so :meth:`shutdown` stops this one
    keeping spans."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor as SDKSimpleProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter as SDKMemoryExporter,
        )

        self._exporter = SDKMemoryExporter()
        provider.add_span_processor(SDKSimpleProcessor(self._exporter))

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self._exporter.get_finished_spans())

    def clear(self) -> None:
        self._exporter.clear()

    def shutdown(self) -> None:
        self._exporter.shutdown()


def capture_spans(instrumentation: Instrumentation) -> SpanCapture:
    """Keep ``instrumentation``'s finished spans in memory, synchronously, from now on.

    A span is in ``capture.spans`` as soon as it finishes (when the response is
    complete), so a test can assert that a span exists, or that none does, at once.
    Under ``jaeger``, ``zipkin`` and ``otlp`` the spans go to an
    :class:`InMemorySpanExporter` instead of the backend; under ``otel`` they are also
    kept (:class:`OTelSpanCapture`), the SDK's exporters unchanged.
    """
    if instrumentation.tracing is None:
        raise ValueError("meshmetrics: this instrumentation does not trace (tracing='off')")
    if instrumentation.config.tracing == "otel":
        return _capture_otel()
    tracer = instrumentation.tracing.tracer
    exporter = InMemorySpanExporter()
    previous = tracer.processor
    tracer.processor = SimpleSpanProcessor(exporter, SpanCounters(None))
    if previous is not None:
        previous.shutdown()
    return exporter


def _capture_otel() -> OTelSpanCapture:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        raise ValueError(
            "meshmetrics: under tracing='otel' the spans are the OpenTelemetry SDK's, and no "
            "SDK TracerProvider is set: call opentelemetry.trace.set_tracer_provider("
            "TracerProvider()) before capturing"
        )
    return OTelSpanCapture(provider)
