"""``tracing="otel"``: meshmetrics' tracing through the process' OpenTelemetry SDK.

When an application (or ``opentelemetry-instrument``) has set an SDK ``TracerProvider``,
meshmetrics must not run a tracer of its own beside it: that doubled every server span
and split traces.  Here it creates nothing of its own to export:

- the server span is opentelemetry-instrumentation-flask's when the app is instrumented
  with it, otherwise one meshmetrics starts through the OpenTelemetry API (same stable
  HTTP attributes as its own tracer), continuing the inbound trace;
- ``get_span()``/``trace()`` and ``tracing.tracer`` speak OpenTracing through
  OpenTelemetry's OpenTracing shim, over the same spans;
- latency exemplars carry the OpenTelemetry trace id, so they open the user's traces;
- ``session()``/``forward_headers()`` inject with the global propagators (``traceparent``,
  and B3 naming the same parent) and keep ``x-request-id`` and Istio's other headers;
- unless ``OTEL_PROPAGATORS`` is set, B3 is added to the default propagators, so the
  trace Envoy started (B3 headers) continues; one INFO line says so.

Needs the ``otel`` extra (opentelemetry-sdk, the OpenTracing shim, the B3 propagator).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

from flask import Request, current_app, has_request_context, request
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.shim.opentracing_shim import SpanContextShim, SpanShim, create_tracer
from opentelemetry.trace import SpanKind, Status, StatusCode

from ..config import MeshConfig
from ..names import OTEL_SPAN_KEY as SPAN_KEY
from ..names import OTEL_TOKEN_KEY as TOKEN_KEY
from ..names import TRACE_ID_LABEL, log
from ..typing import ViewDecorator
from .semconv import (
    ERROR,
    ERROR_TYPE,
    SPAN_KIND,
    STATUS,
    client_attributes,
    response_attributes,
    server_attributes_sized,
)
from .server import UNMATCHED_OPERATION, tag_request_attributes, wall_clock_of

#: Where opentelemetry-instrumentation-flask keeps its server span in the WSGI environ.
FLASK_INSTRUMENTATION_SPAN = "opentelemetry-flask.span_key"
#: Where meshmetrics keeps a server span it started, and its context token.
_b3_lock = threading.Lock()
_b3_done = False


class _WSGIGetter(Getter[Mapping[str, Any]]):
    """Reads HTTP headers from a WSGI environ for OpenTelemetry's propagators."""

    def __init__(self) -> None:
        #: header name -> environ key (the propagators ask for a few names, every request)
        self._names: dict[str, str] = {}

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        name = self._names.get(key)
        if name is None:
            name = "HTTP_" + key.upper().replace("-", "_")
            if len(self._names) < 256:
                self._names[key] = name
        value = carrier.get(name)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


WSGI_GETTER = _WSGIGetter()


def accept_b3() -> bool:
    """Add B3 to OpenTelemetry's default propagators (once), unless ``OTEL_PROPAGATORS``
    chose them or the application set its own.  True when B3 is (now) understood."""
    global _b3_done
    with _b3_lock:
        if _b3_done:
            return True
        current = propagate.get_global_textmap()
        if "x-b3-traceid" in current.fields:
            _b3_done = True
            return True
        if "OTEL_PROPAGATORS" in os.environ or current.fields != {
            "traceparent",
            "tracestate",
            "baggage",
        }:
            return False
        from opentelemetry.baggage.propagation import W3CBaggagePropagator
        from opentelemetry.propagators.b3 import B3MultiFormat
        from opentelemetry.propagators.composite import CompositePropagator
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        propagate.set_global_textmap(
            CompositePropagator(
                [TraceContextTextMapPropagator(), W3CBaggagePropagator(), B3MultiFormat()]
            )
        )
        _b3_done = True
        log.info(
            "meshmetrics: OpenTelemetry propagators: tracecontext, baggage and B3 (Istio's "
            "Envoy sends B3); set OTEL_PROPAGATORS to choose them yourself"
        )
        return True


def _attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if k not in (SPAN_KIND, ERROR)}


