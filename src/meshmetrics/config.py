"""The immutable configuration shared by the runtime and the manifests.

Every option is declared once in :data:`OPTIONS` (name, converter, default).  It
resolves in one order: an explicit argument, else ``app.config["MESHMETRICS_<NAME>"]``,
else the environment variable ``MESHMETRICS_<NAME>`` (for the tracing options also
the variables Jaeger and OpenTelemetry clients read), else the default.  The
converter turns raw input (a typed value or text) into the typed value once, here;
a bad value raises :class:`ConfigError` naming the option, the value, where it came
from and the rule it broke.  Nothing on the request path parses a string.
"""

from __future__ import annotations

import importlib
import ipaddress
import itertools
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypedDict, cast
from urllib.parse import unquote, urlsplit

from .formats import (
    DNS1035_LABEL_RULE,
    DNS1123_LABEL_RULE,
    LABEL_VALUE_RULE,
    MAX_DURATION_MS,
    PORT_NAME_RULE,
    duration_ms,
    is_dns1035_label,
    is_dns1123_label,
    is_label_value,
    is_port_name,
)
from .tracing.sampling import SAMPLER_RULE, ConstSampler, Sampler, parse_sampler

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

ViewDecorator = Callable[[Callable[..., Any]], Callable[..., Any]]
TracingBackend = Literal["jaeger", "otlp", "zipkin", "otel", "off"]
TRACING_BACKENDS: tuple[TracingBackend, ...] = ("jaeger", "otlp", "zipkin", "otel", "off")


class ConfigError(ValueError):
    """An option's value broke its rule; raised when the configuration is built.

    Attributes:
        option: the option's name (``trace_endpoint``).
        value: the value as given.
        source: where it came from (``argument``, ``app.config['MESHMETRICS_…']``,
            an environment variable's name, or ``default``).
        rule: what the value must be.
        fix: another option that would make the value valid, and an example value: the
            message says how to set it where this value came from (a flag on the command
            line, a variable in the environment, an argument in code).
    """

    def __init__(
        self, option: str, value: Any, source: str, rule: str, fix: tuple[str, str] | None = None
    ) -> None:
        self.option, self.value, self.source, self.rule = option, value, source, rule
        self.fix = fix
        super().__init__(self.describe())

    def from_source(self, source: str) -> ConfigError:
        """The same error, its value given by ``source``."""
        return ConfigError(self.option, self.value, source, self.rule, self.fix)

    def describe(self, name: str | None = None) -> str:
        """The message, naming the option as ``name`` (a CLI flag) when given."""
        fix = f"; set {setting(*self.fix, self.source)}" if self.fix else ""
        return (
            f"meshmetrics: invalid {name or self.option} {self.value!r} (from {self.source}): "
            f"must be {self.rule}{fix}"
        )


#: The source of values given on meshmetrics' command line.
COMMAND_LINE = "the command line"


def setting(option: str, example: str, source: str) -> str:
    """How to set ``option`` the way a value from ``source`` was set."""
    env = ENV_PREFIX + option.upper()
    if source == COMMAND_LINE:
        return "--" + option.replace("_", "-") + f" {example}"
    if source.startswith("app.config["):
        return f"app.config[{env!r}] = {example}"
    if source.startswith(ENV_PREFIX):
        return f"{env}={example}"
    return f"{option}={example}"


class MissingExtraError(ConfigError, ImportError):
    """A configured feature needs an optional extra that is not installed."""

    def __init__(self, option: str, value: Any, source: str, extra: str, cause: str) -> None:
        self.extra = extra
        self.cause = cause
        super().__init__(option, value, source, f"installed: pip install 'meshmetrics[{extra}]'")

    def describe(self, name: str | None = None) -> str:
        return (
            f"meshmetrics: {name or self.option}={self.value!r} (from {self.source}) needs the "
            f"'{self.extra}' extra: pip install 'meshmetrics[{self.extra}]' ({self.cause})"
        )


class _InvalidError(ValueError):
    """Raised by a converter: the value broke ``rule``."""

    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


# -- typed values ---------------------------------------------------------------------


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


# -- converters: raw (typed or text) -> typed value, or _InvalidError(rule) ------------------

# \A and \Z: "$" also matches before a final newline ("flask\n" is no prefix)
_METRIC_PREFIX = re.compile(r"\A([a-zA-Z_:][a-zA-Z0-9_:]*)?\Z")
_URL_PATH = re.compile(r"\A/[^\s?#<>]*\Z")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$")

Context = Mapping[str, Any]


def _text(value: Any, rule: str) -> str:
    if not isinstance(value, str):
        raise _InvalidError(rule)
    return value


def _checked(valid: Callable[[object], bool], rule: str) -> Callable[..., str]:
    def convert(value: Any, _: Context) -> str:
        text = _text(value, rule)
        if not valid(text):
            raise _InvalidError(rule)
        return text

    return convert


def _service(value: Any, ctx: Context) -> str:
    return _checked(is_dns1035_label, DNS1035_LABEL_RULE)(value, ctx)


def _port_name(value: Any, ctx: Context) -> str:
    return _checked(is_port_name, PORT_NAME_RULE)(value, ctx)


def _path(value: Any, _: Context) -> str:
    rule = (
        "a URL path starting with '/' (not '/' itself), without spaces, '?', '#' or "
        "Flask converters ('<', '>')"
    )
    text = _text(value, rule)
    if text == "/" or not _URL_PATH.match(text):
        raise _InvalidError(rule)
    return text


