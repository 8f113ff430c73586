"""Span processors: what happens to a finished, sampled span.

:class:`BatchSpanProcessor` exports off the request path: a bounded queue and a
background thread.  Nothing here can fail a request: a full queue drops the span,
a dead or missing collector fails the batch; both are counted in
``meshmetrics_spans_dropped_total``.  After ``fork()`` (gunicorn workers, the
reloader) the child gets a fresh queue and thread; at interpreter exit the queue is
flushed, on SIGTERM too (when nothing else handles it), and under uWSGI whenever uWSGI
ends the process through ``exit()`` (``uwsgi.atexit``); the thread holds only a
weak reference, so a processor nobody uses any more
(its app was garbage-collected) stops its thread.

:class:`SimpleSpanProcessor` exports synchronously, on the thread that finished the
span: for tests (with :class:`meshmetrics.testing.InMemorySpanExporter`) and
debugging, never for production.

Both hand batches to a :class:`~meshmetrics.config.SpanExporter` and count what its
:class:`~meshmetrics.config.ExportResult` says (an exception it raises is a failed result).
"""

from __future__ import annotations

import atexit
import importlib
import os
import signal
import threading
import time
import weakref
from collections import deque
from types import ModuleType
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter

from ..config.export import ExportResult, SpanExporter
from ..names import SPANS_DROPPED, SPANS_EXPORTED, SPANS_SENT, log

if TYPE_CHECKING:
    from .spans import MeshSpan

#: Longest pause of exports after failures (seconds); spans meanwhile count as export errors.
MAX_BACKOFF = 10.0


def count_delivery(counters: SpanCounters, result: ExportResult, spans: int) -> None:
    """Count a batch the backend answered: delivered (or only sent), too large, rejected."""
    counters.too_large.inc(result.too_large)
    counters.rejected.inc(result.rejected)
    delivered = counters.exported if result.confirmed else counters.sent
    delivered.inc(spans - result.too_large - result.rejected)


def export_batch(exporter: SpanExporter, batch: list[MeshSpan]) -> ExportResult:
    """``exporter``'s result for ``batch``; an exception it raised is a failed result."""
    try:
        return exporter.export(batch)
    except Exception as exc:
        return ExportResult(error=exc)


