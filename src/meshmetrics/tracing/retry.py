"""When to send a failed export again: exponential back-off that a server may lengthen.

Shared by OTLP/HTTP, Zipkin and OTLP/gRPC.  The OTLP spec asks clients to back off
exponentially and to honour the server's throttling hint (HTTP ``Retry-After``, gRPC
``RetryInfo``).  A hint only ever *lengthens* the wait: ``Retry-After: 0`` or an HTTP date
in the past once made one batch be re-sent without pause until the export budget ended
(6,534 POSTs in 10 s); now such a hint waits the back-off like no hint at all.
"""

from __future__ import annotations

import email.utils
import time

#: The first wait after a retryable failure (seconds); each further one doubles.
FIRST_BACKOFF = 0.5


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Backoff:
    """The waits between the attempts of one export: 0.5 s, 1 s, 2 s, ... or the server's
    hint when it is longer."""

    def __init__(self, first: float = FIRST_BACKOFF) -> None:
        self._next = first

    def wait(self, hint: float | None = None) -> float:
        """The next wait: the back-off, lengthened (never shortened) by ``hint``."""
        wait = self._next if hint is None else max(self._next, hint)
        self._next *= 2
        return wait
