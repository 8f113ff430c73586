"""The request path: every request measured at the WSGI boundary of the app.

:class:`AppObserver` wraps ``app.wsgi_app`` (Flask's documented place for WSGI
middleware).  The clock starts when the app is called.  Flask's public signals name
the route (``request_started``, sent before any ``before_request`` hook, so a request
an app hook answers is counted too), the response (``request_finished``) and an
exception (``got_request_exception``, which Flask-RESTX and others send for the
exceptions they handle themselves).  The request is complete when the app returns,
or, for a response whose body is a generator (streaming), when the server has sent
the last chunk or closed the body because the client went away (status
:data:`~.metrics.CLIENT_CLOSED`).
The status recorded is the one the server sends: 500 when an exception escapes the
app (a failing ``teardown_request`` included).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Iterable, Iterator
from time import perf_counter
from types import GeneratorType
from typing import Any

from flask import Flask, got_request_exception, request_finished, request_started
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.routing import Rule

from ._compat import current_request, excluded_by_pfe
from .exposition import WSGIApp
from .metrics import CLIENT_CLOSED, UNMATCHED, RequestMetrics, method_label
from .tracing.server import ServerTracing, wall_clock_of

log = logging.getLogger("meshmetrics")


class RequestState:
    """One request's measurement, kept in its WSGI environ."""

    __slots__ = (
        "exception",
        "finished",
        "gauge",
        "method",
        "path",
        "req",
        "skip",
        "started",
        "status",
        "streamed",
    )

    def __init__(self, started: float) -> None:
        self.started = started
        self.status = 0
        self.method: str | None = None
        self.path: str | None = None
        self.gauge: Any = None
        self.req: Any = None
        self.exception: BaseException | None = None
        self.streamed = False
        self.skip = False
        self.finished = False


class RequestCore:
    """What one instrumentation records for a request: metrics, and the server span."""

    def __init__(
        self,
        metrics: RequestMetrics,
        tracing: ServerTracing | None,
        excluded: frozenset[str],
    ) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.excluded = excluded

    def start(self, state: RequestState, req: Any, path: str) -> None:
        method = method_label(req.method)
        state.method, state.path, state.req = method, path, req
        gauge = self.metrics.in_progress_child(method, path)
        gauge.inc()
        state.gauge = gauge
        if self.tracing is not None:
            self.tracing.start(req, path, wall_clock_of(state.started))

    def finish(
        self,
        state: RequestState,
        environ: dict[str, Any],
        status: int,
        exc: BaseException | None,
        *,
        whole_app: bool,
    ) -> None:
        if state.finished or state.skip:
            return
        state.finished = True
        if state.gauge is not None:
            state.gauge.dec()
        method, path = state.method, state.path
        if path is None:  # Flask never routed it (an app-level WSGI layer answered)
            if not whole_app:
                return
            method, path = method_label(environ.get("REQUEST_METHOD", "")), UNMATCHED
        exc = state.exception or exc
        tracing = self.tracing
        if state.req is None or not excluded_by_pfe(state.req):
            self.metrics.record(
                method or "",
                path,
                status,
                perf_counter() - state.started,
                tracing.exemplar(environ) if tracing is not None else None,
                type(exc).__name__ if exc is not None else None,
            )
        if tracing is not None:
            tracing.finish(environ, status, exc)


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
    ) -> None:
        self.app_name = app.name
        self.wsgi_app = wsgi_app
        self.core = core
        self.scope = scope
        self.active = True
        self._key = f"meshmetrics.request.{id(self)}"
        self._on_first_request: Callable[[dict[str, Any]], None] | None = on_first_request
        self._first_hook = on_first_request
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forked(ref))
        request_started.connect(self._on_started, app)
        request_finished.connect(self._on_finished, app)
        got_request_exception.connect(self._on_exception, app)

    def detach(self, app: Flask) -> None:
        """Stop measuring (the wrapper stays in place, passing requests through)."""
        self.active = False
        request_started.disconnect(self._on_started, app)
        request_finished.disconnect(self._on_finished, app)
        got_request_exception.disconnect(self._on_exception, app)

    # -- WSGI -----------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self.active:
            return self.wsgi_app(environ, start_response)
        if self._on_first_request is not None:
            hook, self._on_first_request = self._on_first_request, None
            hook(environ)
        state = RequestState(perf_counter())
        environ[self._key] = state

        def observed_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            state.status = int(status[:3])
            return start_response(status, headers, exc_info)

        try:
            body = self.wsgi_app(environ, observed_start_response)
        except BaseException as exc:
            self._finish(state, environ, 500, exc)
            raise
        if state.streamed and not state.skip:
            return ObservedBody(body, self, state, environ)
        self._finish(state, environ, state.status or 500, None)
        return body

    def _finish(
        self,
        state: RequestState,
        environ: dict[str, Any],
        status: int,
        exc: BaseException | None,
    ) -> None:
        self.core.finish(state, environ, status, exc, whole_app=self.scope is None)

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

    # -- Flask signals ----------------------------------------------------------------

    def _on_started(self, sender: Flask, **_: Any) -> None:
        req = current_request()
        state: RequestState | None = req.environ.get(self._key)
        if state is None:
            return  # not served through this wrapper (another app's, a test context)
        rule = req.url_rule or _rule_of_405(sender, req)
        if self.scope is not None and (rule is None or not self._in_scope(rule)):
            state.skip = True
            return
        path = rule.rule if rule is not None else UNMATCHED
        if path in self.core.excluded:
            state.skip = True
            return
        self.core.start(state, req, path)

    def _in_scope(self, rule: Rule) -> bool:
        endpoint = str(rule.endpoint)
        return any(endpoint.startswith(name + ".") for name in self.scope or ())

    def _on_finished(self, sender: Flask, response: Any, **_: Any) -> None:
        state: RequestState | None = current_request().environ.get(self._key)
        if state is not None:
            # a generator body (Response(gen()), stream_with_context) is produced while
            # the server sends it; anything else is complete when the app returns
            state.streamed = isinstance(response.response, GeneratorType)
            if not state.status:
                state.status = response.status_code

    def _on_exception(self, sender: Flask, exception: BaseException, **_: Any) -> None:
        state: RequestState | None = current_request().environ.get(self._key)
        if state is not None and state.exception is None:
            state.exception = exception


def _forked(ref: weakref.ReferenceType[AppObserver]) -> None:
    observer = ref()
    if observer is not None:  # the child runs the first-request hook again
        observer._on_first_request = observer._first_hook


def _rule_of_405(app: Flask, req: Any) -> Rule | None:
    """The route a 405 (method not allowed) request hit, so it is counted on that route."""
    error = req.routing_exception
    if not isinstance(error, MethodNotAllowed) or not error.valid_methods:
        return None
    adapter = app.create_url_adapter(req)
    if adapter is None:
        return None
    try:
        rule, _ = adapter.match(method=next(iter(error.valid_methods)), return_rule=True)
    except Exception:
        return None
    return rule if isinstance(rule, Rule) else None


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
