"""Span export off the request path: a bounded queue, a background thread, two wire formats.

Nothing here can fail a request: a full queue drops the span, a dead or missing
collector fails the batch; both are counted in ``meshmetrics_spans_dropped_total``.
The queue is bounded, so memory is too.  After ``fork()`` (gunicorn workers, the
reloader) the child gets a fresh queue and thread; at interpreter exit the queue
is flushed.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
import urllib.request
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter

if TYPE_CHECKING:
    from .tracing import MeshSpan

log = logging.getLogger("meshmetrics")

#: Longest pause of exports after failures (seconds); spans meanwhile count as export errors.
MAX_BACKOFF = 10.0

#: Largest datagram the Jaeger agent reads (its default max packet size).
MAX_UDP_PACKET = 65000


class Exporter(Protocol):
    """Sends finished spans; returns how many were too large to ever send."""

    def export(self, spans: list[MeshSpan]) -> int: ...

    def close(self) -> None: ...


class SpanCounters:
    """The exporter's own counters, in the instrumentation's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.exported = Counter(
            "meshmetrics_spans_exported_total",
            "Spans handed to the trace backend",
            registry=registry,
        )
        self.dropped = Counter(
            "meshmetrics_spans_dropped_total",
            "Spans lost before reaching the trace backend",
            ("reason",),
            registry=registry,
        )
        self.queue_full = self.dropped.labels("queue_full")
        self.too_large = self.dropped.labels("too_large")
        self.export_error = self.dropped.labels("export_error")


class BatchSpanProcessor:
    """Queues finished spans and exports them in batches from a daemon thread."""

    def __init__(
        self,
        exporter: Exporter,
        counters: SpanCounters,
        *,
        queue_size: int = 4096,
        batch_size: int = 100,
        interval: float = 0.5,
    ) -> None:
        self._exporter = exporter
        self._counters = counters
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._interval = interval
        self._reset()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _call(ref, "_reset"))
        atexit.register(_call, ref, "shutdown")

    def _reset(self) -> None:
        self._queue: deque[MeshSpan] = deque()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._warned = False
        self._backoff = 0.0
        self._backoff_until = 0.0

    def on_end(self, span: MeshSpan) -> None:
        """Called by a finished, sampled span: never blocks, never raises."""
        queue = self._queue
        if len(queue) >= self._queue_size:
            self._counters.queue_full.inc()
            return
        queue.append(span)
        if self._thread is None:
            self._start()
        if len(queue) >= self._batch_size:
            self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(
                    target=self._run, name="meshmetrics-span-export", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self._interval)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            batch = [queue.popleft() for _ in range(min(self._batch_size, len(queue)))]
            if time.monotonic() < self._backoff_until:
                # the backend just failed: drop without encoding, so a dead collector
                # costs the service no CPU (counted like any failed export)
                self._counters.export_error.inc(len(batch))
                continue
            try:
                too_large = self._exporter.export(batch)
            except Exception as exc:
                self._counters.export_error.inc(len(batch))
                self._backoff = min(max(self._backoff * 2, 0.5), MAX_BACKOFF)
                self._backoff_until = time.monotonic() + self._backoff
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "meshmetrics: span export failed (%s: %s); retrying with back-off, "
                        "failures are counted in "
                        'meshmetrics_spans_dropped_total{reason="export_error"}',
                        type(exc).__name__,
                        exc,
                    )
                continue
            self._backoff = 0.0
            self._counters.too_large.inc(too_large)
            self._counters.exported.inc(len(batch) - too_large)
        self._idle.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Export what is queued now; True when the queue emptied within ``timeout``."""
        if self._thread is None:
            self._drain()
            return not self._queue
        deadline = time.monotonic() + timeout
        while self._queue and time.monotonic() < deadline:
            self._idle.clear()
            self._wake.set()
            self._idle.wait(0.05)
        return not self._queue

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush, stop the thread and close the exporter (idempotent)."""
        if self._stopped:
            return
        self.flush(timeout)
        self._stopped = True
        self._wake.set()
        self._exporter.close()


def _call(ref: weakref.ReferenceType[BatchSpanProcessor], method: str) -> None:
    target = ref()
    if target is not None:
        getattr(target, method)()


