"""PromQL for one service, shared by the dashboard and the alert rules.

Queries select the service the way prometheus-operator labels its targets: a
ServiceMonitor's targets carry ``job`` = the Service name (a PodMonitor's:
``<namespace>/<podmonitor name>``), ``namespace``, ``service``, ``pod`` and
``endpoint`` = the port name.  Metric names come from the configured prefix,
so a renamed prefix cannot leave a dashboard querying series that do not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Grafana's range variable; tests substitute a fixed range for it.
RATE_INTERVAL = "$__rate_interval"
#: The window of the recorded rates (the alerts' window too).
RECORD_WINDOW = "5m"


@dataclass(frozen=True)
class RecordingRule:
    """A series Prometheus computes at each evaluation: ``record`` is ``expr``."""

    record: str
    expr: str


@dataclass(frozen=True)
class Queries:
    """Builds the PromQL expressions for one service's request metrics."""

    job: str
    namespace: str
    prefix: str  # metric-name prefix with its trailing "_", or ""
    window: str = RATE_INTERVAL
    #: Read the request metrics from the recording rules (pre-aggregated over pods, per
    #: route and status class) instead of the raw per-pod series.
    recorded: bool = False

    def selector(self, *matchers: str) -> str:
        """``{job="...",namespace="..."[,extra matchers]}``."""
        base = [f'job="{escape(self.job)}"', f'namespace="{escape(self.namespace)}"']
        return "{" + ",".join([*base, *matchers]) + "}"

    def metric(self, suffix: str) -> str:
        return f"{self.prefix}{suffix}"

    def rate(self, name: str, *matchers: str, by: str = "") -> str:
        grouping = f" by ({by})" if by else ""
        return f"sum{grouping} (rate({name}{self.selector(*matchers)}[{self.window}]))"

    # -- recorded series (Prometheus' level:metric:operations convention) ---------

    def recorded_name(self, kind: str) -> str:
        """The recorded series of ``kind``: requests, latency, exceptions, in_progress."""
        window = RECORD_WINDOW
        return {
            "requests": f"namespace_job_path_code:{self.metric('http_request')}:rate{window}",
            "latency": (
                f"namespace_job_path_le:{self.metric('http_request_duration_seconds_bucket')}"
                f":rate{window}"
            ),
            "exceptions": (
                f"namespace_job_path_exception:{self.metric('http_request_exceptions')}"
                f":rate{window}"
            ),
            "in_progress": f"namespace_job_path:{self.metric('http_requests_in_progress')}:sum",
        }[kind]

    def recording_rules(self) -> list[RecordingRule]:
        """What the dashboard and alerts read: request metrics summed over pods, per route
        and status class (``code``: ``2xx``…``5xx``), over :data:`RECORD_WINDOW`."""
        raw = Queries(self.job, self.namespace, self.prefix, RECORD_WINDOW)
        keep = "namespace, job, path"
        requests = (
            f"sum by ({keep}, code) (label_replace(rate({self.metric('http_request_total')}"
            f'{raw.selector()}[{RECORD_WINDOW}]), "code", "${{1}}xx", "status", "([0-9]).*"))'
        )
        return [
            RecordingRule(self.recorded_name("requests"), requests),
            RecordingRule(
                self.recorded_name("latency"),
                raw.rate(self.metric("http_request_duration_seconds_bucket"), by=f"{keep}, le"),
            ),
            RecordingRule(
                self.recorded_name("exceptions"),
                raw.rate(self.metric("http_request_exceptions_total"), by=f"{keep}, exception"),
            ),
            RecordingRule(
                self.recorded_name("in_progress"),
                f"sum by ({keep}) ({self.metric('http_requests_in_progress')}{raw.selector()})",
            ),
        ]

    def _sum(self, kind: str, *matchers: str, by: str = "") -> str:
        grouping = f" by ({by})" if by else ""
        return f"sum{grouping} ({self.recorded_name(kind)}{self.selector(*matchers)})"

    # -- RED ----------------------------------------------------------------------

    def request_rate(self, by: str = "path") -> str:
        if self.recorded:
            return self._sum("requests", by=by)
        return self.rate(self.metric("http_request_total"), by=by)

    def error_ratio(self, by: str = "path") -> str:
        """5xx share of requests; 0 (not empty) when there were no errors."""
        if self.recorded:
            total = self._sum("requests", by=by)
            errors = self._sum("requests", 'code="5xx"', by=by)
        else:
            total = self.rate(self.metric("http_request_total"), by=by)
            errors = self.rate(self.metric("http_request_total"), 'status=~"5.."', by=by)
        return f"({errors} or {total} * 0) / {total}"

    def latency_quantile(self, quantile: float, by: str = "path") -> str:
        grouping = ", ".join(filter(None, ["le", by]))
        if self.recorded:
            return f"histogram_quantile({quantile}, {self._sum('latency', by=grouping)})"
        return self.histogram_quantile(
            quantile, self.metric("http_request_duration_seconds"), grouping
        )

    def histogram_quantile(self, quantile: float, name: str, by: str = "le") -> str:
        return f"histogram_quantile({quantile}, {self.rate(f'{name}_bucket', by=by)})"

    def in_progress(self, by: str = "path") -> str:
        if self.recorded:
            return self._sum("in_progress", by=by)
        return f"sum by ({by}) ({self.metric('http_requests_in_progress')}{self.selector()})"

    def exceptions(self) -> str:
        if self.recorded:
            return self._sum("exceptions", by="path, exception")
        return self.rate(self.metric("http_request_exceptions_total"), by="path, exception")

    def up(self) -> str:
        return f"up{self.selector()}"

    # -- process (single-process serving only) ------------------------------------

    def cpu(self) -> str:
        return self.rate("process_cpu_seconds_total", by="pod")

    def memory(self) -> str:
        return f"sum by (pod) (process_resident_memory_bytes{self.selector()})"

    def open_fds(self) -> str:
        return f"sum by (pod) (process_open_fds{self.selector()})"

    # -- Istio (Envoy sidecar metrics, reported by the destination) ---------------

    def istio_request_rate(self, service: str) -> str:
        return (
            "sum by (response_code) (rate(istio_requests_total"
            f"{self._istio_selector(service)}[{self.window}]))"
        )

    def istio_latency_quantile(self, quantile: float, service: str) -> str:
        return (
            f"histogram_quantile({quantile}, sum by (le) (rate("
            f"istio_request_duration_milliseconds_bucket{self._istio_selector(service)}"
            f"[{self.window}])))"
        )

    def _istio_selector(self, service: str) -> str:
        return (
            f'{{reporter="destination",destination_service_name="{escape(service)}",'
            f'destination_service_namespace="{escape(self.namespace)}"}}'
        )


_SHORT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(value: str) -> str:
    """``value`` as the inside of a double-quoted PromQL string (Go's escapes, which the
    PromQL lexer and Prometheus' template strings read): ``\\`` and ``"`` escaped, every
    character that is not printable (line breaks, controls, invisible format characters)
    as ``\\n``, ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``; the rest as is (UTF-8).
    Every label value meshmetrics writes into PromQL goes through here."""
    return "".join(_escape_char(char) for char in value)


def _escape_char(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def number(value: float) -> str:
    """A float as a PromQL number: 12 significant digits (``0.0144``, not float noise),
    but never rounded across 1, the bound of an error ratio."""
    text = f"{value:.12g}"
    if (float(text) >= 1) != (value >= 1):
        text = repr(float(value))
    return text