class SpanCounters:
    """The exporter's own counters, in the instrumentation's registry."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.exported = Counter(
            SPANS_EXPORTED,
            "Spans the trace backend confirmed receiving (an HTTP 2xx)",
            registry=registry,
        )
        self.sent = Counter(
            SPANS_SENT,
            "Spans sent in UDP datagrams to a Jaeger agent: not confirmed, UDP does not say "
            "whether anything received them",
            registry=registry,
        )
        self.dropped = Counter(
            SPANS_DROPPED,
            "Spans lost before reaching the trace backend",
            ("reason",),
            registry=registry,
        )
        #: what a registry serving these counters registers
        self.collectors = (self.exported, self.sent, self.dropped)
        self.queue_full = self.dropped.labels("queue_full")
        self.too_large = self.dropped.labels("too_large")
        self.export_error = self.dropped.labels("export_error")
        self.rejected = self.dropped.labels("rejected")


class SimpleSpanProcessor:
    """Exports each span as it finishes, on the finishing thread (tests, debugging)."""

    def __init__(self, exporter: SpanExporter, counters: SpanCounters | None = None) -> None:
        self._exporter = exporter
        self._counters = counters or SpanCounters(None)

    def on_end(self, span: MeshSpan) -> None:
        result = export_batch(self._exporter, [span])
        if result.error is not None:
            self._counters.export_error.inc()
            return
        count_delivery(self._counters, result, 1)

    def flush(self, timeout: float = 5.0) -> bool:
        return True

    def shutdown(self, timeout: float = 5.0) -> None:
        self._exporter.shutdown()


class BatchSpanProcessor:
    """Queues finished spans and exports them in batches from a daemon thread.

    The queue is bounded twice: ``queue_size`` spans and ``queue_bytes`` of their
    estimated encoded size (spans are capped in size when they finish), whichever
    comes first; beyond either, spans are dropped and counted ``queue_full``.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        counters: SpanCounters,
        *,
        queue_size: int = 4096,
        queue_bytes: int = 32 * 1024 * 1024,
        batch_size: int = 100,
        interval: float = 0.5,
    ) -> None:
        self._exporter = exporter
        self._counters = counters
        self._queue_size = queue_size
        self._queue_bytes = queue_bytes
        self._batch_size = batch_size
        self._interval = interval
        self._reset()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _call(ref, "_reset"))
        atexit.register(_call, ref, "shutdown")
        _LIVE.add(self)
        _flush_on_sigterm()
        _flush_on_uwsgi_exit()

    def _reset(self) -> None:
        self._queue: deque[MeshSpan] = deque()
        self._bytes = 0  # estimated size of the queued spans (guarded by _size_lock)
        self._size_lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._in_flight = 0  # drains under way: a batch being exported (guarded by _size_lock)
        self._stopped = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._warned = False
        self._backoff = 0.0
        self._backoff_until = 0.0

    @property
    def counters(self) -> SpanCounters:
        return self._counters

    @property
    def thread(self) -> threading.Thread | None:
        """The export thread of this process, once a span started it."""
        return self._thread

    def on_end(self, span: MeshSpan) -> None:
        """Called by a finished, sampled span: never blocks, never raises."""
        queue = self._queue
        size = span.size
        with self._size_lock:
            full = (
                len(queue) >= self._queue_size
                or self._bytes + size > self._queue_bytes
                or self._stopped
            )
            if not full:
                self._bytes += size
                queue.append(span)
        if full:
            self._counters.queue_full.inc()
            return
        if self._thread is None:
            self._start()
        if len(queue) >= self._batch_size:
            self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(
                    target=_export_loop,
                    args=(weakref.ref(self), self._wake, self._interval),
                    name="meshmetrics-span-export",
                    daemon=True,
                )
                self._thread.start()

    def _drain(self) -> None:
        with self._size_lock:
            self._in_flight += 1
        try:
            self._export_queued()
        finally:
            with self._size_lock:
                self._in_flight -= 1
            self._idle.set()

    def _export_queued(self) -> None:
        queue = self._queue
        while queue:
            with self._size_lock:
                batch = [queue.popleft() for _ in range(min(self._batch_size, len(queue)))]
                self._bytes -= sum(span.size for span in batch)
            if time.monotonic() < self._backoff_until:
                # the backend just failed: drop without encoding, so a dead collector
                # costs the service no CPU (counted like any failed export)
                self._counters.export_error.inc(len(batch))
                continue
            result = export_batch(self._exporter, batch)
            if result.error is not None:
                self._failed(result.error, len(batch))
                continue
            self._backoff = 0.0
            count_delivery(self._counters, result, len(batch))

    def _failed(self, exc: Exception, spans: int) -> None:
        self._counters.export_error.inc(spans)
        self._backoff = min(max(self._backoff * 2, 0.5), MAX_BACKOFF)
        self._backoff_until = time.monotonic() + self._backoff
        if not self._warned:
            self._warned = True
            log.warning(
                "meshmetrics: span export failed (%s: %s); retrying with back-off, failures "
                'are counted in meshmetrics_spans_dropped_total{reason="export_error"}',
                type(exc).__name__,
                exc,
            )

    def flush(self, timeout: float = 5.0) -> bool:
        """Export what is queued now; True when the queue emptied and the last batch's
        export (with its retries) ended within ``timeout``."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._drain()
            return self._settled()
        if thread is threading.current_thread():  # an exit hook run on the export thread
            return self._settled()
        deadline = time.monotonic() + timeout
        while not self._settled() and time.monotonic() < deadline:
            self._idle.clear()
            self._wake.set()
            self._idle.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        return self._settled()

    def _settled(self) -> bool:
        """Nothing queued and no batch in flight."""
        with self._size_lock:
            return not self._queue and self._in_flight == 0

    def stop(self) -> None:
        """Ask the thread to export what is queued and end, without waiting for it."""
        self._stopped = True
        self._wake.set()

    def revive(self) -> bool:
        """Undo :meth:`stop` while the exporter is open: the thread, if it has not ended
        yet, goes on (one thread, not a second beside the ending one); if it has, the
        next span starts one.  False after :meth:`shutdown`."""
        with self._lock:
            if not self._stopped or self._closed:
                return False
            self._stopped = False
            return True

    def _end_if_stopped(self) -> bool:
        """The export thread's exit check: decided under the lock :meth:`revive` takes."""
        with self._lock:
            if not self._stopped:
                return False
            self._thread = None
            return True

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush, stop the thread, wait for it to end, close the exporter (idempotent)."""
        if self._stopped and self._thread is None:
            return
        self.flush(timeout)
        self.stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None
        self._closed = True
        self._exporter.shutdown()


def _export_loop(
    ref: weakref.ReferenceType[BatchSpanProcessor], wake: threading.Event, interval: float
) -> None:
    """The export thread: holds the processor only while draining, so it can be collected."""
    _leave_signals_to_other_threads()
    while True:
        wake.wait(interval)
        wake.clear()
        processor = ref()
        if processor is None:
            return
        processor._drain()
        if processor._end_if_stopped():
            return
        del processor


#: Signals a thread cannot leave to others: faults of its own code.
_SYNCHRONOUS_SIGNALS = frozenset(
    getattr(signal, name)
    for name in ("SIGSEGV", "SIGFPE", "SIGBUS", "SIGILL", "SIGABRT", "SIGTRAP", "SIGSYS", "SIGPIPE")
    if hasattr(signal, name)
)


def _leave_signals_to_other_threads() -> None:
    """Block process-directed signals in the export thread.

    Python's handlers run on the main thread anyway, but a server's C handlers (uWSGI's
    workers: SIGINT/SIGTERM ``exit()`` at once) run on whichever thread the kernel picks:
    on this one, the exit hooks' flush would wait for this very thread, blocked under it.
    """
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not on Linux
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals() - _SYNCHRONOUS_SIGNALS)


#: Every batch processor of this process, for the SIGTERM flush.
_LIVE: weakref.WeakSet[BatchSpanProcessor] = weakref.WeakSet()
#: Seconds the SIGTERM flush may take in all (Kubernetes' grace period is 30 s).
SIGTERM_FLUSH_TIMEOUT = 5.0


def _flush_on_sigterm() -> None:
    """Flush queued spans when SIGTERM arrives, then die of it as before.

    Kubernetes stops a pod with SIGTERM, whose default action ends the process at once:
    no ``atexit``, so spans still queued (up to a batch interval's worth) were lost
    under ``app.run``/``python app.py``.  Installed only from the main thread and only
    over the default action: gunicorn, uwsgi or the app's own handler stay in charge.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        return


def _on_sigterm(signum: int, frame: object) -> None:
    _shutdown_all()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _shutdown_all() -> None:
    """Flush and stop every batch processor of this process, in SIGTERM_FLUSH_TIMEOUT."""
    deadline = time.monotonic() + SIGTERM_FLUSH_TIMEOUT
    for processor in list(_LIVE):
        processor.shutdown(max(0.1, deadline - time.monotonic()))


#: Whether this process' ``uwsgi.atexit`` flushes (set once; inherited by forked workers,
#: like the attribute itself).
_uwsgi_hooked = False
#: What a uWSGI worker's own handlers answer with ``exit()``: SIGINT/SIGTERM (``end_me``:
#: a stop, or a brutal reload), SIGHUP (a graceful reload).
_UWSGI_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _flush_on_uwsgi_exit() -> None:
    """Under uWSGI, flush queued spans when uWSGI ends the process (docs/servers.md).

    A uWSGI worker ends in C: its SIGINT/SIGTERM/SIGHUP handlers and its recycling
    (``--max-requests`` and the like) call ``exit()``, whose hook calls ``uwsgi.atexit``,
    then Python's ``atexit`` handlers unless ``--skip-atexit-teardown``; Python's
    SIGTERM handling (:func:`_flush_on_sigterm`) never runs there.  So the flush goes in
    ``uwsgi.atexit``, before whatever hook was there.  ``import uwsgi`` succeeds only
    inside a uWSGI process.
    """
    global _uwsgi_hooked
    if _uwsgi_hooked:
        return
    try:
        uwsgi = importlib.import_module("uwsgi")
    except ImportError:
        return
    _uwsgi_hooked = True
    previous = getattr(uwsgi, "atexit", None)

    def flush_then_previous() -> None:
        try:
            if _uwsgi_worker(uwsgi):
                _ignore_stop_signals()
            _shutdown_all()
        finally:
            if callable(previous):
                previous()

    setattr(uwsgi, "atexit", flush_then_previous)  # noqa: B010 (a module without type stubs)


def _uwsgi_worker(uwsgi: ModuleType) -> bool:
    worker_id = getattr(uwsgi, "worker_id", None)
    return callable(worker_id) and bool(worker_id())


def _ignore_stop_signals() -> None:
    """While a uWSGI worker exits: a second stop signal (the master's SIGINT after the
    process group's SIGTERM, under ``--die-on-term``) would run uWSGI's handler, whose
    ``exit()`` inside this exit ends the process before the flush does.  The master
    still kills a worker that outlives ``--worker-reload-mercy``."""
    try:
        for signum in _UWSGI_STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
    except (ValueError, OSError):  # not the main thread: exit() ran on a request thread
        return


def _call(ref: weakref.ReferenceType[BatchSpanProcessor], method: str) -> None:
    target = ref()
    if target is not None:
        getattr(target, method)()
