"""Converters: raw input (a typed value, or text from app.config or the environment) to
an option's typed value, or :class:`~.errors.InvalidError` naming the rule it broke.

Each takes the value and the options resolved before it (``trace_endpoint`` reads
``tracing``), and is named for the option it converts.
"""

from __future__ import annotations

import importlib
import ipaddress
import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from ..formats import (
    DNS1035_LABEL_RULE,
    DNS1123_LABEL_RULE,
    LABEL_VALUE_RULE,
    PORT_NAME_RULE,
    duration_ms,
    is_dns1035_label,
    is_dns1123_label,
    is_label_value,
    is_port_name,
)
from ..typing import MetricsAuth
from .errors import InvalidError
from .sampling import SAMPLER_RULE, Sampler, parse_sampler
from .values import (
    COMPRESSIONS,
    HEADER_NAME,
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

# -- converters: raw (typed or text) -> typed value, or InvalidError(rule) ------------------

# \A and \Z: "$" also matches before a final newline ("flask\n" is no prefix)
_METRIC_PREFIX = re.compile(r"\A([a-zA-Z_:][a-zA-Z0-9_:]*)?\Z")
_URL_PATH = re.compile(r"\A/[^\s?#<>]*\Z")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$")


def _text(value: Any, rule: str) -> str:
    if not isinstance(value, str):
        raise InvalidError(rule)
    return value


def checked(valid: Callable[[object], bool], rule: str) -> Callable[..., str]:
    def convert(value: Any, _: Context) -> str:
        text = _text(value, rule)
        if not valid(text):
            raise InvalidError(rule)
        return text

    return convert


def service(value: Any, ctx: Context) -> str:
    return checked(is_dns1035_label, DNS1035_LABEL_RULE)(value, ctx)


def port_name(value: Any, ctx: Context) -> str:
    return checked(is_port_name, PORT_NAME_RULE)(value, ctx)


def path(value: Any, _: Context) -> str:
    rule = (
        "a URL path starting with '/' (not '/' itself), without spaces, '?', '#' or "
        "Flask converters ('<', '>')"
    )
    text = _text(value, rule)
    if text == "/" or not _URL_PATH.match(text):
        raise InvalidError(rule)
    return text


def version(value: Any, _: Context) -> str:
    rule = "a non-empty printable string of at most 128 characters"
    text = _text(value, rule)
    if not text or len(text) > 128 or not text.isprintable():
        raise InvalidError(rule)
    return text


def prefix(value: Any, _: Context) -> str:
    rule = "empty or a Prometheus metric name prefix matching [a-zA-Z_:][a-zA-Z0-9_:]*"
    text = _text(value, rule)
    if not _METRIC_PREFIX.match(text):
        raise InvalidError(rule)
    return text


def scrape_interval(value: Any, _: Context) -> str:
    rule = "a non-zero Prometheus duration such as 15s, 1m or 1m30s"
    text = _text(value, rule)
    if not duration_ms(text):  # not Prometheus' syntax, out of its range, or zero
        raise InvalidError(rule)
    return text


def whole_number(low: int, high: int) -> Callable[..., int]:
    rule = f"a whole number from {low} to {high}"

    def convert(value: Any, _: Context) -> int:
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise InvalidError(rule) from None
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InvalidError(rule)
        return value

    return convert


def metrics_port(value: Any, ctx: Context) -> int | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    try:
        return whole_number(1, 65535)(value, ctx)
    except InvalidError:
        raise InvalidError("a TCP port number from 1 to 65535") from None


def metrics_host(value: Any, _: Context) -> str:
    rule = "an IP address or host name to bind"
    text = _text(value, rule)
    if not text or any(c.isspace() for c in text):
        raise InvalidError(rule)
    return text


def buckets(value: Any, _: Context) -> tuple[float, ...]:
    rule = "a non-empty, strictly increasing list of finite positive numbers (seconds)"
    parts: Sequence[Any] = value.split(",") if isinstance(value, str) else value
    try:
        bounds = tuple(float(b) for b in parts if not (isinstance(b, str) and not b.strip()))
    except (TypeError, ValueError):
        raise InvalidError(rule) from None
    if (
        not bounds
        or any(not math.isfinite(b) or b <= 0 for b in bounds)
        or any(a >= b for a, b in itertools.pairwise(bounds))
    ):
        raise InvalidError(rule)
    return bounds


def excluded_paths(value: Any, ctx: Context) -> tuple[str, ...]:
    rule = "a list of URL paths, each starting with '/'"
    parts = [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value
    try:
        return tuple(path(p, ctx) for p in parts)
    except (InvalidError, TypeError):
        raise InvalidError(rule) from None


_PREFIX = re.compile(r"^/[^\s?#<>,=]*$")
_PREFIX_LABEL = re.compile(r"^/[^\s?#,=]*$")
PATH_PREFIXES_RULE = (
    "path prefixes to name, as {prefix: label} or 'PREFIX[=LABEL],...' (the label defaults "
    "to the prefix): each prefix a URL path starting with '/' (not '/' itself) without "
    "spaces, '?', '#', '<', '>', ',' or '=', each label starting with '/' without spaces, "
    "'?', '#', ',' or '=' and not '<unmatched>', no prefix twice"
)


def path_prefixes(value: Any, _: Context) -> tuple[tuple[str, str], ...]:
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
            raise InvalidError(PATH_PREFIXES_RULE) from None
    for prefix, label in pairs:
        if not (
            isinstance(prefix, str)
            and isinstance(label, str)
            and prefix != "/"
            and _PREFIX.match(prefix)
            and _PREFIX_LABEL.match(label)
            and len(label) <= 256
        ):
            raise InvalidError(PATH_PREFIXES_RULE)
    if len({prefix for prefix, _ in pairs}) != len(pairs):
        raise InvalidError(PATH_PREFIXES_RULE)
    return tuple(sorted(pairs, key=lambda pair: (-len(pair[0]), pair[0])))


def boolean(value: Any, _: Context) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise InvalidError("true or false (1/0, yes/no, on/off)")


def mtls(value: Any, _: Context) -> MtlsMode:
    if isinstance(value, str) and value.strip().lower() in MTLS_MODES:
        return cast(MtlsMode, value.strip().lower())
    raise InvalidError("permissive or strict (the Istio PeerAuthentication mode of the namespace)")


def tracing(value: Any, _: Context) -> TracingBackend:
    if isinstance(value, str) and value.strip().lower() in TRACING_BACKENDS:
        return cast(TracingBackend, value.strip().lower())
    raise InvalidError("one of otlp, zipkin, jaeger, otel, off")


def sampler(value: Any, _: Context) -> Sampler:
    if isinstance(value, Sampler):
        return value
    if isinstance(value, str):
        try:
            return parse_sampler(value)
        except ValueError:
            pass
    raise InvalidError(SAMPLER_RULE)


def _host(text: str) -> str | None:
    """``text`` as a host (an IP address or a DNS name), or ``None``."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if len(text) <= 253 and _HOSTNAME.fullmatch(text) and ".." not in text:
        return text
    return None


def trace_endpoint(value: Any, ctx: Context) -> TraceEndpoint | None:
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
        raise InvalidError("host:port of the Jaeger agent with tracing='jaeger'")
    if tracing in ("otlp", "zipkin") and not isinstance(endpoint, HttpEndpoint):
        raise InvalidError(f"an http(s) URL with tracing='{tracing}'")
    port = urlsplit(endpoint.url).port if isinstance(endpoint, HttpEndpoint) else None
    if tracing == "otlp" and not grpc and port == 4317:
        raise InvalidError(
            "an OTLP/HTTP URL: port 4317 is OTLP/gRPC; set OTEL_EXPORTER_OTLP_PROTOCOL=grpc "
            "(with pip install 'meshmetrics[otlp-grpc]') or use the collector's OTLP/HTTP "
            "port 4318 (http://HOST:4318/v1/traces)"
        )
    if grpc and port == 4318:
        raise InvalidError(
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
        raise InvalidError(rule)
    items = []
    for part in value.split(","):
        if not part.strip():
            continue
        key, sep, raw = part.partition("=")
        if not sep or not key.strip():
            raise InvalidError(rule)
        items.append((key.strip(), unquote(raw.strip())))
    return tuple(items)


def headers(value: Any, _: Context) -> tuple[tuple[str, str], ...]:
    """Export request headers, as ``OTEL_EXPORTER_OTLP_HEADERS``."""
    rule = "comma-separated key=value pairs (values URL-encoded), e.g. api-key=s3cret"
    items = _key_values(value, rule)
    for key, header_value in items:
        if not HEADER_NAME.fullmatch(key) or not (
            header_value.isprintable() and header_value.isascii()
        ):
            raise InvalidError(rule + " (header names are HTTP tokens, values printable ASCII)")
    return items


def compression(value: Any, _: Context) -> Compression:
    if isinstance(value, str) and value.strip().lower() in (*COMPRESSIONS, ""):
        return cast(Compression, value.strip().lower() or "none")
    raise InvalidError("gzip or none")


def timeout(value: Any, _: Context) -> float:
    """Seconds (``OTEL_EXPORTER_OTLP_TIMEOUT``, in milliseconds, is converted on its way in)."""
    rule = "a timeout in seconds, above 0 and at most 600"
    try:
        seconds = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise InvalidError(rule) from None
    if not 0 < seconds <= 600:
        raise InvalidError(rule)
    return seconds


def certificate(value: Any, _: Context) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    rule = "a PEM file of trusted CA certificates that can be read"
    path = _text(value, rule).strip()
    try:
        import ssl

        ssl.create_default_context(cafile=path)
    except (OSError, ValueError) as exc:
        raise InvalidError(f"{rule} ({exc})") from None
    return path


def protocol(value: Any, _: Context) -> OtlpProtocol:
    text = value.strip().lower() if isinstance(value, str) else value
    if text in OTLP_PROTOCOLS:
        return cast(OtlpProtocol, text)
    raise InvalidError(
        "http/protobuf (OTLP/HTTP, port 4318) or grpc (OTLP/gRPC, port 4317, with "
        "pip install 'meshmetrics[otlp-grpc]'); http/json is not supported"
    )


def attributes(value: Any, _: Context) -> tuple[tuple[str, str], ...]:
    """Resource attributes, as ``OTEL_RESOURCE_ATTRIBUTES``."""
    rule = "comma-separated key=value resource attributes, e.g. deployment.environment=prod"
    return _key_values(value, rule)


def _host_port(value: Any) -> HostPort:
    rule = "host:port of the Jaeger agent (IPv6 in brackets: [::1]:6831), port 1 to 65535"
    text = _text(value, rule).strip()
    match = re.fullmatch(r"\[([^\]]+)\]:([0-9]+)|([^:\[\]]+):([0-9]+)", text)
    if match is None:
        raise InvalidError(rule)
    raw_host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    host = _host(raw_host)
    if host is None or not 1 <= port <= 65535 or (match.group(1) and ":" not in host):
        raise InvalidError(rule)
    return HostPort(host, port)


_NO_USERINFO = (
    "without user:password@ (it would never be sent): put credentials in "
    "OTEL_EXPORTER_OTLP_HEADERS / trace_headers, e.g. Authorization=Basic%20BASE64"
)


_BRACKETED = re.compile(r"\[([0-9A-Fa-f:.]+)(%25[^\]\s%]+)?\](:[0-9]*)?")


def _bracketed_ipv6(netloc: str) -> bool:
    """``[IPv6 address]`` with an optional non-empty zone id (``%25`` then the zone) and
    port, nothing else: urlsplit reads past a stray ``]`` and takes an IPvFuture
    literal's text for a host name."""
    match = _BRACKETED.fullmatch(netloc)
    if match is None:
        return False
    try:
        ipaddress.IPv6Address(match.group(1))
    except ValueError:
        return False
    return True


def _http_endpoint(value: Any) -> HttpEndpoint:
    rule = "an http(s) URL with a host and a port from 1 to 65535 (http://collector:4318/v1/traces)"
    text = _text(value, rule).strip()
    if not text.isprintable() or any(c.isspace() for c in text):
        raise InvalidError(rule)
    try:
        parts = urlsplit(text)
        port = parts.port
        hostname = parts.hostname
    except ValueError:  # an unclosed '[', a port that is not a number
        raise InvalidError(rule) from None
    if "@" in parts.netloc:
        raise InvalidError(f"{rule}, {_NO_USERINFO}")
    if parts.fragment or text.endswith("#"):
        raise InvalidError(f"{rule}, without a #fragment (it is never sent)")
    if ("[" in parts.netloc or "]" in parts.netloc) and not _bracketed_ipv6(parts.netloc):
        raise InvalidError(f"{rule}; brackets hold an IPv6 address ([::1], [fe80::1%25eth0])")
    if (
        parts.scheme not in ("http", "https")
        or not hostname
        or _host(hostname) is None
        or (port is not None and not 1 <= port <= 65535)
    ):
        raise InvalidError(rule)
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
        except InvalidError:
            raise InvalidError(rule) from None
        text = f"{'http' if insecure else 'https'}://{target}"
    try:
        endpoint = _http_endpoint(text)
    except InvalidError as exc:
        raise InvalidError(f"{rule}, {_NO_USERINFO}" if "@" in exc.rule else rule) from None
    parts = urlsplit(endpoint.url)
    if parts.port is None:
        raise InvalidError(rule)
    return HttpEndpoint(f"{parts.scheme}://{parts.netloc}")


def names(value: Any, _: Context) -> frozenset[str]:
    rule = "a list (or comma-separated string) of query parameter names"
    parts: Any = value.split(",") if isinstance(value, str) else value
    if isinstance(parts, frozenset):
        return parts
    try:
        names = [p.strip().lower() for p in parts if not isinstance(p, str) or p.strip()]
    except (TypeError, AttributeError):
        raise InvalidError(rule) from None
    if any(not name or not name.isprintable() or "=" in name or "&" in name for name in names):
        raise InvalidError(rule)
    return frozenset(names)


def metrics_auth(value: Any, _: Context) -> MetricsAuth | None:
    rule = "a decorator (a callable taking and returning a view), or 'package.module:decorator'"
    if value is None:
        return None
    if isinstance(value, str):
        module_name, _sep, attr = value.partition(":")
        if not module_name or not attr:
            raise InvalidError(rule)
        try:
            value = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise InvalidError(f"{rule} ({type(exc).__name__}: {exc})") from None
    if not callable(value):
        raise InvalidError(rule)
    return cast(MetricsAuth, value)


def namespace(value: Any, ctx: Context) -> str:
    return checked(is_dns1123_label, DNS1123_LABEL_RULE)(value, ctx)


def release(value: Any, ctx: Context) -> str:
    return checked(is_label_value, LABEL_VALUE_RULE)(value, ctx)
