"""Outgoing calls that keep the trace together across an Istio mesh.

Envoy only joins the spans of two services when the app copies ``x-request-id``
and the trace headers from its inbound request to its outbound calls.
:class:`TracingSession` does that for ``requests`` (with a client span when
tracing is on); :func:`forward_headers` returns the same headers for any client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from flask import current_app, has_app_context, has_request_context, request

from ..names import EXTENSION_KEY, SPAN_KEY
from .propagation import TRACE_HEADERS, forwarded, inbound_trace_headers
from .semconv import ERROR, ERROR_TYPE, client_attributes, response_attributes
from .server import RequestTracing
from .spans import MeshSpan, MeshSpanContext


def _tracing_of_current_app() -> RequestTracing | None:
    if not has_app_context():
        return None
    inst = current_app.extensions.get(EXTENSION_KEY)
    return getattr(inst, "tracing", None)


def _headers_for(parent: MeshSpanContext | None, tracing: RequestTracing | None) -> dict[str, str]:
    """Forwarded inbound headers plus the trace headers naming ``parent`` as the caller."""
    if has_request_context():
        environ = request.environ
        headers = forwarded(environ)
        if parent is not None:
            headers.update(parent.headers())
        else:
            headers.update(inbound_trace_headers(environ))
        return headers
    if parent is not None:
        return parent.headers()
    if tracing is not None:  # outside a request: a new trace
        fresh: dict[str, str] = tracing.tracer.context_for(None).headers()
        return fresh
    return {}


def forward_headers(tracing: RequestTracing | None = None) -> dict[str, str]:
    """Headers to add to an outbound call made while handling the current request.

    ``x-request-id`` and the other headers Istio lists are copied from the inbound
    request; the B3 and W3C headers name this service's server span as the parent
    (when tracing is off, the inbound ones are copied verbatim).  Outside a request
    the headers start a new trace when tracing is on.
    """
    if tracing is None:
        tracing = _tracing_of_current_app()
    if getattr(tracing, "otel", False):
        return _otel_headers(tracing, None)
    parent = None
    if has_request_context():
        span = request.environ.get(SPAN_KEY)
        parent = span.context if span is not None else None
    return _headers_for(parent, tracing)


def _otel_headers(tracing: Any, span: Any) -> dict[str, str]:
    """Istio's forwarded headers, then the OpenTelemetry propagators' naming ``span``."""
    headers = forwarded(request.environ) if has_request_context() else {}
    injected: dict[str, str] = tracing.inject(span)
    headers.update(injected)
    return headers


@dataclass(frozen=True)
class _Call:
    """One outgoing call: the headers it carries (``trace_names`` are the trace headers,
    which the caller's own headers do not override) and what ends its client span."""

    headers: dict[str, str]
    trace_names: frozenset[str]
    done: Callable[[int | None, BaseException | None], None]


def _end_span(span: MeshSpan | None, status: int | None, exc: BaseException | None) -> None:
    if span is None:
        return
    if exc is not None:
        span.set_tag(ERROR, True)
        span.set_tag(ERROR_TYPE, type(exc).__qualname__)
        span.log_kv(
            {"event": "error", "error.kind": type(exc).__name__, "message": str(exc)[:1024]}
        )
    if status is not None:
        for key, value in response_attributes(status, None).items():
            span.set_tag(key, value)
    span.finish()


class TracingSession(requests.Session):
    """A ``requests.Session`` that opens a client span and propagates the trace."""

    def __init__(self, tracing: RequestTracing | None) -> None:
        super().__init__()
        self._tracing = tracing

    def request(  # type: ignore[override]
        self,
        method: str | bytes,
        url: str | bytes,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        **kwargs: Any,
    ) -> requests.Response:
        method_name = method.decode() if isinstance(method, bytes) else method
        url_text = url.decode() if isinstance(url, bytes) else url
        call = self._begin(method_name.upper(), url_text)
        merged = {k: v for k, v in call.headers.items() if k not in call.trace_names}
        merged.update(headers or {})  # the caller's own headers win over forwarded ones
        merged.update({k: v for k, v in call.headers.items() if k in call.trace_names})
        try:
            response = super().request(method, url, params, data, merged, **kwargs)
        except Exception as exc:
            call.done(None, exc)
            raise
        call.done(response.status_code, None)
        return response

    def _begin(self, method: str, url: str) -> _Call:
        if getattr(self._tracing, "otel", False):
            tracing: Any = self._tracing
            otel_span = tracing.start_client(method, url)
            return _Call(
                _otel_headers(tracing, otel_span),
                frozenset(tracing.inject(None)),
                lambda status, exc: tracing.end_client(otel_span, status, exc),
            )
        span = self._start_span(method, url)
        headers = _headers_for(span.context if span is not None else None, self._tracing)
        return _Call(headers, TRACE_HEADERS, lambda status, exc: _end_span(span, status, exc))

    def _start_span(self, method: str, url: str) -> MeshSpan | None:
        if self._tracing is None:
            return None
        parent = None
        if has_request_context():
            parent = request.environ.get(SPAN_KEY)
        span: MeshSpan = self._tracing.tracer.start_span(f"HTTP {method}", child_of=parent)
        if span.context.sampled:
            span.tags.update(client_attributes(method, url, self._tracing.sensitive_query_params))
        return span
