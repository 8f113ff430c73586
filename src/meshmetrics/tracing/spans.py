"""The tracer: OpenTracing spans that are cheap when not sampled and correct under concurrency.

``MeshTracer`` implements the OpenTracing API (so ``tracer.start_active_span``
and friends work as with jaeger-client) with a :class:`~.sampling.Sampler` that
follows the caller's decision (Envoy's) and a span processor that exports off the
request path.  Nothing here knows Flask: the Flask face is :mod:`.server`.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import opentracing

from ..config.sampling import ConstSampler, Sampler
from .propagation import (
    TraceContext,
    b3_headers,
    extract,
    new_span_id,
    new_trace_id,
    traceparent,
)


class SpanProcessor(Protocol):
    """Receives every finished, sampled span (:mod:`.processor` has the implementations)."""

    def on_end(self, span: MeshSpan) -> None: ...

    def flush(self, timeout: float = 5.0) -> bool: ...

    def shutdown(self, timeout: float = 5.0) -> None: ...


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

    With nothing activated, ``fallback()`` names the active span: the Flask face passes
    the current request's server span, which is kept in the request's environ rather
    than activated (that keeps unsampled requests cheap).
    """

    def __init__(self, fallback: Callable[[], MeshSpan | None] = lambda: None) -> None:
        super().__init__()
        self._fallback = fallback

    def activate(self, span: MeshSpan, finish_on_close: bool) -> _Scope:
        return _Scope(self, span, finish_on_close)

    @property
    def active(self) -> opentracing.Scope | None:
        scope = _ACTIVE.get()
        if scope is not None:
            return scope
        span = self._fallback()
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
        sampled, debug = self.sampled, self.debug and self.sampled
        headers = b3_headers(self.trace_id, self.span_id, self.parent_id, sampled, debug)
        headers["traceparent"] = traceparent(self.trace_id, self.span_id, sampled)
        return headers


