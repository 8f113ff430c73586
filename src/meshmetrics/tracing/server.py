"""The Flask face of the tracer: one server span per request, Flask-OpenTracing's API.

:class:`ServerTracing` has ``flask_opentracing.FlaskTracing``'s ``.tracer``,
``.get_span()`` and ``.trace()``.  The request-path core calls :meth:`~ServerTracing.start`
once the request is routed and :meth:`~ServerTracing.finish` when the response is
complete; the span lives in the request's WSGI environ, so overlapping requests never
see each other's span.
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from flask import Request, has_request_context, request

from ..config import DEFAULT_SENSITIVE_QUERY_PARAMS
from ..config.sampling import ConstSampler
from ..names import SPAN_KEY, TRACE_ID_LABEL
from ..typing import ViewDecorator, ViewFunction
from .propagation import extract
from .semconv import MAX_LENGTH, STATUS, response_attributes, server_attributes_sized
from .spans import MAX_ATTRIBUTES, DeferredSpan, MeshSpan, MeshTracer

UNMATCHED_OPERATION = "unmatched"
REQUEST_ID = "guid:x-request-id"
# estimated sizes as spans.py counts them: a string's key + 4 (+ its value), a number's key + 12
_REQUEST_ID_SIZE = len(REQUEST_ID) + 4
_STATUS_SIZE = len(STATUS) + 12


def current_span() -> MeshSpan | None:
    """The server span of the request being handled, if tracing is on."""
    if not has_request_context():
        return None
    span: MeshSpan | None = request.environ.get(SPAN_KEY)
    return span


class RequestTracing(Protocol):
    """What the request path and ``session()`` ask of a tracing backend: meshmetrics'
    own (:class:`ServerTracing`) or the OpenTelemetry SDK's (``tracing.otel``)."""

    tracer: Any
    sensitive_query_params: frozenset[str]

    def start(self, req: Request, route: str, started: float) -> None: ...

    def finish(self, environ: dict[str, Any], status: int, exc: BaseException | None) -> None: ...

    def exemplar(self, environ: Mapping[str, Any]) -> dict[str, str] | None: ...

    def get_span(self, req: Request | None = None) -> Any: ...

    def trace(self, *attributes: str) -> ViewDecorator: ...

    def shutdown(self) -> None: ...


def tag_request_attributes(
    get_span: Callable[[], Any], attributes: tuple[str, ...]
) -> ViewDecorator:
    """Flask-OpenTracing's ``trace(*attributes)``: a view decorator setting each named
    attribute of the request (``path``, ``method``, ...) on the span ``get_span`` returns."""

    def decorator(view: ViewFunction) -> ViewFunction:
        @functools.wraps(view)
        def traced(*args: Any, **kwargs: Any) -> Any:
            span = get_span()
            if span is not None:
                for attribute in attributes:
                    value = getattr(request, attribute, None)
                    if value is not None:
                        span.set_tag(attribute, str(value))
            return view(*args, **kwargs)

        return traced

    return decorator


class ServerTracing:
    """Server spans of an app or Blueprint; the API of ``flask_opentracing.FlaskTracing``."""

    def __init__(
        self,
        tracer: MeshTracer,
        sensitive_query_params: frozenset[str] = DEFAULT_SENSITIVE_QUERY_PARAMS,
    ) -> None:
        self.tracer = tracer
        #: Query parameters whose values span URLs redact (see :mod:`.redaction`).
        self.sensitive_query_params = sensitive_query_params

    def get_span(self, req: Request | None = None) -> MeshSpan | None:
        """The server span of ``req`` (default: the current request), or ``None``."""
        if req is None:
            return current_span()
        span: MeshSpan | None = req.environ.get(SPAN_KEY)
        return span

    def trace(self, *attributes: str) -> ViewDecorator:
        """Tag the current server span with these request attributes (as Flask-OpenTracing)."""
        return tag_request_attributes(self.get_span, attributes)

    def shutdown(self) -> None:
        """At ``uninstrument()``: the tracer's spans are exported and its processor released."""
        self.tracer.shutdown()

    # -- called by the request-path core --------------------------------------------------

    def start(self, req: Request, route: str, started: float) -> None:
        """Open the request's server span, dated from when the WSGI call began
        (``started``, a ``perf_counter()`` reading)."""
        environ = req.environ
        tracer = self.tracer
        sampler = tracer.sampler
        if sampler.__class__ is ConstSampler and not sampler.decision:
            # never recorded: the ids are read only if propagation asks for them
            environ[SPAN_KEY] = DeferredSpan(tracer, environ)
            return
        context = tracer.context_for(extract(environ))
        if not context.sampled:  # only the ids, for propagation: no clock, no tags
            environ[SPAN_KEY] = MeshSpan(tracer, context, UNMATCHED_OPERATION, None, 0.0)
            return
        rule = req.url_rule
        span = MeshSpan(
            tracer,
            context,
            rule.endpoint if rule is not None else UNMATCHED_OPERATION,
            None,
            wall_clock_of(started),
        )
        tags, size = server_attributes_sized(
            environ, req.method, route, self.sensitive_query_params
        )
        request_id = environ.get("HTTP_X_REQUEST_ID")
        if request_id:
            tags[REQUEST_ID] = request_id = request_id[:MAX_LENGTH]
            size += _REQUEST_ID_SIZE + len(request_id)
        span.tags = tags
        if len(span.operation_name) <= MAX_LENGTH and len(tags) <= MAX_ATTRIBUTES:
            span.checked_size = size
        environ[SPAN_KEY] = span

    def finish(self, environ: dict[str, Any], status: int, exc: BaseException | None) -> None:
        """Tag the status sent and any exception, then finish the span.

        The span leaves the environ (which Flask's request keeps in a reference cycle), so
        it is freed at once rather than by the cyclic garbage collector."""
        span = environ.pop(SPAN_KEY, None)
        if span is None or span.deferred or not span._context.sampled or span.finished:
            return
        if exc is None and status < 500:
            checked = span.checked_size
            span.tags[STATUS] = status
            if checked >= 0:
                span.checked_size = checked + _STATUS_SIZE
            span.finish()
            return
        span.tags.update(response_attributes(status, exc))
        span.checked_size = -1
        if exc is not None:
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
        if span is None or span.deferred:
            return None
        context = span._context  # a MeshSpan's (opentracing's property costs a call)
        return {TRACE_ID_LABEL: f"{context.trace_id:032x}"} if context.sampled else None


def wall_clock_of(started: float) -> float:
    """The wall-clock time of a ``perf_counter()`` reading taken a moment ago."""
    return time.time() - (time.perf_counter() - started)
