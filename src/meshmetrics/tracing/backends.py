"""From the configuration to a tracer: the backend's exporter, the batch processor.

Built in :func:`meshmetrics.instrument`, so a backend whose extra is missing is a
:class:`~meshmetrics.config.MissingExtraError` at configuration time.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from ..config import HostPort, HttpEndpoint, MeshConfig, MissingExtraError
from .processor import BatchSpanProcessor, Exporter, SpanCounters
from .server import RequestTracing, ServerTracing, current_span
from .spans import MeshTracer, ScopeManager

#: The extra that brings each backend's wire format.
EXTRAS = {"jaeger": "jaeger", "otlp": "otlp", "otel": "otel"}
#: OTLP/gRPC's extra (grpcio, opentelemetry-proto's stub, google.rpc's RetryInfo).
GRPC_EXTRA = "otlp-grpc"


def exporter_for(config: MeshConfig) -> Exporter:
    """The exporter of ``config.tracing`` (``otlp``, ``zipkin`` or ``jaeger``)."""
    endpoint = config.trace_endpoint
    resource = {
        **dict(config.resource_attributes),
        "service.namespace": config.namespace,
        "service.version": config.version,
    }
    if config.tracing == "otlp" and config.trace_protocol == "grpc":
        return _grpc_exporter(config, resource)
    try:
        if config.tracing == "jaeger":
            from .exporters import JaegerUDPExporter

            assert isinstance(endpoint, HostPort)
            tags = {"namespace": config.namespace, "version": config.version}
            return JaegerUDPExporter(config.service, endpoint, tags)
        from .exporters import HttpSender

        assert isinstance(endpoint, HttpEndpoint)
        sender = HttpSender(
            endpoint,
            headers=config.trace_headers,
            compression=config.trace_compression,
            timeout=config.trace_timeout,
            certificate=config.trace_certificate,
        )
        if config.tracing == "zipkin":
            from .exporters import ZipkinExporter

            return ZipkinExporter(config.service, sender, resource)
        from .exporters import OTLPHTTPExporter

        return OTLPHTTPExporter(config.service, sender, resource)
    except ImportError as exc:
        raise MissingExtraError(
            "tracing", config.tracing, config.source_of("tracing"), EXTRAS[config.tracing], str(exc)
        ) from exc


def _grpc_exporter(config: MeshConfig, resource: dict[str, str]) -> Exporter:
    endpoint = config.trace_endpoint
    assert isinstance(endpoint, HttpEndpoint)
    try:
        from .otlp_grpc import OTLPGrpcExporter

        return OTLPGrpcExporter(
            config.service,
            endpoint,
            resource,
            headers=config.trace_headers,
            compression=config.trace_compression,
            timeout=config.trace_timeout,
            certificate=config.trace_certificate,
        )
    except ImportError as exc:
        raise MissingExtraError(
            "trace_protocol", "grpc", config.source_of("trace_protocol"), GRPC_EXTRA, str(exc)
        ) from exc


def server_tracing(config: MeshConfig, registry: CollectorRegistry) -> RequestTracing:
    """The Flask face of a tracer exporting to ``config``'s backend in batches, or of the
    process' OpenTelemetry SDK (``otel``)."""
    if config.tracing == "otel":
        try:
            from .otel import OTelTracing
        except ImportError as exc:
            raise MissingExtraError(
                "tracing", "otel", config.source_of("tracing"), "otel", str(exc)
            ) from exc
        return OTelTracing(config)
    processor = BatchSpanProcessor(
        exporter_for(config),
        SpanCounters(registry),
        queue_size=config.span_queue_size,
        queue_bytes=config.span_queue_bytes,
    )
    tracer = MeshTracer(config.sampler, processor, ScopeManager(current_span))
    return ServerTracing(tracer, sensitive_query_params=config.sensitive_query_params)
