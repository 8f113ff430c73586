"""Span receivers on 127.0.0.1: a Jaeger agent (compact Thrift over UDP), an OTLP/HTTP
collector, an OTLP/gRPC collector (a real grpcio server) and a Zipkin v2 collector,
decoding what meshmetrics (or any client) sends.

The demo shows traces with them without a Jaeger server; the tests assert on what
they decode.  Needs the ``jaeger`` and ``otlp`` extras (``otlp-grpc`` for gRPC).
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Span:
    """A decoded span, whichever wire format it came in."""

    service: str
    trace_id: int
    span_id: int
    parent_id: int
    operation: str
    tags: dict[str, Any]
    logs: list[dict[str, Any]]
    #: Start, seconds since the epoch.
    start: float = 0.0


def _unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


class _Receiver:
    """Collects decoded spans; tests and the demo wait for them."""

    spans: list[Span]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Span]:
        """The spans received once ``count`` arrived, or when ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        while len(self.spans) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.spans)


class JaegerAgent(_Receiver):
    """Receives ``emitBatch`` datagrams on 127.0.0.1 and decodes them."""

    def __init__(self) -> None:
        # Imported here, not in the thread: a concurrent first import of jaeger_client
        # from two threads can deadlock on its circular imports.
        from jaeger_client.thrift_gen.agent import Agent
        from thrift.protocol.TCompactProtocol import TCompactProtocol
        from thrift.transport.TTransport import TMemoryBuffer

        self._decode: Any = (Agent, TCompactProtocol, TMemoryBuffer)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)  # close() returns within 50 ms
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"127.0.0.1:{self.port}"
        self.spans: list[Span] = []
        self.datagrams = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        agent, TCompactProtocol, TMemoryBuffer = self._decode  # noqa: N806 - classes
        while not self._stop:
            try:
                data = self.sock.recv(70000)
            except (TimeoutError, OSError):
                continue
            self.datagrams += 1
            protocol = TCompactProtocol(TMemoryBuffer(data))
            protocol.readMessageBegin()
            args = agent.emitBatch_args()
            args.read(protocol)
            batch = args.batch
            for s in batch.spans:
                tags = {}
                for t in s.tags or []:
                    tags[t.key] = next(
                        v for v in (t.vStr, t.vBool, t.vLong, t.vDouble) if v is not None
                    )
                logs = [
                    {f.key: f.vStr if f.vStr is not None else f.vLong for f in log.fields}
                    for log in s.logs or []
                ]
                self.spans.append(
                    Span(
                        batch.process.serviceName,
                        (_unsigned(s.traceIdHigh) << 64) | _unsigned(s.traceIdLow),
                        _unsigned(s.spanId),
                        _unsigned(s.parentSpanId),
                        s.operationName,
                        tags,
                        logs,
                        (s.startTime or 0) / 1e6,
                    )
                )

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


#: What an HTTP receiver answers: status and headers, and optionally a body.
HTTPAnswer = tuple[int, dict[str, str]] | tuple[int, dict[str, str], bytes]


