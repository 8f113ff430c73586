"""The request path: every request measured at the WSGI boundary of the app.

:class:`AppObserver` wraps ``app.wsgi_app`` (Flask's documented place for WSGI
middleware).  The clock starts when the app is called.  Flask's public hooks name the
route (a ``before_request`` function starts the in-progress gauge and the server span;
a request that an earlier ``before_request`` function answered starts in
``after_request`` or ``got_request_exception``, so it is counted too) and the response
(``after_request``); its ``got_request_exception`` signal names an exception
(Flask-RESTX and others send it for the exceptions they handle themselves).  The
request is complete when the app returns if its body is in memory already (a list,
tuple or bytes: every ordinary Flask response); any other body (a generator,
``stream_with_context``, ``map(fmt, rows)``, an iterable class, ``send_file``'s file
wrapper) is produced while the server sends it, and the request completes when the
server has sent the last byte or closed the body because the client went away
(status :data:`~.metrics.CLIENT_CLOSED`).  A server's ``wsgi.file_wrapper`` (gunicorn's
``sendfile()``) is handed back as it is, with its ``close()`` observed.
The status recorded is the one the server sends: 500 when an exception escapes the
app (a failing ``teardown_request`` included).
"""

from __future__ import annotations

import os
import sys
import weakref
from collections.abc import Callable, Iterable, Iterator
from time import perf_counter
from typing import Any

from flask import Flask, current_app, got_request_exception
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.routing import Rule

from ._compat import current_request, excluded_by_pfe, rendered_by_flask
from .endpoint import MetricsEndpoint
from .metrics import (
    CLIENT_CLOSED,
    OTHER_METHOD,
    STANDARD_METHODS,
    UNMATCHED,
    RequestMetrics,
    method_label,
)
from .names import HOOKS_KEY as _HOOKS_KEY
from .names import REQUEST_STATE_KEY as STATE_KEY
from .names import log
from .paths import move_outside_engineio, prefix_label
from .tracing.server import RequestTracing
from .typing import WSGIApplication as WSGIApp
from .upgrade import SWITCHING_PROTOCOLS, upgraded, websocket_rule


class RequestState:
    """One request's measurement, kept in its WSGI environ."""

    __slots__ = (
        "done",
        "exception",
        "gauge",
        "method",
        "observer",
        "path",
        "req",
        "started",
        "status",
        "streamed",
    )

    def __init__(self, started: float, observer: AppObserver) -> None:
        self.started = started
        self.observer = observer
        self.status = 0
        self.method: str | None = None
        self.path: str | None = None
        self.gauge: Any = None
        self.req: Any = None
        self.exception: BaseException | None = None
        self.streamed = False
        #: nothing (more) to record: finished, or not measured here
        self.done = False


