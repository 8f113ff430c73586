"""What span attributes may carry: URLs without secrets, values of bounded size.

OpenTelemetry's semantic conventions for ``url.full``: credentials in a URL
(``https://user:pass@host/``) must not be recorded (they become
``REDACTED:REDACTED``), and the values of query parameters known to carry secrets
are replaced by ``REDACTED``.  Both the server span (the inbound URL) and client spans
(:meth:`meshmetrics.Instrumentation.session`) go through :func:`redact_url`.

:func:`redacted` is how a configuration error shows an option's value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from .values import DEFAULT_SENSITIVE_QUERY_PARAMS, HEADER_NAME, HttpEndpoint

REDACTED = "REDACTED"
_USERINFO = re.compile(r"\A([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def redact_url(url: str, sensitive: frozenset[str]) -> str:
    """``url`` without userinfo, and with the values of ``sensitive`` query keys redacted."""
    if "@" in url:
        url = _USERINFO.sub(rf"\1{REDACTED}:{REDACTED}@", url, count=1)
    if "?" not in url or not sensitive:
        return url
    before_fragment, hash_mark, fragment = url.partition("#")
    head, question, query = before_fragment.partition("?")
    if not question:
        return url
    pairs = []
    for pair in query.split("&"):
        key, equals, _value = pair.partition("=")
        if equals and unquote_plus(key).strip().lower() in sensitive:
            pair = f"{key}={REDACTED}"
        pairs.append(pair)
    return f"{head}?{'&'.join(pairs)}{hash_mark}{fragment}"


#: Options whose values may hold credentials: an error names them without the secret.
SECRET_OPTIONS = frozenset({"trace_endpoint", "trace_headers"})


def redacted(option: str, value: Any) -> Any:
    """``value`` as an error message may show it: no header value, no ``user:password@``,
    no value of a query parameter known to carry secrets."""
    if option not in SECRET_OPTIONS:
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
        shown = [k.strip() if HEADER_NAME.fullmatch(k.strip()) else "?" for k in keys]
        return ",".join(f"{key}=REDACTED" for key in shown) or "REDACTED"
    text = value.url if isinstance(value, HttpEndpoint) else value
    if not isinstance(text, str):
        return value
    return _redacted_url(text)


def _redacted_url(text: str) -> str:
    """Everything up to the last ``@`` of a URL (or a ``host:port``) is a possible
    ``user:password``, even where ``urlsplit`` would not see one."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    if "@" in rest:
        rest = f"{REDACTED}@{rest.rpartition('@')[2]}"
    return redact_url(f"{scheme}{sep}{rest}", DEFAULT_SENSITIVE_QUERY_PARAMS)