class _HTTPReceiver(_Receiver):
    """An HTTP receiver: records each request (path, headers), gunzips bodies, and answers
    with ``answers`` in turn (``(status, headers[, body])``), then with ``default_answer``
    (200 unless set: a receiver that always throttles sets ``(503, {...})``)."""

    def __init__(self, decode: Any) -> None:
        receiver = self
        self.spans: list[Span] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.answers: list[HTTPAnswer] = []
        self.default_answer: HTTPAnswer = (200, {})

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.requests.append((self.path, dict(self.headers.items())))
                answer = receiver.answers.pop(0) if receiver.answers else receiver.default_answer
                status, headers = answer[0], answer[1]
                payload = answer[2] if len(answer) > 2 else b""
                if status == 200:
                    receiver.spans.extend(decode(body))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        # a short poll interval: close() returns within 50 ms
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class OTLPCollector(_HTTPReceiver):
    """Accepts ``POST /v1/traces`` with an ``ExportTraceServiceRequest``."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        self.resources: list[dict[str, Any]] = []

        def decode(body: bytes) -> list[Span]:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            return _otlp_spans(request, self.resources)

        super().__init__(decode)
        self.endpoint = f"{self.base}/v1/traces"


def _otlp_spans(request: Any, resources: list[dict[str, Any]]) -> list[Span]:
    """The spans of an ``ExportTraceServiceRequest``; each resource appended to
    ``resources``."""
    decoded = []
    for resource_spans in request.resource_spans:
        resource = {
            a.key: getattr(a.value, a.value.WhichOneof("value"))
            for a in resource_spans.resource.attributes
        }
        resources.append(resource)
        for scope in resource_spans.scope_spans:
            for s in scope.spans:
                tags = {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in s.attributes}
                parent = int.from_bytes(s.parent_span_id, "big") if s.parent_span_id else 0
                decoded.append(
                    Span(
                        str(resource.get("service.name", "")),
                        int.from_bytes(s.trace_id, "big"),
                        int.from_bytes(s.span_id, "big"),
                        parent,
                        s.name,
                        tags,
                        [],
                        s.start_time_unix_nano / 1e9,
                    )
                )
    return decoded


@dataclass
class GrpcAnswer:
    """What the gRPC collector answers one ``Export``: a status code (``OK`` or a
    ``grpc.StatusCode`` name), a ``RetryInfo`` delay in seconds (throttling), a partial
    success, and a pause before answering (a slow collector)."""

    code: str = "OK"
    retry_delay: float | None = None
    rejected: int = 0
    message: str = ""
    pause: float = 0.0
    #: Spans of a request answered with an error are not kept.
    keep: bool = field(init=False, default=True)

    def __post_init__(self) -> None:
        self.keep = self.code == "OK"


class OTLPGrpcCollector(_Receiver):
    """``TraceService/Export`` on 127.0.0.1 (grpcio): decodes spans, records each call's
    metadata, answers with ``answers`` in turn, then ``default_answer``.  With
    ``tls=(key_pem, cert_pem)`` it serves TLS only.  ``endpoint`` is the URL to configure
    (``http://`` or ``https://``)."""

    def __init__(self, tls: tuple[bytes, bytes] | None = None) -> None:
        from concurrent import futures

        import grpc
        from google.protobuf import duration_pb2
        from google.rpc import error_details_pb2, status_pb2
        from opentelemetry.proto.collector.trace.v1 import (
            trace_service_pb2,
            trace_service_pb2_grpc,
        )

        receiver = self
        self.spans: list[Span] = []
        self.resources: list[dict[str, Any]] = []
        self.calls: list[dict[str, str]] = []
        self.answers: list[GrpcAnswer] = []
        self.default_answer = GrpcAnswer()

        def abort(context: Any, answer: GrpcAnswer) -> None:
            code = getattr(grpc.StatusCode, answer.code)
            if answer.retry_delay is not None:
                seconds = int(answer.retry_delay)
                delay = duration_pb2.Duration(
                    seconds=seconds, nanos=int((answer.retry_delay - seconds) * 1e9)
                )
                status = status_pb2.Status(code=code.value[0], message=answer.code)
                status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
                context.set_trailing_metadata(
                    (("grpc-status-details-bin", status.SerializeToString()),)
                )
            context.abort(code, answer.message or answer.code)

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's name
                receiver.calls.append(dict(context.invocation_metadata()))
                with receiver._lock:
                    answer = receiver.answers.pop(0) if receiver.answers else None
                answer = answer or receiver.default_answer
                if answer.pause:
                    time.sleep(answer.pause)
                if not answer.keep:
                    abort(context, answer)
                receiver.spans.extend(_otlp_spans(request, receiver.resources))
                response = trace_service_pb2.ExportTraceServiceResponse()
                if answer.rejected or answer.message:
                    response.partial_success.rejected_spans = answer.rejected
                    response.partial_success.error_message = answer.message
                return response

        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        stubs: Any = trace_service_pb2_grpc  # generated, untyped
        stubs.add_TraceServiceServicer_to_server(Service(), self.server)
        if tls is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
            self.endpoint = f"http://127.0.0.1:{self.port}"
        else:
            credentials = grpc.ssl_server_credentials([tls])
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
            self.endpoint = f"https://127.0.0.1:{self.port}"
        self.server.start()

    def close(self) -> None:
        self.server.stop(grace=None).wait(5)


class ZipkinCollector(_HTTPReceiver):
    """Accepts ``POST /api/v2/spans`` with Zipkin v2 JSON (``json_spans`` keeps them raw)."""

    def __init__(self) -> None:
        self.json_spans: list[dict[str, Any]] = []

        def decode(body: bytes) -> list[Span]:
            spans = json.loads(body)
            self.json_spans.extend(spans)
            return [
                Span(
                    s.get("localEndpoint", {}).get("serviceName", ""),
                    int(s["traceId"], 16),
                    int(s["id"], 16),
                    int(s.get("parentId", "0"), 16),
                    s.get("name", ""),
                    dict(s.get("tags", {})),
                    [{"event": a["value"]} for a in s.get("annotations", [])],
                    s.get("timestamp", 0) / 1e6,
                )
                for s in spans
            ]

        super().__init__(decode)
        self.endpoint = f"{self.base}/api/v2/spans"
