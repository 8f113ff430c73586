"""OTLP over gRPC (port 4317): the ``TraceService/Export`` call (as
opentelemetry-proto's stub makes it) on a grpcio channel, carrying the request
serialized by :mod:`.otlp_wire`.  Needs the ``otlp-grpc`` extra.

The same behaviour as OTLP/HTTP: one budget (``trace_timeout``) per batch, retries and
back-off, gzip, a CA file, headers (sent as metadata), ``partial_success`` counted as
dropped.  Retries follow the OTLP spec's table of gRPC codes: CANCELLED,
DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are retried;
RESOURCE_EXHAUSTED only when the status carries a ``RetryInfo`` (the server can
recover); a ``RetryInfo`` delay lengthens the back-off, never shortens it.  TLS follows
the endpoint's scheme (``https`` secure, ``http`` plain text), as the exporter spec says.

Fork safety: grpcio's core threads do not survive ``fork()`` (hence its
``GRPC_ENABLE_FORK_SUPPORT`` switch).  The channel is created lazily, on the export
thread, by the process that exports: a gunicorn ``--preload`` master that built the
exporter never opens one, and a worker forked from a process that had one opens its own.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..config.export import ExportResult
from .exporters import ExportRejectedError
from .otlp import PartialSuccess, printable
from .otlp_wire import RequestWriter
from .retry import FIRST_BACKOFF, Backoff

if TYPE_CHECKING:
    from ..config import HttpEndpoint
    from .spans import MeshSpan

#: Codes the OTLP spec says to retry (RESOURCE_EXHAUSTED only with a RetryInfo).
RETRYABLE_CODES = frozenset(
    {"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"}
)
_STATUS_DETAILS = "grpc-status-details-bin"
#: The method opentelemetry-proto's ``TraceServiceStub.Export`` calls.
EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
#: The channel's reconnect back-off: at first our first retry's wait, at most twice that
#: (a dead collector gets at most one connection attempt a second from a process).
RECONNECT_BACKOFF_MS = (int(FIRST_BACKOFF * 1000), int(2 * FIRST_BACKOFF * 1000))


class OTLPGrpcExporter:
    """``TraceService/Export`` over a grpcio channel created by the exporting process."""

    def __init__(
        self,
        service: str,
        endpoint: HttpEndpoint,
        resource: dict[str, str],
        *,
        headers: tuple[tuple[str, str], ...] = (),
        compression: str = "none",
        timeout: float = 10.0,
        certificate: str | None = None,
    ) -> None:
        import grpc
        from google.rpc import error_details_pb2, status_pb2
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self._grpc: Any = grpc
        self._rpc: Any = (status_pb2, error_details_pb2)
        self._response: Any = trace_service_pb2.ExportTraceServiceResponse
        parts = urlsplit(endpoint.url)
        self.target = parts.netloc
        self._secure = parts.scheme == "https"
        # read now: an unreadable file is a configuration error, not a failed export
        self._root = Path(certificate).read_bytes() if certificate else None
        self._metadata = tuple((key.lower(), value) for key, value in headers)
        self._compression = grpc.Compression.Gzip if compression == "gzip" else None
        self._timeout = timeout
        self._writer = RequestWriter(service, resource)
        self._partial = PartialSuccess()
        self._stub: Any = None
        self._channel: Any = None
        self._pid = 0
        #: channels of a parent process: never used nor closed here (grpc after fork)
        self._inherited: list[Any] = []
        self.retries = 0

    def _connected(self) -> Any:
        """The ``Export`` call of this process' channel, created at its first export."""
        if self._stub is None or self._pid != os.getpid():
            if self._channel is not None:
                self._inherited.append(self._channel)
            grpc = self._grpc
            options = [
                ("grpc.enable_retries", 0),  # the retries are ours, and counted
                # and so is the back-off: grpcio's own reconnect back-off grows to 120 s,
                # failing every call fast meanwhile, long after the collector is back
                ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
                ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[1]),
            ]
            if self._secure:
                credentials = grpc.ssl_channel_credentials(root_certificates=self._root)
                self._channel = grpc.secure_channel(self.target, credentials, options=options)
            else:
                self._channel = grpc.insecure_channel(self.target, options=options)
            # TraceService/Export carrying the request's bytes as they are (no serializer)
            self._stub = self._channel.unary_unary(
                EXPORT_METHOD, response_deserializer=self._response.FromString
            )
            self._pid = os.getpid()
        return self._stub

    def export(self, spans: list[MeshSpan]) -> ExportResult:
        export = self._connected()
        request = self._writer.request(spans)
        deadline = time.monotonic() + self._timeout
        backoff = Backoff()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.target}: no success within {self._timeout:g} s")
            try:
                response = export(
                    request,
                    timeout=remaining,
                    metadata=self._metadata,
                    compression=self._compression,
                )
            except self._grpc.RpcError as exc:
                wait = self._retry_wait(exc, backoff)
                if wait is None or time.monotonic() + wait >= deadline:
                    raise ExportRejectedError(self._describe(exc, wait)) from None
                self.retries += 1
                time.sleep(wait)
                continue
            return ExportResult(rejected=self._partial.rejected(response, len(spans)))

    def _retry_wait(self, error: Any, backoff: Backoff) -> float | None:
        """Seconds to wait before the next attempt, or ``None``: not retryable."""
        code = error.code().name
        delay = self._retry_info(error)
        if code in RETRYABLE_CODES or (code == "RESOURCE_EXHAUSTED" and delay is not None):
            return backoff.wait(delay)
        return None

    def _retry_info(self, error: Any) -> float | None:
        """The ``RetryInfo.retry_delay`` of the status' details, in seconds, if any."""
        status_pb2, error_details_pb2 = self._rpc
        for key, value in error.trailing_metadata() or ():
            if key != _STATUS_DETAILS:
                continue
            try:
                status = status_pb2.Status.FromString(value)
            except Exception:  # protobuf's DecodeError: details we cannot read
                return None
            for detail in status.details:
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
                    delay = info.retry_delay
                    return max(0.0, float(delay.seconds) + float(delay.nanos) / 1e9)
        return None

    def _describe(self, error: Any, wait: float | None) -> str:
        # the peer's own text: one line, bounded, as the partial-success message
        text = f"{self.target} answered {error.code().name}: {printable(str(error.details()))}"
        if wait is None:
            return text
        return f"{text}; retrying after {wait:g} s would pass the {self._timeout:g} s budget"

    def shutdown(self) -> None:
        if self._channel is not None and self._pid == os.getpid():
            self._channel.close()
        self._channel = self._stub = None
