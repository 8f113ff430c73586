"""Bounded RED metric families, fed by the request-path core (:mod:`.middleware`).

Metric names and labels follow prometheus-flask-exporter, so existing dashboards
keep working, but the ``path`` label is always the route template
(``/api/v1/user/<user_id>``): requests that match no route share :data:`UNMATCHED`,
non-standard methods share :data:`OTHER_METHOD`.  The number of series is therefore
bounded by routes x methods x status codes.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ._compat import family_name
from .cells import Series, Value, adopt_value
from .config import MeshConfig

#: ``path`` label of requests that matched no route (404, bots).
UNMATCHED = "<unmatched>"
#: ``method`` label of requests with a method outside :data:`STANDARD_METHODS`.
OTHER_METHOD = "other"
#: ``status`` label of a response whose client went away before it was complete
#: (nginx's convention; Envoy reports such requests with response code 0).
CLIENT_CLOSED = 499
STANDARD_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


def method_label(method: str) -> str:
    """The bounded ``method`` label."""
    return method if method in STANDARD_METHODS else OTHER_METHOD


class RequestMetrics:
    """The request metric families of one instrumentation."""

    def __init__(self, config: MeshConfig, registry: CollectorRegistry) -> None:
        p = config.metric_prefix
        labels = ("method", "path", "status")
        self.duration = Histogram(
            f"{p}http_request_duration_seconds",
            "Flask HTTP request duration in seconds, from the WSGI call to the last byte, "
            "by route template",
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
            "HTTP requests that raised an exception, by route, status sent and exception class",
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
        #: the routes a request started on, by ``(method, path)``
        self.routes: dict[tuple[str, str], Route] = {}
        #: the latency histogram's and request counter's values by
        #: ``(method, path, status)``
        self.series: dict[tuple[str, str, int], Series] = {}
        self._lock = threading.Lock()

    @property
    def family_names(self) -> tuple[str, ...]:
        """Names of the families this object registered."""
        families = (self.duration, self.requests, self.exceptions, self.in_progress, self.info)
        return tuple(family_name(family) for family in families)

    # -- label resolution (cached: the hot path does dict lookups only) -------------

    def route(self, method: str, path: str) -> Route:
        """The series of a route a request starts on (its in-progress gauge created once)."""
        route = self.routes.get((method, path))
        if route is None:
            with self._lock:
                route = self.routes.get((method, path))
                if route is None:
                    gauge = adopt_value(self.in_progress.labels(method, path))
                    route = self.routes[(method, path)] = Route(self, method, path, gauge)
        return route

    def new_series(self, key: tuple[str, str, int]) -> Series:
        """The values of a ``(method, path, status)`` (its children created once)."""
        method, path, status = key
        code = str(status)
        with self._lock:
            series = self.series.get(key)
            if series is None:
                series = self.series[key] = Series(
                    self.duration.labels(method, path, code),
                    self.requests.labels(method, path, code),
                )
        return series

    def record(
        self,
        gauge: Value | None,
        method: str,
        path: str,
        status: int,
        seconds: float | None,
        exemplar: dict[str, str] | None,
        exception: str | None,
    ) -> None:
        """Count one finished request (and its exception, if it raised one), and end its
        in-progress ``gauge`` if given; ``seconds`` is ``None`` for a request whose time
        is no latency (an upgraded connection)."""
        if seconds is None:  # no histogram series of its own either
            if gauge is not None:
                gauge.inc(-1.0)
            self.requests.labels(method, path, str(status)).inc()
        elif exemplar is None:
            key = (method, path, status)
            (self.series.get(key) or self.new_series(key)).observe(seconds, gauge)
        else:
            if gauge is not None:
                gauge.inc(-1.0)
            key = (method, path, status)
            series = self.series.get(key) or self.new_series(key)
            series.histogram.observe(seconds, exemplar)
            series.counter.inc()
        if exception is not None:
            self.exceptions.labels(method, path, str(status), exception).inc()


class Route:
    """The series of one ``(method, path)`` requests start on: its in-progress gauge's
    value and, by status, its latency histogram's and request counter's values."""

    __slots__ = ("gauge", "method", "metrics", "path", "statuses")

    def __init__(self, metrics: RequestMetrics, method: str, path: str, gauge: Value) -> None:
        self.metrics, self.method, self.path, self.gauge = metrics, method, path, gauge
        self.statuses: dict[int, Series] = {}

    def series(self, status: int) -> Series:
        """The values of this route's ``status`` (its children created once)."""
        series = self.statuses.get(status)
        if series is None:
            key = (self.method, self.path, status)
            series = self.metrics.series.get(key) or self.metrics.new_series(key)
            self.statuses[status] = series
        return series