class MeshSpan(opentracing.Span):  # type: ignore[misc]
    """A span; when not sampled, tags and logs are not even stored."""

    #: Whether this is a :class:`DeferredSpan` (unsampled, its ids not read yet).
    deferred = False
    #: The estimated size of the tags when the code that set them (the server span's)
    #: kept them within the limits itself; -1 once anything else changed the span.
    checked_size = -1

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
        #: Estimated encoded size in bytes, set when a sampled span finishes.
        self.size = 0

    @property
    def trace_id_hex(self) -> str:
        return f"{self.context.trace_id:032x}"

    def set_operation_name(self, operation_name: str) -> MeshSpan:
        self.operation_name = operation_name
        self.checked_size = -1
        return self

    def set_tag(self, key: str, value: Any) -> MeshSpan:
        if self.context.sampled:
            self.tags[key] = value
            self.checked_size = -1
        return self

    def log_kv(self, key_values: Mapping[str, Any], timestamp: float | None = None) -> MeshSpan:
        if self.context.sampled:
            self.logs.append((time.time() if timestamp is None else timestamp, dict(key_values)))
            self.checked_size = -1
        return self

    def finish(self, finish_time: float | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        self.duration = max(
            0.0, (time.time() if finish_time is None else finish_time) - self.start_time
        )
        if self.context.sampled:
            checked = self.checked_size
            if checked >= 0 and not self.logs:  # its tags and name are within the limits
                self.size = checked + len(self.operation_name) + _SPAN_OVERHEAD
            else:
                self.size = _enforce_limits(self)
            self.tracer.report(self)


class DeferredSpan(MeshSpan):
    """An unsampled server span whose context (the inbound ids, a new span id) is read
    from the request only when something asks for it: propagation, a child span.

    A request whose trace is not recorded then costs no header parsing at all."""

    deferred = True
    operation_name = "unmatched"
    start_time = 0.0
    duration = 0.0
    finished = False
    size = 0

    def __init__(self, tracer: MeshTracer, environ: Mapping[str, object]) -> None:
        self._tracer = tracer
        self._context = None  # type: ignore[assignment]  # read by the context property
        self._environ = environ
        self.tags: dict[str, Any] = {}
        self.logs: list[tuple[float, dict[str, Any]]] = []

    @property
    def context(self) -> MeshSpanContext:
        context = self._context
        if context is None:
            context = self._context = self._tracer.context_for(extract(self._environ))
        return context

    def set_tag(self, key: str, value: Any) -> MeshSpan:
        return self

    def log_kv(self, key_values: Mapping[str, Any], timestamp: float | None = None) -> MeshSpan:
        return self

    def finish(self, finish_time: float | None = None) -> None:
        self.finished = True


#: Per-span limits applied when a sampled span finishes, before it is queued (as
#: OpenTelemetry's ``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT``/``EVENT_COUNT_LIMIT`` defaults, and a
#: value length limit it leaves to the SDK user): a span's size is bounded whatever a
#: client sends.
MAX_ATTRIBUTES = 128
MAX_EVENTS = 128
MAX_ATTRIBUTE_LENGTH = 4096
_SPAN_OVERHEAD = 128  # ids, times, name framing


def _limited(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else str(value)
    return text[:MAX_ATTRIBUTE_LENGTH]


def _fields_size(fields: dict[str, Any]) -> int | None:
    """The fields' estimated size, or ``None`` when one of them breaks a limit."""
    if len(fields) > MAX_ATTRIBUTES:
        return None
    size = 0
    for key, value in fields.items():
        if type(key) is not str or len(key) > MAX_ATTRIBUTE_LENGTH:
            return None
        kind = type(value)
        if kind is str:
            length = len(value)
            if length > MAX_ATTRIBUTE_LENGTH:
                return None
            size += length + len(key) + 4
        elif kind is int or kind is float or kind is bool:
            size += len(key) + 12
        else:
            return None  # converted to a capped string by _limited_fields
    return size


def _limited_fields(fields: dict[str, Any]) -> tuple[dict[str, Any], int]:
    size = _fields_size(fields)
    if size is not None:  # the common case: nothing to cut, nothing copied
        return fields, size
    out: dict[str, Any] = {}
    for key, value in list(fields.items())[:MAX_ATTRIBUTES]:
        out[str(key)[:MAX_ATTRIBUTE_LENGTH]] = _limited(value)
    size = _fields_size(out)
    assert size is not None
    return out, size


def _enforce_limits(span: MeshSpan) -> int:
    """Cap the span's attributes and events in place; its estimated encoded size."""
    name = span.operation_name
    if type(name) is not str or len(name) > MAX_ATTRIBUTE_LENGTH:
        span.operation_name = str(name)[:MAX_ATTRIBUTE_LENGTH]
    span.tags, size = _limited_fields(span.tags)
    if span.logs:
        logs = []
        for ts, fields in span.logs[:MAX_EVENTS]:
            limited, field_size = _limited_fields(fields)
            logs.append((ts, limited))
            size += field_size + 16
        span.logs = logs
    return size + len(span.operation_name) + _SPAN_OVERHEAD


class MeshTracer(opentracing.Tracer):  # type: ignore[misc]
    """An OpenTracing tracer with B3/W3C propagation and a pluggable span processor."""

    def __init__(
        self,
        sampler: Sampler,
        processor: SpanProcessor | None,
        scope_manager: ScopeManager | None = None,
    ) -> None:
        super().__init__(scope_manager=scope_manager or ScopeManager())
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
        sampler = self.sampler
        decide = sampler.decide
        if parent is not None and parent.trace_id is not None:
            if parent.sampled is not None and sampler.__class__ is ConstSampler:
                sampled = parent.sampled and sampler.decision  # its decide(), without 2 calls
            else:
                sampled = decide(parent.trace_id, parent.sampled)
            debug = parent.debug and sampled
            return MeshSpanContext(parent.trace_id, span_id, parent.span_id, sampled, debug)
        trace_id = new_trace_id()
        if parent is not None and parent.sampled is not None:  # a decision without ids
            sampled = decide(trace_id, parent.sampled)
            return MeshSpanContext(trace_id, span_id, None, sampled, parent.debug and sampled)
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
        sampled = self.sampler.decide(found.trace_id, found.sampled)
        debug = found.debug and sampled
        return MeshSpanContext(found.trace_id, found.span_id, found.parent_id, sampled, debug)

    def report(self, span: MeshSpan) -> None:
        if self.processor is not None:
            self.processor.on_end(span)

    def close(self) -> None:
        """Flush queued spans (also done at interpreter exit)."""
        if self.processor is not None:
            self.processor.flush()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush, then stop the processor's thread and close its exporter."""
        if self.processor is not None:
            self.processor.shutdown(timeout)
