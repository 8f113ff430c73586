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
        #: the in-progress gauge's values by ``(method, path)``
        self.gauges: dict[tuple[str, str], Value] = {}
        self._series: dict[tuple[str, str, int], Series] = {}
        self._lock = threading.Lock()

    @property
    def family_names(self) -> tuple[str, ...]:
        """Names of the families this object registered."""
        families = (self.duration, self.requests, self.exceptions, self.in_progress, self.info)
        return tuple(family_name(family) for family in families)

    # -- label resolution (cached: the hot path does dict lookups only) -------------

    def in_progress_child(self, method: str, path: str) -> Value:
        """The in-progress gauge value of a route (its child created once)."""
        cell = self.gauges.get((method, path))
        if cell is None:
            with self._lock:
                cell = self.gauges.get((method, path))
                if cell is None:
                    child = self.in_progress.labels(method, path)
                    cell = self.gauges[(method, path)] = adopt_value(child)
        return cell

    def _new_series(self, key: tuple[str, str, int]) -> Series:
        method, path, status = key
        code = str(status)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = Series(
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
            (self._series.get(key) or self._new_series(key)).observe(seconds, gauge)
        else:
            if gauge is not None:
                gauge.inc(-1.0)
            key = (method, path, status)
            series = self._series.get(key) or self._new_series(key)
            series.histogram.observe(seconds, exemplar)
            series.counter.inc()
        if exception is not None:
            self.exceptions.labels(method, path, str(status), exception).inc()
