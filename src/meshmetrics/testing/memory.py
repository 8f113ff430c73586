"""Spans kept in memory, exported synchronously: span tests without a backend or a wait."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..tracing.processor import SimpleSpanProcessor, SpanCounters

if TYPE_CHECKING:
    from ..instrumentation import Instrumentation
    from ..tracing.spans import MeshSpan


class InMemorySpanExporter:
    """Keeps every exported span; ``spans`` is a snapshot, ``clear()`` empties it."""

    def __init__(self) -> None:
        self._spans: list[MeshSpan] = []
        self._lock = threading.Lock()
        self.closed = False

    def export(self, spans: list[MeshSpan]) -> int:
        with self._lock:
            self._spans.extend(spans)
        return 0

    def close(self) -> None:
        self.closed = True

    @property
    def spans(self) -> list[MeshSpan]:
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()


def capture_spans(instrumentation: Instrumentation) -> InMemorySpanExporter:
    """Send ``instrumentation``'s finished spans to memory, synchronously, from now on.

    A span is in ``exporter.spans`` as soon as it finishes (when the response is
    complete), so a test can assert that a span exists, or that none does, at once.
    """
    if instrumentation.tracing is None:
        raise ValueError("meshmetrics: this instrumentation does not trace (tracing='off')")
    tracer = instrumentation.tracing.tracer
    exporter = InMemorySpanExporter()
    previous = tracer.processor
    tracer.processor = SimpleSpanProcessor(exporter, SpanCounters(None))
    if previous is not None:
        previous.shutdown()
    return exporter
