"""Jaeger's ``Agent.emitBatch`` written straight in Thrift's compact protocol.

jaeger-client's generated ``Span``/``Tag``/``Log`` objects cost more per span than the
rest of a sampled request; this writes the bytes thrift's compact encoder writes for the
objects :class:`~.exporters.JaegerUDPExporter` used to build, span by span, with no
object in between.  Tests decode its output with jaeger-client's Thrift model and
compare it byte for byte with thrift's own encoder.

Tags repeat from span to span: their encodings are kept (:mod:`.wire`).
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
# compact types and field headers ((field id delta << 4) | type)
_STRUCT = 0x0C
_STOP = b"\x00"
# TagType: STRING 0, DOUBLE 1, BOOL 2, LONG 3, as zigzag i32 after field 2's header 0x15
_STRING_TAG = b"\x15\x00\x18"  # vType STRING, then vStr (field 3, binary)
_DOUBLE_TAG = b"\x15\x02\x27"  # vType DOUBLE, then vDouble (field 4, double)
_TRUE_TAG = b"\x15\x04\x31"  # vType BOOL, then vBool true (field 5)
_FALSE_TAG = b"\x15\x04\x32"  # vType BOOL, then vBool false (field 5)
_LONG_TAG = b"\x15\x06\x46"  # vType LONG, then vLong (field 6, i64)


def _i64(value: int) -> bytes:
    """A zigzag varint of a signed 64-bit value."""
    return varint(((value << 1) ^ (value >> 63)) & _MASK64)


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _binary(text: str) -> bytes:
    data = text.encode()
    length = len(data)
    return (BYTE[length] if length < 128 else varint(length)) + data


def list_header(size: int, element_type: int) -> bytes:
    if size < 15:
        return BYTE[(size << 4) | element_type]
    return BYTE[0xF0 | element_type] + varint(size)


def tag(key: str, value: Any) -> bytes:
    """A ``Tag`` struct as :meth:`JaegerUDPExporter._tag` chose its type."""
    head = b"\x18" + _binary(key)
    if isinstance(value, bool):
        return head + (_TRUE_TAG if value else _FALSE_TAG) + _STOP
    if isinstance(value, int) and -_INT64 <= value < _INT64:
        return head + _LONG_TAG + _i64(value) + _STOP
    if isinstance(value, float):
        return head + _DOUBLE_TAG + _DOUBLE.pack(value) + _STOP
    return head + _STRING_TAG + _binary(str(value)[:4096]) + _STOP


_TAGS = AttributeCache(lambda k, v: tag(k, v))


def _tags(fields: dict[str, Any]) -> bytes:
    return list_header(len(fields), _STRUCT) + b"".join(_TAGS.encode_all(fields.items()))


def span(span: MeshSpan) -> bytes:
    """One ``Span`` struct, as :meth:`JaegerUDPExporter._to_thrift` filled it."""
    context = span.context
    trace_id = context.trace_id
    parts = [
        b"\x16",
        _i64(_signed(trace_id & _MASK64)),
        b"\x16",
        _i64(_signed(trace_id >> 64)),
        b"\x16",
        _i64(_signed(context.span_id)),
        b"\x16",
        _i64(_signed(context.parent_id or 0)),
        b"\x18",
        _binary(span.operation_name),
        b"\x25",  # flags: field 7, i32
        b"\x02" if context.sampled else b"\x00",
        b"\x16",
        _i64(int(span.start_time * 1e6)),
        b"\x16",
        _i64(int(span.duration * 1e6)),
        b"\x19",
        _tags(span.tags),
        b"\x19",
        list_header(len(span.logs), _STRUCT),
    ]
    for ts, fields in span.logs:
        parts += (b"\x16", _i64(int(ts * 1e6)), b"\x19", _tags(fields), _STOP)
    parts.append(_STOP)
    return b"".join(parts)


class BatchWriter:
    """``emitBatch`` messages of one process (service and tags) around encoded spans."""

    def __init__(self, header: bytes, service: str, process_tags: dict[str, str]) -> None:
        process = b"\x18" + _binary(service)
        process += b"\x19" + list_header(len(process_tags), _STRUCT)
        process += b"".join(tag(k, v) for k, v in process_tags.items()) + _STOP
        # the message header, emitBatch_args.batch (field 1, struct), Batch.process (field
        # 1, struct), then Batch.spans (field 2, list)
        self._prefix = header + b"\x1c\x1c" + process + b"\x19"

    def size(self, spans: list[bytes]) -> int:
        """The length of the message carrying these encoded spans."""
        count = len(spans)
        header = 1 if count < 15 else 1 + len(varint(count))
        return len(self._prefix) + header + sum(len(s) for s in spans) + 2

    def message(self, spans: list[bytes]) -> bytes:
        """The message carrying these encoded spans (then the Batch's and args' stops)."""
        return b"".join([self._prefix, list_header(len(spans), _STRUCT), *spans, b"\x00\x00"])
