"""The immutable configuration shared by the runtime and the manifests.

Every option resolves in one order: an explicit argument, else the environment
variable ``MESHMETRICS_<NAME>``, else the default.  Values are validated once,
here, and a bad one raises :class:`ValueError` naming the option, the value,
where it came from and the rule it broke.
"""

from __future__ import annotations

import importlib
import itertools
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NoReturn

ENV_PREFIX = "MESHMETRICS_"

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

ViewDecorator = Callable[[Callable[..., Any]], Callable[..., Any]]

_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_METRIC_PREFIX = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)?$")
_URL_PATH = re.compile(r"^/[^\s?#]*$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DURATION = re.compile(
    r"^(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$"
)


@dataclass(frozen=True)
class MeshConfig:
    """Resolved settings of one instrumented service.

    Build it with :func:`resolve_config` (what :func:`meshmetrics.instrument`
    does) to get environment variables and validation; constructing it
    directly validates too.
    """

    #: Kubernetes Service name (and ``app`` label) of the service.
    service: str
    #: Namespace the service runs in.
    namespace: str = "default"
    #: Version reported in the ``<prefix>_service_info`` metric.
    version: str = "unknown"
    #: Path of the metrics endpoint, served at the application root.
    metrics_path: str = "/metrics"
    #: Serve the metrics on this separate port instead of the app's (nothing else of
    #: the app is reachable there); ``None`` serves them on the app.
    metrics_port: int | None = None
    #: Address the separate metrics port binds to.
    metrics_host: str = "0.0.0.0"
    #: Name of the Service port Prometheus scrapes (an IANA service name).
    port_name: str = "http"
    #: Upper bounds of the request-latency histogram buckets, in seconds.
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    #: Prefix of the request metric names (``flask`` as in prometheus-flask-exporter).
    prefix: str = "flask"
    #: Routes not measured: a route is excluded when its rule equals an entry or
    #: ends with it after a ``/`` (``/health`` excludes ``/api/v1/db/health``).
    excluded_paths: tuple[str, ...] = DEFAULT_EXCLUDED_PATHS
    #: Helm release of kube-prometheus-stack: the ``release`` label its Prometheus selects.
    release: str = "kube-prometheus-stack"
    #: How often Prometheus scrapes the service (a Prometheus duration).
    scrape_interval: str = "30s"
    #: Trace backend: ``jaeger`` (UDP agent), ``otlp`` (OTLP/HTTP) or ``off`` (propagation
    #: only). Default: ``jaeger`` when ``JAEGER_AGENT_HOST`` is set, ``otlp`` when
    #: ``OTEL_EXPORTER_OTLP_ENDPOINT`` is, else ``off``.
    tracing: str = "off"
    #: Sampler for new traces, ``type:param``: ``const:1``, ``probabilistic:0.1``,
    #: ``ratelimiting:5``. Requests that carry a decision (Envoy's) keep it.
    #: Default from ``JAEGER_SAMPLER_TYPE``/``_PARAM`` or ``OTEL_TRACES_SAMPLER``/``_ARG``.
    sampler: str = "const:1"
    #: Where spans go: ``host:port`` of the Jaeger agent, or the OTLP/HTTP traces URL.
    #: Default from ``JAEGER_AGENT_HOST``/``_PORT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``.
    trace_endpoint: str = ""
    #: Finished spans waiting for export; beyond it spans are dropped (and counted).
    span_queue_size: int = 4096
    #: Decorator applied to the metrics view (authentication), or ``None``.
    metrics_auth: ViewDecorator | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            _check(f.name, getattr(self, f.name), "argument")

    @property
    def metric_prefix(self) -> str:
        """The prefix as it starts a metric name (``"flask_"``, or ``""``)."""
        return f"{self.prefix}_" if self.prefix else ""


OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in fields(MeshConfig))


def env_name(option: str) -> str:
    """The environment variable read for ``option``."""
    return ENV_PREFIX + option.upper()


