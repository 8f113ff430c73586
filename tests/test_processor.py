"""The batch span processor: batching, back-off, shutdown joins its thread, fork reset."""

from __future__ import annotations

import os
from typing import Any

from meshmetrics.config import ExportResult
from meshmetrics.testing import InMemorySpanExporter
from meshmetrics.tracing.processor import BatchSpanProcessor, SimpleSpanProcessor, SpanCounters
from meshmetrics.tracing.sampling import ConstSampler
from meshmetrics.tracing.spans import MAX_ATTRIBUTE_LENGTH, MeshTracer


class Failing(InMemorySpanExporter):
    def export(self, spans: list[Any]) -> ExportResult:
        raise ConnectionRefusedError("collector down")


def finish_spans(tracer: MeshTracer, count: int) -> None:
    for i in range(count):
        tracer.start_span(f"op{i}").finish()


def test_batches_are_exported_and_counted() -> None:
    exporter = InMemorySpanExporter()
    counters = SpanCounters(None)
    processor = BatchSpanProcessor(exporter, counters, batch_size=10, interval=60)
    finish_spans(MeshTracer(ConstSampler(True), processor), 25)
    assert processor.flush(5)
    assert len(exporter.spans) == 25
    assert counters.exported._value.get() == 25
    processor.shutdown()


def test_full_queue_drops_and_counts() -> None:
    counters = SpanCounters(None)
    processor = BatchSpanProcessor(InMemorySpanExporter(), counters, queue_size=3, interval=60)
    finish_spans(MeshTracer(ConstSampler(True), processor), 5)
    assert counters.queue_full._value.get() == 2
    processor.shutdown()


def test_failures_back_off_without_exporting() -> None:
    exporter = Failing()
    counters = SpanCounters(None)
    processor = BatchSpanProcessor(exporter, counters, batch_size=2)
    processor._queue.extend(
        MeshTracer(ConstSampler(True), None).start_span(str(i)) for i in range(6)
    )
    processor._drain()
    assert counters.export_error._value.get() == 6  # first batch failed, the rest dropped
    assert processor._backoff == 0.5


def test_shutdown_joins_the_thread_and_closes_the_exporter() -> None:
    exporter = InMemorySpanExporter()
    processor = BatchSpanProcessor(exporter, SpanCounters(None), interval=0.05)
    finish_spans(MeshTracer(ConstSampler(True), processor), 3)
    thread = processor.thread
    assert thread is not None
    assert thread.is_alive()
    processor.shutdown()
    assert not thread.is_alive()
    assert exporter.closed
    assert len(exporter.spans) == 3


def test_fork_gives_the_child_a_fresh_queue_and_no_thread() -> None:
    processor = BatchSpanProcessor(InMemorySpanExporter(), SpanCounters(None), interval=60)
    tracer = MeshTracer(ConstSampler(True), processor)
    finish_spans(tracer, 2)
    pid = os.fork()
    if pid == 0:  # the child: nothing inherited
        ok = processor.thread is None and len(processor._queue) == 0
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    processor.shutdown()


def test_unsampled_spans_are_never_processed() -> None:
    exporter = InMemorySpanExporter()
    finish_spans(MeshTracer(ConstSampler(False), SimpleSpanProcessor(exporter)), 3)
    assert exporter.spans == []


class _Stuck:
    """An exporter that never returns while the test runs (a black-holing collector)."""

    def __init__(self) -> None:
        import threading

        self.release = threading.Event()

    def export(self, spans: list[Any]) -> ExportResult:
        self.release.wait(30)
        return ExportResult()

    def shutdown(self) -> None:
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


def test_a_stopped_processor_revived_goes_on_with_one_thread() -> None:
    """An app factory's next app revives the processor the last one's finalizer stopped."""
    import threading

    exporter = InMemorySpanExporter()
    processor = BatchSpanProcessor(exporter, SpanCounters(None), interval=60)
    tracer = MeshTracer(ConstSampler(True), processor)
    finish_spans(tracer, 1)
    assert processor.flush(5)
    processor.stop()
    assert processor.revive()
    finish_spans(tracer, 2)  # accepted again (a stopped processor drops them)
    assert processor.flush(5)
    assert len(exporter.spans) == 3
    named = [t for t in threading.enumerate() if t.name == "meshmetrics-span-export"]
    assert processor.thread in named
    processor.shutdown()
    assert not processor.revive()  # its exporter is closed: a new processor is needed
