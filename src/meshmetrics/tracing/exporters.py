"""Wire formats for finished spans: Jaeger's agent protocol, OTLP/HTTP and Zipkin.

OTLP/gRPC lives in :mod:`.otlp_grpc`, OTLP's messages in :mod:`.otlp`, the retry policy
shared by the HTTP and gRPC senders in :mod:`.retry`.

Each exporter imports its optional dependency when it is built, which happens in
:func:`meshmetrics.instrument`: a missing extra is a configuration error there,
never a failed request.
"""

from __future__ import annotations

import gzip
import http.client
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any

from .._http import Answer, fetch
from ..config import DEFAULT_SENSITIVE_QUERY_PARAMS
from ..config.export import SUCCESS, ExportResult
from ..config.redaction import redact_url
from .jaeger_wire import span as jaeger_span
from .otlp import attribute_items
from .retry import Backoff, retry_after

if TYPE_CHECKING:
    from ..config import HostPort, HttpEndpoint
    from .spans import MeshSpan

#: Largest datagram the Jaeger agent reads (its default max packet size).
MAX_UDP_PACKET = 65000
#: A collector's answer to an export is small; more is not read (a 2xx stays a success).
_MAX_ANSWER = 1024 * 1024


class ExportRejectedError(OSError):
    """The trace backend answered, but not with success (a 3xx, 4xx or 5xx status)."""


class ExportFailedError(OSError):
    """The exchange with the trace backend failed (its message without credentials)."""


# -- Jaeger agent: compact Thrift over UDP ----------------------------------------------


class JaegerUDPExporter:
    """``emitBatch`` to a Jaeger agent, split so each datagram fits ``MAX_UDP_PACKET``.

    UDP confirms nothing: spans sent to a port where no agent listens are lost without an
    error, so they are counted as *sent* (``meshmetrics_spans_sent_total``), never as
    exported (an unconfirmed :class:`ExportResult`)."""

    def __init__(self, service: str, endpoint: HostPort, process_tags: dict[str, str]) -> None:
        from thrift.protocol.TCompactProtocol import TCompactProtocol
        from thrift.Thrift import TMessageType
        from thrift.transport.TTransport import TMemoryBuffer

        from .jaeger_wire import BatchWriter

        self._endpoint = endpoint
        self._address: Any = None
        self._socket: socket.socket | None = None
        header = TMemoryBuffer()
        TCompactProtocol(header).writeMessageBegin("emitBatch", TMessageType.ONEWAY, 0)
        self._writer = BatchWriter(bytes(header.getvalue()), service, process_tags)

    def _encode(self, spans: list[bytes]) -> bytes:
        """An ``Agent.emitBatch`` oneway message in compact Thrift (:mod:`.jaeger_wire`)."""
        return self._writer.message(spans)

    def export(self, spans: list[MeshSpan]) -> ExportResult:
        if self._socket is None:
            self._connect()
        too_large = self._send([self._to_thrift(span) for span in spans])
        return ExportResult(too_large=too_large, confirmed=False)

    def _connect(self) -> None:
        """Resolve the agent (IPv4 or IPv6) on the export thread, never on a request."""
        family, kind, proto, _, address = socket.getaddrinfo(
            self._endpoint.host, self._endpoint.port, type=socket.SOCK_DGRAM
        )[0]
        self._socket = socket.socket(family, kind, proto)
        self._address = address

    def _send(self, thrift_spans: list[bytes]) -> int:
        payload = self._encode(thrift_spans)
        if len(payload) <= MAX_UDP_PACKET:
            assert self._socket is not None
            self._socket.sendto(payload, self._address)
            return 0
        if len(thrift_spans) == 1:
            return 1  # one span larger than a datagram can never be delivered
        half = len(thrift_spans) // 2
        return self._send(thrift_spans[:half]) + self._send(thrift_spans[half:])

    def _to_thrift(self, span: MeshSpan) -> bytes:
        """The span as a compact Thrift ``Span`` struct."""
        return jaeger_span(span)

    def shutdown(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


# -- HTTP delivery, shared by OTLP and Zipkin --------------------------------------------

#: Statuses after which the spec says to retry (with the server's Retry-After when given).
RETRYABLE = frozenset({429, 502, 503, 504})


def safe_url(url: str) -> str:
    """``url`` as a log line or an error may show it: no ``user:password@``, no value of a
    query parameter known to carry secrets (the configuration refuses the first; this
    holds for an endpoint built in code too)."""
    return redact_url(url, DEFAULT_SENSITIVE_QUERY_PARAMS)


class HttpSender:
    """POSTs one batch within ``timeout`` seconds in all: headers, gzip, a CA file, and
    retries on 429/502/503/504 with exponential back-off that ``Retry-After`` may lengthen,
    while the budget lasts.  Only a 2xx counts as delivered (a redirected POST delivered
    nothing); a 2xx body past ``_MAX_ANSWER`` is cut there, still a success.  Errors name
    the URL without credentials and never a header value."""

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
        self._shown = safe_url(endpoint.url)
        self._headers = dict(headers)
        self._gzip = compression == "gzip"
        self._timeout = timeout
        self._context = ssl.create_default_context(cafile=certificate) if certificate else None
        self.retries = 0

    def post(self, body: bytes, content_type: str) -> Answer:
        """The collector's 2xx answer (its body cut at ``_MAX_ANSWER``), or an exception."""
        headers = {**self._headers, "Content-Type": content_type}
        if self._gzip:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        deadline = time.monotonic() + self._timeout
        backoff = Backoff()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self._shown}: no success within {self._timeout:g} s")
            answer = self._fetch(body, headers, remaining)
            if 200 <= answer.status < 300:
                return answer
            if answer.status not in RETRYABLE:
                raise ExportRejectedError(f"{self._shown} answered {answer.status}")
            wait = backoff.wait(retry_after(answer.headers.get("retry-after")))
            if time.monotonic() + wait >= deadline:
                raise ExportRejectedError(
                    f"{self._shown} answered {answer.status}; retrying after {wait:g} s would "
                    f"pass the {self._timeout:g} s budget"
                )
            self.retries += 1
            time.sleep(wait)

    def _fetch(self, body: bytes, headers: dict[str, str], timeout: float) -> Answer:
        try:
            return fetch(
                self.url,
                method="POST",
                body=body,
                headers=headers,
                timeout=timeout,
                max_bytes=_MAX_ANSWER,
                context=self._context,
                truncate=True,
            )
        except (OSError, http.client.HTTPException) as exc:
            if self.url == self._shown:
                raise
            # the same failure, its message without the URL's secrets
            text = str(exc).replace(self.url, self._shown)
            raise ExportFailedError(f"{type(exc).__name__}: {text}") from None