class OTelTracing:
    """The Flask face of tracing over the OpenTelemetry SDK (the API of ServerTracing)."""

    otel = True

    def __init__(self, config: MeshConfig) -> None:
        self._tracer = trace.get_tracer("meshmetrics")
        #: OpenTracing's API over the same spans (OpenTelemetry's OpenTracing shim).
        self.tracer = create_tracer(trace.get_tracer_provider())
        self.sensitive_query_params = config.sensitive_query_params
        accept_b3()

    # -- the request's server span ---------------------------------------------------------

    @staticmethod
    def _instrumented() -> bool:
        """Whether opentelemetry-instrumentation-flask instruments the current app."""
        return bool(getattr(current_app, "_is_instrumented_by_opentelemetry", False))

    def start(self, req: Request, route: str, started: float) -> None:
        """Start the server span, unless opentelemetry-instrumentation-flask does."""
        if self._instrumented():
            return
        environ = req.environ
        parent = propagate.extract(environ, getter=WSGI_GETTER)
        rule = req.url_rule
        attributes, _ = server_attributes_sized(
            environ, req.method, route, self.sensitive_query_params, sys.maxsize
        )
        del attributes[SPAN_KIND]  # the span's kind, not an attribute
        span = self._tracer.start_span(
            rule.endpoint if rule is not None else UNMATCHED_OPERATION,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            start_time=int(wall_clock_of(started) * 1e9),
        )
        environ[SPAN_KEY] = span
        environ[TOKEN_KEY] = otel_context.attach(trace.set_span_in_context(span))

    def finish(self, environ: dict[str, Any], status: int, exc: BaseException | None) -> None:
        span = environ.pop(SPAN_KEY, None)
        token = environ.pop(TOKEN_KEY, None)
        if span is None:
            return
        if exc is None and status < 500:  # the common case: only the status
            span.set_attribute(STATUS, status)
        else:
            attributes = response_attributes(status, exc)
            span.set_attributes(_attributes(attributes))
            if exc is not None:
                span.record_exception(exc)
            if attributes.get(ERROR):
                span.set_status(Status(StatusCode.ERROR, str(attributes.get(ERROR_TYPE, ""))))
        span.end()
        if token is not None:
            # finished in another context (a streamed body closed late): nothing to restore
            with contextlib.suppress(ValueError):
                otel_context.detach(token)

    def server_span(self, environ: Mapping[str, Any] | None = None) -> Any:
        """The request's OpenTelemetry server span (the instrumentation's or ours)."""
        if environ is None:
            if not has_request_context():
                return trace.get_current_span()
            environ = request.environ
        span = environ.get(SPAN_KEY) or environ.get(FLASK_INSTRUMENTATION_SPAN)
        return span if span is not None else trace.get_current_span()

    def exemplar(self, environ: Mapping[str, Any]) -> dict[str, str] | None:
        """The OpenTelemetry trace id of a sampled request, for its latency observation."""
        context = self.server_span(environ).get_span_context()
        if not context.is_valid or not context.trace_flags.sampled:
            return None
        return {TRACE_ID_LABEL: f"{context.trace_id:032x}"}

    # -- Flask-OpenTracing's API -----------------------------------------------------------

    def get_span(self, req: Request | None = None) -> Any:
        """The server span as an OpenTracing span (OpenTelemetry's shim), or ``None``."""
        span = self.server_span(req.environ if req is not None else None)
        context = span.get_span_context()
        if not context.is_valid:
            return None
        return SpanShim(self.tracer, SpanContextShim(context), span)

    def trace(self, *attributes: str) -> ViewDecorator:
        """Tag the server span with these request attributes (as Flask-OpenTracing)."""
        return tag_request_attributes(self.get_span, attributes)

    @staticmethod
    def shutdown() -> None:
        """At ``uninstrument()``: nothing to release (the SDK's provider and processors
        are the application's, which shuts them down)."""

    # -- outgoing calls --------------------------------------------------------------------

    def inject(self, span: Any = None) -> dict[str, str]:
        """The trace headers naming ``span`` (default: the server span) as the parent."""
        carrier: dict[str, str] = {}
        parent = span if span is not None else self.server_span()
        propagate.inject(carrier, context=trace.set_span_in_context(parent))
        return carrier

    def start_client(self, method: str, url: str) -> Any:
        """A client span, child of the server span, unless opentelemetry-instrumentation-
        requests makes them (it is then the one whose headers the call carries)."""
        if _requests_instrumented():
            return None
        return self._tracer.start_span(
            f"HTTP {method}",
            context=trace.set_span_in_context(self.server_span()),
            kind=SpanKind.CLIENT,
            attributes=_attributes(client_attributes(method, url, self.sensitive_query_params)),
        )

    @staticmethod
    def end_client(span: Any, status: int | None, exc: BaseException | None) -> None:
        if span is None:
            return
        if exc is not None:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
        if status is not None:
            attributes = response_attributes(status, None)
            span.set_attributes(_attributes(attributes))
            if attributes.get(ERROR):
                span.set_status(Status(StatusCode.ERROR, str(status)))
        span.end()


def _requests_instrumented() -> bool:
    try:
        from opentelemetry.instrumentation.requests import (  # type: ignore[import-not-found]
            RequestsInstrumentor,
        )
    except ImportError:
        return False
    return bool(RequestsInstrumentor().is_instrumented_by_opentelemetry)
