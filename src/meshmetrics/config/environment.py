"""Defaults from the environment other clients read: OpenTelemetry's ``OTEL_*``
variables, Jaeger's ``JAEGER_*``, and Kubernetes' ``KUBERNETES_SERVICE_HOST``.

Each finder returns where the value comes from and its raw text, or ``None``; the
option's converter then checks it like any other value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit, urlunsplit

from .values import Context


def otel_sdk_active() -> bool:
    """Whether the OpenTelemetry SDK's TracerProvider is the global one (set by the app or
    ``opentelemetry-instrument``); never imports OpenTelemetry itself."""
    import sys

    api = sys.modules.get("opentelemetry.trace")
    sdk = sys.modules.get("opentelemetry.sdk.trace")
    if api is None or sdk is None:
        return False
    return isinstance(api.get_tracer_provider(), sdk.TracerProvider)


def _metrics_host_default(env: Mapping[str, str], _: Context) -> tuple[str, str] | None:
    if env.get("KUBERNETES_SERVICE_HOST"):  # set in every pod: scraped on the pod IP
        return "the default inside a Kubernetes pod (KUBERNETES_SERVICE_HOST is set)", "0.0.0.0"
    return None


def _tracing_default(env: Mapping[str, str], _: Context) -> tuple[str, str] | None:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return "OTEL_SDK_DISABLED", "off"
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return "OTEL_TRACES_EXPORTER", "off"
    if otel_sdk_active():
        return "an OpenTelemetry SDK TracerProvider is set in this process", "otel"
    if exporter in ("otlp", "zipkin"):
        return "OTEL_TRACES_EXPORTER", exporter
    if env.get("JAEGER_AGENT_HOST"):
        return "JAEGER_AGENT_HOST", "jaeger"
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        if env.get(name):
            return name, "otlp"
    return None


_OTEL_SAMPLERS = {
    "always_on": "const:1",
    "parentbased_always_on": "const:1",
    "always_off": "const:0",
    "parentbased_always_off": "const:0",
}


def _sampler_default(env: Mapping[str, str], ctx: Context) -> tuple[str, str] | None:
    tracing = ctx.get("tracing", "off")
    if tracing != "otlp" and "JAEGER_SAMPLER_TYPE" in env:
        kind = env["JAEGER_SAMPLER_TYPE"].strip()
        return "JAEGER_SAMPLER_TYPE", f"{kind}:{env.get('JAEGER_SAMPLER_PARAM', '1').strip()}"
    if tracing != "jaeger" and "OTEL_TRACES_SAMPLER" in env:
        kind = env["OTEL_TRACES_SAMPLER"].strip().lower()
        if kind in _OTEL_SAMPLERS:
            return "OTEL_TRACES_SAMPLER", _OTEL_SAMPLERS[kind]
        if kind in ("traceidratio", "parentbased_traceidratio"):
            return "OTEL_TRACES_SAMPLER", f"probabilistic:{env.get('OTEL_TRACES_SAMPLER_ARG', '1')}"
        return "OTEL_TRACES_SAMPLER", kind
    return None


def _otlp_variable(
    name: str, backends: tuple[str, ...] = ("otlp", "zipkin")
) -> Callable[[Mapping[str, str], Context], tuple[str, str] | None]:
    """``OTEL_EXPORTER_OTLP_TRACES_<NAME>``, else ``OTEL_EXPORTER_OTLP_<NAME>`` (the spec's
    precedence: signal-specific over generic); only for ``backends``."""

    def default(env: Mapping[str, str], ctx: Context) -> tuple[str, str] | None:
        if ctx.get("tracing", "off") not in backends:
            return None
        for variable in (f"OTEL_EXPORTER_OTLP_TRACES_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
            if env.get(variable, "").strip():
                value = env[variable]
                if name == "TIMEOUT":  # milliseconds in the spec
                    value = _milliseconds_to_seconds(value)
                return variable, value
        return None

    return default


def _milliseconds_to_seconds(text: str) -> str:
    """The variable's milliseconds as seconds; a bad value stays as given, for the
    converter to name with its rule."""
    try:
        return str(float(text) / 1000)
    except ValueError:
        return text


def _resource_default(env: Mapping[str, str], _: Context) -> tuple[str, str] | None:
    if env.get("OTEL_RESOURCE_ATTRIBUTES", "").strip():
        return "OTEL_RESOURCE_ATTRIBUTES", env["OTEL_RESOURCE_ATTRIBUTES"]
    return None


def _endpoint_default(env: Mapping[str, str], ctx: Context) -> tuple[str, str] | None:
    tracing = ctx.get("tracing", "off")
    if tracing == "jaeger":
        host = env.get("JAEGER_AGENT_HOST") or "localhost"
        port = env.get("JAEGER_AGENT_PORT") or "6831"
        return "JAEGER_AGENT_HOST", f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if tracing == "zipkin" and env.get("OTEL_EXPORTER_ZIPKIN_ENDPOINT"):
        return "OTEL_EXPORTER_ZIPKIN_ENDPOINT", env["OTEL_EXPORTER_ZIPKIN_ENDPOINT"]
    if tracing == "otlp":
        if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            return "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            base = env["OTEL_EXPORTER_OTLP_ENDPOINT"].strip()
            if ctx.get("trace_protocol") == "grpc":  # a gRPC target is used as it is
                return "OTEL_EXPORTER_OTLP_ENDPOINT", base
            return "OTEL_EXPORTER_OTLP_ENDPOINT", _signal_url(base, "v1/traces")
    return None


def _signal_url(base: str, signal_path: str) -> str:
    """The exporter spec's signal URL: ``signal_path`` appended to the base URL's *path*
    (before its query); a base that does not parse is handed on as it is, for the
    endpoint's converter to refuse by name."""
    try:
        parts = urlsplit(base)
    except ValueError:
        return base
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + signal_path))


#: Options whose default comes from the variables other Jaeger/OpenTelemetry clients read.
FROM_ENVIRONMENT: dict[str, Callable[[Mapping[str, str], Context], tuple[str, str] | None]] = {
    "metrics_host": _metrics_host_default,
    "tracing": _tracing_default,
    "sampler": _sampler_default,
    "trace_endpoint": _endpoint_default,
    "trace_headers": _otlp_variable("HEADERS"),
    "trace_compression": _otlp_variable("COMPRESSION"),
    "trace_timeout": _otlp_variable("TIMEOUT"),
    "trace_certificate": _otlp_variable("CERTIFICATE"),
    "trace_protocol": _otlp_variable("PROTOCOL", ("otlp",)),
    "trace_insecure": _otlp_variable("INSECURE", ("otlp",)),
    "resource_attributes": _resource_default,
}


def service_from_name(name: str) -> str:
    """A DNS-1035 label derived from an app or Blueprint name."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return re.sub(r"-{2,}", "-", label)[:63].rstrip("-")