def _version(value: Any, _: Context) -> str:
    rule = "a non-empty printable string of at most 128 characters"
    text = _text(value, rule)
    if not text or len(text) > 128 or not text.isprintable():
        raise _InvalidError(rule)
    return text


def _prefix(value: Any, _: Context) -> str:
    rule = "empty or a Prometheus metric name prefix matching [a-zA-Z_:][a-zA-Z0-9_:]*"
    text = _text(value, rule)
    if not _METRIC_PREFIX.match(text):
        raise _InvalidError(rule)
    return text


def _scrape_interval(value: Any, _: Context) -> str:
    rule = "a non-zero Prometheus duration such as 15s, 1m or 1m30s"
    text = _text(value, rule)
    if not duration_ms(text):  # not Prometheus' syntax, out of its range, or zero
        raise _InvalidError(rule)
    return text


def _whole_number(low: int, high: int) -> Callable[..., int]:
    rule = f"a whole number from {low} to {high}"

    def convert(value: Any, _: Context) -> int:
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise _InvalidError(rule) from None
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise _InvalidError(rule)
        return value

    return convert


def _metrics_port(value: Any, ctx: Context) -> int | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    try:
        return _whole_number(1, 65535)(value, ctx)
    except _InvalidError:
        raise _InvalidError("a TCP port number from 1 to 65535") from None


def _metrics_host(value: Any, _: Context) -> str:
    rule = "an IP address or host name to bind"
    text = _text(value, rule)
    if not text or any(c.isspace() for c in text):
        raise _InvalidError(rule)
    return text


def _buckets(value: Any, _: Context) -> tuple[float, ...]:
    rule = "a non-empty, strictly increasing list of finite positive numbers (seconds)"
    parts: Sequence[Any] = value.split(",") if isinstance(value, str) else value
    try:
        bounds = tuple(float(b) for b in parts if not (isinstance(b, str) and not b.strip()))
    except (TypeError, ValueError):
        raise _InvalidError(rule) from None
    if (
        not bounds
        or any(not math.isfinite(b) or b <= 0 for b in bounds)
        or any(a >= b for a, b in itertools.pairwise(bounds))
    ):
        raise _InvalidError(rule)
    return bounds


