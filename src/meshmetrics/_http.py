"""One bounded HTTP exchange: a wall-clock deadline for the whole of it, and a size cap.

Socket timeouts bound each read, not the exchange: a peer that trickles a byte every
second never trips them.  :func:`fetch` arms a watchdog that shuts the socket down
when the deadline passes (whatever phase the exchange is in: connecting, sending,
reading headers or body) and stops reading a body past ``max_bytes``; :func:`stream`
hands the body over chunk by chunk under the same bounds, for callers that parse as it
arrives instead of holding it whole.  Redirects are
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
from collections.abc import Iterator
from dataclasses import dataclass, field

#: Bodies larger than this are refused by default (a /metrics page of 50k series is ~5 MiB).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_CHUNK = 64 * 1024


class DeadlineExceededError(TimeoutError):
    """The exchange did not complete within its deadline."""


class BodyTooLargeError(ValueError):
    """The answer's body is larger than the caller accepts."""


class IncompleteBodyError(OSError):
    """The peer closed the connection before the ``Content-Length`` it declared
    (http.client's ``read(amt)`` returns what came as if it were all)."""


@dataclass(frozen=True)
class Answer:
    """What the peer said: status, headers (lower-case names) and the body, whole."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: The body was longer than ``max_bytes`` and was cut there, or shorter than its
    #: ``Content-Length`` (``fetch(truncate=True)``): not the whole of what the peer meant.
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
    host = _resolvable(parts.hostname or "")
    # the port always given: http.client splits a host without one at its last ':'
    # (an IPv6 literal ``::1`` became host ``::``, port 1)
    if parts.scheme == "https":
        return http.client.HTTPSConnection(
            host,
            parts.port or http.client.HTTPS_PORT,
            timeout=timeout,
            context=context or ssl.create_default_context(),
        )
    if parts.scheme == "http":
        return http.client.HTTPConnection(
            host, parts.port or http.client.HTTP_PORT, timeout=timeout
        )
    raise ValueError(f"not an http(s) URL: {parts.geturl()!r}")


def _resolvable(host: str) -> str:
    """``host`` as getaddrinfo reads it: an IPv6 zone id is written ``%25`` in a URL
    (RFC 6874), ``%`` to the resolver (``fe80::1%25eth0`` → ``fe80::1%eth0``)."""
    address, percent, zone = host.partition("%")
    if percent and ":" in address:
        return address + urllib.parse.unquote(percent + zone)
    return host


@dataclass
class Streamed:
    """An answer whose body is still on the wire: :meth:`chunks` reads it under the bounds."""

    url: str
    status: int
    headers: dict[str, str]
    _response: http.client.HTTPResponse
    _watchdog: _Watchdog
    _deadline: float
    _timeout: float
    _max_bytes: int

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def _late(self) -> DeadlineExceededError:
        return DeadlineExceededError(f"{self.url} did not answer whole within {self._timeout:g} s")

    def chunks(self) -> Iterator[bytes]:
        """The body, a chunk at a time; raises past the deadline or ``max_bytes``."""
        size = 0
        try:
            while chunk := self._response.read(_CHUNK):
                size += len(chunk)
                if size > self._max_bytes:
                    raise BodyTooLargeError(
                        f"{self.url} answered more than {self._max_bytes} bytes"
                    )
                if time.monotonic() > self._deadline:
                    raise self._late()
                yield chunk
        except (OSError, http.client.HTTPException) as exc:
            if self._watchdog.fired and not isinstance(exc, DeadlineExceededError):
                raise self._late() from exc
            raise
        if self._watchdog.fired:
            raise self._late()
        missing = self._response.length  # what the declared Content-Length still owes
        if missing:
            raise IncompleteBodyError(
                f"{self.url} closed the connection after {size} of {size + missing} bytes "
                "(its Content-Length)"
            )


@contextlib.contextmanager
def stream(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    context: ssl.SSLContext | None = None,
) -> Iterator[Streamed]:
    """One request to ``url``, its status and headers read, its body left to
    :meth:`Streamed.chunks`; the whole exchange ends within ``timeout`` seconds.

    Raises as :func:`fetch` does; the connection is closed when the block ends.
    """
    deadline = time.monotonic() + timeout
    parts = urllib.parse.urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    connection = _connection(parts, timeout, context)
    watchdog = _Watchdog(connection, timeout)
    try:
        try:
            connection.request(method, target, body=body, headers=headers or {})
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            if watchdog.fired:
                raise DeadlineExceededError(f"{url} did not answer within {timeout:g} s") from exc
            raise
        declared = response.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise BodyTooLargeError(f"{url} answered {declared} bytes, more than {max_bytes}")
        yield Streamed(
            url,
            response.status,
            {name.lower(): value for name, value in response.getheaders()},
            response,
            watchdog,
            deadline,
            timeout,
            max_bytes,
        )
    finally:
        watchdog.cancel()
        connection.close()


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
    :class:`IncompleteBodyError` when the body ends short of its ``Content-Length`` (with
    ``truncate``, returns what came, ``truncated``), ``OSError``/``http.client.HTTPException``
    when the exchange fails.
    """
    with stream(
        url,
        method=method,
        body=body,
        headers=headers,
        timeout=timeout,
        max_bytes=_UNCAPPED if truncate else max_bytes,
        context=context,
    ) as answer:
        if not truncate:
            return Answer(answer.status, answer.headers, b"".join(answer.chunks()))
        kept, truncated = _first_bytes(answer.chunks(), max_bytes)
        return Answer(answer.status, answer.headers, kept, truncated)


#: ``stream``'s cap when ``fetch`` truncates the body itself.
_UNCAPPED = 1 << 62


def _first_bytes(chunks: Iterator[bytes], limit: int) -> tuple[bytes, bool]:
    """The first ``limit`` bytes of ``chunks``, and whether the body was not whole (more
    than ``limit``, whose rest is never read, or less than its ``Content-Length``)."""
    kept: list[bytes] = []
    size = 0
    try:
        for chunk in chunks:
            if size + len(chunk) > limit:
                kept.append(chunk[: limit - size])
                return b"".join(kept), True
            kept.append(chunk)
            size += len(chunk)
    except IncompleteBodyError:
        return b"".join(kept), True
    return b"".join(kept), False
