"""Bounded RED metrics recorded by Flask request hooks.

Metric names and labels follow prometheus-flask-exporter, so existing
dashboards keep working, but the ``path`` label is always the route template
(``/api/v1/user/<user_id>``): requests that match no route share
:data:`UNMATCHED`, non-standard methods share :data:`OTHER_METHOD`.  The number
of series is therefore bounded by routes x methods x status codes.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

from flask import Response, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

from .config import MeshConfig

#: ``path`` label of requests that matched no route (404, 405, bots).
UNMATCHED = "<unmatched>"
#: ``method`` label of requests with a method outside :data:`STANDARD_METHODS`.
OTHER_METHOD = "other"
STANDARD_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
_STATE_KEY = "meshmetrics.request"

#: Gives the exemplar labels (a trace id) of a finished request from its WSGI environ.
ExemplarSource = Callable[[dict[str, Any]], dict[str, str] | None]


try:  # Flask >= 2.2 keeps the request context in a context variable
    from flask.globals import _cv_request

    def current_request() -> Any:
        """The real request object (one context-variable read, not a proxy per attribute)."""
        return _cv_request.get().request

except ImportError:  # pragma: no cover - a Flask that moved it

    def current_request() -> Any:
        """The real request object behind Flask's proxy."""
        return request._get_current_object()  # type: ignore[attr-defined]


class RequestMetrics:
    """The request metric families of one instrumentation and the hooks feeding them."""

    def __init__(
        self, config: MeshConfig, registry: CollectorRegistry, *, multiprocess: bool
    ) -> None:
        p = config.metric_prefix
        labels = ("method", "path", "status")
        self.duration = Histogram(
            f"{p}http_request_duration_seconds",
            "Flask HTTP request duration in seconds, by route template",
            labels,
            buckets=config.buckets,
            registry=registry,
        )
        self.requests = Counter(
            f"{p}http_request_total",
            "Total number of HTTP requests, by route template",
            labels,
            registry=registry,
        )
        self.exceptions = Counter(
            f"{p}http_request_exceptions_total",
            "HTTP requests that raised an unhandled exception, by route and exception class",
            (*labels, "exception"),
            registry=registry,
        )
        self.in_progress = Gauge(
            f"{p}http_requests_in_progress",
            "HTTP requests being served, by route template",
            ("method", "path"),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.info = Gauge(
            f"{p}service_info",
            "Service identity: always 1",
            ("service", "namespace", "version"),
            registry=registry,
            multiprocess_mode="max",
        )
        self.info.labels(config.service, config.namespace, config.version).set(1)
        if not multiprocess:
            # prometheus_client cannot aggregate process metrics across workers.
            ProcessCollector(registry=registry)
        self._gauges: dict[tuple[str, str], Any] = {}
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.exemplar: ExemplarSource | None = None

    @property
    def family_names(self) -> tuple[str, ...]:
        """Names of the families this object registered."""
        families = (self.duration, self.requests, self.exceptions, self.in_progress, self.info)
        return tuple(family._name for family in families)

    # -- label resolution (cached: the hot path does dict lookups only) -------------

    def _in_progress_child(self, method: str, path: str) -> Any:
        key = (method, path)
        child = self._gauges.get(key)
        if child is None:
            child = self._gauges[key] = self.in_progress.labels(method, path)
        return child

    def _request_children(self, method: str, path: str, status: int) -> tuple[Any, Any]:
        key = (method, path, status)
        pair = self._children.get(key)
        if pair is None:
            code = str(status)
            pair = self._children[key] = (
                self.duration.labels(method, path, code),
                self.requests.labels(method, path, code),
            )
        return pair

    @staticmethod
    def labels_of(req: Any) -> tuple[str, str]:
        """The bounded ``(method, path)`` labels of a request."""
        rule = req.url_rule
        method = req.method
        return (
            method if method in STANDARD_METHODS else OTHER_METHOD,
            rule.rule if rule is not None else UNMATCHED,
        )

    # -- request hooks (called by Instrumentation's hooks with the request object) -----

    def on_start(self, req: Any) -> None:
        """Start timing a request (from the first ``before_request`` hook)."""
        method, path = self.labels_of(req)
        gauge = self._in_progress_child(method, path)
        gauge.inc()
        req.environ[_STATE_KEY] = (perf_counter(), method, path, gauge)

    def on_response(self, req: Any, response: Response) -> None:
        """Record duration and count with the final status (``after_request``)."""
        state = req.environ.pop(_STATE_KEY, None)
        if state is not None:
            self._finish(req, state, response.status_code)

    def on_teardown(self, req: Any, exc: BaseException | None) -> None:
        """Count an unhandled exception; finish a request whose response never came."""
        if exc is None:
            return
        state = req.environ.pop(_STATE_KEY, None)
        if state is not None:  # the exception propagated (debug/testing): no response
            self._finish(req, state, 500)
        method, path = self.labels_of(req)
        self.exceptions.labels(method, path, "500", type(exc).__name__).inc()

    def _finish(self, req: Any, state: tuple[float, str, str, Any], status: int) -> None:
        started, method, path, gauge = state
        gauge.dec()
        attrs = req.__dict__
        if "prom_do_not_track" in attrs or "prom_exclude_all" in attrs:
            return  # prometheus-flask-exporter's @do_not_track / @exclude_all_metrics
        histogram, counter = self._request_children(method, path, status)
        exemplar = self.exemplar(req.environ) if self.exemplar is not None else None
        histogram.observe(perf_counter() - started, exemplar)
        counter.inc()
