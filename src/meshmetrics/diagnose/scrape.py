"""The bounded GET of a ``/metrics`` page, as ``check`` and ``top`` read it: a deadline for
the whole exchange (redirects included), a size cap, UTF-8 as strictly as Prometheus."""

from __future__ import annotations

import time
from urllib.parse import urljoin, urlsplit

from .._http import Answer, fetch

#: Largest exposition read (Prometheus' own default body_size_limit is unlimited, but a
#: page this size is a cardinality problem in itself).
MAX_BODY = 64 * 1024 * 1024
_MAX_REDIRECTS = 5


def get(
    url: str,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    max_bytes: int = MAX_BODY,
) -> Answer:
    """GET within ``timeout`` seconds in all (redirects included), at most ``max_bytes``.

    Raises ``OSError`` (``TimeoutError`` past the deadline), ``http.client.HTTPException``
    or ``ValueError`` (a body too large, a redirect loop).
    """
    deadline = time.monotonic() + timeout
    for _ in range(_MAX_REDIRECTS + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{url} did not answer within {timeout:g} s")
        answer = fetch(url, headers=headers, timeout=remaining, max_bytes=max_bytes)
        location = answer.headers.get("location")
        if answer.status not in (301, 302, 303, 307, 308) or not location:
            return answer
        url = urljoin(url, location)
    raise ValueError(f"more than {_MAX_REDIRECTS} redirects")


def exposition_text(answer: Answer) -> str:
    """The body as Prometheus reads it: UTF-8, strictly (it rejects anything else)."""
    try:
        return answer.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"not valid UTF-8 at byte {exc.start} (Prometheus rejects the whole scrape)"
        ) from None


def metrics_url(target: str, metrics_path: str = "/metrics") -> str:
    """A service base URL gets ``metrics_path``; a URL with a path is taken as is."""
    parts = urlsplit(target)
    if parts.path in ("", "/"):
        return target.rstrip("/") + metrics_path
    return target