def resolve_config(
    explicit: Mapping[str, Any],
    *,
    default_service: str,
    environ: Mapping[str, str] | None = None,
) -> MeshConfig:
    """Resolve every option: explicit (not ``None``) > environment > default."""
    unknown = sorted(set(explicit) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(
            f"meshmetrics: unknown option(s) {', '.join(unknown)}; "
            f"known options: {', '.join(OPTION_NAMES)}"
        )
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in OPTION_NAMES:
        value = explicit.get(name)
        if value is not None:
            _check(name, value, "argument")
        elif env_name(name) in env:
            source = env_name(name)
            value = _parse_env(name, env[source], source)
            _check(name, value, source)
        elif name == "service":
            value = _service_from_name(default_service)
            _check(name, value, "the application name; pass service=...")
        elif name in _FROM_TRACING_ENV:
            source, value = _FROM_TRACING_ENV[name](env, values.get("tracing", "off"))
            if value is None:
                continue
            _check(name, value, source)
        else:
            continue
        values[name] = _normalise(name, value)
    return MeshConfig(**values)


def _tracing_default(env: Mapping[str, str], _: str) -> tuple[str, str | None]:
    if env.get("JAEGER_AGENT_HOST"):
        return "JAEGER_AGENT_HOST", "jaeger"
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "OTEL_EXPORTER_OTLP_ENDPOINT", "otlp"
    return "default", None


_OTEL_SAMPLERS = {
    "always_on": "const:1",
    "parentbased_always_on": "const:1",
    "always_off": "const:0",
    "parentbased_always_off": "const:0",
}


def _sampler_default(env: Mapping[str, str], tracing: str) -> tuple[str, str | None]:
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
    return "default", None


def _endpoint_default(env: Mapping[str, str], tracing: str) -> tuple[str, str | None]:
    if tracing == "jaeger":
        host = env.get("JAEGER_AGENT_HOST") or "localhost"
        return "JAEGER_AGENT_HOST", f"{host}:{env.get('JAEGER_AGENT_PORT') or '6831'}"
    if tracing == "otlp":
        if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            return "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318"
        return "OTEL_EXPORTER_OTLP_ENDPOINT", base.rstrip("/") + "/v1/traces"
    return "default", None


#: Options whose default comes from the variables other Jaeger/OpenTelemetry clients read.
_FROM_TRACING_ENV = {
    "tracing": _tracing_default,
    "sampler": _sampler_default,
    "trace_endpoint": _endpoint_default,
}


def _service_from_name(name: str) -> str:
    """A DNS-1035 label derived from an app or Blueprint name."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return re.sub(r"-{2,}", "-", label)[:63].rstrip("-")


def _normalise(name: str, value: Any) -> Any:
    if name in ("buckets", "excluded_paths"):
        return tuple(value)
    return value


def _parse_env(name: str, raw: str, source: str) -> Any:
    if name == "buckets":
        try:
            return tuple(float(part) for part in raw.split(",") if part.strip())
        except ValueError:
            _fail(name, raw, source, "a comma-separated list of numbers, e.g. 0.01,0.1,1")
    if name == "excluded_paths":
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if name == "metrics_auth":
        return _import_string(name, raw, source)
    if name in ("span_queue_size", "metrics_port"):
        try:
            return int(raw)
        except ValueError:
            _fail(name, raw, source, "a whole number")
    return raw


def _import_string(name: str, raw: str, source: str) -> Any:
    module_name, _, attr = raw.partition(":")
    if not module_name or not attr:
        _fail(name, raw, source, "an import string 'package.module:decorator'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        _fail(name, raw, source, f"an importable 'package.module:decorator' ({exc})")


def _fail(name: str, value: Any, source: str, rule: str) -> NoReturn:
    raise ValueError(f"meshmetrics: invalid {name} {value!r} (from {source}): must be {rule}")


def _check(name: str, value: Any, source: str) -> None:
    """Validate one option; raise ValueError naming option, value and rule."""
    if name == "service":
        if not isinstance(value, str) or len(value) > 63 or not _DNS1035_LABEL.match(value):
            _fail(
                name,
                value,
                source,
                "a DNS-1035 label, as Kubernetes requires of Service "
                "names: at most 63 characters of a-z, 0-9 and '-', starting with a letter "
                "and ending with a letter or digit",
            )
    elif name == "namespace":
        if not isinstance(value, str) or len(value) > 63 or not _DNS1123_LABEL.match(value):
            _fail(
                name,
                value,
                source,
                "a DNS-1123 label: at most 63 characters of a-z, 0-9 "
                "and '-', starting and ending with a letter or digit",
            )
    elif name == "port_name":
        if not (
            isinstance(value, str)
            and 0 < len(value) <= 15
            and _PORT_NAME.match(value)
            and "--" not in value
            and re.search("[a-z]", value)
        ):
            _fail(
                name,
                value,
                source,
                "an IANA service name: at most 15 characters of a-z, "
                "0-9 and '-', with at least one letter, no '--', not starting or ending "
                "with '-'",
            )
    elif name == "metrics_path":
        if not isinstance(value, str) or not _URL_PATH.match(value) or value == "/":
            _fail(
                name,
                value,
                source,
                "a URL path starting with '/' (not '/' itself), without spaces, '?' or '#'",
            )
    elif name == "prefix":
        if not isinstance(value, str) or not _METRIC_PREFIX.match(value):
            _fail(
                name,
                value,
                source,
                "empty or a Prometheus metric name prefix matching [a-zA-Z_:][a-zA-Z0-9_:]*",
            )
    elif name == "version":
        if not isinstance(value, str) or not value or len(value) > 128 or not value.isprintable():
            _fail(name, value, source, "a non-empty printable string of at most 128 characters")
    elif name == "release":
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            _fail(
                name,
                value,
                source,
                "a Kubernetes label value: at most 63 characters of "
                "a-z, A-Z, 0-9, '-', '_' and '.', starting and ending with a letter or digit",
            )
    elif name == "scrape_interval":
        if (
            not isinstance(value, str)
            or not value
            or not _DURATION.match(value)
            or not any(c.isdigit() and c != "0" for c in value)
        ):
            _fail(name, value, source, "a non-zero Prometheus duration such as 15s, 1m or 1m30s")
    elif name == "tracing":
        if value not in ("jaeger", "otlp", "off"):
            _fail(name, value, source, "one of jaeger, otlp, off")
    elif name == "sampler":
        _check_sampler(value, source)
    elif name == "trace_endpoint":
        if not isinstance(value, str) or any(c.isspace() for c in value):
            _fail(name, value, source, "host:port (jaeger) or an http(s) URL (otlp)")
    elif name == "metrics_port":
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535
        ):
            _fail(name, value, source, "a TCP port number from 1 to 65535")
    elif name == "metrics_host":
        if not isinstance(value, str) or not value or any(c.isspace() for c in value):
            _fail(name, value, source, "an IP address or host name to bind")
    elif name == "span_queue_size":
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1_000_000:
            _fail(name, value, source, "a whole number from 1 to 1000000")
    elif name == "buckets":
        _check_buckets(value, source)
    elif name == "excluded_paths":
        if isinstance(value, str) or not all(
            isinstance(p, str) and _URL_PATH.match(p) for p in value
        ):
            _fail(name, value, source, "a list of URL paths, each starting with '/'")
    elif name == "metrics_auth" and value is not None and not callable(value):
        _fail(name, value, source, "a decorator (a callable taking and returning a view)")


def _check_sampler(value: Any, source: str) -> None:
    rule = "type:param with type const (0 or 1), probabilistic (0..1) or ratelimiting (per second)"
    if not isinstance(value, str):
        _fail("sampler", value, source, rule)
    kind, _, raw = value.partition(":")
    try:
        param = float(raw)
    except ValueError:
        _fail("sampler", value, source, rule)
    valid = (
        (kind == "const" and param in (0, 1))
        or (kind == "probabilistic" and 0 <= param <= 1)
        or (kind == "ratelimiting" and 0 <= param < math.inf)
    )
    if not valid:
        _fail("sampler", value, source, rule)


def _check_buckets(value: Any, source: str) -> None:
    rule = "a non-empty, strictly increasing list of finite positive numbers (seconds)"
    try:
        bounds = [float(b) for b in value]
    except (TypeError, ValueError):
        _fail("buckets", value, source, rule)
    if (
        isinstance(value, str)
        or not bounds
        or any(not math.isfinite(b) or b <= 0 for b in bounds)
        or any(a >= b for a, b in itertools.pairwise(bounds))
    ):
        _fail("buckets", value, source, rule)
