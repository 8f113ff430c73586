"""Wire formats for finished spans: Jaeger's agent protocol and OTLP/HTTP.

Each exporter imports its optional dependency when it is built, which happens in
:func:`meshmetrics.instrument`: a missing extra is a configuration error there,
never a failed request.
"""

from __future__ import annotations

import socket
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
    """``emitBatch`` to a Jaeger agent, split so each datagram fits ``MAX_UDP_PACKET``."""

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


# -- OTLP over HTTP (protobuf) -----------------------------------------------------------


class OTLPHTTPExporter:
    """``POST /v1/traces`` with an ``ExportTraceServiceRequest`` (what Jaeger >= 1.35 accepts)."""

    def __init__(
        self,
        service: str,
        endpoint: HttpEndpoint,
        resource: dict[str, str],
        timeout: float = 5.0,
    ) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        from opentelemetry.proto.common.v1 import common_pb2
        from opentelemetry.proto.resource.v1 import resource_pb2
        from opentelemetry.proto.trace.v1 import trace_pb2

        self._pb = (trace_service_pb2, common_pb2, trace_pb2)
        self._url = endpoint.url
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
        answer = fetch(
            self._url,
            method="POST",
            body=request.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
            timeout=self._timeout,
            max_bytes=_MAX_ANSWER,
        )
        if not 200 <= answer.status < 300:
            # a redirect is a failure too: a POST answered 3xx delivered nothing
            raise ExportRejectedError(f"{self._url} answered {answer.status}")
        return 0

    def close(self) -> None:
        pass