def _excluded_paths(value: Any, ctx: Context) -> tuple[str, ...]:
    rule = "a list of URL paths, each starting with '/'"
    parts = [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value
    try:
        return tuple(_path(p, ctx) for p in parts)
    except (_InvalidError, TypeError):
        raise _InvalidError(rule) from None


_PREFIX = re.compile(r"^/[^\s?#<>,=]*$")
_PREFIX_LABEL = re.compile(r"^/[^\s?#,=]*$")
PATH_PREFIXES_RULE = (
    "path prefixes to name, as {prefix: label} or 'PREFIX[=LABEL],...' (the label defaults "
    "to the prefix): each prefix a URL path starting with '/' (not '/' itself) without "
    "spaces, '?', '#', '<', '>', ',' or '=', each label starting with '/' without spaces, "
    "'?', '#', ',' or '=' and not '<unmatched>', no prefix twice"
)


def _path_prefixes(value: Any, _: Context) -> tuple[tuple[str, str], ...]:
    """``{prefix: label}`` (or prefixes alone, or ``PREFIX[=LABEL],...``), longest first."""
    pairs: list[tuple[Any, Any]]
    if isinstance(value, str):
        pairs = []
        for part in value.split(","):
            if part.strip():
                prefix, sep, label = part.strip().partition("=")
                pairs.append((prefix.strip(), label.strip() if sep else prefix.strip()))
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        try:
            pairs = [p if isinstance(p, tuple) and len(p) == 2 else (p, p) for p in value]
        except TypeError:
            raise _InvalidError(PATH_PREFIXES_RULE) from None
    for prefix, label in pairs:
        if not (
            isinstance(prefix, str)
            and isinstance(label, str)
            and prefix != "/"
            and _PREFIX.match(prefix)
            and _PREFIX_LABEL.match(label)
            and len(label) <= 256
        ):
            raise _InvalidError(PATH_PREFIXES_RULE)
    if len({prefix for prefix, _ in pairs}) != len(pairs):
        raise _InvalidError(PATH_PREFIXES_RULE)
    return tuple(sorted(pairs, key=lambda pair: (-len(pair[0]), pair[0])))


def _boolean(value: Any, _: Context) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise _InvalidError("true or false (1/0, yes/no, on/off)")


MTLS_MODES: tuple[str, ...] = ("permissive", "strict")


def _mtls(value: Any, _: Context) -> str:
    if isinstance(value, str) and value.strip().lower() in MTLS_MODES:
        return value.strip().lower()
    raise _InvalidError("permissive or strict (the Istio PeerAuthentication mode of the namespace)")


def _tracing(value: Any, _: Context) -> TracingBackend:
    if isinstance(value, str) and value.strip().lower() in TRACING_BACKENDS:
        return cast(TracingBackend, value.strip().lower())
    raise _InvalidError("one of otlp, zipkin, jaeger, otel, off")


def _sampler(value: Any, _: Context) -> Sampler:
    if isinstance(value, Sampler):
        return value
    if isinstance(value, str):
        try:
            return parse_sampler(value)
        except ValueError:
            pass
    raise _InvalidError(SAMPLER_RULE)


def _host(text: str) -> str | None:
    """``text`` as a host (an IP address or a DNS name), or ``None``."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if len(text) <= 253 and _HOSTNAME.fullmatch(text) and ".." not in text:
        return text
    return None


def _trace_endpoint(value: Any, ctx: Context) -> TraceEndpoint | None:
    tracing = ctx.get("tracing", "off")
    grpc = tracing == "otlp" and ctx.get("trace_protocol") == "grpc"
    if isinstance(value, HttpEndpoint):
        value = value.url  # built in code: the same rules as text
    if isinstance(value, HostPort):
        endpoint: TraceEndpoint = value
    elif value is None or value == "":
        return None
    elif tracing == "jaeger":
        endpoint = _host_port(value)
    elif grpc:
        endpoint = _grpc_endpoint(value, bool(ctx.get("trace_insecure", False)))
    else:
        endpoint = _http_endpoint(value)
    if tracing == "jaeger" and not isinstance(endpoint, HostPort):
        raise _InvalidError("host:port of the Jaeger agent with tracing='jaeger'")
    if tracing in ("otlp", "zipkin") and not isinstance(endpoint, HttpEndpoint):
        raise _InvalidError(f"an http(s) URL with tracing='{tracing}'")
    port = urlsplit(endpoint.url).port if isinstance(endpoint, HttpEndpoint) else None
    if tracing == "otlp" and not grpc and port == 4317:
        raise _InvalidError(
            "an OTLP/HTTP URL: port 4317 is OTLP/gRPC; set OTEL_EXPORTER_OTLP_PROTOCOL=grpc "
            "(with pip install 'meshmetrics[otlp-grpc]') or use the collector's OTLP/HTTP "
            "port 4318 (http://HOST:4318/v1/traces)"
        )
    if grpc and port == 4318:
        raise _InvalidError(
            "an OTLP/gRPC endpoint: port 4318 is OTLP/HTTP; use the collector's gRPC port "
            "(http://HOST:4317) or trace_protocol='http/protobuf'"
        )
    return endpoint


def _key_values(value: Any, rule: str) -> tuple[tuple[str, str], ...]:
    """``key=value,key2=value2`` (values URL-decoded) as the OpenTelemetry variables write
    them; a mapping or pairs as given in code."""
    if isinstance(value, Mapping):
        return tuple((str(k), str(v)) for k, v in value.items())
    if isinstance(value, tuple) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        return tuple((str(k), str(v)) for k, v in value)
    if not isinstance(value, str):
        raise _InvalidError(rule)
    items = []
    for part in value.split(","):
        if not part.strip():
            continue
        key, sep, raw = part.partition("=")
        if not sep or not key.strip():
            raise _InvalidError(rule)
        items.append((key.strip(), unquote(raw.strip())))
    return tuple(items)


def _headers(value: Any, _: Context) -> tuple[tuple[str, str], ...]:
    """Export request headers, as ``OTEL_EXPORTER_OTLP_HEADERS``."""
    rule = "comma-separated key=value pairs (values URL-encoded), e.g. api-key=s3cret"
    items = _key_values(value, rule)
    for key, header_value in items:
        if not _HEADER_NAME.fullmatch(key) or not (
            header_value.isprintable() and header_value.isascii()
        ):
            raise _InvalidError(rule + " (header names are HTTP tokens, values printable ASCII)")
    return items


def _compression(value: Any, _: Context) -> str:
    if isinstance(value, str) and value.strip().lower() in ("gzip", "none", ""):
        return value.strip().lower() or "none"
    raise _InvalidError("gzip or none")


def _timeout(value: Any, _: Context) -> float:
    """Seconds (``OTEL_EXPORTER_OTLP_TIMEOUT``, in milliseconds, is converted on its way in)."""
    rule = "a timeout in seconds, above 0 and at most 600"
    try:
        seconds = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise _InvalidError(rule) from None
    if not 0 < seconds <= 600:
        raise _InvalidError(rule)
    return seconds


def _certificate(value: Any, _: Context) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    rule = "a PEM file of trusted CA certificates that can be read"
    path = _text(value, rule).strip()
    try:
        import ssl

        ssl.create_default_context(cafile=path)
    except (OSError, ValueError) as exc:
        raise _InvalidError(f"{rule} ({exc})") from None
    return path


#: The OTLP transports spoken: ``grpc`` needs the ``otlp-grpc`` extra.
OTLP_PROTOCOLS: tuple[str, ...] = ("http/protobuf", "grpc")


def _protocol(value: Any, _: Context) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if text in OTLP_PROTOCOLS:
        return cast(str, text)
    raise _InvalidError(
        "http/protobuf (OTLP/HTTP, port 4318) or grpc (OTLP/gRPC, port 4317, with "
        "pip install 'meshmetrics[otlp-grpc]'); http/json is not supported"
    )


def _attributes(value: Any, _: Context) -> tuple[tuple[str, str], ...]:
    """Resource attributes, as ``OTEL_RESOURCE_ATTRIBUTES``."""
    rule = "comma-separated key=value resource attributes, e.g. deployment.environment=prod"
    return _key_values(value, rule)


def _host_port(value: Any) -> HostPort:
    rule = "host:port of the Jaeger agent (IPv6 in brackets: [::1]:6831), port 1 to 65535"
    text = _text(value, rule).strip()
    match = re.fullmatch(r"\[([^\]]+)\]:([0-9]+)|([^:\[\]]+):([0-9]+)", text)
    if match is None:
        raise _InvalidError(rule)
    raw_host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    host = _host(raw_host)
    if host is None or not 1 <= port <= 65535 or (match.group(1) and ":" not in host):
        raise _InvalidError(rule)
    return HostPort(host, port)


_NO_USERINFO = (
    "without user:password@ (it would never be sent): put credentials in "
    "OTEL_EXPORTER_OTLP_HEADERS / trace_headers, e.g. Authorization=Basic%20BASE64"
)


def _http_endpoint(value: Any) -> HttpEndpoint:
    rule = "an http(s) URL with a host and a port from 1 to 65535 (http://collector:4318/v1/traces)"
    text = _text(value, rule).strip()
    if not text.isprintable() or any(c.isspace() for c in text):
        raise _InvalidError(rule)
    try:
        parts = urlsplit(text)
        port = parts.port
        hostname = parts.hostname
    except ValueError:  # an unclosed '[', a port that is not a number
        raise _InvalidError(rule) from None
    if "@" in parts.netloc:
        raise _InvalidError(f"{rule}, {_NO_USERINFO}")
    if (
        parts.scheme not in ("http", "https")
        or not hostname
        or _host(hostname) is None
        or (port is not None and not 1 <= port <= 65535)
    ):
        raise _InvalidError(rule)
    return HttpEndpoint(text)


def _grpc_endpoint(value: Any, insecure: bool) -> HttpEndpoint:
    """An OTLP/gRPC target: an http(s) URL (the scheme decides TLS, per the exporter spec),
    or ``host:port``, secure unless ``insecure`` (``OTEL_EXPORTER_OTLP_INSECURE``)."""
    rule = (
        "an OTLP/gRPC endpoint: http://HOST:4317 (plain text), https://HOST:4317 (TLS) or "
        "HOST:PORT (TLS unless OTEL_EXPORTER_OTLP_INSECURE=true)"
    )
    text = _text(value, rule).strip()
    if "://" not in text:
        try:
            target = _host_port(text)
        except _InvalidError:
            raise _InvalidError(rule) from None
        text = f"{'http' if insecure else 'https'}://{target}"
    try:
        endpoint = _http_endpoint(text)
    except _InvalidError as exc:
        raise _InvalidError(f"{rule}, {_NO_USERINFO}" if "@" in exc.rule else rule) from None
    parts = urlsplit(endpoint.url)
    if parts.port is None:
        raise _InvalidError(rule)
    return HttpEndpoint(f"{parts.scheme}://{parts.netloc}")


def _names(value: Any, _: Context) -> frozenset[str]:
    rule = "a list (or comma-separated string) of query parameter names"
    parts: Any = value.split(",") if isinstance(value, str) else value
    if isinstance(parts, frozenset):
        return parts
    try:
        names = [p.strip().lower() for p in parts if not isinstance(p, str) or p.strip()]
    except (TypeError, AttributeError):
        raise _InvalidError(rule) from None
    if any(not name or not name.isprintable() or "=" in name or "&" in name for name in names):
        raise _InvalidError(rule)
    return frozenset(names)


SLO_RULE = (
    "objectives 'availability:PERCENT' or 'latency:PERCENT:SECONDS' (plain decimals), each "
    "optionally ':WINDOW' (default 30d) and '@/route', separated by ';' (e.g. "
    "'availability:99.9;latency:99:0.5@/api/v1/user/<user_id>'), or SLO objects"
)
_SLO_WINDOW = re.compile(r"\A[1-9][0-9]*[dhw]\Z")
#: A number as an objective or a threshold is written: digits, optionally a fraction
#: (no sign, exponent, ``_``, ``inf`` or ``nan``: Python's float() reads ``1_0`` as 10).
_PLAIN_DECIMAL = re.compile(r"\A(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z")
#: The multiwindow multi-burn-rate alerts of every objective (Google SRE workbook, "Alerting
#: on SLOs"): (name, severity, [(long window, short window, share of the budget consumed
#: over the long window)]).  An alert fires when either pair is above its threshold.
BURN_RATE_ALERTS: tuple[tuple[str, str, tuple[tuple[str, str, float], ...]], ...] = (
    ("Page", "critical", (("1h", "5m", 0.02), ("6h", "30m", 0.05))),
    ("Ticket", "warning", (("1d", "2h", 0.10), ("3d", "6h", 0.10))),
)
BURN_RATE_WINDOW_HOURS = {"5m": 5 / 60, "30m": 0.5, "1h": 1, "2h": 2, "6h": 6, "1d": 24, "3d": 72}


def burn_rate_threshold(
    budget: float, window_hours: float, long_window: str, share: float
) -> float:
    """The error ratio of a burn-rate pair: spending ``share`` of the budget over
    ``long_window`` is ``share * window / long_window`` times the rate the budget allows."""
    return share * window_hours / BURN_RATE_WINDOW_HOURS[long_window] * budget


def _least_objective(window_hours: float) -> float:
    """The least objective (percent) under which every burn-rate alert can still fire: each
    needs one pair whose threshold is below 1 (an error ratio never exceeds 1)."""
    needed = max(
        min(share * window_hours / BURN_RATE_WINDOW_HOURS[long] for long, _, share in pairs)
        for _, _, pairs in BURN_RATE_ALERTS
    )
    return 100 * (1 - 1 / needed) if needed > 1 else 0.0


@dataclass(frozen=True)
class SLO:
    """A service level objective: the share of requests that are good over a window.

    ``availability``: not answered 5xx.  ``latency``: answered within ``threshold``
    seconds, which must be a bucket bound of the latency histogram (the share is read from
    that bucket).  ``route`` limits it to one route template (default: every request).
    """

    kind: Literal["availability", "latency"]
    #: Target percentage, e.g. ``99.9``.
    objective: float
    #: Seconds (latency objectives only).
    threshold: float | None = None
    #: The period the error budget spans (a Prometheus duration in days, hours or weeks).
    window: str = "30d"
    route: str | None = None

    def __post_init__(self) -> None:
        rule = SLO_RULE
        if self.kind not in ("availability", "latency"):
            raise _InvalidError(rule)
        if not (_is_real(self.objective) and 0 < float(self.objective) < 100):
            raise _InvalidError("an objective strictly between 0 and 100 (percent)")
        if (self.kind == "latency") != (self.threshold is not None):
            raise _InvalidError(
                "a latency objective with a threshold in seconds (latency:99:0.5), "
                "an availability objective without"
            )
        if self.threshold is not None and not (
            _is_real(self.threshold) and 0 < self.threshold < math.inf
        ):
            raise _InvalidError("a latency threshold is a finite number of seconds above 0")
        if not (
            isinstance(self.window, str)
            and _SLO_WINDOW.match(self.window)
            and duration_ms(self.window) is not None
        ):
            raise _InvalidError(
                "an SLO window such as 30d, 28d, 4w or 720h, at most what Prometheus can "
                f"hold ({MAX_DURATION_MS // 86_400_000}d)"
            )
        if self.route is not None and not _is_route(self.route):
            raise _InvalidError(
                "an SLO route is a route template starting with '/', in valid Unicode"
            )
        least = _least_objective(self.window_hours)
        if float(self.objective) <= least:
            raise _InvalidError(
                f"an objective of at least {math.ceil(least * 1000) / 1000:g} for a "
                f"{self.window} window: below it the page alert's burn-rate threshold is above "
                "an error ratio of 1, so it could never fire"
            )

    @property
    def ratio(self) -> float:
        return float(self.objective) / 100

    @property
    def error_budget(self) -> float:
        """The share of requests allowed to be bad: ``1 - objective``."""
        return 1 - self.ratio

    @property
    def window_hours(self) -> float:
        number, unit = int(self.window[:-1]), self.window[-1]
        return number * {"h": 1, "d": 24, "w": 168}[unit]

    @property
    def name(self) -> str:
        """The ``slo`` label: kind, threshold and route, e.g. ``latency-0.5-api-v1-user``."""
        parts: list[str] = [self.kind]
        if self.threshold is not None:
            parts.append(f"{self.threshold:g}")
        if self.route is not None:
            slug = re.sub(r"[^a-z0-9]+", "-", self.route.lower()).strip("-")
            parts.append(slug or "root")
        return "-".join(parts)

    @property
    def spec(self) -> str:
        text = f"{self.kind}:{decimal_text(self.objective)}"
        if self.threshold is not None:
            text += f":{decimal_text(self.threshold)}"
        if self.window != "30d":
            text += f":{self.window}"
        return text + (f"@{self.route}" if self.route is not None else "")


def decimal_text(number: float) -> str:
    """A number as a plain decimal that reads back to the same float (99.95, 0.5, 1e-07
    as 0.0000001): what the SLO text form accepts."""
    text = repr(float(number))
    if "e" in text or "E" in text:
        text = f"{float(number):.20f}".rstrip("0")
    return text.removesuffix(".0").rstrip(".")


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_route(route: object) -> bool:
    if not isinstance(route, str) or not route.startswith("/"):
        return False
    try:
        route.encode("utf-8")  # a lone surrogate is no text Prometheus can hold
    except UnicodeEncodeError:
        return False
    return True


def _decimal(text: str) -> float:
    number = text.strip()
    if not _PLAIN_DECIMAL.match(number):
        raise ValueError(number)
    return float(number)


def _parse_slo(text: str) -> SLO:
    head, at, route = text.strip().partition("@")
    parts = [p.strip() for p in head.split(":")]
    window = "30d"
    if len(parts) > 2 and _SLO_WINDOW.match(parts[-1]):
        window = parts.pop()
    try:
        kind = parts[0].lower()
        objective = _decimal(parts[1].removesuffix("%"))
        threshold = _decimal(parts[2]) if len(parts) > 2 else None
    except (IndexError, ValueError):
        raise _InvalidError(SLO_RULE) from None
    if len(parts) > 3:
        raise _InvalidError(SLO_RULE)
    return SLO(kind, objective, threshold, window, route.strip() if at else None)  # type: ignore[arg-type]


def _slos(value: Any, _: Context) -> tuple[SLO, ...]:
    if value is None:
        return ()
    items: Sequence[Any] = [value] if isinstance(value, str | SLO) else value
    slos: list[SLO] = []
    for item in items:
        if isinstance(item, SLO):
            slos.append(item)
        elif isinstance(item, str):
            slos += [_parse_slo(part) for part in item.split(";") if part.strip()]
        else:
            raise _InvalidError(SLO_RULE)
    names = [slo.name for slo in slos]
    if len(names) != len(set(names)):
        raise _InvalidError(
            "objectives with distinct names (the slo label: kind, threshold and the route's "
            "letters and digits)"
        )
    return tuple(slos)


def _metrics_auth(value: Any, _: Context) -> ViewDecorator | None:
    rule = "a decorator (a callable taking and returning a view), or 'package.module:decorator'"
    if value is None:
        return None
    if isinstance(value, str):
        module_name, _sep, attr = value.partition(":")
        if not module_name or not attr:
            raise _InvalidError(rule)
        try:
            value = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise _InvalidError(f"{rule} ({type(exc).__name__}: {exc})") from None
    if not callable(value):
        raise _InvalidError(rule)
    return cast(ViewDecorator, value)


# -- the options ----------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One option: its converter and default; its environment variable is derived."""

    name: str
    convert: Callable[[Any, Context], Any]
    default: Any = None

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("service", _service),
    Option(
        "namespace",
        _checked(is_dns1123_label, DNS1123_LABEL_RULE),
        "default",
    ),
    Option("version", _version, "unknown"),
    Option("metrics_path", _path, "/metrics"),
    Option("metrics_port", _metrics_port, None),
    Option("metrics_host", _metrics_host, "127.0.0.1"),
    Option("port_name", _port_name, "http"),
    Option("metrics_port_name", _port_name, "http-metrics"),
    Option("mtls", _mtls, "permissive"),
    Option("buckets", _buckets, DEFAULT_BUCKETS),
    Option("prefix", _prefix, "flask"),
    Option("excluded_paths", _excluded_paths, DEFAULT_EXCLUDED_PATHS),
    Option("path_prefixes", _path_prefixes, ()),
    Option(
        "release",
        _checked(is_label_value, LABEL_VALUE_RULE),
        "kube-prometheus-stack",
    ),
    Option("scrape_interval", _scrape_interval, "30s"),
    Option("tracing", _tracing, "off"),
    Option("sampler", _sampler, ConstSampler(True)),
    Option("trace_protocol", _protocol, "http/protobuf"),
    Option("trace_insecure", _boolean, False),
    Option("trace_endpoint", _trace_endpoint, None),
    Option("trace_headers", _headers, ()),
    Option("trace_compression", _compression, "none"),
    Option("trace_timeout", _timeout, 10.0),
    Option("trace_certificate", _certificate, None),
    Option("resource_attributes", _attributes, ()),
    Option("span_queue_size", _whole_number(1, 1_000_000), 4096),
    Option("span_queue_bytes", _whole_number(64 * 1024, 1 << 34), DEFAULT_SPAN_QUEUE_BYTES),
    Option("sensitive_query_params", _names, DEFAULT_SENSITIVE_QUERY_PARAMS),
    Option("slo", _slos, ()),
    Option("created_series", _boolean, False),
    Option("metrics_auth", _metrics_auth, None),
)
OPTION_NAMES: tuple[str, ...] = tuple(option.name for option in OPTIONS)
_BY_NAME = {option.name: option for option in OPTIONS}


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
    mtls: str
    buckets: Sequence[float]
    prefix: str
    excluded_paths: Sequence[str]
    path_prefixes: Mapping[str, str] | Sequence[str] | str
    release: str
    scrape_interval: str
    tracing: TracingBackend
    sampler: Sampler | str
    trace_protocol: str
    trace_insecure: bool
    trace_endpoint: str | HostPort | HttpEndpoint | None
    trace_headers: Mapping[str, str] | str
    trace_compression: str
    trace_timeout: float
    trace_certificate: str | None
    resource_attributes: Mapping[str, str] | str
    span_queue_size: int
    span_queue_bytes: int
    sensitive_query_params: Sequence[str]
    slo: SLO | str | Sequence[SLO | str]
    created_series: bool
    metrics_auth: ViewDecorator | str | None


