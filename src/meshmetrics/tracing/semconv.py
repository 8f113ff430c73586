"""Span attributes under OpenTelemetry's stable HTTP semantic conventions.

Server spans: ``http.request.method``, ``url.scheme``, ``url.path``, ``url.query``
(sensitive values redacted), ``server.address``/``server.port`` (from ``Host``),
``client.address``, ``user_agent.original``, ``http.route``; when answered,
``http.response.status_code``, and ``error.type`` for a 5xx or an exception.  Client
spans: ``http.request.method``, ``url.full`` (credentials and sensitive values
redacted), ``server.address``/``server.port``, then the status.  ``span.kind`` and
``error`` are OpenTracing's own tags: exporters turn them into the span's kind and status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..config.redaction import redact_url

METHOD = "http.request.method"
STATUS = "http.response.status_code"
ROUTE = "http.route"
URL_FULL = "url.full"
URL_PATH = "url.path"
URL_QUERY = "url.query"
URL_SCHEME = "url.scheme"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
CLIENT_ADDRESS = "client.address"
USER_AGENT = "user_agent.original"
ERROR_TYPE = "error.type"
#: OpenTracing's tags the exporters map to the span's kind and status, not attributes.
SPAN_KIND = "span.kind"
ERROR = "error"


def _host_port(host: str) -> tuple[str, int | None]:
    """``Host`` split into address and port (``[::1]:8080`` too), without urlsplit's cost."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return host, None
        port = host[end + 2 :] if host[end + 1 : end + 2] == ":" else ""
        return host[1:end], int(port) if port.isdigit() else None
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        return name, int(port)
    return host, None


def server_attributes(
    environ: Mapping[str, Any], method: str, route: str, sensitive: frozenset[str]
) -> dict[str, Any]:
    """The attributes of a server span, read from the WSGI environ (no werkzeug parsing)."""
    attributes: dict[str, Any] = {
        SPAN_KIND: "server",
        METHOD: method,
        URL_SCHEME: environ.get("wsgi.url_scheme", "http"),
        URL_PATH: f"{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}",
        ROUTE: route,
    }
    query = environ.get("QUERY_STRING")
    if query:
        attributes[URL_QUERY] = redact_url(f"?{query}", sensitive)[1:]
    host = environ.get("HTTP_HOST")
    if host:
        address, port = _host_port(str(host))
    else:
        address, port = str(environ.get("SERVER_NAME", "")), _int(environ.get("SERVER_PORT"))
    attributes[SERVER_ADDRESS] = address
    if port is not None:
        attributes[SERVER_PORT] = port
    if environ.get("REMOTE_ADDR"):
        attributes[CLIENT_ADDRESS] = environ["REMOTE_ADDR"]
    if environ.get("HTTP_USER_AGENT"):
        attributes[USER_AGENT] = environ["HTTP_USER_AGENT"]
    return attributes


def client_attributes(method: str, url: str, sensitive: frozenset[str]) -> dict[str, Any]:
    """The attributes of a client span for a call to ``url``."""
    attributes: dict[str, Any] = {
        SPAN_KIND: "client",
        METHOD: method,
        URL_FULL: redact_url(url, sensitive),
    }
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return attributes
    if parts.hostname:
        attributes[SERVER_ADDRESS] = parts.hostname
    default = {"http": 80, "https": 443}.get(parts.scheme)
    if port is not None or default is not None:
        attributes[SERVER_PORT] = port if port is not None else default
    return attributes


def response_attributes(status: int, exc: BaseException | None) -> dict[str, Any]:
    """The status answered and, for a 5xx or an exception, ``error.type``."""
    attributes: dict[str, Any] = {STATUS: status}
    if exc is not None:
        attributes[ERROR] = True
        attributes[ERROR_TYPE] = f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix(
            "builtins."
        )
    elif status >= 500:
        attributes[ERROR] = True
        attributes[ERROR_TYPE] = str(status)
    return attributes


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
