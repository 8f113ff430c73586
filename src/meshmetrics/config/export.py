"""The span-exporter seam: what an exporter is handed and what it answers.

An exporter sends finished spans somewhere (a collector, an agent, memory) and says what
became of them; the span processor, not the exporter, queues, batches, backs off and counts.
The built-in exporters (:mod:`meshmetrics.tracing.exporters`) implement
:class:`SpanExporter`, and so may any object passed as the ``span_exporter`` option (which
is why the protocol lives with the options, like the samplers): it then receives the spans
through the same queue and export thread, as OpenTelemetry's ``SpanExporter`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .errors import InvalidError
from .values import Context


@dataclass(frozen=True)
class ExportResult:
    """What became of a batch an exporter was handed (OpenTelemetry's ``SpanExportResult``,
    with the counts meshmetrics' span counters need)."""

    #: Spans too large ever to send: counted ``meshmetrics_spans_dropped_total{reason=
    #: "too_large"}``.
    too_large: int = 0
    #: Spans the backend refused in a request it accepted (OTLP ``partial_success``):
    #: counted ``meshmetrics_spans_dropped_total{reason="rejected"}``.
    rejected: int = 0
    #: Whether the backend confirmed receiving the others (counted in
    #: ``meshmetrics_spans_exported_total``) or they were only sent, unconfirmed (UDP to a
    #: Jaeger agent: ``meshmetrics_spans_sent_total``).
    confirmed: bool = True
    #: Why the whole batch failed, when it did: counted like an exception ``export()``
    #: raises (``reason="export_error"``), and the processor backs off.
    error: Exception | None = None

    @property
    def success(self) -> bool:
        """Whether the batch reached the backend (some spans may still be dropped)."""
        return self.error is None


#: A batch the backend confirmed receiving whole.
SUCCESS = ExportResult()


@runtime_checkable
class SpanExporter(Protocol):
    """Sends finished spans (:class:`meshmetrics.tracing.spans.MeshSpan`) and says what
    became of them.

    ``export`` runs on one thread at a time (the export thread, or a flush), synchronously:
    when it returns, the batch is delivered or given up, so a flush of the processor is a
    flush of the exporter.  It may raise instead of returning a failed result; either is
    counted as an export error.  ``shutdown`` is called once, when the processor stops.
    """

    def export(self, spans: list[Any]) -> ExportResult: ...

    def shutdown(self) -> None: ...


#: The rule of the ``span_exporter`` option.
SPAN_EXPORTER_RULE = (
    "an object with export(spans) and shutdown() methods (a SpanExporter), given as an "
    "argument of instrument(): an object cannot come from app.config or the environment"
)


def span_exporter(value: Any, _: Context) -> SpanExporter | None:
    """The ``span_exporter`` option's converter: an exporter object, never text."""
    if value is None:
        return None
    if not isinstance(value, SpanExporter) or not (
        callable(value.export) and callable(value.shutdown)
    ):
        raise InvalidError(SPAN_EXPORTER_RULE)
    return value
