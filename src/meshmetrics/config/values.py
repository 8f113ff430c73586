"""The typed values options hold, and their closed sets and defaults."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

#: prometheus_client's default latency buckets (the ones prometheus-flask-exporter uses).
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
#: Kubernetes probe endpoints that would otherwise dominate request rates.
DEFAULT_EXCLUDED_PATHS: tuple[str, ...] = (
    "/health",
    "/healthz",
    "/readiness",
    "/ready",
    "/readyz",
    "/livez",
)
#: Query parameters whose values never reach a span: OpenTelemetry's semantic conventions
#: name the first four (cloud storage signatures); the rest are common bearer secrets.
DEFAULT_SENSITIVE_QUERY_PARAMS: frozenset[str] = frozenset(
    {
        "awsaccesskeyid",
        "signature",
        "sig",
        "x-goog-signature",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "apikey",
        "key",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "code",
    }
)
#: Bytes of finished spans that may wait for export (see ``span_queue_bytes``).
DEFAULT_SPAN_QUEUE_BYTES = 32 * 1024 * 1024

TracingBackend = Literal["jaeger", "otlp", "zipkin", "otel", "off"]
TRACING_BACKENDS: tuple[TracingBackend, ...] = get_args(TracingBackend)
#: The Istio PeerAuthentication mode of the service's namespace.
MtlsMode = Literal["permissive", "strict"]
MTLS_MODES: tuple[MtlsMode, ...] = get_args(MtlsMode)
#: How export requests are compressed.
Compression = Literal["gzip", "none"]
COMPRESSIONS: tuple[Compression, ...] = get_args(Compression)
#: The OTLP transports spoken: ``grpc`` needs the ``otlp-grpc`` extra.
OtlpProtocol = Literal["http/protobuf", "grpc"]
OTLP_PROTOCOLS: tuple[OtlpProtocol, ...] = get_args(OtlpProtocol)

#: What converters see of the options resolved before: name -> typed value.
Context = Mapping[str, Any]
#: An HTTP header name (an RFC 9110 token).
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True)
class HostPort:
    """A UDP/TCP destination (the Jaeger agent): host name or IP, and port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class HttpEndpoint:
    """An http(s) URL with a host and a valid port, never ``user:password@``: the OTLP/HTTP
    traces URL, the Zipkin spans URL, or the OTLP/gRPC target (``scheme://host:port``)."""

    url: str

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    def __str__(self) -> str:
        return self.url


TraceEndpoint = HostPort | HttpEndpoint


def default_endpoint(tracing: str, protocol: str = "http/protobuf") -> TraceEndpoint | None:
    if tracing == "jaeger":
        return HostPort("localhost", 6831)
    if tracing == "zipkin":
        return HttpEndpoint("http://localhost:9411/api/v2/spans")
    if tracing == "otlp" and protocol == "grpc":
        return HttpEndpoint("http://localhost:4317")
    if tracing == "otlp":
        return HttpEndpoint("http://localhost:4318/v1/traces")
    return None  # otel: the TracerProvider's exporters
