"""Outgoing calls that keep the trace together across an Istio mesh.

Envoy only joins the spans of two services when the app copies ``x-request-id``
and the trace headers from its inbound request to its outbound calls.
:class:`TracingSession` does that for ``requests`` (with a client span when
tracing is on); :func:`forward_headers` returns the same headers for any client.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from flask import current_app, has_app_context, has_request_context, request
from opentracing.ext import tags as ext_tags

from .propagation import TRACE_HEADERS, forwarded, inbound_trace_headers
from .redaction import redact_url
from .server import SPAN_KEY, ServerTracing
from .spans import MeshSpan, MeshSpanContext


def _tracing_of_current_app() -> ServerTracing | None:
    if not has_app_context():
        return None
    inst = current_app.extensions.get("meshmetrics")
    return getattr(inst, "tracing", None)


def _headers_for(parent: MeshSpanContext | None, tracing: ServerTracing | None) -> dict[str, str]:
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
        return tracing.tracer.context_for(None).headers()
    return {}


def forward_headers(tracing: ServerTracing | None = None) -> dict[str, str]:
    """Headers to add to an outbound call made while handling the current request.

    ``x-request-id`` and the other headers Istio lists are copied from the inbound
    request; the B3 and W3C headers name this service's server span as the parent
    (when tracing is off, the inbound ones are copied verbatim).  Outside a request
    the headers start a new trace when tracing is on.
    """
    if tracing is None:
        tracing = _tracing_of_current_app()
    parent = None
    if has_request_context():
        span = request.environ.get(SPAN_KEY)
        parent = span.context if span is not None else None
    return _headers_for(parent, tracing)


class TracingSession(requests.Session):
    """A ``requests.Session`` that opens a client span and propagates the trace."""

    def __init__(self, tracing: ServerTracing | None) -> None:
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
        span = self._start_span(method_name.upper(), url_text)
        propagated = _headers_for(span.context if span is not None else None, self._tracing)
        merged = {k: v for k, v in propagated.items() if k not in TRACE_HEADERS}
        merged.update(headers or {})  # the caller's own headers win over forwarded ones
        merged.update({k: v for k, v in propagated.items() if k in TRACE_HEADERS})
        try:
            response = super().request(method, url, params, data, merged, **kwargs)
        except Exception as exc:
            if span is not None:
                span.set_tag(ext_tags.ERROR, True)
                span.log_kv(
                    {"event": "error", "error.kind": type(exc).__name__, "message": str(exc)[:1024]}
                )
                span.finish()
            raise
        if span is not None:
            span.set_tag(ext_tags.HTTP_STATUS_CODE, response.status_code)
            if response.status_code >= 500:
                span.set_tag(ext_tags.ERROR, True)
            span.finish()
        return response

    def _start_span(self, method: str, url: str) -> MeshSpan | None:
        if self._tracing is None:
            return None
        parent = None
        if has_request_context():
            parent = request.environ.get(SPAN_KEY)
        span = self._tracing.tracer.start_span(f"HTTP {method}", child_of=parent)
        if span.context.sampled:
            host = urlsplit(url).hostname or ""
            span.tags.update(
                {
                    ext_tags.COMPONENT: "requests",
                    ext_tags.SPAN_KIND: ext_tags.SPAN_KIND_RPC_CLIENT,
                    ext_tags.HTTP_METHOD: method,
                    ext_tags.HTTP_URL: redact_url(url, self._tracing.sensitive_query_params),
                    ext_tags.PEER_HOSTNAME: host,
                }
            )
        return span
