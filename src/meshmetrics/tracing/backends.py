"""From the configuration to a tracer: the backend's exporter, the batch processor.

Built in :func:`meshmetrics.instrument`, so a backend whose extra is missing is a
:class:`~meshmetrics.config.MissingExtraError` at configuration time.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque

from prometheus_client import CollectorRegistry

from ..config import HostPort, HttpEndpoint, MeshConfig, MissingExtraError, SpanExporter
from .processor import BatchSpanProcessor, SpanCounters
from .server import RequestTracing, ServerTracing, current_span
from .spans import MeshTracer, ScopeManager

#: The extra that brings each backend's wire format.
EXTRAS = {"jaeger": "jaeger", "otlp": "otlp", "otel": "otel"}
#: OTLP/gRPC's extra (grpcio, opentelemetry-proto's stub, google.rpc's RetryInfo).
GRPC_EXTRA = "otlp-grpc"


def exporter_for(config: MeshConfig) -> SpanExporter:
    """The exporter of ``config.tracing`` (``otlp``, ``zipkin`` or ``jaeger``), or the
    ``span_exporter`` given instead."""
    if config.span_exporter is not None:
        return config.span_exporter
    endpoint = config.trace_endpoint
    resource = {
        **dict(config.resource_attributes),
        "service.namespace": config.namespace,
        "service.version": config.version,
    }
    if config.tracing == "otlp" and config.trace_protocol == "grpc":
        return _grpc_exporter(config, resource)
    try:
        if config.tracing == "jaeger":
            from .exporters import JaegerUDPExporter

            assert isinstance(endpoint, HostPort)
            tags = {"namespace": config.namespace, "version": config.version}
            return JaegerUDPExporter(config.service, endpoint, tags)
        from .exporters import HttpSender

        assert isinstance(endpoint, HttpEndpoint)
        sender = HttpSender(
            endpoint,
            headers=config.trace_headers,
            compression=config.trace_compression,
            timeout=config.trace_timeout,
            certificate=config.trace_certificate,
        )
        if config.tracing == "zipkin":
            from .exporters import ZipkinExporter

            return ZipkinExporter(config.service, sender, resource)
        from .exporters import OTLPHTTPExporter

        return OTLPHTTPExporter(config.service, sender, resource)
    except ImportError as exc:
        raise MissingExtraError(
            "tracing", config.tracing, config.source_of("tracing"), EXTRAS[config.tracing], str(exc)
        ) from exc


def _grpc_exporter(config: MeshConfig, resource: dict[str, str]) -> SpanExporter:
    endpoint = config.trace_endpoint
    assert isinstance(endpoint, HttpEndpoint)
    try:
        from .otlp_grpc import OTLPGrpcExporter

        return OTLPGrpcExporter(
            config.service,
            endpoint,
            resource,
            headers=config.trace_headers,
            compression=config.trace_compression,
            timeout=config.trace_timeout,
            certificate=config.trace_certificate,
        )
    except ImportError as exc:
        raise MissingExtraError(
            "trace_protocol", "grpc", config.source_of("trace_protocol"), GRPC_EXTRA, str(exc)
        ) from exc


def server_tracing(config: MeshConfig, registry: CollectorRegistry) -> RequestTracing:
    """The Flask face of a tracer exporting to ``config``'s backend in batches, or of the
    process' OpenTelemetry SDK (``otel``)."""
    if config.tracing == "otel":
        try:
            from .otel import OTelTracing
        except ImportError as exc:
            raise MissingExtraError(
                "tracing", "otel", config.source_of("tracing"), "otel", str(exc)
            ) from exc
        return OTelTracing(config)
    processor = shared_processor(config, registry)
    tracer = MeshTracer(config.sampler, processor, ScopeManager(current_span))
    return ServerTracing(tracer, sensitive_query_params=config.sensitive_query_params)


