"""One bounded HTTP exchange: a wall-clock deadline for the whole of it, and a size cap.

Socket timeouts bound each read, not the exchange: a peer that trickles a byte every
second never trips them.  :func:`fetch` arms a watchdog that shuts the socket down
when the deadline passes (whatever phase the exchange is in: connecting, sending,
reading headers or body) and stops reading a body past ``max_bytes``.  Redirects are
never followed silently: a 3xx is returned as such, and callers that want to follow
one do so explicitly (a POST answered 302 has not delivered anything).

Used by the OTLP exporter (off the request path) and by ``check``/``top``; stdlib only.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

#: Bodies larger than this are refused by default (a /metrics page of 50k series is ~5 MiB).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_CHUNK = 64 * 1024


class DeadlineExceededError(TimeoutError):
    """The exchange did not complete within its deadline."""


class BodyTooLargeError(ValueError):
    """The answer's body is larger than the caller accepts."""


@dataclass(frozen=True)
class Answer:
    """What the peer said: status, headers (lower-case names) and the body, whole."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: The body was longer than ``max_bytes`` and was cut there (``fetch(truncate=True)``).
    truncated: bool = False

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


class _Watchdog:
    """Shuts a connection's socket down at the deadline (a blocked read then returns)."""

    def __init__(self, connection: http.client.HTTPConnection, seconds: float) -> None:
        self.fired = False
        self._connection = connection
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()


def _connection(
    parts: urllib.parse.SplitResult, timeout: float, context: ssl.SSLContext | None
) -> http.client.HTTPConnection:
    host = parts.hostname or ""
    if parts.scheme == "https":
        return http.client.HTTPSConnection(
            host, parts.port, timeout=timeout, context=context or ssl.create_default_context()
        )
    if parts.scheme == "http":
        return http.client.HTTPConnection(host, parts.port, timeout=timeout)
    raise ValueError(f"not an http(s) URL: {parts.geturl()!r}")


def fetch(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    context: ssl.SSLContext | None = None,
    truncate: bool = False,
) -> Answer:
    """One request to ``url`` that ends within ``timeout`` seconds, whatever the peer does.

    Raises :class:`DeadlineExceededError` past the deadline, :class:`BodyTooLargeError` past
    ``max_bytes`` (or, with ``truncate``, returns the first ``max_bytes`` and stops reading),
    ``OSError``/``http.client.HTTPException`` when the exchange fails.
    """
    deadline = time.monotonic() + timeout
    parts = urllib.parse.urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    connection = _connection(parts, timeout, context)
    watchdog = _Watchdog(connection, timeout)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        declared = response.getheader("Content-Length")
        too_long = declared is not None and declared.isdigit() and int(declared) > max_bytes
        if too_long and not truncate:
            raise BodyTooLargeError(f"{url} answered {declared} bytes, more than {max_bytes}")
        chunks: list[bytes] = []
        size = 0
        truncated = False
        while chunk := response.read(min(_CHUNK, max_bytes + 1 - size)):
            size += len(chunk)
            if size > max_bytes and truncate:
                chunks.append(chunk[: len(chunk) - (size - max_bytes)])
                truncated = True
                break
            if size > max_bytes:
                raise BodyTooLargeError(f"{url} answered more than {max_bytes} bytes")
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise DeadlineExceededError(f"{url} did not answer whole within {timeout:g} s")
        if watchdog.fired:
            raise DeadlineExceededError(f"{url} did not answer whole within {timeout:g} s")
        return Answer(
            response.status,
            {name.lower(): value for name, value in response.getheaders()},
            b"".join(chunks),
            truncated,
        )
    except (OSError, http.client.HTTPException) as exc:
        if watchdog.fired and not isinstance(exc, DeadlineExceededError):
            raise DeadlineExceededError(f"{url} did not answer whole within {timeout:g} s") from exc
        raise
    finally:
        watchdog.cancel()
        connection.close()
