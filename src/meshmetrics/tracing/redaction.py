"""What span attributes may carry: URLs without secrets, values of bounded size.

OpenTelemetry's semantic conventions for ``url.full``: credentials in a URL
(``https://user:pass@host/``) must not be recorded (they become
``REDACTED:REDACTED``), and the values of query parameters known to carry secrets
are replaced by ``REDACTED``.  Both the server span (the inbound URL) and client spans
(:meth:`meshmetrics.Instrumentation.session`) go through :func:`redact_url`.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

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