class RequestCore:
    """What one instrumentation records for a request: metrics, and the server span."""

    def __init__(
        self,
        metrics: RequestMetrics,
        tracing: RequestTracing | None,
        excluded: frozenset[str],
        prefixes: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.excluded = excluded
        #: ``path_prefixes``: labels of requests no route matched, longest prefix first
        self.prefixes = prefixes

    def start(self, state: RequestState, req: Any, path: str) -> None:
        method = req.method
        if method not in STANDARD_METHODS:
            method = OTHER_METHOD
        state.method, state.path, state.req = method, path, req
        try:
            gauge = self.metrics.in_progress_child(method, path)
            gauge.inc()
            state.gauge = gauge
        except OSError as exc:  # the multiprocess directory filled up: never fail a request
            _storage_failed(exc)
        if self.tracing is not None:
            self.tracing.start(req, path, state.started)

    def finish(
        self,
        state: RequestState,
        environ: dict[str, Any],
        status: int,
        exc: BaseException | None,
    ) -> None:
        """Record a request whose route is known (``state.path``)."""
        state.done = True
        # out of the environ, which Flask's request keeps in a reference cycle: the
        # state is freed at once, not by the cyclic garbage collector
        environ.pop(STATE_KEY, None)
        method, path = state.method, state.path
        exc = state.exception or exc
        tracing = self.tracing
        try:
            if state.gauge is not None:
                state.gauge.dec()
            if state.req is None or not excluded_by_pfe(state.req):
                self.metrics.record(
                    method or "",
                    path or UNMATCHED,
                    status,
                    # an upgraded connection's session is not a response time
                    None if status == SWITCHING_PROTOCOLS else perf_counter() - state.started,
                    tracing.exemplar(environ) if tracing is not None else None,
                    type(exc).__name__ if exc is not None else None,
                )
        except OSError as storage_error:
            _storage_failed(storage_error)
        if tracing is not None:
            tracing.finish(environ, status, exc)


_storage_warned = False


def _storage_failed(exc: OSError) -> None:
    """A value file could not grow (a full multiprocess directory): named once, at ERROR;
    the request itself is answered as usual."""
    global _storage_warned
    if not _storage_warned:
        _storage_warned = True
        log.error("meshmetrics: a request could not be recorded: %s", exc)


class AppObserver:
    """``app.wsgi_app`` of one app, measured for one instrumentation.

    ``scope`` is ``None`` for a whole app, else the registered names of the Blueprint
    whose requests are measured (every request routed to it, whoever answered).
    """

    def __init__(
        self,
        app: Flask,
        wsgi_app: WSGIApp,
        core: RequestCore,
        scope: frozenset[str] | None,
        on_first_request: Callable[[dict[str, Any]], None],
        endpoint: MetricsEndpoint | None = None,
    ) -> None:
        self.wsgi_app = wsgi_app
        #: answered here, before Flask routes it (None: the metrics are on their own port)
        self.metrics_path = endpoint.path if endpoint is not None else None
        self._endpoint = endpoint
        self._app = weakref.ref(app)
        self.core = core
        self.scope = scope
        #: each route's ``path`` label, or ``None`` when it is not measured here
        self._routes: dict[int, str | None] = {}
        self.active = True
        self._on_first_request: Callable[[dict[str, Any]], None] | None = on_first_request
        self._first_hook = on_first_request
        self._app = weakref.ref(app)
        #: the labels of requests no route matched: ``path_prefixes``, and an Engine.IO
        #: layer's endpoint unless a prefix names it
        self.prefixes = core.prefixes
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forked(ref))
        install_hooks(app)

    def detach(self) -> None:
        """Stop measuring: requests pass through, so the hooks find no state."""
        self.active = False

    # -- WSGI -----------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self.active:
            return self.wsgi_app(environ, start_response)
        if self._on_first_request is not None:
            hook, self._on_first_request = self._on_first_request, None
            self._find_engineio()
            hook(environ)
        if environ.get("PATH_INFO") == self.metrics_path:
            return self._scrape(environ, start_response)
        state = RequestState(perf_counter(), self)
        environ[STATE_KEY] = state

        def observed_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            state.status = int(status[:3])
            return start_response(status, headers, exc_info)

        try:
            body = self.wsgi_app(environ, observed_start_response)
        except BaseException as exc:
            if "HTTP_UPGRADE" in environ and upgraded(
                environ, state.status, exc, websocket_rule(state.req)
            ):
                self._finish(state, environ, SWITCHING_PROTOCOLS, None)  # not an error
            else:
                self._finish(state, environ, 500, exc)
            raise
        if state.streamed and not state.done:
            return observed(body, self, state, environ)
        if (state.status == SWITCHING_PROTOCOLS or "HTTP_UPGRADE" in environ) and upgraded(
            environ, state.status, None, websocket_rule(state.req)
        ):
            self._finish(state, environ, SWITCHING_PROTOCOLS, None)
        else:
            self._finish(state, environ, state.status or 500, None)
        return body

    def _scrape(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """The metrics endpoint, outside the app's routing, hooks and measurement."""
        assert self._endpoint is not None
        return self._endpoint.answer(environ, start_response, self._app())

    def _finish(
        self,
        state: RequestState,
        environ: dict[str, Any],
        status: int,
        exc: BaseException | None,
    ) -> None:
        if state.done:
            return
        if state.path is None:  # none of the hooks ran
            self._route_late(state, environ)
            if state.done:
                return
        self.core.finish(state, environ, status, exc)

    def _route_late(self, state: RequestState, environ: dict[str, Any]) -> None:
        """A request Flask never routed for us (no hook ran: a WSGI layer answered, or
        the request context could not be built): the whole app counts it under its
        prefix's label (unless excluded), else unmatched."""
        label = prefix_label(self.prefixes, environ.get("PATH_INFO", ""))
        if self.scope is None and label not in self.core.excluded:
            state.method = method_label(environ.get("REQUEST_METHOD", ""))
            state.path = label or UNMATCHED
        else:
            state.done = True

    def _find_engineio(self) -> None:
        """Measure an Engine.IO layer's requests (moving outside it if it wraps us), under
        its endpoint's label unless ``path_prefixes`` names that prefix."""
        app = self._app()
        path = move_outside_engineio(app, self) if app is not None else None
        if path is not None and path not in dict(self.prefixes):
            self.prefixes = tuple(
                sorted((*self.prefixes, (path, path)), key=lambda p: (-len(p[0]), p[0]))
            )

    def body_done(
        self,
        state: RequestState,
        environ: dict[str, Any],
        complete: bool,
        error: BaseException | None,
    ) -> None:
        """A streamed body ended: sent whole, failed, or abandoned by the client."""
        status = state.status if complete or error is not None else CLIENT_CLOSED
        self._finish(state, environ, status, error)

    # -- called by the Flask hooks below ---------------------------------------------------

    def routed(self, state: RequestState, req: Any) -> None:
        """The request is routed: it starts, unless it is not measured here."""
        if state.path is not None or state.done:
            return
        rule = req.url_rule
        # decided once per route (rules are not hashable; a url_map keeps its rules)
        path = self._routes.get(id(rule), _UNDECIDED) if rule is not None else _UNDECIDED
        if path is _UNDECIDED:
            path = self._route_of(req)
            if rule is not None:
                self._routes[id(rule)] = path
        if path is None:
            state.done = True
            return
        self.core.start(state, req, path)

    def _route_of(self, req: Any) -> str | None:
        """The ``path`` label of a request, or ``None`` when it is not measured here."""
        rule = req.url_rule or _rule_of_405(req)
        if self.scope is not None and (rule is None or not self._in_scope(rule)):
            return None
        if rule is not None:
            path = rule.rule
        else:
            path = prefix_label(self.prefixes, req.environ.get("PATH_INFO", "")) or UNMATCHED
        return None if path in self.core.excluded else path

    def extend_scope(self, blueprint_name: str) -> None:
        """Also measure the requests of the Blueprint registered under this name."""
        if self.scope is not None:
            self.scope = self.scope | {blueprint_name}
            self._routes.clear()

    def _in_scope(self, rule: Rule) -> bool:
        endpoint = str(rule.endpoint)
        return any(endpoint.startswith(name + ".") for name in self.scope or ())


_UNDECIDED: Any = object()


# -- Flask's hooks, installed once per app; each finds its request's observer -----------


def install_hooks(app: Flask) -> None:
    """Flask's public hooks on ``app``, once: an instrumentation attached later (after
    ``uninstrument()``, even after the app served requests) reuses them.  A request that
    no active wrapper serves has no state, and the hooks return at once."""
    if app.extensions.get(_HOOKS_KEY):
        return
    app.before_request(_on_routed)
    app.after_request(_on_response)
    got_request_exception.connect(_on_exception, app)
    app.extensions[_HOOKS_KEY] = True


def _on_routed() -> None:
    """An app ``before_request`` function: the request is routed and starts here.  One
    that an earlier function answered starts in ``after_request`` or, if it raised, in
    ``got_request_exception`` (Flask runs both inside the request)."""
    req = current_request()
    state: RequestState | None = req.environ.get(STATE_KEY)
    if state is not None:
        state.observer.routed(state, req)


def _on_response(response: Any) -> Any:
    """``after_request``: note whether the body is produced while it is sent."""
    req = current_request()
    state: RequestState | None = req.environ.get(STATE_KEY)
    if state is not None:
        state.observer.routed(state, req)  # no-op unless an earlier hook answered
        # a body in memory is complete when the app returns; any other iterable (a
        # generator, map(), a class, a file wrapper) is produced while the server sends it
        state.streamed = not isinstance(response.response, _IN_MEMORY) and not rendered_by_flask(
            response
        )
    return response


def _on_exception(sender: Flask, exception: BaseException, **_: Any) -> None:
    """Flask's ``got_request_exception`` signal (sent only when something raised)."""
    req = current_request()
    state: RequestState | None = req.environ.get(STATE_KEY)
    if state is not None:
        state.observer.routed(state, req)  # no-op unless an earlier hook raised
        if state.exception is None:
            state.exception = exception


def _forked(ref: weakref.ReferenceType[AppObserver]) -> None:
    observer = ref()
    if observer is not None:  # the child runs the first-request hook again
        observer._on_first_request = observer._first_hook


def _rule_of_405(req: Any) -> Rule | None:
    """The route a 405 (method not allowed) request hit, so it is counted on that route."""
    error = req.routing_exception
    if not isinstance(error, MethodNotAllowed) or not error.valid_methods:
        return None
    adapter = current_app.create_url_adapter(req)
    if adapter is None:
        return None
    try:
        rule, _ = adapter.match(method=next(iter(error.valid_methods)), return_rule=True)
    except Exception:
        return None
    return rule if isinstance(rule, Rule) else None


_IN_MEMORY = (list, tuple, bytes, str)


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
