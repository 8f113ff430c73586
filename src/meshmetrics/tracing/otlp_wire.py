"""OTLP's ``ExportTraceServiceRequest`` written straight in protobuf's wire format.

Building opentelemetry-proto's message objects cost more than everything else a sampled
request does; this writes the same bytes protobuf's ``SerializeToString`` writes for the
message :class:`~.otlp.OTLPEncoder` builds (fields in number order, proto3 defaults
left out, a oneof's value always written), span by span, with no message object.  Tests
decode its output with opentelemetry-proto and compare it byte for byte.

Attributes repeat from span to span: their encodings are kept (:mod:`.wire`).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from .wire import BYTE, AttributeCache, varint

if TYPE_CHECKING:
    from .spans import MeshSpan

_INT64 = 1 << 63
_MASK64 = (1 << 64) - 1
_DOUBLE = struct.Struct("<d")
_FIXED64 = struct.Struct("<Q")
_KIND = {"server": 2, "client": 3}
#: ``status { code: STATUS_CODE_ERROR }``: field 15, 2 bytes, field 3 varint 2.
_ERROR_STATUS = b"\x7a\x02\x18\x02"


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte(s), the length, the payload."""
    length = len(payload)
    return tag + (BYTE[length] if length < 128 else varint(length)) + payload


def _text(tag: bytes, text: str) -> bytes:
    return _field(tag, text.encode())


def any_value(value: Any) -> bytes:
    """An ``AnyValue`` as :meth:`OTLPEncoder._attribute` chooses its case."""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int) and -_INT64 <= value < _INT64:
        return b"\x18" + varint(value & _MASK64)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    return _text(b"\x0a", str(value)[:4096])


def key_value(key: str, value: Any) -> bytes:
    """A ``KeyValue`` message (its bytes, without the enclosing field's tag)."""
    value_field = _field(b"\x12", any_value(value))
    return _text(b"\x0a", key) + value_field if key else value_field


_SPAN_ATTRIBUTES = AttributeCache(lambda k, v: _field(b"\x4a", key_value(k, v)))  # field 9
_EVENT_ATTRIBUTES = AttributeCache(lambda k, v: _field(b"\x1a", key_value(k, v)))  # field 3
_NOT_ATTRIBUTES = frozenset({"span.kind", "error"})


def _nanos(tag: bytes, value: int) -> bytes:
    """A fixed64 field; left out at zero, as protobuf leaves out a proto3 default."""
    return tag + _FIXED64.pack(value & _MASK64) if value else b""


def span(span: MeshSpan) -> bytes:
    """One ``Span`` message, as :meth:`OTLPEncoder._to_proto` fills it."""
    context = span.context
    tags = span.tags
    start = int(span.start_time * 1e9)
    parts = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),
    ]
    if context.parent_id:
        parts.append(b"\x22\x08" + context.parent_id.to_bytes(8, "big"))
    if span.operation_name:
        parts.append(_text(b"\x2a", span.operation_name))
    parts.append(b"\x30" + BYTE[_KIND.get(str(tags.get("span.kind")), 1)])
    parts.append(_nanos(b"\x39", start))
    parts.append(_nanos(b"\x41", start + int(span.duration * 1e9)))
    parts += _SPAN_ATTRIBUTES.encode_all(tags.items(), _NOT_ATTRIBUTES)
    for ts, fields in span.logs:
        parts.append(_field(b"\x5a", _event(ts, fields)))
    if tags.get("error") is True:
        parts.append(_ERROR_STATUS)
    return b"".join(parts)


def _event(ts: float, fields: dict[str, Any]) -> bytes:
    name = str(fields.get("event", "log"))
    head = _nanos(b"\x09", int(ts * 1e9)) + (_text(b"\x12", name) if name else b"")
    return head + b"".join(_EVENT_ATTRIBUTES.encode_all(fields.items()))


class RequestWriter:
    """``ExportTraceServiceRequest`` bytes for the spans of one service."""

    def __init__(self, service: str, resource: dict[str, str]) -> None:
        attributes = {**resource, "service.name": service}
        encoded = b"".join(_field(b"\x0a", key_value(k, v)) for k, v in attributes.items())
        self._resource = _field(b"\x0a", encoded)  # ResourceSpans.resource = 1
        self._scope = _field(b"\x0a", _text(b"\x0a", "meshmetrics"))  # ScopeSpans.scope = 1

    def request(self, spans: list[MeshSpan]) -> bytes:
        """The serialized request carrying ``spans``."""
        scope_spans = b"".join([self._scope, *(_field(b"\x12", span(s)) for s in spans)])
        resource_spans = self._resource + _field(b"\x12", scope_spans)
        return _field(b"\x0a", resource_spans)
