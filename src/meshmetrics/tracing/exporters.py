"""Wire formats for finished spans: Jaeger's agent protocol and OTLP/HTTP.

Each exporter imports its optional dependency when it is built, which happens in
:func:`meshmetrics.instrument`: a missing extra is a configuration error there,
never a failed request.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any

from .._http import fetch

if TYPE_CHECKING:
    from ..config import HostPort, HttpEndpoint
    from .spans import MeshSpan

#: Largest datagram the Jaeger agent reads (its default max packet size).
MAX_UDP_PACKET = 65000
#: A collector's answer to an export is small; more is not read.
_MAX_ANSWER = 1024 * 1024


class ExportRejectedError(OSError):
    """The trace backend answered, but not with success (a 3xx, 4xx or 5xx status)."""


# -- Jaeger agent: compact Thrift over UDP ----------------------------------------------


class JaegerUDPExporter:
    """``emitBatch`` to a Jaeger agent, split so each datagram fits ``MAX_UDP_PACKET``.

    UDP confirms nothing: spans sent to a port where no agent listens are lost without an
    error, so they are counted as *sent* (``meshmetrics_spans_sent_total``), never as
    exported."""

    confirms_delivery = False

    def __init__(self, service: str, endpoint: HostPort, process_tags: dict[str, str]) -> None:
        from jaeger_client.thrift_gen.jaeger import ttypes as jaeger_types

        ttypes: Any = jaeger_types  # generated, untyped
        self._ttypes = ttypes
        self._endpoint = endpoint
        self._address: Any = None
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
            self._connect()
        return self._send([self._to_thrift(span) for span in spans])

    def _connect(self) -> None:
        """Resolve the agent (IPv4 or IPv6) on the export thread, never on a request."""
        family, kind, proto, _, address = socket.getaddrinfo(
            self._endpoint.host, self._endpoint.port, type=socket.SOCK_DGRAM
        )[0]
        self._socket = socket.socket(family, kind, proto)
        self._address = address

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


# -- HTTP delivery, shared by OTLP and Zipkin --------------------------------------------

#: Statuses after which the spec says to retry (with the server's Retry-After when given).
RETRYABLE = frozenset({429, 502, 503, 504})
_FIRST_BACKOFF = 0.5


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpSender:
    """POSTs one batch within ``timeout`` seconds in all: headers, gzip, a CA file, and
    retries on 429/502/503/504 honouring ``Retry-After`` while the budget lasts.  Only a
    2xx counts as delivered (a redirected POST delivered nothing)."""

    def __init__(
        self,
        endpoint: HttpEndpoint,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        compression: str = "none",
        timeout: float = 10.0,
        certificate: str | None = None,
    ) -> None:
        self.url = endpoint.url
        self._headers = dict(headers)
        self._gzip = compression == "gzip"
        self._timeout = timeout
        self._context = ssl.create_default_context(cafile=certificate) if certificate else None
        self.retries = 0

    def post(self, body: bytes, content_type: str) -> None:
        headers = {**self._headers, "Content-Type": content_type}
        if self._gzip:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        deadline = time.monotonic() + self._timeout
        backoff = _FIRST_BACKOFF
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.url}: no success within {self._timeout:g} s")
            answer = fetch(
                self.url,
                method="POST",
                body=body,
                headers=headers,
                timeout=remaining,
                max_bytes=_MAX_ANSWER,
                context=self._context,
            )
            if 200 <= answer.status < 300:
                return
            if answer.status not in RETRYABLE:
                raise ExportRejectedError(f"{self.url} answered {answer.status}")
            wait = retry_after(answer.headers.get("retry-after"))
            wait = backoff if wait is None else wait
            if time.monotonic() + wait >= deadline:
                raise ExportRejectedError(
                    f"{self.url} answered {answer.status}; retrying after {wait:g} s would "
                    f"pass the {self._timeout:g} s budget"
                )
            self.retries += 1
            time.sleep(wait)
            backoff *= 2


def _attribute_items(span: MeshSpan) -> list[tuple[str, Any]]:
    """The span's tags that are attributes (``span.kind`` and ``error`` are not)."""
    return [(k, v) for k, v in span.tags.items() if k not in ("span.kind", "error")]


# -- OTLP over HTTP (protobuf) -----------------------------------------------------------


class OTLPHTTPExporter:
    """``POST /v1/traces`` with an ``ExportTraceServiceRequest`` (OTLP/HTTP, protobuf)."""

    confirms_delivery = True

    def __init__(self, service: str, sender: HttpSender, resource: dict[str, str]) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        from opentelemetry.proto.common.v1 import common_pb2
        from opentelemetry.proto.resource.v1 import resource_pb2
        from opentelemetry.proto.trace.v1 import trace_pb2

        self._pb = (trace_service_pb2, common_pb2, trace_pb2)
        self.sender = sender
        attributes = {**resource, "service.name": service}
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
            attributes=[self._attribute(k, v) for k, v in _attribute_items(span)],
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
        self.sender.post(request.SerializeToString(), "application/x-protobuf")
        return 0

    def close(self) -> None:
        pass


# -- Zipkin v2 JSON over HTTP --------------------------------------------------------------


class ZipkinExporter:
    """``POST /api/v2/spans`` with Zipkin's v2 JSON: what Istio's Envoys send, accepted by
    Zipkin and by the Jaeger add-on of every Istio version (``zipkin.istio-system:9411``)."""

    confirms_delivery = True

    def __init__(self, service: str, sender: HttpSender, resource: dict[str, str]) -> None:
        self.sender = sender
        self._endpoint = {"serviceName": service}
        self._resource_tags = {k: str(v) for k, v in resource.items()}

    def _span(self, span: MeshSpan) -> dict[str, Any]:
        context = span.context
        trace = f"{context.trace_id:032x}" if context.trace_id >> 64 else f"{context.trace_id:016x}"
        out: dict[str, Any] = {
            "traceId": trace,
            "id": f"{context.span_id:016x}",
            "name": span.operation_name,
            "timestamp": int(span.start_time * 1e6),
            "duration": max(1, int(span.duration * 1e6)),
            "localEndpoint": self._endpoint,
            "tags": {**self._resource_tags, **{k: str(v) for k, v in _attribute_items(span)}},
        }
        if context.parent_id:
            out["parentId"] = f"{context.parent_id:016x}"
        kind = span.tags.get("span.kind")
        if kind in ("server", "client"):
            out["kind"] = str(kind).upper()
        if span.tags.get("error") is True:
            out["tags"]["error"] = str(span.tags.get("error.type", "true"))
        if context.debug:
            out["debug"] = True
        if span.logs:
            out["annotations"] = [
                {"timestamp": int(ts * 1e6), "value": str(fields.get("event", "log"))}
                for ts, fields in span.logs
            ]
        return out

    def export(self, spans: list[MeshSpan]) -> int:
        body = json.dumps([self._span(span) for span in spans], separators=(",", ":"))
        self.sender.post(body.encode(), "application/json")
        return 0

    def close(self) -> None:
        pass