# -- Jaeger agent: compact Thrift over UDP ----------------------------------------------


class JaegerUDPExporter:
    """``emitBatch`` to a Jaeger agent, split so each datagram fits ``MAX_UDP_PACKET``."""

    def __init__(self, service: str, host: str, port: int, process_tags: dict[str, str]) -> None:
        from jaeger_client.thrift_gen.jaeger import ttypes as jaeger_types

        ttypes: Any = jaeger_types  # generated, untyped
        self._ttypes = ttypes
        self._address = (host, port)
        self._process = ttypes.Process(
            serviceName=service,
            tags=[
                ttypes.Tag(key=k, vType=ttypes.TagType.STRING, vStr=v)
                for k, v in process_tags.items()
            ],
        )
        self._socket: socket.socket | None = None
        from jaeger_client.thrift_gen.agent import Agent
        from thrift.protocol.TCompactProtocol import TCompactProtocol
        from thrift.Thrift import TMessageType
        from thrift.transport.TTransport import TMemoryBuffer

        self._agent: Any = Agent  # generated, untyped
        header = TMemoryBuffer()
        TCompactProtocol(header).writeMessageBegin("emitBatch", TMessageType.ONEWAY, 0)
        self._header = bytes(header.getvalue())
        self._fast, self._args_spec = _fast_compact_encoder(self._agent.emitBatch_args)

    def _encode(self, spans: list[Any]) -> bytes:
        """An ``Agent.emitBatch`` oneway message in compact Thrift."""
        args = self._agent.emitBatch_args(
            batch=self._ttypes.Batch(process=self._process, spans=spans)
        )
        if self._fast is not None:  # thrift's C encoder: ~1 µs a span instead of ~200 µs
            return self._header + bytes(self._fast(args, self._args_spec))
        from thrift.protocol.TCompactProtocol import TCompactProtocol
        from thrift.transport.TTransport import TMemoryBuffer

        buffer = TMemoryBuffer()
        args.write(TCompactProtocol(buffer))
        return self._header + bytes(buffer.getvalue())

    def export(self, spans: list[MeshSpan]) -> int:
        if self._socket is None:
            self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        return self._send([self._to_thrift(span) for span in spans])

    def _send(self, thrift_spans: list[Any]) -> int:
        payload = self._encode(thrift_spans)
        if len(payload) <= MAX_UDP_PACKET:
            assert self._socket is not None
            self._socket.sendto(payload, self._address)
            return 0
        if len(thrift_spans) == 1:
            return 1  # one span larger than a datagram can never be delivered
        half = len(thrift_spans) // 2
        return self._send(thrift_spans[:half]) + self._send(thrift_spans[half:])

    def _to_thrift(self, span: MeshSpan) -> Any:
        t = self._ttypes
        trace_id = span.context.trace_id
        return t.Span(
            traceIdLow=_signed(trace_id & 0xFFFFFFFFFFFFFFFF),
            traceIdHigh=_signed(trace_id >> 64),
            spanId=_signed(span.context.span_id),
            parentSpanId=_signed(span.context.parent_id or 0),
            operationName=span.operation_name,
            flags=1 if span.context.sampled else 0,
            startTime=int(span.start_time * 1e6),
            duration=int(span.duration * 1e6),
            tags=[self._tag(k, v) for k, v in span.tags.items()],
            logs=[
                t.Log(timestamp=int(ts * 1e6), fields=[self._tag(k, v) for k, v in fields.items()])
                for ts, fields in span.logs
            ],
        )

    def _tag(self, key: str, value: Any) -> Any:
        t = self._ttypes
        if isinstance(value, bool):
            return t.Tag(key=key, vType=t.TagType.BOOL, vBool=value)
        if isinstance(value, int) and -(2**63) <= value < 2**63:
            return t.Tag(key=key, vType=t.TagType.LONG, vLong=value)
        if isinstance(value, float):
            return t.Tag(key=key, vType=t.TagType.DOUBLE, vDouble=value)
        return t.Tag(key=key, vType=t.TagType.STRING, vStr=str(value)[:4096])

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _fast_compact_encoder(struct: Any) -> tuple[Any, Any]:
    """thrift's C compact encoder and ``struct``'s spec in the layout it expects, if present.

    jaeger-client's generated code predates that layout (struct arguments as
    ``(class, spec)`` tuples instead of ``[class, spec]`` lists), so it is converted.
    """
    try:
        from thrift.protocol import fastbinary
    except ImportError:
        return None, None

    def spec(fields: Any) -> Any:
        if fields is None:
            return None
        return tuple(
            None if f is None else (f[0], f[1], f[2], args(f[1], f[3]), f[4]) for f in fields
        )

    def args(kind: int, value: Any) -> Any:
        if value is None:
            return None
        if kind == 12:  # struct
            return [value[0], spec(value[1])]
        if kind in (14, 15):  # set, list
            return (value[0], args(value[0], value[1]), False)
        if kind == 13:  # map
            return (value[0], args(value[0], value[1]), value[2], args(value[2], value[3]), False)
        return value

    return fastbinary.encode_compact, [struct, spec(struct.thrift_spec)]


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


