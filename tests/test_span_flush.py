"""Span delivery on the way out: ``flush()`` waits for the batch in flight, not only for
the queue to empty; the export thread leaves stop signals to other threads (issue 25
item 7)."""

from __future__ import annotations

import signal
import sys
import threading
import types
from pathlib import Path

import pytest

from meshmetrics.config import ExportResult
from meshmetrics.testing import InMemorySpanExporter
from meshmetrics.tracing import processor as processor_module
from meshmetrics.tracing.processor import BatchSpanProcessor, SpanCounters
from meshmetrics.tracing.sampling import ConstSampler
from meshmetrics.tracing.spans import MeshSpan, MeshTracer

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Blocking(InMemorySpanExporter):
    """Holds each export until ``release`` is set; ``entered`` once an export started."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()

    def export(self, spans: list[MeshSpan]) -> ExportResult:
        self.entered.set()
        self.release.wait(60)
        result = super().export(spans)
        self.returned.set()
        return result


def in_flight(count: int) -> tuple[BatchSpanProcessor, Blocking, SpanCounters]:
    """A processor whose thread took every queued span and is blocked exporting them."""
    exporter = Blocking()
    counters = SpanCounters(None)
    processor = BatchSpanProcessor(exporter, counters, batch_size=count, interval=60)
    tracer = MeshTracer(ConstSampler(True), processor)
    for i in range(count):
        tracer.start_span(f"op{i}").finish()  # the last one wakes the thread: a full batch
    assert exporter.entered.wait(30)
    assert len(processor._queue) == 0  # only the batch in flight is left
    return processor, exporter, counters


def test_flush_waits_for_the_batch_in_flight() -> None:
    processor, exporter, counters = in_flight(5)
    releaser = threading.Timer(0.2, exporter.release.set)
    releaser.start()
    assert processor.flush(30)
    # flush returned: the export had ended and was counted
    assert exporter.returned.is_set()
    assert len(exporter.spans) == 5
    assert counters.exported._value.get() == 5
    releaser.join()
    processor.shutdown()


def test_flush_returns_false_at_its_timeout_when_the_export_never_ends() -> None:
    processor, exporter, counters = in_flight(3)
    assert processor.flush(0.2) is False
    assert not exporter.returned.is_set()
    assert counters.exported._value.get() == 0
    exporter.release.set()
    assert processor.flush(30)
    assert counters.exported._value.get() == 3
    processor.shutdown()


def test_shutdown_delivers_the_batch_in_flight_before_closing() -> None:
    processor, exporter, _ = in_flight(4)
    closed_after: list[int] = []
    close = exporter.shutdown

    def recording_close() -> None:
        closed_after.append(len(exporter.spans))
        close()

    exporter.shutdown = recording_close  # type: ignore[method-assign]
    releaser = threading.Timer(0.2, exporter.release.set)
    releaser.start()
    processor.shutdown(30)
    releaser.join()
    assert closed_after == [4]


def blocked_signals(thread: threading.Thread) -> set[int]:
    """The signals ``thread`` blocks, from Linux's /proc (``SigBlk``: a hex bit mask)."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    mask = int(
        next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16
    )
    return {signum for signum in range(1, 65) if mask & (1 << (signum - 1))}


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads Linux's /proc")
def test_the_export_thread_leaves_stop_signals_to_other_threads() -> None:
    """A server's C handler (uWSGI's worker: exit() at once) runs on whichever thread the
    kernel hands the signal; on the export thread its exit hooks' flush would wait for that
    very thread (docs/servers.md)."""
    processor, exporter, _ = in_flight(1)
    thread = processor.thread
    assert thread is not None
    blocked = blocked_signals(thread)
    assert {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT} <= blocked
    assert signal.SIGSEGV not in blocked  # its own faults stay its own
    assert signal.SIGTERM not in blocked_signals(threading.main_thread())
    exporter.release.set()
    processor.shutdown()


def test_uwsgi_exit_hook_flushes_ignores_stop_signals_then_chains(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hook meshmetrics puts in ``uwsgi.atexit``, called as uWSGI calls it in a
    worker's exit (here from a module standing in for uWSGI's, which only exists inside
    uWSGI; tests/servers/test_uwsgi_exit.py runs the real one): it flushes, ignores the
    stop signals a second ``exit()`` would come from meanwhile, and calls the hook the
    app had set."""
    calls: list[str] = []
    module = types.ModuleType("uwsgi")
    module.worker_id = lambda: 1  # type: ignore[attr-defined]
    module.atexit = lambda: calls.append(f"app's hook, {len(exporter.spans)} exported")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uwsgi", module)
    monkeypatch.setattr(processor_module, "_uwsgi_hooked", False)
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    exporter = InMemorySpanExporter()
    processor = BatchSpanProcessor(exporter, SpanCounters(None), interval=60)
    tracer = MeshTracer(ConstSampler(True), processor)
    for i in range(3):
        tracer.start_span(f"op{i}").finish()
    try:
        module.atexit()  # type: ignore[attr-defined]
        assert {signum: signal.getsignal(signum) for signum in STOP_SIGNALS} == dict.fromkeys(
            STOP_SIGNALS, signal.SIG_IGN
        )
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert calls == ["app's hook, 3 exported"]