@dataclass(frozen=True)
class MeshConfig:
    """Resolved, typed settings of one instrumented service.

    Build it with :func:`resolve_config` (what :func:`meshmetrics.instrument` does)
    to get ``app.config``, environment variables and defaults; constructing it
    directly converts and validates every field too.
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
    #: Address the separate metrics port binds to.  Default: all IPv4 interfaces
    #: (``0.0.0.0``) inside a Kubernetes pod (``KUBERNETES_SERVICE_HOST`` is set in every
    #: pod), where Prometheus scrapes the pod IP; loopback elsewhere, so a laptop does not
    #: expose unauthenticated metrics to its network.
    metrics_host: str = "127.0.0.1"
    #: Name of the Service port of the app (an IANA service name); Prometheus scrapes it
    #: unless ``metrics_port`` is set.
    port_name: str = "http"
    #: Name of the Service port for ``metrics_port``, the one Prometheus then scrapes.
    metrics_port_name: str = "http-metrics"
    #: Istio mTLS mode of the service's namespace: ``permissive`` (Istio's default) or
    #: ``strict``.  Prometheus runs outside the mesh and scrapes in plain text, so
    #: ``strict`` needs ``metrics_port``: the manifests then exempt that port alone
    #: (a PeerAuthentication with ``portLevelMtls`` PERMISSIVE).
    mtls: str = "permissive"
    #: Upper bounds of the request-latency histogram buckets, in seconds.
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    #: Prefix of the request metric names (``flask`` as in prometheus-flask-exporter).
    prefix: str = "flask"
    #: Routes neither measured nor traced: a route is excluded when its template (or the
    #: label of a ``path_prefixes`` entry) equals an entry exactly.  The metrics endpoint
    #: is always excluded.
    excluded_paths: tuple[str, ...] = DEFAULT_EXCLUDED_PATHS
    #: Labels of requests no route of the app matched, by path prefix (``{prefix: label}``,
    #: longest prefix first): a WSGI layer's endpoint such as Socket.IO's gets a ``path``
    #: label of its own instead of ``<unmatched>``, and ``excluded_paths`` may list the
    #: label.  Flask-SocketIO's endpoint (``/socket.io/``) is named so by default.
    path_prefixes: tuple[tuple[str, str], ...] = ()
    #: Helm release of kube-prometheus-stack: the ``release`` label its Prometheus selects.
    release: str = "kube-prometheus-stack"
    #: How often Prometheus scrapes the service (a Prometheus duration).
    scrape_interval: str = "30s"
    #: Trace backend: ``jaeger`` (UDP agent), ``otlp`` (OTLP/HTTP) or ``off`` (propagation
    #: only). Default: ``jaeger`` when ``JAEGER_AGENT_HOST`` is set, ``otlp`` when
    #: ``OTEL_EXPORTER_OTLP_ENDPOINT`` is, else ``off``.
    tracing: TracingBackend = "off"
    #: Sampler for new traces (a :class:`~meshmetrics.tracing.sampling.Sampler`, or
    #: ``const:1``, ``probabilistic:0.1``, ``ratelimiting:5``). Requests that carry a
    #: decision (Envoy's) keep it. Default from ``JAEGER_SAMPLER_TYPE``/``_PARAM`` or
    #: ``OTEL_TRACES_SAMPLER``/``_ARG``, else always.
    sampler: Sampler = field(default_factory=lambda: ConstSampler(True))
    #: OTLP transport: ``http/protobuf`` (OTLP/HTTP, port 4318) or ``grpc`` (OTLP/gRPC,
    #: port 4317, the ``otlp-grpc`` extra): ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL``.
    trace_protocol: str = "http/protobuf"
    #: OTLP/gRPC to a ``host:port`` endpoint (no scheme) without TLS:
    #: ``OTEL_EXPORTER_OTLP_(TRACES_)INSECURE``.  An ``http://``/``https://`` scheme decides
    #: by itself, as the exporter spec says.
    trace_insecure: bool = False
    #: Where spans go: ``host:port`` of the Jaeger agent (a :class:`HostPort`), or the
    #: OTLP/HTTP traces URL or OTLP/gRPC target (an :class:`HttpEndpoint`; never with
    #: ``user:password@``: credentials go in ``trace_headers``). Default from
    #: ``JAEGER_AGENT_HOST``/``_PORT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``.
    trace_endpoint: HostPort | HttpEndpoint | None = None
    #: Headers of every export request (OTLP and Zipkin): ``OTEL_EXPORTER_OTLP_TRACES_HEADERS``
    #: or ``OTEL_EXPORTER_OTLP_HEADERS`` (``key=value,...``).
    #: (Not in the config's ``repr``: values are often credentials.)
    trace_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    #: ``gzip`` or ``none``: ``OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION``.
    trace_compression: str = "none"
    #: Seconds one export may take in all, retries included; default from
    #: ``OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT`` (in milliseconds there), else 10.
    trace_timeout: float = 10.0
    #: CA certificates (PEM) to verify an https endpoint: ``OTEL_EXPORTER_OTLP_(TRACES_)
    #: CERTIFICATE``.
    trace_certificate: str | None = None
    #: Resource attributes of exported spans: ``OTEL_RESOURCE_ATTRIBUTES``.
    resource_attributes: tuple[tuple[str, str], ...] = ()
    #: Finished spans waiting for export; beyond it spans are dropped (and counted).
    span_queue_size: int = 4096
    #: The same queue bounded in bytes (an estimate of the spans' encoded size), so a
    #: stuck collector with large spans cannot grow the process without limit.
    span_queue_bytes: int = DEFAULT_SPAN_QUEUE_BYTES
    #: Query parameters whose values span URLs carry as ``REDACTED`` (case-insensitive);
    #: credentials in a URL (``user:pass@``) are always redacted.
    sensitive_query_params: frozenset[str] = DEFAULT_SENSITIVE_QUERY_PARAMS
    #: Service level objectives (:class:`SLO`, or their text form): ``manifests`` turns
    #: them into SLI recording rules, burn-rate alerts and error-budget panels.
    slo: tuple[SLO, ...] = ()
    #: Serve the ``*_created`` series of counters, histograms and summaries.  Prometheus 2
    #: and 3 store them as ordinary extra series (one per counter, per histogram label set)
    #: and use them for nothing, unless started with
    #: ``--enable-feature=created-timestamp-zero-ingestion``: then turn this on.
    created_series: bool = False
    #: Decorator applied to the metrics view (authentication), or ``None``.
    metrics_auth: ViewDecorator | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        resolved: dict[str, Any] = {}
        for f in fields(self):
            value = _convert(_BY_NAME[f.name], getattr(self, f.name), "argument", resolved)
            resolved[f.name] = value
            object.__setattr__(self, f.name, value)
        if self.tracing != "off" and self.trace_endpoint is None:
            default = _default_endpoint(self.tracing, self.trace_protocol)
            object.__setattr__(self, "trace_endpoint", default)
        if self.tracing == "otlp" and self.trace_protocol == "grpc":
            _check_grpc_metadata(self.trace_headers, self.source_of("trace_headers"))
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
        _reject_unknown(changes)
        values: dict[str, Any] = {}
        for option in OPTIONS:
            name = option.name
            if name in changes:
                value = _convert(option, changes[name], source, values)
            elif name == "trace_endpoint" and "tracing" in changes:
                value = None  # the new backend's default
            else:
                value = getattr(self, name)
            values[name] = value
        return MeshConfig(**values)


def _check_grpc_metadata(headers: tuple[tuple[str, str], ...], source: str) -> None:
    """Headers sent as gRPC metadata: lower-case keys of ``0-9 a-z - _ .``, not ``grpc-``."""
    for key, _ in headers:
        if not re.fullmatch(r"[0-9a-z_.-]+", key.lower()) or key.lower().startswith("grpc-"):
            raise ConfigError(
                "trace_headers",
                redacted("trace_headers", headers),
                source,
                "gRPC metadata with trace_protocol='grpc': keys of 0-9, a-z, '-', '_' and '.' "
                f"not starting with 'grpc-' ({key!r} is not)",
            )


def _default_endpoint(tracing: str, protocol: str = "http/protobuf") -> TraceEndpoint | None:
    if tracing == "jaeger":
        return HostPort("localhost", 6831)
    if tracing == "zipkin":
        return HttpEndpoint("http://localhost:9411/api/v2/spans")
    if tracing == "otlp" and protocol == "grpc":
        return HttpEndpoint("http://localhost:4317")
    if tracing == "otlp":
        return HttpEndpoint("http://localhost:4318/v1/traces")
    return None  # otel: the TracerProvider's exporters


def otel_sdk_active() -> bool:
    """Whether the OpenTelemetry SDK's TracerProvider is the global one (set by the app or
    ``opentelemetry-instrument``); never imports OpenTelemetry itself."""
    import sys

    api = sys.modules.get("opentelemetry.trace")
    sdk = sys.modules.get("opentelemetry.sdk.trace")
    if api is None or sdk is None:
        return False
    return isinstance(api.get_tracer_provider(), sdk.TracerProvider)


def env_name(option: str) -> str:
    """The environment variable read for ``option``."""
    return _BY_NAME[option].env


def _convert(option: Option, value: Any, source: str, resolved: Context) -> Any:
    try:
        return option.convert(value, resolved)
    except _InvalidError as exc:
        raise ConfigError(option.name, redacted(option.name, value), source, exc.rule) from None


#: Options whose values may hold credentials: an error names them without the secret.
_SECRET_OPTIONS = frozenset({"trace_endpoint", "trace_headers"})


def redacted(option: str, value: Any) -> Any:
    """``value`` as an error message may show it: no header value, no ``user:password@``,
    no value of a query parameter known to carry secrets."""
    if option not in _SECRET_OPTIONS:
        return value
    if option == "trace_headers":
        if isinstance(value, str):
            keys = [part.partition("=")[0] for part in value.split(",") if "=" in part]
        elif isinstance(value, Mapping):
            keys = [str(k) for k in value]
        elif isinstance(value, tuple | list):
            keys = [str(p[0]) if isinstance(p, tuple | list) and p else "" for p in value]
        else:
            return "REDACTED"
        # a key that is not an HTTP token may be a secret written in the wrong place
        shown = [k.strip() if _HEADER_NAME.fullmatch(k.strip()) else "?" for k in keys]
        return ",".join(f"{key}=REDACTED" for key in shown) or "REDACTED"
    text = value.url if isinstance(value, HttpEndpoint) else value
    if not isinstance(text, str):
        return value
    return _redacted_url(text)


def _redacted_url(text: str) -> str:
    """Everything up to the last ``@`` of a URL (or a ``host:port``) is a possible
    ``user:password``, even where ``urlsplit`` would not see one."""
    from .tracing.redaction import REDACTED, redact_url

    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    if "@" in rest:
        rest = f"{REDACTED}@{rest.rpartition('@')[2]}"
    return redact_url(f"{scheme}{sep}{rest}", DEFAULT_SENSITIVE_QUERY_PARAMS)


def _reject_unknown(given: Mapping[str, Any]) -> None:
    unknown = sorted(set(given) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(
            f"meshmetrics: unknown option(s) {', '.join(unknown)}; "
            f"known options: {', '.join(OPTION_NAMES)}"
        )


def resolve_config(
    explicit: Mapping[str, Any],
    *,
    default_service: str,
    app_config: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> MeshConfig:
    """Resolve every option: explicit (not ``None``) > ``app_config`` > environment > default."""
    _reject_unknown(explicit)
    env = os.environ if environ is None else environ
    app_config = app_config or {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        source, raw = _raw_value(option, explicit, app_config, env, values, default_service)
        sources[option.name] = source
        # a default converts to itself; MeshConfig fills in the backend's default endpoint
        values[option.name] = _convert(option, raw, source, values)
    try:
        config = MeshConfig(**values)
    except ConfigError as exc:  # a rule across options: name where the value came from
        raise exc.from_source(sources.get(exc.option, exc.source)) from None
    object.__setattr__(config, "_sources", sources)
    return config


def _raw_value(
    option: Option,
    explicit: Mapping[str, Any],
    app_config: Mapping[str, Any],
    env: Mapping[str, str],
    resolved: Context,
    default_service: str,
) -> tuple[str, Any]:
    """Where ``option`` comes from, and its raw value there."""
    if explicit.get(option.name) is not None:
        return "argument", explicit[option.name]
    if app_config.get(option.env) is not None:
        return f"app.config[{option.env!r}]", app_config[option.env]
    if option.env in env:
        return option.env, env[option.env]
    if option.name == "service":
        if env.get("OTEL_SERVICE_NAME", "").strip():
            return "OTEL_SERVICE_NAME", env["OTEL_SERVICE_NAME"].strip()
        return "the application name; pass service=...", _service_from_name(default_service)
    if option.name in _FROM_TRACING_ENV:
        found = _FROM_TRACING_ENV[option.name](env, resolved)
        if found is not None:
            return found
    return "default", option.default


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
            return "OTEL_EXPORTER_OTLP_ENDPOINT", base.rstrip("/") + "/v1/traces"
    return None


#: Options whose default comes from the variables other Jaeger/OpenTelemetry clients read.
_FROM_TRACING_ENV: dict[str, Callable[[Mapping[str, str], Context], tuple[str, str] | None]] = {
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


def _service_from_name(name: str) -> str:
    """A DNS-1035 label derived from an app or Blueprint name."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return re.sub(r"-{2,}", "-", label)[:63].rstrip("-")