# -- OTLP over HTTP (protobuf) -----------------------------------------------------------


class OTLPHTTPExporter:
    """``POST /v1/traces`` with an ``ExportTraceServiceRequest`` (what Jaeger >= 1.35 accepts)."""

    def __init__(self, service: str, endpoint: str, resource: dict[str, str], timeout: float = 5.0):
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        from opentelemetry.proto.common.v1 import common_pb2
        from opentelemetry.proto.resource.v1 import resource_pb2
        from opentelemetry.proto.trace.v1 import trace_pb2

        self._pb = (trace_service_pb2, common_pb2, trace_pb2)
        self._url = endpoint
        self._timeout = timeout
        attributes = {"service.name": service, **resource}
        self._resource = resource_pb2.Resource(
            attributes=[self._attribute(k, v) for k, v in attributes.items()]
        )

    def _attribute(self, key: str, value: Any) -> Any:
        common = self._pb[1]
        if isinstance(value, bool):
            any_value = common.AnyValue(bool_value=value)
        elif isinstance(value, int) and -(2**63) <= value < 2**63:
            any_value = common.AnyValue(int_value=value)
        elif isinstance(value, float):
            any_value = common.AnyValue(double_value=value)
        else:
            any_value = common.AnyValue(string_value=str(value)[:4096])
        return common.KeyValue(key=key, value=any_value)

    def _to_proto(self, span: MeshSpan) -> Any:
        trace_pb2 = self._pb[2]
        kind = {"server": 2, "client": 3}.get(str(span.tags.get("span.kind")), 1)
        start = int(span.start_time * 1e9)
        proto = trace_pb2.Span(
            trace_id=span.context.trace_id.to_bytes(16, "big"),
            span_id=span.context.span_id.to_bytes(8, "big"),
            name=span.operation_name,
            kind=kind,
            start_time_unix_nano=start,
            end_time_unix_nano=start + int(span.duration * 1e9),
            attributes=[self._attribute(k, v) for k, v in span.tags.items()],
            events=[
                trace_pb2.Span.Event(
                    time_unix_nano=int(ts * 1e9),
                    name=str(fields.get("event", "log")),
                    attributes=[self._attribute(k, v) for k, v in fields.items()],
                )
                for ts, fields in span.logs
            ],
        )
        if span.context.parent_id:
            proto.parent_span_id = span.context.parent_id.to_bytes(8, "big")
        if span.tags.get("error") is True:
            proto.status.code = trace_pb2.Status.STATUS_CODE_ERROR
        return proto

    def export(self, spans: list[MeshSpan]) -> int:
        trace_service_pb2, _, trace_pb2 = self._pb
        request = trace_service_pb2.ExportTraceServiceRequest(
            resource_spans=[
                trace_pb2.ResourceSpans(
                    resource=self._resource,
                    scope_spans=[
                        trace_pb2.ScopeSpans(
                            scope={"name": "meshmetrics"},
                            spans=[self._to_proto(span) for span in spans],
                        )
                    ],
                )
            ]
        )
        http_request = urllib.request.Request(
            self._url,
            data=request.SerializeToString(),
            method="POST",
            headers={"Content-Type": "application/x-protobuf"},
        )
        with urllib.request.urlopen(http_request, timeout=self._timeout) as response:
            response.read()
        return 0

    def close(self) -> None:
        pass
