"""The direct wire encoders write exactly what the libraries' message objects serialize.

:mod:`meshmetrics.tracing.otlp_wire` against opentelemetry-proto's messages (built by
:class:`~meshmetrics.tracing.otlp.OTLPEncoder`, the reference), and
:mod:`meshmetrics.tracing.jaeger_wire` against jaeger-client's Thrift objects written by
thrift's own compact protocol: byte for byte, then decoded, over generated spans
(unicode, large and negative ints, every attribute type, events, status, parents).
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jaeger_client.thrift_gen.agent import Agent
from jaeger_client.thrift_gen.jaeger import ttypes
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.Thrift import TMessageType
from thrift.transport.TTransport import TMemoryBuffer

from meshmetrics.config import HostPort
from meshmetrics.tracing.exporters import MAX_UDP_PACKET, JaegerUDPExporter, ZipkinExporter
from meshmetrics.tracing.otlp import OTLPEncoder
from meshmetrics.tracing.otlp_wire import _SPAN_ATTRIBUTES, RequestWriter, _field, key_value
from meshmetrics.tracing.spans import MeshSpan, MeshSpanContext
from meshmetrics.tracing.wire import varint
from meshmetrics.tracing.zipkin_wire import SpanWriter

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)
keys = st.one_of(text, st.sampled_from(["span.kind", "error", "http.route", ""]))
values = st.one_of(
    text,
    st.text(max_size=5000, alphabet="ab€"),  # past the 4096 cap and the cache's length
    st.booleans(),
    st.integers(),  # beyond int64 too: sent as text
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.sampled_from(["server", "client", True, False, 0, -0.0, 1e300, ""]),
)
fields = st.dictionaries(keys, values, max_size=12)
times = st.floats(min_value=1.0, max_value=4e9)


@st.composite
def spans(draw: st.DrawFn) -> MeshSpan:
    context = MeshSpanContext(
        draw(st.integers(1, 2**128 - 1)),
        draw(st.integers(1, 2**64 - 1)),
        draw(st.one_of(st.none(), st.integers(0, 2**64 - 1))),
        draw(st.booleans()),
        draw(st.booleans()),
    )
    span = MeshSpan(None, context, draw(text), draw(fields), draw(times))  # type: ignore[arg-type]
    span.duration = draw(st.floats(min_value=0.0, max_value=1e5))
    span.logs = draw(st.lists(st.tuples(times, fields), max_size=3))
    return span


RESOURCE = {"service.namespace": "shop", "service.version": "1.2", "ünï": "cödé"}
_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(st.lists(spans(), min_size=1, max_size=4))
def test_otlp_bytes_are_opentelemetry_protos(batch: list[MeshSpan]) -> None:
    expected = OTLPEncoder("orders", RESOURCE).request(batch)
    written = RequestWriter("orders", RESOURCE).request(batch)
    assert written == expected.SerializeToString()
    decoded = trace_service_pb2.ExportTraceServiceRequest.FromString(written)
    assert decoded == expected


def test_otlp_encodes_each_case_of_a_value() -> None:
    """Every AnyValue case, a parent, an event and the error status, decoded."""
    context = MeshSpanContext(2**127 + 5, 2**63 + 7, 9, True)
    tags: dict[str, Any] = {
        "span.kind": "client",
        "error": True,
        "s": "naïve ☃",
        "b": False,
        "i": -(2**63),
        "big": 2**64,
        "f": -0.0,
        "inf": math.inf,
    }
    span = MeshSpan(None, context, "GET /", tags, 1700000000.25)  # type: ignore[arg-type]
    span.duration = 0.5
    span.logs = [(1700000000.5, {"event": "error", "message": "boom"})]
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(
        RequestWriter("svc", {}).request([span])
    )
    (decoded,) = request.resource_spans[0].scope_spans[0].spans
    assert decoded.kind == 3
    assert decoded.status.code == 2
    assert decoded.parent_span_id == (9).to_bytes(8, "big")
    start = int(1700000000.25 * 1e9)  # as the span's float seconds give it
    assert decoded.start_time_unix_nano == start
    assert decoded.end_time_unix_nano == start + 500_000_000
    attributes = {a.key: a.value for a in decoded.attributes}
    assert set(attributes) == {"s", "b", "i", "big", "f", "inf"}
    assert attributes["s"].string_value == "naïve ☃"
    assert attributes["b"].HasField("bool_value")
    assert not attributes["b"].bool_value
    assert attributes["i"].int_value == -(2**63)
    assert attributes["big"].string_value == str(2**64)
    assert math.copysign(1.0, attributes["f"].double_value) == -1.0
    assert attributes["inf"].double_value == math.inf
    assert decoded.events[0].name == "error"


# -- Jaeger: the reference is jaeger-client's objects written by thrift -------------------


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _thrift_tag(key: str, value: Any) -> Any:
    t = ttypes
    if isinstance(value, bool):
        return t.Tag(key=key, vType=t.TagType.BOOL, vBool=value)
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return t.Tag(key=key, vType=t.TagType.LONG, vLong=value)
    if isinstance(value, float):
        return t.Tag(key=key, vType=t.TagType.DOUBLE, vDouble=value)
    return t.Tag(key=key, vType=t.TagType.STRING, vStr=str(value)[:4096])


def _thrift_span(span: MeshSpan) -> Any:
    trace_id = span.context.trace_id
    return ttypes.Span(
        traceIdLow=_signed(trace_id & 0xFFFFFFFFFFFFFFFF),
        traceIdHigh=_signed(trace_id >> 64),
        spanId=_signed(span.context.span_id),
        parentSpanId=_signed(span.context.parent_id or 0),
        operationName=span.operation_name,
        flags=1 if span.context.sampled else 0,
        startTime=int(span.start_time * 1e6),
        duration=int(span.duration * 1e6),
        tags=[_thrift_tag(k, v) for k, v in span.tags.items()],
        logs=[
            ttypes.Log(timestamp=int(ts * 1e6), fields=[_thrift_tag(k, v) for k, v in f.items()])
            for ts, f in span.logs
        ],
    )


PROCESS_TAGS = {"namespace": "shop", "version": "1.2"}


def _thrift_message(batch: list[MeshSpan]) -> bytes:
    buffer = TMemoryBuffer()
    protocol = TCompactProtocol(buffer)
    protocol.writeMessageBegin("emitBatch", TMessageType.ONEWAY, 0)
    process = ttypes.Process(
        serviceName="orders",
        tags=[
            ttypes.Tag(key=k, vType=ttypes.TagType.STRING, vStr=v) for k, v in PROCESS_TAGS.items()
        ],
    )
    batch_struct = ttypes.Batch(process=process, spans=[_thrift_span(s) for s in batch])
    Agent.emitBatch_args(batch=batch_struct).write(protocol)
    return bytes(buffer.getvalue())


def _exporter() -> JaegerUDPExporter:
    return JaegerUDPExporter("orders", HostPort("127.0.0.1", 6831), PROCESS_TAGS)


def _decode(message: bytes) -> Any:
    protocol = TCompactProtocol(TMemoryBuffer(message))
    protocol.readMessageBegin()
    args = Agent.emitBatch_args()
    args.read(protocol)
    return args.batch


@_settings
@given(st.lists(spans(), min_size=1, max_size=20))
def test_jaeger_bytes_are_thrifts(batch: list[MeshSpan]) -> None:
    exporter = _exporter()
    written = exporter._encode([exporter._to_thrift(span) for span in batch])
    assert written == _thrift_message(batch)
    decoded = _decode(written)
    assert decoded.process.serviceName == "orders"
    assert [s.spanId for s in decoded.spans] == [_signed(s.context.span_id) for s in batch]


def test_jaeger_splits_batches_as_before() -> None:
    """Datagrams past the agent's limit split in halves, each the same message as thrift's."""
    sent: list[bytes] = []
    exporter = _exporter()

    class Socket:
        def sendto(self, payload: bytes, address: Any) -> None:
            sent.append(payload)

    exporter._socket = Socket()  # type: ignore[assignment]
    context = MeshSpanContext(1, 2, None, True)
    batch = [
        MeshSpan(None, context, f"op{i}", {"blob": "x" * 4000, "n": i}, 1.0)  # type: ignore[arg-type]
        for i in range(40)
    ]
    assert exporter.export(batch).too_large == 0
    assert all(len(payload) <= MAX_UDP_PACKET for payload in sent)
    assert len(sent) > 1
    assert sent == [
        _thrift_message(batch[:10]),
        *[_thrift_message(batch[i : i + 10]) for i in (10, 20, 30)],
    ]


def _loop_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 20000)))
def test_varint_is_protobufs(value: int) -> None:
    assert varint(value) == _loop_varint(value)


def test_cached_attributes_keep_types_apart() -> None:
    """True, 1 and 1.0 are equal in Python: each keeps its own encoding."""
    for value in (True, 1, 1.0, 0.0, -0.0, False, 0, "1"):
        (written,) = _SPAN_ATTRIBUTES.encode_all([("k", value)])
        assert written == _field(b"\x4a", key_value("k", value))


# -- Zipkin: the reference is json.dumps of the exporter's dicts ---------------------------


@_settings
@given(
    st.lists(spans(), min_size=1, max_size=4),
    st.sampled_from([RESOURCE, {}, {"error": "x", "http.route": "r"}]),
)
def test_zipkin_text_is_json_dumps(batch: list[MeshSpan], resource: dict[str, str]) -> None:
    exporter = ZipkinExporter("orders", None, resource)  # type: ignore[arg-type]
    expected = json.dumps([exporter._span(s) for s in batch], separators=(",", ":"))
    assert SpanWriter("orders", resource).body(batch) == expected.encode()
    assert len(json.loads(expected)) == len(batch)