# -- OTLP over HTTP (protobuf) -----------------------------------------------------------


class OTLPHTTPExporter:
    """``POST /v1/traces`` with an ``ExportTraceServiceRequest`` (OTLP/HTTP, protobuf);
    the spans its answer rejects (``partial_success``) are counted as dropped."""

    def __init__(self, service: str, sender: HttpSender, resource: dict[str, str]) -> None:
        from .otlp import PartialSuccess
        from .otlp_wire import RequestWriter

        self.sender = sender
        self._writer = RequestWriter(service, resource)
        self._partial = PartialSuccess()

    def export(self, spans: list[MeshSpan]) -> ExportResult:
        answer = self.sender.post(self._writer.request(spans), "application/x-protobuf")
        if answer.truncated or "json" in answer.content_type:
            return SUCCESS  # a 2xx; whatever it says past the cap is not read
        return ExportResult(rejected=self._partial.rejected(answer.body, len(spans)))

    def shutdown(self) -> None:
        pass


# -- Zipkin v2 JSON over HTTP --------------------------------------------------------------


class ZipkinExporter:
    """``POST /api/v2/spans`` with Zipkin's v2 JSON: what Istio's Envoys send, accepted by
    Zipkin and by the Jaeger add-on of every Istio version (``zipkin.istio-system:9411``)."""

    def __init__(self, service: str, sender: HttpSender, resource: dict[str, str]) -> None:
        from .zipkin_wire import SpanWriter

        self.sender = sender
        self._endpoint = {"serviceName": service}
        self._resource_tags = {k: str(v) for k, v in resource.items()}
        self._writer = SpanWriter(service, resource)

    def _span(self, span: MeshSpan) -> dict[str, Any]:
        """The span as a dict: what :mod:`.zipkin_wire` writes as text (tests compare)."""
        context = span.context
        trace = f"{context.trace_id:032x}" if context.trace_id >> 64 else f"{context.trace_id:016x}"
        out: dict[str, Any] = {
            "traceId": trace,
            "id": f"{context.span_id:016x}",
            "name": span.operation_name,
            "timestamp": int(span.start_time * 1e6),
            "duration": max(1, int(span.duration * 1e6)),
            "localEndpoint": self._endpoint,
            "tags": {**self._resource_tags, **{k: str(v) for k, v in attribute_items(span)}},
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

    def export(self, spans: list[MeshSpan]) -> ExportResult:
        self.sender.post(self._writer.body(spans), "application/json")
        return SUCCESS

    def shutdown(self) -> None:
        pass
