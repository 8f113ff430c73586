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
import weakref
from collections.abc import Callable
from time import perf_counter
from typing import Any

from flask import Flask, current_app, got_request_exception
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.routing import Rule

from ._compat import PFE_REQUEST_FLAGS, rendered_by_flask, request_context_getter
from .bodies import observed
from .endpoint import MetricsEndpoint
from .metrics import (
    CLIENT_CLOSED,
    OTHER_METHOD,
    STANDARD_METHODS,
    UNMATCHED,
    RequestMetrics,
    Route,
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
    """One request's measurement, kept in its WSGI environ; its :meth:`start_response`
    is the one the app is given (it notes the status sent)."""

    __slots__ = (
        "done",
        "exception",
        "method",
        "observer",
        "path",
        "req",
        "respond",
        "route",
        "started",
        "status",
        "streamed",
    )

    def __init__(self, started: float, observer: AppObserver, respond: Callable[..., Any]) -> None:
        self.started = started
        self.observer = observer
        self.respond = respond
        self.status = 0
        self.method: str | None = None
        self.path: str | None = None
        #: the route's series, once its in-progress gauge counts the request
        self.route: Route | None = None
        self.req: Any = None
        self.exception: BaseException | None = None
        self.streamed = False
        #: nothing (more) to record: finished, or not measured here
        self.done = False

    def start_response(self, status: str, headers: Any, exc_info: Any = None) -> Any:
        self.status = int(status[:3])
        return self.respond(status, headers, exc_info)


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
        """The request is routed to ``path``: the route's in-progress gauge counts it,
        its span starts."""
        method = req.method
        if method not in STANDARD_METHODS:
            method = OTHER_METHOD
        state.method, state.path, state.req = method, path, req
        try:
            metrics = self.metrics
            route = metrics.routes.get((method, path)) or metrics.route(method, path)
            route.gauge.inc(1.0)
            state.route = route
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
        method, path = state.method or "", state.path or UNMATCHED
        exc = state.exception or exc
        tracing = self.tracing
        try:
            attrs = state.req.__dict__ if state.req is not None else ()
            route = state.route
            gauge = route.gauge if route is not None else None
            if _DO_NOT_TRACK in attrs or _EXCLUDE_ALL in attrs:  # prometheus-flask-exporter's
                if gauge is not None:
                    gauge.inc(-1.0)
            elif status == SWITCHING_PROTOCOLS:  # the session is not a response time
                self.metrics.record(gauge, method, path, status, None, None, _name(exc))
            else:
                seconds = perf_counter() - state.started
                exemplar = tracing.exemplar(environ) if tracing is not None else None
                if exemplar is None and exc is None and route is not None:  # the usual request
                    series = route.statuses.get(status) or route.series(status)
                    series.observe(seconds, gauge)
                else:
                    self.metrics.record(gauge, method, path, status, seconds, exemplar, _name(exc))
        except OSError as storage_error:
            _storage_failed(storage_error)
        if tracing is not None:
            tracing.finish(environ, status, exc)


def _name(exc: BaseException | None) -> str | None:
    return type(exc).__name__ if exc is not None else None


#: What prometheus-flask-exporter's ``@do_not_track`` and ``@exclude_all_metrics`` set
#: on the request.
_DO_NOT_TRACK, _EXCLUDE_ALL = PFE_REQUEST_FLAGS

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
        #: the label of every unmatched request (not a 405) when no prefix can name one
        self._unmatched: str | None = _UNDECIDED
        #: 405s: the route's label by host, path and allowed methods (at most
        #: :data:`ROUTE_CACHE_SIZE` entries: any path may be asked for)
        self._not_allowed: dict[tuple[Any, Any, tuple[str, ...]], str | None] = {}
        self.active = True
        #: active, and the process' first request seen (its hook run)
        self._ready = False
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
        self._ready = False

    # -- WSGI -----------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self._ready:
            if not self.active:
                return self.wsgi_app(environ, start_response)
            self._first_request(environ)
        if environ.get("PATH_INFO") == self.metrics_path:
            return self._scrape(environ, start_response)
        state = RequestState(perf_counter(), self, start_response)
        environ[STATE_KEY] = state
        try:
            body = self.wsgi_app(environ, state.start_response)
        except BaseException as exc:
            if "HTTP_UPGRADE" in environ and upgraded(
                environ, state.status, exc, websocket_rule(state.req)
            ):
                self._finish(state, environ, SWITCHING_PROTOCOLS, None)  # not an error
            else:
                self._finish(state, environ, 500, exc)
            raise
        if state.done:
            return body
        if state.streamed:
            return observed(body, self, state, environ)
        if (state.status == SWITCHING_PROTOCOLS or "HTTP_UPGRADE" in environ) and upgraded(
            environ, state.status, None, websocket_rule(state.req)
        ):
            self._finish(state, environ, SWITCHING_PROTOCOLS, None)
        elif state.path is not None:
            self.core.finish(state, environ, state.status or 500, None)
        else:
            self._finish(state, environ, state.status or 500, None)
        return body

    def _first_request(self, environ: dict[str, Any]) -> None:
        hook, self._on_first_request = self._on_first_request, None
        self._ready = True
        if hook is not None:
            self._find_engineio()
            hook(environ)

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
            self._forget_routes()

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
        if rule is not None:
            # decided once per route (rules are not hashable; a url_map keeps its rules)
            path = self._routes.get(id(rule), _UNDECIDED)
            if path is _UNDECIDED:
                path = self._routes[id(rule)] = self._route_of(req)
        else:  # the same label for every path, unless a prefix or a 405's route names it
            path = self._unmatched
            if path is _UNDECIDED or isinstance(req.routing_exception, MethodNotAllowed):
                path = self._unrouted(req)
        if path is None:
            state.done = True
            return
        self.core.start(state, req, path)

    def _unrouted(self, req: Any) -> str | None:
        """The ``path`` label of a request no route matched (decided once when it cannot
        depend on the path: no ``path_prefixes``), or of a 405 (its route, decided once
        per path and allowed methods, in a bounded cache)."""
        error = req.routing_exception
        if isinstance(error, MethodNotAllowed):
            environ = req.environ
            methods = tuple(error.valid_methods or ())
            key = (environ.get("HTTP_HOST"), environ.get("PATH_INFO"), methods)
            path: str | None = self._not_allowed.get(key, _UNDECIDED)
            if path is _UNDECIDED:
                if len(self._not_allowed) >= ROUTE_CACHE_SIZE:
                    self._not_allowed.clear()
                path = self._not_allowed[key] = self._route_of(req)
            return path
        if self.prefixes:
            return self._route_of(req)
        path = self._unmatched
        if path is _UNDECIDED:
            path = self._unmatched = self._route_of(req)
        return path

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
            self._forget_routes()

    def _forget_routes(self) -> None:
        """The labels decided so far no longer hold (the scope or the prefixes changed)."""
        self._routes.clear()
        self._not_allowed.clear()
        self._unmatched = _UNDECIDED

    def _in_scope(self, rule: Rule) -> bool:
        endpoint = str(rule.endpoint)
        return any(endpoint.startswith(name + ".") for name in self.scope or ())


_UNDECIDED: Any = object()
#: At most this many 405 labels are kept per app (then the cache starts afresh).
ROUTE_CACHE_SIZE = 1024


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
    _answer_ensure_sync(app)
    app.extensions[_HOOKS_KEY] = True


def _answer_ensure_sync(app: Flask) -> None:
    """Flask passes each request hook through ``app.ensure_sync()`` on every request (its
    documented place to run ``async def`` functions), which asks ``inspect`` whether it is
    a coroutine function: five Python calls per hook.  Ours are plain functions: the app's
    ``ensure_sync`` (on the instance, as ``app.run`` is wrapped) returns them at once and
    asks the app's own method about every other function.  An app whose class has an
    ``ensure_sync`` of its own is left to it."""
    if type(app).ensure_sync is not Flask.ensure_sync or "ensure_sync" in vars(app):
        return
    original = app.ensure_sync

    def ensure_sync(func: Callable[..., Any]) -> Callable[..., Any]:
        return func if func is _on_routed or func is _on_response else original(func)

    app.ensure_sync = ensure_sync  # type: ignore[method-assign]


#: Flask's current request context (its ``request`` is the real request object).
_request_context = request_context_getter()


def _on_routed() -> None:
    """An app ``before_request`` function: the request is routed and starts here.  One
    that an earlier function answered starts in ``after_request`` or, if it raised, in
    ``got_request_exception`` (Flask runs both inside the request)."""
    req = _request_context().request
    state: RequestState | None = req.environ.get(STATE_KEY)
    if state is not None:
        state.observer.routed(state, req)


def _on_response(response: Any) -> Any:
    """``after_request``: note whether the body is produced while it is sent."""
    req = _request_context().request
    state: RequestState | None = req.environ.get(STATE_KEY)
    if state is not None:
        if state.path is None:  # an earlier hook answered
            state.observer.routed(state, req)
        # a body in memory is complete when the app returns; any other iterable (a
        # generator, map(), a class, a file wrapper) is produced while the server sends it
        state.streamed = not isinstance(response.response, _IN_MEMORY) and not rendered_by_flask(
            response
        )
    return response


def _on_exception(sender: Flask, exception: BaseException, **_: Any) -> None:
    """Flask's ``got_request_exception`` signal (sent only when something raised)."""
    req = _request_context().request
    state: RequestState | None = req.environ.get(STATE_KEY)
    if state is not None:
        state.observer.routed(state, req)  # no-op unless an earlier hook raised
        if state.exception is None:
            state.exception = exception


def _forked(ref: weakref.ReferenceType[AppObserver]) -> None:
    observer = ref()
    if observer is not None:  # the child runs the first-request hook again
        observer._on_first_request = observer._first_hook
        observer._ready = False


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
