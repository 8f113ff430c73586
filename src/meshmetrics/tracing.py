"""OpenTracing spans for every request, cheap when not sampled, correct under concurrency.

``MeshTracer`` implements the OpenTracing API (so ``tracer.start_active_span``
and friends work as with jaeger-client) with a sampler that follows the
caller's decision (Envoy's) and exporters that run off the request path.
``ServerTracing`` is the Flask-OpenTracing-compatible object: ``.tracer``,
``.get_span()``, ``.trace()``; its per-request state lives in the WSGI environ,
so overlapping requests never see each other's span.
"""

from __future__ import annotations

import contextvars
import functools
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import opentracing
from flask import Response, has_request_context, request
from opentracing.ext import tags as ext_tags

from .exporters import BatchSpanProcessor
from .propagation import (
    TraceContext,
    b3_headers,
    extract,
    new_span_id,
    new_trace_id,
    traceparent,
)

SPAN_KEY = "meshmetrics.span"
UNMATCHED_OPERATION = "unmatched"


# -- sampling -------------------------------------------------------------------------


class Sampler:
    """Decides for new traces: ``const`` (0/1), ``probabilistic`` (p), ``ratelimiting`` (per s)."""

    def __init__(self, kind: str, param: float) -> None:
        self.kind, self.param = kind, param
        self._tokens = param
        self._last = time.monotonic()

    @classmethod
    def parse(cls, spec: str) -> Sampler:
        kind, _, raw = spec.partition(":")
        return cls(kind, float(raw))

    def sample(self, trace_id: int) -> bool:
        if self.kind == "const":
            return self.param >= 1
        if self.kind == "probabilistic":
            return (trace_id & 0xFFFFFFFFFFFFFFFF) < self.param * 2**64
        now = time.monotonic()  # ratelimiting: a token bucket refilled at param per second
        self._tokens = min(self.param, self._tokens + (now - self._last) * self.param)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


# -- the active span -------------------------------------------------------------------

_ACTIVE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar(
    "meshmetrics_active_scope", default=None
)


class _Scope(opentracing.Scope):  # type: ignore[misc]
    __slots__ = ("_finish_on_close", "_previous", "_token")

    def __init__(self, manager: ScopeManager, span: MeshSpan, finish_on_close: bool) -> None:
        super().__init__(manager, span)
        self._finish_on_close = finish_on_close
        self._previous = _ACTIVE.get()
        self._token = _ACTIVE.set(self)

    def close(self) -> None:
        if _ACTIVE.get() is not self:
            return  # closed out of order: leave the newer scope active
        _ACTIVE.set(self._previous)
        if self._finish_on_close:
            self.span.finish()


class _RequestScope(opentracing.Scope):  # type: ignore[misc]
    """The server span of the current request, seen as the active scope (closed by teardown)."""

    def close(self) -> None:
        pass


class ScopeManager(opentracing.ScopeManager):  # type: ignore[misc]
    """The active span per thread and per asyncio task, in a context variable.

    With nothing activated, the current request's server span is active: it is kept
    in the request's environ rather than activated, which keeps unsampled requests cheap.
    """

    def activate(self, span: MeshSpan, finish_on_close: bool) -> _Scope:
        return _Scope(self, span, finish_on_close)

    @property
    def active(self) -> opentracing.Scope | None:
        scope = _ACTIVE.get()
        if scope is not None:
            return scope
        span = current_span()
        return _RequestScope(self, span) if span is not None else None


# -- spans ----------------------------------------------------------------------------


class MeshSpanContext(opentracing.SpanContext):  # type: ignore[misc]
    __slots__ = ("debug", "parent_id", "sampled", "span_id", "trace_id")

    def __init__(
        self, trace_id: int, span_id: int, parent_id: int | None, sampled: bool, debug: bool = False
    ) -> None:
        self.trace_id, self.span_id, self.parent_id = trace_id, span_id, parent_id
        self.sampled, self.debug = sampled, debug

    @property
    def baggage(self) -> dict[str, str]:
        return {}

    def headers(self) -> dict[str, str]:
        """B3 (multi and single) and W3C headers that make this span the remote parent."""
        headers = b3_headers(self.trace_id, self.span_id, self.parent_id, self.sampled)
        headers["traceparent"] = traceparent(self.trace_id, self.span_id, self.sampled)
        return headers


