"""The deployment facts a service's objects need that the app itself does not know."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError
from ..formats import (
    DNS1123_LABEL_RULE,
    LABEL_KEY_RULE,
    LABEL_VALUE_RULE,
    is_dns1123_label,
    is_label_key,
    is_label_value,
)
from .autoscaling import Scaling
from .workload import Workload


@dataclass(frozen=True)
class ManifestOptions:
    """Deployment facts that the app itself does not know."""

    #: Namespace of the ServiceMonitor/PodMonitor and rules (default: the service's).
    monitor_namespace: str | None = None
    #: Namespace of the dashboard ConfigMap (default: the monitor namespace).
    dashboard_namespace: str | None = None
    dashboard_label: str = "grafana_dashboard"
    dashboard_label_value: str = "1"
    #: Alert when the 5xx ratio stays above this for 5 minutes.
    error_ratio: float = 0.05
    #: Alert when p95 latency (seconds) stays above this for 10 minutes.
    latency_p95: float = 0.5
    #: Service port number, and the container port it targets (default: the same).
    service_port: int = 80
    target_port: int | None = None
    #: Namespace of istiod (and of Istio's Jaeger add-on, Service ``tracing``).
    istio_namespace: str = "istio-system"
    #: The pods (image, resources, Istio's data-plane mode) and their autoscaler.
    workload: Workload = field(default_factory=Workload)
    scaling: Scaling = field(default_factory=Scaling)

    def __post_init__(self) -> None:
        """Every value checked here (``ConfigError`` naming the field), never in the cluster."""
        for name in ("monitor_namespace", "dashboard_namespace", "istio_namespace"):
            value = getattr(self, name)
            _check(
                name,
                value,
                (value is None and name != "istio_namespace") or is_dns1123_label(value),
                f"a namespace name, {DNS1123_LABEL_RULE}",
            )
        _check(
            "dashboard_label",
            self.dashboard_label,
            is_label_key(self.dashboard_label),
            LABEL_KEY_RULE,
        )
        _check(
            "dashboard_label_value",
            self.dashboard_label_value,
            is_label_value(self.dashboard_label_value, empty=True),
            f"{LABEL_VALUE_RULE} (or empty)",
        )
        _check(
            "error_ratio",
            self.error_ratio,
            _is_number(self.error_ratio) and 0 < self.error_ratio < 1,
            "a ratio strictly between 0 and 1 (0.05 alerts above 5 % of requests failing)",
        )
        _check(
            "latency_p95",
            self.latency_p95,
            _is_number(self.latency_p95) and 0 < self.latency_p95 < float("inf"),
            "a finite number of seconds above 0",
        )
        for name in ("service_port", "target_port"):
            port = getattr(self, name)
            _check(
                name,
                port,
                (port is None and name == "target_port")
                or (isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535),
                "a port number from 1 to 65535",
            )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _check(option: str, value: object, ok: bool, rule: str) -> None:
    if not ok:
        raise ConfigError(option, value, "argument", rule)
