"""The options: each declared once, as a field of :class:`MeshConfig` (name, type,
default, and its converter in the field's metadata); :data:`OPTIONS` is derived.

:class:`InstrumentOptions` (the keyword arguments of ``instrument``, for mypy) cannot be
derived statically: ``tests/test_architecture.py`` pins its keys to the fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, TypedDict

from ..typing import MetricsAuth
from . import converters as convert
from .errors import ENV_PREFIX, ConfigError, InvalidError
from .export import SpanExporter, span_exporter
from .redaction import redacted
from .sampling import ConstSampler, Sampler
from .slo import SLO, slos
from .values import (
    DEFAULT_BUCKETS,
    DEFAULT_EXCLUDED_PATHS,
    DEFAULT_SENSITIVE_QUERY_PARAMS,
    DEFAULT_SPAN_QUEUE_BYTES,
    Compression,
    Context,
    HostPort,
    HttpEndpoint,
    MtlsMode,
    OtlpProtocol,
    TracingBackend,
    default_endpoint,
)

Converter = Callable[[Any, Context], Any]
_CONVERTER = "meshmetrics.converter"
_EXPLICIT_ONLY = "meshmetrics.explicit_only"
SPAN_QUEUE_SIZE = convert.whole_number(1, 1_000_000)
SPAN_QUEUE_BYTES = convert.whole_number(64 * 1024, 1 << 34)


def uses(converter: Converter) -> dict[str, Converter]:
    """A field's metadata: the converter its raw values go through."""
    return {_CONVERTER: converter}


def explicit_only(converter: Converter) -> dict[str, Any]:
    """The metadata of an option holding an object: only an argument of ``instrument()``
    sets it (``app.config`` and the environment hold no such value)."""
    return {_CONVERTER: converter, _EXPLICIT_ONLY: True}


@dataclass(frozen=True)
class Option:
    """One option, as its :class:`MeshConfig` field declares it: the converter and the
    default; its environment variable is derived."""

    name: str
    convert: Converter
    default: Any = None
    #: Set only as an argument (an object): never read from app.config or the environment.
    explicit_only: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @classmethod
    def of(cls, declared: Field[Any]) -> Option:
        """The option a :class:`MeshConfig` field declares."""
        if declared.default is not MISSING:
            default = declared.default
        elif declared.default_factory is not MISSING:
            default = declared.default_factory()
        else:
            default = None  # service: derived from the application's name
        only = bool(declared.metadata.get(_EXPLICIT_ONLY, False))
        return cls(declared.name, declared.metadata[_CONVERTER], default, only)


class InstrumentOptions(TypedDict, total=False):
    """The keyword options of :func:`meshmetrics.instrument` (see :class:`MeshConfig`)."""

    service: str
    namespace: str
    version: str
    metrics_path: str
    metrics_port: int | None
    metrics_host: str
    port_name: str
    metrics_port_name: str
    mtls: MtlsMode
    buckets: Sequence[float]
    prefix: str
    excluded_paths: Sequence[str]
    path_prefixes: Mapping[str, str] | Sequence[str] | str
    release: str
    scrape_interval: str
    tracing: TracingBackend
    sampler: Sampler | str
    trace_protocol: OtlpProtocol
    trace_insecure: bool
    trace_endpoint: str | HostPort | HttpEndpoint | None
    trace_headers: Mapping[str, str] | str
    trace_compression: Compression
    trace_timeout: float
    trace_certificate: str | None
    resource_attributes: Mapping[str, str] | str
    span_queue_size: int
    span_queue_bytes: int
    span_exporter: SpanExporter | None
    sensitive_query_params: Sequence[str]
    slo: SLO | str | Sequence[SLO | str]
    created_series: bool
    metrics_auth: MetricsAuth | str | None