class MeshSpan(opentracing.Span):  # type: ignore[misc]
    """A span; when not sampled, tags and logs are not even stored."""

    def __init__(
        self,
        tracer: MeshTracer,
        context: MeshSpanContext,
        operation_name: str,
        tags: dict[str, Any] | None,
        start_time: float | None,
    ) -> None:
        self._tracer = tracer  # opentracing.Span's own attributes, set without its __init__
        self._context = context
        self.operation_name = operation_name
        self.start_time = time.time() if start_time is None else start_time
        self.duration = 0.0
        self.tags: dict[str, Any] = dict(tags) if tags and context.sampled else {}
        self.logs: list[tuple[float, dict[str, Any]]] = []
        self.finished = False

    @property
    def trace_id_hex(self) -> str:
        return f"{self.context.trace_id:032x}"

    def set_operation_name(self, operation_name: str) -> MeshSpan:
        self.operation_name = operation_name
        return self

    def set_tag(self, key: str, value: Any) -> MeshSpan:
        if self.context.sampled:
            self.tags[key] = value
        return self

    def log_kv(self, key_values: Mapping[str, Any], timestamp: float | None = None) -> MeshSpan:
        if self.context.sampled:
            self.logs.append((time.time() if timestamp is None else timestamp, dict(key_values)))
        return self

    def finish(self, finish_time: float | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        self.duration = max(
            0.0, (time.time() if finish_time is None else finish_time) - self.start_time
        )
        if self.context.sampled:
            self.tracer.report(self)


class MeshTracer(opentracing.Tracer):  # type: ignore[misc]
    """An OpenTracing tracer with B3/W3C propagation and a pluggable span processor."""

    def __init__(self, sampler: Sampler, processor: BatchSpanProcessor | None) -> None:
        super().__init__(scope_manager=ScopeManager())
        self.sampler = sampler
        self.processor = processor

    def start_active_span(
        self,
        operation_name: str,
        child_of: Any = None,
        references: Any = None,
        tags: dict[str, Any] | None = None,
        start_time: float | None = None,
        ignore_active_span: bool = False,
        finish_on_close: bool = True,
    ) -> opentracing.Scope:
        span = self.start_span(
            operation_name, child_of, references, tags, start_time, ignore_active_span
        )
        return self.scope_manager.activate(span, finish_on_close)

    def start_span(
        self,
        operation_name: str,
        child_of: Any = None,
        references: Any = None,
        tags: dict[str, Any] | None = None,
        start_time: float | None = None,
        ignore_active_span: bool = False,
    ) -> MeshSpan:
        parent = child_of
        if parent is None and references:
            parent = references[0].referenced_context
        if parent is None and not ignore_active_span:
            parent = self.active_span
        if isinstance(parent, opentracing.Span):
            parent = parent.context
        context = self.context_for(parent)
        return MeshSpan(self, context, operation_name, tags, start_time)

    def context_for(self, parent: MeshSpanContext | TraceContext | None) -> MeshSpanContext:
        """A new span's context: child of ``parent`` (local or remote), else a new trace."""
        span_id = new_span_id()
        if parent is not None and parent.trace_id is not None:
            sampled = parent.sampled
            if sampled is None:
                sampled = self.sampler.sample(parent.trace_id)
            return MeshSpanContext(parent.trace_id, span_id, parent.span_id, sampled, parent.debug)
        trace_id = new_trace_id()
        if parent is not None and parent.sampled is not None:  # a decision without ids
            return MeshSpanContext(trace_id, span_id, None, parent.sampled, parent.debug)
        return MeshSpanContext(trace_id, span_id, None, self.sampler.sample(trace_id))

    def inject(self, span_context: Any, format: str, carrier: Any) -> None:
        if format not in (opentracing.Format.HTTP_HEADERS, opentracing.Format.TEXT_MAP):
            raise opentracing.UnsupportedFormatException(format)
        if isinstance(span_context, MeshSpanContext):
            carrier.update(span_context.headers())

    def extract(self, format: str, carrier: Any) -> MeshSpanContext | None:
        if format not in (opentracing.Format.HTTP_HEADERS, opentracing.Format.TEXT_MAP):
            raise opentracing.UnsupportedFormatException(format)
        environ = {"HTTP_" + str(k).upper().replace("-", "_"): v for k, v in dict(carrier).items()}
        found = extract(environ)
        if found is None or found.trace_id is None or found.span_id is None:
            return None
        sampled = (
            found.sampled if found.sampled is not None else self.sampler.sample(found.trace_id)
        )
        return MeshSpanContext(found.trace_id, found.span_id, found.parent_id, sampled, found.debug)

    def report(self, span: MeshSpan) -> None:
        if self.processor is not None:
            self.processor.on_end(span)

    def close(self) -> None:
        """Flush queued spans (also done at interpreter exit)."""
        if self.processor is not None:
            self.processor.flush()


# -- per-request server spans ----------------------------------------------------------


class ServerTracing:
    """Server spans of an app or Blueprint; the API of ``flask_opentracing.FlaskTracing``."""

    def __init__(
        self,
        tracer_factory: Callable[[], MeshTracer],
        traced_attributes: tuple[str, ...] = (),
    ):
        self._factory = tracer_factory
        self._tracer: MeshTracer | None = None
        self._lock = threading.Lock()
        self._traced_attributes = traced_attributes

    @property
    def tracer(self) -> MeshTracer:
        """The tracer, created on first use in the serving process (after any fork)."""
        tracer = self._tracer
        if tracer is None:
            with self._lock:  # concurrent first requests must share one tracer
                if self._tracer is None:
                    self._tracer = self._factory()
                tracer = self._tracer
        return tracer

    def get_span(self, req: Any = None) -> MeshSpan | None:
        """The server span of ``req`` (default: the current request), or ``None``."""
        if req is None:
            return current_span()
        span: MeshSpan | None = req.environ.get(SPAN_KEY)
        return span

    def trace(self, *attributes: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Tag the current server span with these request attributes (as Flask-OpenTracing)."""

        def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(view)
            def traced(*args: Any, **kwargs: Any) -> Any:
                span = self.get_span()
                if span is not None:
                    for attribute in attributes:
                        value = getattr(request, attribute, None)
                        if value is not None:
                            span.set_tag(attribute, str(value))
                return view(*args, **kwargs)

            return traced

        return decorator

    # -- hooks --------------------------------------------------------------------------

    def on_start(self, req: Any) -> None:
        """Open the request's server span (from the first ``before_request`` hook)."""
        environ = req.environ
        rule = req.url_rule
        tracer = self.tracer
        context = tracer.context_for(extract(environ))
        if not context.sampled:  # only the ids, for propagation: no clock, no tags
            span = MeshSpan(tracer, context, UNMATCHED_OPERATION, None, 0.0)
            environ[SPAN_KEY] = span
            return
        span = MeshSpan(
            tracer, context, rule.endpoint if rule is not None else UNMATCHED_OPERATION, None, None
        )
        span.tags.update(
            {
                ext_tags.COMPONENT: "flask",
                ext_tags.SPAN_KIND: ext_tags.SPAN_KIND_RPC_SERVER,
                ext_tags.HTTP_METHOD: req.method,
                ext_tags.HTTP_URL: _url(environ),
                "http.route": rule.rule if rule is not None else UNMATCHED_OPERATION,
            }
        )
        request_id = environ.get("HTTP_X_REQUEST_ID")
        if request_id:
            span.tags["guid:x-request-id"] = request_id
        for attribute in self._traced_attributes:
            span.tags[attribute] = str(getattr(req, attribute, ""))
        environ[SPAN_KEY] = span

    def on_response(self, req: Any, response: Response) -> None:
        """Tag the status (``after_request``)."""
        span = req.environ.get(SPAN_KEY)
        if span is not None and span.context.sampled:
            span.tags[ext_tags.HTTP_STATUS_CODE] = response.status_code
            if response.status_code >= 500:
                span.tags[ext_tags.ERROR] = True

    def on_teardown(self, req: Any, exc: BaseException | None) -> None:
        """Tag an unhandled exception and finish the span (``teardown_request``)."""
        span = req.environ.pop(SPAN_KEY, None)
        if span is None or not span.context.sampled:
            return
        if exc is not None:
            span.tags[ext_tags.ERROR] = True
            span.tags.setdefault(ext_tags.HTTP_STATUS_CODE, 500)
            span.log_kv(
                {
                    "event": "error",
                    "error.kind": type(exc).__name__,
                    "error.object": repr(exc)[:1024],
                    "message": str(exc)[:1024],
                    "stack": "".join(traceback.format_exception(exc))[-4096:],
                }
            )
        span.finish()

    def exemplar(self, environ: Mapping[str, Any]) -> dict[str, str] | None:
        """The trace id of a sampled request, for its latency histogram observation."""
        span = environ.get(SPAN_KEY)
        if span is None or not span.context.sampled:
            return None
        return {"trace_id": span.trace_id_hex}


def _url(environ: Mapping[str, Any]) -> str:
    """The request URL as the client sent it (werkzeug's ``request.url`` costs ~10x more)."""
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
    query = environ.get("QUERY_STRING")
    path = f"{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}"
    url = f"{environ.get('wsgi.url_scheme', 'http')}://{host}{path}"
    return f"{url}?{query}" if query else url


def current_span() -> MeshSpan | None:
    """The server span of the request being handled, if tracing is on."""
    if not has_request_context():
        return None
    span: MeshSpan | None = request.environ.get(SPAN_KEY)
    return span
