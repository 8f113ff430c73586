"""The immutable configuration shared by the runtime and the manifests.

Every option is declared once, as a field of :class:`MeshConfig` (name, type, default
and converter; :data:`OPTIONS` is derived from the fields).  It resolves in one order:
an explicit argument, else ``app.config["MESHMETRICS_<NAME>"]``, else the environment
variable ``MESHMETRICS_<NAME>`` (for the tracing options also the variables Jaeger and
OpenTelemetry clients read), else the default.  The converter turns raw input (a typed
value or text) into the typed value once, here; a bad value raises :class:`ConfigError`
naming the option, the value, where it came from and the rule it broke.  Nothing on the
request path parses a string.

The package is the lowest layer but the leaves :mod:`meshmetrics.formats` and
:mod:`meshmetrics.typing` (the type of ``metrics_auth``); its modules, bottom up:
:mod:`.values` (typed values, closed sets, defaults), :mod:`.errors`, :mod:`.sampling`
(samplers), :mod:`.export` (the span-exporter seam), :mod:`.redaction` (what a message or
a span may show of a value), :mod:`.converters`, :mod:`.slo` (the SLO model),
:mod:`.environment` (defaults from OpenTelemetry, Jaeger and Kubernetes variables),
:mod:`.options` (:class:`MeshConfig` and the option table) and :mod:`.resolve`.
"""

from __future__ import annotations

from ..typing import MetricsAuth, ViewDecorator
from .converters import PATH_PREFIXES_RULE
from .environment import otel_sdk_active
from .errors import COMMAND_LINE, ENV_PREFIX, ConfigError, MissingExtraError, setting
from .export import ExportResult, SpanExporter
from .options import (
    OPTION_NAMES,
    OPTIONS,
    InstrumentOptions,
    MeshConfig,
    Option,
    env_name,
    reject_unknown,
)
from .redaction import redacted
from .resolve import resolve_config
from .slo import (
    BURN_RATE_ALERTS,
    BURN_RATE_WINDOW_HOURS,
    SLO,
    SLO_RULE,
    burn_rate_threshold,
    decimal_text,
)
from .values import (
    COMPRESSIONS,
    DEFAULT_BUCKETS,
    DEFAULT_EXCLUDED_PATHS,
    DEFAULT_SENSITIVE_QUERY_PARAMS,
    DEFAULT_SPAN_QUEUE_BYTES,
    MTLS_MODES,
    OTLP_PROTOCOLS,
    TRACING_BACKENDS,
    Compression,
    Context,
    HostPort,
    HttpEndpoint,
    MtlsMode,
    OtlpProtocol,
    TraceEndpoint,
    TracingBackend,
)

#: The name ``instrumentation`` imports (kept for the modules that still use it).
_reject_unknown = reject_unknown

__all__ = [
    "BURN_RATE_ALERTS",
    "BURN_RATE_WINDOW_HOURS",
    "COMMAND_LINE",
    "COMPRESSIONS",
    "DEFAULT_BUCKETS",
    "DEFAULT_EXCLUDED_PATHS",
    "DEFAULT_SENSITIVE_QUERY_PARAMS",
    "DEFAULT_SPAN_QUEUE_BYTES",
    "ENV_PREFIX",
    "MTLS_MODES",
    "OPTIONS",
    "OPTION_NAMES",
    "OTLP_PROTOCOLS",
    "PATH_PREFIXES_RULE",
    "SLO",
    "SLO_RULE",
    "TRACING_BACKENDS",
    "Compression",
    "ConfigError",
    "Context",
    "ExportResult",
    "HostPort",
    "HttpEndpoint",
    "InstrumentOptions",
    "MeshConfig",
    "MetricsAuth",
    "MissingExtraError",
    "MtlsMode",
    "Option",
    "OtlpProtocol",
    "SpanExporter",
    "TraceEndpoint",
    "TracingBackend",
    "ViewDecorator",
    "burn_rate_threshold",
    "decimal_text",
    "env_name",
    "otel_sdk_active",
    "redacted",
    "reject_unknown",
    "resolve_config",
    "setting",
]
