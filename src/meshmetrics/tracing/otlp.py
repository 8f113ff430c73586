"""OTLP's messages, shared by its two transports (OTLP/HTTP and OTLP/gRPC).

:class:`OTLPEncoder` turns finished spans into an ``ExportTraceServiceRequest``;
:class:`PartialSuccess` reads the collector's ``ExportTraceServiceResponse``: spans it
says it rejected (``partial_success.rejected_spans``) are counted as dropped, not as
exported, its ``error_message`` is logged once per process, and the request is not
retried (the OTLP spec: "The client MUST NOT retry the request when it receives a
partial success response").  Needs the ``otlp`` extra (opentelemetry-proto).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..names import log

if TYPE_CHECKING:
    from .spans import MeshSpan

#: The longest collector message logged (a collector's text, not ours).
_MAX_MESSAGE = 500


def attribute_items(span: MeshSpan) -> list[tuple[str, Any]]:
    """The span's tags that are attributes (``span.kind`` and ``error`` are not)."""
    return [(k, v) for k, v in span.tags.items() if k not in ("span.kind", "error")]


class OTLPEncoder:
    """Spans of one service as an ``ExportTraceServiceRequest`` (protobuf)."""

    def __init__(self, service: str, resource: dict[str, str]) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        from opentelemetry.proto.common.v1 import common_pb2
        from opentelemetry.proto.resource.v1 import resource_pb2
        from opentelemetry.proto.trace.v1 import trace_pb2

        self._pb = (trace_service_pb2, common_pb2, trace_pb2)
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
            attributes=[self._attribute(k, v) for k, v in attribute_items(span)],
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

    def request(self, spans: list[MeshSpan]) -> Any:
        """The ``ExportTraceServiceRequest`` message of ``spans``."""
        trace_service_pb2, _, trace_pb2 = self._pb
        return trace_service_pb2.ExportTraceServiceRequest(
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


class PartialSuccess:
    """Reads ``partial_success`` from the collector's answers; logs its message once."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self._response = trace_service_pb2.ExportTraceServiceResponse
        self._logged = False

    def rejected(self, response: Any, sent: int) -> int:
        """Spans the collector says it rejected (at most ``sent``), from a response message
        or its bytes; an answer that is not one (empty, cut, another format) rejects none."""
        if isinstance(response, bytes | bytearray):
            message = self._response()
            try:
                message.ParseFromString(bytes(response))
            except Exception:  # protobuf's DecodeError: not an ExportTraceServiceResponse
                return 0
            response = message
        if not response.HasField("partial_success"):
            return 0
        partial = response.partial_success
        rejected = min(max(int(partial.rejected_spans), 0), sent)
        if not self._logged and (rejected or partial.error_message):
            self._logged = True
            log.warning(
                "meshmetrics: the trace collector rejected %d of %d spans (partial success, "
                'not retried; counted in meshmetrics_spans_dropped_total{reason="rejected"}; '
                "logged once): %s",
                rejected,
                sent,
                printable(partial.error_message),
            )
        return rejected


def printable(text: str) -> str:
    """A collector's message on one log line, bounded (OTLP/HTTP and OTLP/gRPC)."""
    return "".join(c if c.isprintable() else " " for c in text[:_MAX_MESSAGE]) or "(no message)"
