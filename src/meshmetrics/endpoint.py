"""The metrics endpoint, answered at the WSGI boundary, before Flask routes the request.

:class:`~.middleware.AppObserver` hands a request for ``metrics_path`` to
:class:`MetricsEndpoint` instead of the app, so none of the app's own gates sees
Prometheus: no ``before_request`` function (a rate limiter's ``default_limits``, a login
wall, CSRF, tenant resolution, maintenance mode), no ``after_request`` function, and no
url_map rule for ``flask routes`` or an API document (APIFlask, flask-restx, flasgger)
to list.  The separate ``metrics_port`` serves the same endpoint.

``metrics_auth`` is the one gate.  Its decorator wraps the exposition view and runs in
the app's application context and a request context built for the scrape, so it can
read ``request``, ``current_app.config`` and ``g`` as in a view.  What it returns becomes
the response as a view's return value does (``make_response``: a string, a tuple, a
``Response``); ``abort(401)`` or any werkzeug ``HTTPException`` it raises becomes that
error's response, through the app's own error handler for it when there is one; any
other exception is a 500, logged at ERROR.  Flask runs the app's ``teardown_request``
and ``teardown_appcontext`` functions when those two contexts end.  Without
``metrics_auth`` no Flask context is built at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, InternalServerError

from .names import log
from .typing import GatedView, MetricsAuth
from .typing import WSGIApplication as WSGIApp

#: The methods the endpoint answers (OPTIONS: prometheus_client's ``Allow`` answer).
METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_NOT_ALLOWED = b"405 Method Not Allowed: the metrics endpoint answers GET and HEAD\n"
_NOT_FOUND = b"404 Not Found\n"

Exposed = tuple[str, list[tuple[str, str]], bytes]


class MetricsEndpoint:
    """``exposition`` at ``path``; ``protect`` applies ``metrics_auth`` to a view."""

    def __init__(
        self,
        exposition: WSGIApp,
        path: str,
        protect: MetricsAuth | None,
    ) -> None:
        self.path = path
        self._exposition = exposition
        self._view: GatedView | None = None
        if protect is not None:
            self._view = protect(self._auth_view)
        self._context_app: Flask | None = None
        #: whose context ``metrics_auth`` runs in on the ``metrics_port`` (set by the owner)
        self.port_app: Callable[[], Flask | None] = lambda: None

    def answer(
        self, environ: dict[str, Any], start_response: Callable[..., Any], app: Flask | None
    ) -> Iterable[bytes]:
        """Answer a request for ``path``, with ``app``'s context for ``metrics_auth``."""
        if environ.get("REQUEST_METHOD") not in METHODS:
            start_response("405 Method Not Allowed", _plain(_NOT_ALLOWED, ("Allow", "GET, HEAD")))
            return [_NOT_ALLOWED]
        if self._view is None:
            status, headers, body = self._expose(environ)
            start_response(status, headers)
            return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]
        return self._guarded(environ, app or self._own_app())(environ, start_response)

    def serve(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The endpoint as a WSGI app of its own (the ``metrics_port``): ``path`` or 404."""
        if environ.get("PATH_INFO") != self.path:
            start_response("404 Not Found", _plain(_NOT_FOUND))
            return [_NOT_FOUND]
        return self.answer(environ, start_response, self.port_app())

    # -- inside ------------------------------------------------------------------------

    def _expose(self, environ: dict[str, Any]) -> Exposed:
        if environ.get("REQUEST_METHOD") == "HEAD":
            environ = {**environ, "REQUEST_METHOD": "GET"}
        seen: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
            seen[:] = [status, headers]

        body = b"".join(self._exposition(environ, start_response))
        status, headers = seen
        headers = [
            *headers,
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
        return status, headers, body

    def _auth_view(self) -> Response:
        """The view ``metrics_auth`` decorates: the exposition for the current request."""
        status, headers, body = self._expose(request.environ)
        return Response(body, status, [h for h in headers if h[0] != "Content-Length"])

    def _guarded(self, environ: dict[str, Any], app: Flask) -> Response:
        assert self._view is not None
        with app.request_context(environ):
            try:
                try:
                    returned = self._view()
                except HTTPException as exc:
                    returned = _handled(app, exc)
                response = app.make_response(returned)
            except Exception:
                log.exception("meshmetrics: metrics_auth failed on %s", self.path)
                response = app.make_response(InternalServerError().get_response(environ))
        return response

    def _own_app(self) -> Flask:
        """The context of a Blueprint's endpoint before it is registered on an app."""
        if self._context_app is None:
            self._context_app = Flask("meshmetrics-metrics", static_folder=None)
        return self._context_app


def _handled(app: Flask, exc: HTTPException) -> Any:
    """``abort()`` in ``metrics_auth``: the app's handler for that error, else werkzeug's
    response for it."""
    handled = app.handle_http_exception(exc)
    return handled.get_response() if isinstance(handled, HTTPException) else handled


def _plain(body: bytes, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        *extra,
    ]