class SharedProcessor:
    """One instrumentation's hold on the batch processor (and export thread) that every
    instrumentation of this process with the same backend configuration shares: an app
    factory building an app per test starts one thread, not one per app.  The last
    hold released (``shutdown()``, or its instrumentation garbage-collected) stops it."""

    def __init__(self, key: str, processor: BatchSpanProcessor) -> None:
        self._key = key
        self._processor = processor
        self.on_end = processor.on_end  # the span's path: no extra call
        self._held = True

    @property
    def thread(self) -> threading.Thread | None:
        """The shared export thread, once a span started it."""
        return self._processor.thread

    def flush(self, timeout: float = 5.0) -> bool:
        return self._processor.flush(timeout)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Export what is queued, then let go (the last hold stops the thread, waiting)."""
        if self._held:
            self._processor.flush(timeout)
            with _shared_lock:
                last = self._let_go()
            _release_pending()
            if last is not None:
                last.shutdown(timeout)

    def stop(self) -> None:
        """Let go without waiting: from a garbage-collection finalizer, which may run on
        any thread at any allocation, even one holding the lock (then it lets go later,
        when that holder releases it)."""
        _pending.append(self)
        _release_pending()

    def _let_go(self) -> BatchSpanProcessor | None:
        """With the lock held: drop this hold; the processor to stop when it was the last."""
        if not self._held:
            return None
        self._held = False
        processor, holds = _shared[self._key]
        if holds > 1:
            _shared[self._key] = (processor, holds - 1)
            return None
        del _shared[self._key]
        return processor


_shared_lock = threading.Lock()
#: backend configuration -> (its processor, how many instrumentations hold it)
_shared: dict[str, tuple[BatchSpanProcessor, int]] = {}
#: holds let go by finalizers, released by whoever gets the lock next
_pending: deque[SharedProcessor] = deque()
#: processors a finalizer stopped, whose thread may still be draining: an instrumentation
#: of the same configuration made meanwhile (an app factory's next app) revives the
#: processor instead of starting a second thread beside the ending one
_retiring: dict[str, weakref.ReferenceType[BatchSpanProcessor]] = {}


def _release_pending() -> None:
    """Release the holds finalizers let go of; called after every release of the lock."""
    while _pending:
        if not _shared_lock.acquire(blocking=False):
            return  # its holder calls this again once it released the lock
        try:
            released = [(hold._key, hold._let_go()) for hold in _drain_pending()]
            last = [(key, processor) for key, processor in released if processor is not None]
            for key, processor in last:
                _retiring[key] = weakref.ref(processor)
        finally:
            _shared_lock.release()
        for _, processor in last:
            processor.stop()


def _drain_pending() -> list[SharedProcessor]:
    return [_pending.popleft() for _ in range(len(_pending))]


def shared_processor(config: MeshConfig, registry: CollectorRegistry) -> SharedProcessor:
    """A hold on the processor of ``config``'s backend; its counters are served in
    ``registry`` too (a process' figures for that backend, whichever app made the spans)."""
    key = repr(
        (
            config.tracing,
            config.trace_endpoint,
            config.trace_headers,
            config.trace_compression,
            config.trace_timeout,
            config.trace_certificate,
            config.service,
            config.namespace,
            config.version,
            config.resource_attributes,
            config.span_queue_size,
            config.span_queue_bytes,
            _identity(config.span_exporter),
        )
    )
    with _shared_lock:
        processor, holds = _shared.get(key, (None, 0))
        if processor is None:
            processor = _revived(key)
        if processor is None:
            processor = BatchSpanProcessor(
                exporter_for(config),
                SpanCounters(None),
                queue_size=config.span_queue_size,
                queue_bytes=config.span_queue_bytes,
            )
        _shared[key] = (processor, holds + 1)
    _release_pending()
    for counter in processor.counters.collectors:
        registry.register(counter)
    return SharedProcessor(key, processor)


def _identity(exporter: SpanExporter | None) -> int | None:
    """An exporter object's part of the key: itself, never its value.  While the key is
    used its processor holds the exporter, so no other object can take its id."""
    return None if exporter is None else id(exporter)


def _revived(key: str) -> BatchSpanProcessor | None:
    """With the lock held: the stopped processor of ``key`` when it can go on."""
    ref = _retiring.pop(key, None)
    processor = ref() if ref is not None else None
    return processor if processor is not None and processor.revive() else None
