"""Streamed response bodies: a request whose body is produced while the server sends it
completes when the server has sent the last byte, or closed the body because the client
went away (status :data:`~.metrics.CLIENT_CLOSED`).  A server's ``wsgi.file_wrapper``
(gunicorn's ``sendfile()``) is handed back as it is, with its ``close()`` observed."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .middleware import AppObserver, RequestState


def observed(
    body: Iterable[bytes], observer: AppObserver, state: RequestState, environ: dict[str, Any]
) -> Iterable[bytes]:
    """``body``, observed until the server has sent it or closed it."""
    file_wrapper = environ.get("wsgi.file_wrapper")
    if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
        closing = ClosedFile(getattr(body, "close", None), observer, state, environ)
        try:  # the server's own type, kept: gunicorn sends it with sendfile()
            body.close = closing  # type: ignore[attr-defined]
        except (AttributeError, TypeError):  # a type without instance attributes
            pass
        else:
            return body
    return ObservedBody(body, observer, state, environ)


class ClosedFile:
    """The ``close()`` of a server's ``wsgi.file_wrapper``: its request completes there.

    The server may send the file without iterating it (``sendfile()``), so only
    ``close()`` is seen; an ``OSError`` the server is propagating while it closes (the
    client went away mid-file, visible to CPython's ``sys.exc_info()`` in its
    ``finally``) makes it :data:`~.metrics.CLIENT_CLOSED`, another exception an error.
    """

    __slots__ = ("_close", "_environ", "_observer", "_state")

    def __init__(
        self,
        close: Callable[[], None] | None,
        observer: AppObserver,
        state: RequestState,
        environ: dict[str, Any],
    ) -> None:
        self._close, self._observer, self._state, self._environ = close, observer, state, environ

    def __call__(self) -> None:
        failure = sys.exc_info()[1]
        try:
            if self._close is not None:
                self._close()
        finally:
            error = None if failure is None or isinstance(failure, OSError) else failure
            complete = failure is None
            self._observer.body_done(self._state, self._environ, complete, error)


class ObservedBody:
    """A streamed response body: the request completes when it is sent or abandoned."""

    __slots__ = ("_body", "_complete", "_environ", "_error", "_observer", "_state")

    def __init__(
        self,
        body: Iterable[bytes],
        observer: AppObserver,
        state: RequestState,
        environ: dict[str, Any],
    ) -> None:
        self._body, self._observer, self._state, self._environ = body, observer, state, environ
        self._complete = False
        self._error: BaseException | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        except GeneratorExit:
            raise
        except BaseException as exc:
            self._error = exc
            self._done()
            raise
        self._complete = True
        self._done()  # a test client may never close the body

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            self._error = self._error or exc
            raise
        finally:
            self._done()

    def _done(self) -> None:
        self._observer.body_done(self._state, self._environ, self._complete, self._error)