@dataclass(frozen=True)
class MeshConfig:
    """Resolved, typed settings of one instrumented service.

    Build it with :func:`resolve_config` (what :func:`meshmetrics.instrument` does)
    to get ``app.config``, environment variables and defaults; constructing it
    directly converts and validates every field too.
    """

    #: Kubernetes Service name (and ``app`` label) of the service.
    service: str = field(metadata=uses(convert.service))
    #: Namespace the service runs in.
    namespace: str = field(default="default", metadata=uses(convert.namespace))
    #: Version reported in the ``<prefix>_service_info`` metric.
    version: str = field(default="unknown", metadata=uses(convert.version))
    #: Path of the metrics endpoint, served at the application root.
    metrics_path: str = field(default="/metrics", metadata=uses(convert.path))
    #: Serve the metrics on this separate port instead of the app's (nothing else of
    #: the app is reachable there); ``None`` serves them on the app.
    metrics_port: int | None = field(default=None, metadata=uses(convert.metrics_port))
    #: Address the separate metrics port binds to.  Default: all IPv4 interfaces
    #: (``0.0.0.0``) inside a Kubernetes pod (``KUBERNETES_SERVICE_HOST`` is set in every
    #: pod), where Prometheus scrapes the pod IP; loopback elsewhere, so a laptop does not
    #: expose unauthenticated metrics to its network.
    metrics_host: str = field(default="127.0.0.1", metadata=uses(convert.metrics_host))
    #: Name of the Service port of the app (an IANA service name); Prometheus scrapes it
    #: unless ``metrics_port`` is set.
    port_name: str = field(default="http", metadata=uses(convert.port_name))
    #: Name of the Service port for ``metrics_port``, the one Prometheus then scrapes.
    metrics_port_name: str = field(default="http-metrics", metadata=uses(convert.port_name))
    #: Istio mTLS mode of the service's namespace: ``permissive`` (Istio's default) or
    #: ``strict``.  Prometheus runs outside the mesh and scrapes in plain text, so
    #: ``strict`` needs ``metrics_port``: the manifests then exempt that port alone
    #: (a PeerAuthentication with ``portLevelMtls`` PERMISSIVE).
    mtls: MtlsMode = field(default="permissive", metadata=uses(convert.mtls))
    #: Upper bounds of the request-latency histogram buckets, in seconds.
    buckets: tuple[float, ...] = field(default=DEFAULT_BUCKETS, metadata=uses(convert.buckets))
    #: Prefix of the request metric names (``flask`` as in prometheus-flask-exporter).
    prefix: str = field(default="flask", metadata=uses(convert.prefix))
    #: Routes neither measured nor traced: a route is excluded when its template (or the
    #: label of a ``path_prefixes`` entry) equals an entry exactly.  The metrics endpoint
    #: is always excluded.
    excluded_paths: tuple[str, ...] = field(
        default=DEFAULT_EXCLUDED_PATHS, metadata=uses(convert.excluded_paths)
    )
    #: Labels of requests no route of the app matched, by path prefix (``{prefix: label}``,
    #: longest prefix first): a WSGI layer's endpoint such as Socket.IO's gets a ``path``
    #: label of its own instead of ``<unmatched>``, and ``excluded_paths`` may list the
    #: label.  Flask-SocketIO's endpoint (``/socket.io/``) is named so by default.
    path_prefixes: tuple[tuple[str, str], ...] = field(
        default=(), metadata=uses(convert.path_prefixes)
    )
    #: Helm release of kube-prometheus-stack: the ``release`` label its Prometheus selects.
    release: str = field(default="kube-prometheus-stack", metadata=uses(convert.release))
    #: How often Prometheus scrapes the service (a Prometheus duration).
    scrape_interval: str = field(default="30s", metadata=uses(convert.scrape_interval))
    #: Trace backend: ``jaeger`` (UDP agent), ``otlp`` (OTLP/HTTP) or ``off`` (propagation
    #: only). Default: ``jaeger`` when ``JAEGER_AGENT_HOST`` is set, ``otlp`` when
    #: ``OTEL_EXPORTER_OTLP_ENDPOINT`` is, else ``off``.
    tracing: TracingBackend = field(default="off", metadata=uses(convert.tracing))
    #: Sampler for new traces (a :class:`~meshmetrics.tracing.sampling.Sampler`, or
    #: ``const:1``, ``probabilistic:0.1``, ``ratelimiting:5``). Requests that carry a
    #: decision (Envoy's) keep it. Default from ``JAEGER_SAMPLER_TYPE``/``_PARAM`` or
    #: ``OTEL_TRACES_SAMPLER``/``_ARG``, else always.
    sampler: Sampler = field(
        default_factory=lambda: ConstSampler(True), metadata=uses(convert.sampler)
    )
    #: OTLP transport: ``http/protobuf`` (OTLP/HTTP, port 4318) or ``grpc`` (OTLP/gRPC,
    #: port 4317, the ``otlp-grpc`` extra): ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL``.
    trace_protocol: OtlpProtocol = field(default="http/protobuf", metadata=uses(convert.protocol))
    #: OTLP/gRPC to a ``host:port`` endpoint (no scheme) without TLS:
    #: ``OTEL_EXPORTER_OTLP_(TRACES_)INSECURE``.  An ``http://``/``https://`` scheme decides
    #: by itself, as the exporter spec says.
    trace_insecure: bool = field(default=False, metadata=uses(convert.boolean))
    #: Where spans go: ``host:port`` of the Jaeger agent (a :class:`HostPort`), or the
    #: OTLP/HTTP traces URL or OTLP/gRPC target (an :class:`HttpEndpoint`; never with
    #: ``user:password@``: credentials go in ``trace_headers``). Default from
    #: ``JAEGER_AGENT_HOST``/``_PORT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``.
    trace_endpoint: HostPort | HttpEndpoint | None = field(
        default=None, metadata=uses(convert.trace_endpoint)
    )
    #: Headers of every export request (OTLP and Zipkin): ``OTEL_EXPORTER_OTLP_TRACES_HEADERS``
    #: or ``OTEL_EXPORTER_OTLP_HEADERS`` (``key=value,...``).
    #: (Not in the config's ``repr``: values are often credentials.)
    trace_headers: tuple[tuple[str, str], ...] = field(
        default=(), repr=False, metadata=uses(convert.headers)
    )
    #: ``gzip`` or ``none``: ``OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION``.
    trace_compression: Compression = field(default="none", metadata=uses(convert.compression))
    #: Seconds one export may take in all, retries included; default from
    #: ``OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT`` (in milliseconds there), else 10.
    trace_timeout: float = field(default=10.0, metadata=uses(convert.timeout))
    #: CA certificates (PEM) to verify an https endpoint: ``OTEL_EXPORTER_OTLP_(TRACES_)
    #: CERTIFICATE``.
    trace_certificate: str | None = field(default=None, metadata=uses(convert.certificate))
    #: Resource attributes of exported spans: ``OTEL_RESOURCE_ATTRIBUTES``.
    resource_attributes: tuple[tuple[str, str], ...] = field(
        default=(), metadata=uses(convert.attributes)
    )
    #: Finished spans waiting for export; beyond it spans are dropped (and counted).
    span_queue_size: int = field(default=4096, metadata=uses(SPAN_QUEUE_SIZE))
    #: The same queue bounded in bytes (an estimate of the spans' encoded size), so a
    #: stuck collector with large spans cannot grow the process without limit.
    span_queue_bytes: int = field(default=DEFAULT_SPAN_QUEUE_BYTES, metadata=uses(SPAN_QUEUE_BYTES))
    #: Where spans go instead of the backend's own exporter: any object with
    #: ``export(spans)`` and ``shutdown()`` (:class:`SpanExporter`), such as
    #: :class:`meshmetrics.testing.InMemorySpanExporter`.  It gets the spans through the
    #: same queue, batches and export thread, and feeds the same counters.  An argument of
    #: ``instrument()`` only, with ``tracing`` ``jaeger``, ``zipkin`` or ``otlp``; compared
    #: by identity (:meth:`same_as`), never by value.
    span_exporter: SpanExporter | None = field(
        default=None, compare=False, metadata=explicit_only(span_exporter)
    )
    #: Query parameters whose values span URLs carry as ``REDACTED`` (case-insensitive);
    #: credentials in a URL (``user:pass@``) are always redacted.
    sensitive_query_params: frozenset[str] = field(
        default=DEFAULT_SENSITIVE_QUERY_PARAMS, metadata=uses(convert.names)
    )
    #: Service level objectives (:class:`SLO`, or their text form): ``manifests`` turns
    #: them into SLI recording rules, burn-rate alerts and error-budget panels.
    slo: tuple[SLO, ...] = field(default=(), metadata=uses(slos))
    #: Serve the ``*_created`` series of counters, histograms and summaries.  Prometheus 2
    #: and 3 store them as ordinary extra series (one per counter, per histogram label set)
    #: and use them for nothing, unless started with
    #: ``--enable-feature=created-timestamp-zero-ingestion``: then turn this on.
    created_series: bool = field(default=False, metadata=uses(convert.boolean))
    #: Decorator applied to the metrics view (authentication), or ``None``.
    metrics_auth: MetricsAuth | None = field(
        default=None, compare=False, metadata=uses(convert.metrics_auth)
    )

    def __post_init__(self) -> None:
        resolved: dict[str, Any] = {}
        for f in fields(self):
            value = convert_option(Option.of(f), getattr(self, f.name), "argument", resolved)
            resolved[f.name] = value
            object.__setattr__(self, f.name, value)
        if self.tracing != "off" and self.trace_endpoint is None:
            default = default_endpoint(self.tracing, self.trace_protocol)
            object.__setattr__(self, "trace_endpoint", default)
        if self.tracing == "otlp" and self.trace_protocol == "grpc":
            _check_grpc_metadata(self.trace_headers, self.source_of("trace_headers"))
        if self.span_exporter is not None and self.tracing in ("off", "otel"):
            otel = self.tracing == "otel"
            raise ConfigError(
                "span_exporter",
                self.span_exporter,
                self.source_of("span_exporter"),
                f"given with tracing 'jaeger', 'zipkin' or 'otlp', not {self.tracing!r}"
                + (
                    ": under 'otel' spans go to the OpenTelemetry SDK's own exporters"
                    if otel
                    else ""
                ),
                fix=None if otel else ("tracing", "'otlp'"),
            )
        if self.mtls == "strict" and self.metrics_port is None:
            raise ConfigError(
                "mtls",
                self.mtls,
                self.source_of("mtls"),
                "permissive unless a metrics port is set: under STRICT mTLS Prometheus "
                "(outside the mesh) can only scrape a port exempted from it",
                fix=("metrics_port", "9464"),
            )
        for objective in self.slo:
            if objective.threshold is not None and objective.threshold not in self.buckets:
                raise ConfigError(
                    "slo",
                    objective.spec,
                    self.source_of("slo"),
                    "a latency threshold that is a bucket bound of the latency histogram "
                    f"(the share under it is read from that bucket): one of "
                    f"{', '.join(f'{b:g}' for b in self.buckets)}",
                )
        if self.metrics_port is not None and self.metrics_port_name == self.port_name:
            raise ConfigError(
                "metrics_port_name",
                self.metrics_port_name,
                self.source_of("metrics_port_name"),
                f"different from port_name {self.port_name!r}: the metrics port is a Service "
                "port of its own",
            )

    def same_as(self, other: MeshConfig) -> bool:
        """Equal, and holding the very same objects where an option holds one that is not
        compared by value (``metrics_auth``, ``span_exporter``)."""
        return self == other and all(
            getattr(self, f.name) is getattr(other, f.name) for f in fields(self) if not f.compare
        )

    def source_of(self, option: str) -> str:
        """Where ``option``'s value came from (``argument`` unless :func:`resolve_config`)."""
        sources: Mapping[str, str] = getattr(self, "_sources", {})
        return sources.get(option, "argument")

    @property
    def metric_prefix(self) -> str:
        """The prefix as it starts a metric name (``"flask_"``, or ``""``)."""
        return f"{self.prefix}_" if self.prefix else ""

    def replace(self, source: str = "argument", **changes: Any) -> MeshConfig:
        """A copy with ``changes`` converted like any option (``ConfigError`` if bad)."""
        reject_unknown(changes)
        values: dict[str, Any] = {}
        for option in OPTIONS:
            name = option.name
            if name in changes:
                value = convert_option(option, changes[name], source, values)
            elif name == "trace_endpoint" and "tracing" in changes:
                value = None  # the new backend's default
            else:
                value = getattr(self, name)
            values[name] = value
        return MeshConfig(**values)


