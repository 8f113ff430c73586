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

import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from ..config.redaction import REDACTED, redact_url

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
    """The attributes of a server span, read from the WSGI environ (no werkzeug parsing),
    values uncut."""
    return server_attributes_sized(environ, method, route, sensitive, sys.maxsize)[0]


#: A span's attribute values are cut at this length (as :mod:`.spans` enforces).
MAX_LENGTH = 4096
#: The estimated size of a string attribute beside its key and value, and of a number's.
_STRING_OVERHEAD = 4
_NUMBER_SIZE = 12


def server_attributes_sized(
    environ: Mapping[str, Any],
    method: str,
    route: str,
    sensitive: frozenset[str],
    limit: int = MAX_LENGTH,
) -> tuple[dict[str, Any], int]:
    """The attributes of a server span, every value cut at ``limit`` (the span limits of
    :mod:`.spans` by default), and their estimated size as :func:`.spans._fields_size`
    counts it (so the finished span need not check them again)."""
    get = environ.get
    scheme = get("wsgi.url_scheme", "http")
    path = f"{get('SCRIPT_NAME', '')}{get('PATH_INFO', '')}"[:limit]
    method, route = method[:limit], route[:limit]
    attributes: dict[str, Any] = {
        SPAN_KIND: "server",
        METHOD: method,
        URL_SCHEME: scheme,
        URL_PATH: path,
        ROUTE: route,
    }
    size = _BASE_SIZE + len(method) + len(scheme) + len(path) + len(route)
    query = get("QUERY_STRING")
    if query:
        query = redact_query(query, sensitive)[:limit]
        attributes[URL_QUERY] = query
        size += len(URL_QUERY) + _STRING_OVERHEAD + len(query)
    host = get("HTTP_HOST")
    if host:
        address, port = _host_port(str(host))
    else:
        address, port = str(get("SERVER_NAME", "")), _int(get("SERVER_PORT"))
    address = address[:limit]
    attributes[SERVER_ADDRESS] = address
    size += len(SERVER_ADDRESS) + _STRING_OVERHEAD + len(address)
    if port is not None:
        attributes[SERVER_PORT] = port
        size += len(SERVER_PORT) + _NUMBER_SIZE
    client = get("REMOTE_ADDR")
    if client:
        attributes[CLIENT_ADDRESS] = client = client[:limit]
        size += len(CLIENT_ADDRESS) + _STRING_OVERHEAD + len(client)
    agent = get("HTTP_USER_AGENT")
    if agent:
        attributes[USER_AGENT] = agent = agent[:limit]
        size += len(USER_AGENT) + _STRING_OVERHEAD + len(agent)
    return attributes, size


_BASE_SIZE = sum(len(key) + _STRING_OVERHEAD for key in (METHOD, URL_SCHEME, URL_PATH, ROUTE))
_BASE_SIZE += len(SPAN_KIND) + _STRING_OVERHEAD + len("server")


def redact_query(query: str, sensitive: frozenset[str]) -> str:
    """A query string with the values of ``sensitive`` keys redacted: what
    ``redact_url(f"?{query}", sensitive)[1:]`` returns, without its URL handling."""
    if not sensitive or "=" not in query:
        return query
    head, hash_mark, fragment = query.partition("#")
    pairs = head.split("&")
    changed = False
    for i, pair in enumerate(pairs):
        key, equals, _value = pair.partition("=")
        if not equals:
            continue
        name = unquote_plus(key) if "%" in key or "+" in key else key
        if name.strip().lower() in sensitive:
            pairs[i] = f"{key}={REDACTED}"
            changed = True
    return f"{'&'.join(pairs)}{hash_mark}{fragment}" if changed else query


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