def _check_grpc_metadata(headers: tuple[tuple[str, str], ...], source: str) -> None:
    """Headers sent as gRPC metadata: lower-case keys of ``0-9 a-z - _ .``, not ``grpc-``,
    and not ``-bin`` (gRPC sends those values as bytes: a text header would fail every
    export)."""
    for key, _ in headers:
        lower = key.lower()
        if (
            not re.fullmatch(r"[0-9a-z_.-]+", lower)
            or lower.startswith("grpc-")
            or lower.endswith("-bin")
        ):
            raise ConfigError(
                "trace_headers",
                redacted("trace_headers", headers),
                source,
                "gRPC metadata with trace_protocol='grpc': keys of 0-9, a-z, '-', '_' and '.' "
                f"not starting with 'grpc-' nor ending in '-bin' ({key!r} is not)",
            )


def env_name(option: str) -> str:
    """The environment variable read for ``option``."""
    return _BY_NAME[option].env


def convert_option(option: Option, value: Any, source: str, resolved: Context) -> Any:
    try:
        return option.convert(value, resolved)
    except InvalidError as exc:
        raise ConfigError(option.name, redacted(option.name, value), source, exc.rule) from None


def reject_unknown(given: Mapping[str, Any]) -> None:
    unknown = sorted(set(given) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(
            f"meshmetrics: unknown option(s) {', '.join(unknown)}; "
            f"known options: {', '.join(OPTION_NAMES)}"
        )


#: Every option, in the order they resolve (an option's converter may read the ones before).
OPTIONS: tuple[Option, ...] = tuple(Option.of(declared) for declared in fields(MeshConfig))
OPTION_NAMES: tuple[str, ...] = tuple(option.name for option in OPTIONS)
_BY_NAME = {option.name: option for option in OPTIONS}
