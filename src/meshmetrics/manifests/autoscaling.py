"""Autoscaling on the app's own metrics: an HPA fed by prometheus-adapter, or KEDA.

- ``--autoscale rps:N``: requests per second per pod (the request counter's rate);
  ``--autoscale inflight:N``: requests being served per pod (the in-progress gauge,
  averaged over the rate window so one scrape's spike does not scale);
- the HPA (``autoscaling/v2``) reads a ``Pods`` metric with an ``AverageValue`` target
  (the only target a Pods metric has) and scales down only after a stabilization window;
- prometheus-adapter serves that metric from rules given as the prometheus-community
  chart's values: ``rules.custom`` with every query restricted by ``<<.LabelMatchers>>``
  and grouped by ``<<.GroupBy>>`` (the adapter asks for a set of pods of one namespace and
  expects one value per pod), ``rules.default: false`` (the chart's catch-all rules would
  expose every series of the cluster, this one's counter under another name among them);
- KEDA instead: a ScaledObject whose ``prometheus`` trigger asks the same Prometheus for
  the service's total, which KEDA divides by the replicas (``AverageValue``).  Never to
  zero: a pod that does not exist reports no requests, so nothing would wake it up.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from ..config import ConfigError, MeshConfig
from ..formats import is_dns1123_subdomain
from .model import ServiceModel
from .workload import MANAGED_BY

AUTOSCALE_METRICS = ("rps", "inflight")
AUTOSCALERS = ("hpa", "keda")
#: Kubernetes' own bounds on a stabilization window (HPAScalingRules).
MAX_WINDOW = 3600
#: The kube-prometheus-stack chart's Prometheus Service port.
PROMETHEUS_PORT = 9090
_PROMETHEUS_URL = re.compile(r"(https?://[A-Za-z0-9.-]+)(?::([0-9]{1,5}))?/?")
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


@dataclass(frozen=True)
class Autoscale:
    """What to scale on, and the value per pod to keep."""

    metric: Literal["rps", "inflight"]
    target: float

    @classmethod
    def parse(cls, text: str) -> Autoscale:
        """``rps:N`` or ``inflight:N`` (N > 0, at most 3 decimals: a milli-quantity)."""
        rule = (
            "rps:N (requests per second per pod) or inflight:N (requests in progress per "
            "pod), N a number above 0 with at most 3 decimals, e.g. rps:10 or inflight:2.5"
        )
        metric, sep, number = str(text).partition(":")
        try:
            exact = Decimal(number.strip())
        except InvalidOperation:
            raise ConfigError("autoscale", text, "argument", rule) from None
        if (
            not sep
            or metric not in AUTOSCALE_METRICS
            or not exact.is_finite()
            or not 0 < exact <= 10**9
            or exact * 1000 != (exact * 1000).to_integral_value()  # a milli-quantity
        ):
            raise ConfigError("autoscale", text, "argument", rule)
        return cls(metric, float(exact))  # type: ignore[arg-type]

    @property
    def spec(self) -> str:
        return f"{self.metric}:{decimal(self.target)}"


@dataclass(frozen=True)
class Scaling:
    """The autoscaler's options; ``autoscale=None``: no autoscaling."""

    autoscale: Autoscale | None = None
    min_replicas: int = 1
    max_replicas: int = 5
    autoscaler: str = "hpa"
    #: Seconds the HPA waits at a lower recommendation before scaling down.
    scale_down_window: int = 300
    #: Prometheus as the adapter and KEDA reach it (default: the release's Service).
    prometheus_url: str | None = None
    #: Namespace of kube-prometheus-stack (the course installs it in istio-system).
    prometheus_namespace: str = "istio-system"

    def __post_init__(self) -> None:
        for name, low in (("min_replicas", 1), ("max_replicas", 1)):
            value = getattr(self, name)
            if not _is_int(value) or not low <= value <= 10000:
                reason = (
                    " (a pod that does not exist reports no requests: scaling to zero on the "
                    "app's own metric could never wake it up)"
                    if name == "min_replicas" and value == 0
                    else ""
                )
                rule = f"a whole number from 1{reason} to 10000"
                raise ConfigError(name, value, "argument", rule)
        if self.max_replicas < self.min_replicas:
            raise ConfigError(
                "min_replicas",
                self.min_replicas,
                "argument",
                f"at most max_replicas ({self.max_replicas})",
            )
        if self.autoscaler not in AUTOSCALERS:
            raise ConfigError(
                "autoscaler", self.autoscaler, "argument", f"one of {', '.join(AUTOSCALERS)}"
            )
        if not _is_int(self.scale_down_window) or not 0 <= self.scale_down_window <= MAX_WINDOW:
            raise ConfigError(
                "scale_down_window",
                self.scale_down_window,
                "argument",
                f"a whole number of seconds from 0 to {MAX_WINDOW} (Kubernetes' bound)",
            )
        url = self.prometheus_url
        match = None if url is None else re.fullmatch(_PROMETHEUS_URL, url)
        if url is not None and (
            match is None
            or not _is_host(match.group(1).split("://", 1)[1])
            or not 1 <= int(match.group(2) or 80) <= 65535
        ):
            raise ConfigError(
                "prometheus_url",
                url,
                "argument",
                "an http(s) URL of Prometheus without a path, e.g. "
                "http://prometheus-operated.monitoring.svc:9090",
            )


def _is_host(host: str) -> bool:
    """A DNS name (or an IPv4 address, which is one too): dot-separated labels of at most
    63 characters, none empty nor starting or ending with '-'."""
    host = host.lower()
    return is_dns1123_subdomain(host) and all(len(label) <= 63 for label in host.split("."))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def duration_seconds(text: str) -> float:
    """A Prometheus duration (``1m30s``) in seconds."""
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def rate_window(config: MeshConfig) -> str:
    """Four scrape intervals (at least one minute): a rate always has samples to use."""
    seconds = max(60, math.ceil(4 * duration_seconds(config.scrape_interval)))
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def prometheus_fullname(release: str) -> str:
    """kube-prometheus-stack's ``fullname`` helper: the release name, followed by the
    chart's name unless it contains it, cut to 26 characters."""
    chart = "kube-prometheus-stack"
    name = release if chart in release else f"{release}-{chart}"
    return name[:26].rstrip("-")


def prometheus_address(config: MeshConfig, scaling: Scaling) -> tuple[str, int]:
    """``(url without port, port)`` of the release's Prometheus Service."""
    if scaling.prometheus_url:
        match = _PROMETHEUS_URL.fullmatch(scaling.prometheus_url)
        assert match is not None  # checked in Scaling
        base = match.group(1)
        default = 443 if base.startswith("https:") else 80  # the URL's own port, as a client
        return base, int(match.group(2) or default)
    host = f"{prometheus_fullname(config.release)}-prometheus.{scaling.prometheus_namespace}.svc"
    return f"http://{host}", PROMETHEUS_PORT


# -- the metrics: names the adapter serves them under, and their queries -----------------


def adapter_metric(config: MeshConfig, metric: str) -> str:
    """The custom-metrics API name; neither is a name the chart's default rules derive."""
    p = config.metric_prefix
    return f"{p}http_requests_per_second" if metric == "rps" else f"{p}http_requests_inflight"


def _resources() -> dict[str, Any]:
    """The labels prometheus-operator gives every target, as the resources they name."""
    labels = ("namespace", "pod", "service")
    return {"overrides": {label: {"resource": label} for label in labels}}


def adapter_rules(config: MeshConfig) -> list[dict[str, Any]]:
    """One rule per metric, each discovering one series name: mutually exclusive."""
    p = config.metric_prefix
    window = rate_window(config)
    counter, gauge = f"{p}http_request_total", f"{p}http_requests_in_progress"
    return [
        {
            "seriesQuery": f'{counter}{{namespace!="",pod!=""}}',
            "resources": _resources(),
            "name": {"matches": f"^{counter}$", "as": adapter_metric(config, "rps")},
            "metricsQuery": f"sum(rate(<<.Series>>{{<<.LabelMatchers>>}}[{window}])) "
            "by (<<.GroupBy>>)",
        },
        {
            "seriesQuery": f'{gauge}{{namespace!="",pod!=""}}',
            "resources": _resources(),
            "name": {"matches": f"^{gauge}$", "as": adapter_metric(config, "inflight")},
            "metricsQuery": f"sum(avg_over_time(<<.Series>>{{<<.LabelMatchers>>}}[{window}])) "
            "by (<<.GroupBy>>)",
        },
    ]


def adapter_values(model: ServiceModel, scaling: Scaling) -> dict[str, Any]:
    """Helm values for ``prometheus-community/prometheus-adapter``."""
    url, port = prometheus_address(model.config, scaling)
    return {
        "prometheus": {"url": url, "port": port},
        "rules": {"default": False, "custom": adapter_rules(model.config)},
    }


def service_query(config: MeshConfig, metric: str) -> str:
    """The service's total across its pods (KEDA divides it by the replicas)."""
    p = config.metric_prefix
    where = f'namespace="{config.namespace}",service="{config.service}"'
    window = rate_window(config)
    if metric == "rps":
        return f"sum(rate({p}http_request_total{{{where}}}[{window}]))"
    return f"sum(avg_over_time({p}http_requests_in_progress{{{where}}}[{window}]))"


def decimal(value: float) -> str:
    """A target as a plain decimal with up to 3 places (``2.5``, ``123456.789``)."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def quantity(value: float) -> str:
    """A Kubernetes quantity: ``10``, or milli-units (``2500m``) for fractions."""
    milli = round(value * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def behavior(scaling: Scaling) -> dict[str, Any]:
    """Kubernetes' default policies, with the scale-down window made explicit."""
    return {
        "scaleDown": {
            "stabilizationWindowSeconds": scaling.scale_down_window,
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
        },
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 15},
                {"type": "Pods", "value": 4, "periodSeconds": 15},
            ],
            "selectPolicy": "Max",
        },
    }


def _require(scaling: Scaling) -> Autoscale:
    if scaling.autoscale is None:
        raise ValueError(
            "--kind autoscaler needs --autoscale rps:N or inflight:N (the value per pod to keep)"
        )
    return scaling.autoscale


def _metadata(config: MeshConfig) -> dict[str, Any]:
    return {
        "name": config.service,
        "namespace": config.namespace,
        "labels": {"app": config.service, **MANAGED_BY},
    }


def horizontal_pod_autoscaler(model: ServiceModel, scaling: Scaling) -> dict[str, Any]:
    c = model.config
    scale = _require(scaling)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(c),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": c.service},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": adapter_metric(c, scale.metric)},
                        "target": {"type": "AverageValue", "averageValue": quantity(scale.target)},
                    },
                }
            ],
            "behavior": behavior(scaling),
        },
    }


def scaled_object(model: ServiceModel, scaling: Scaling) -> dict[str, Any]:
    c = model.config
    scale = _require(scaling)
    url, port = prometheus_address(c, scaling)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(c),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": c.service},
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior(scaling)}},
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": f"{url}:{port}",
                        "query": service_query(c, scale.metric),
                        "threshold": decimal(scale.target),
                    },
                }
            ],
        },
    }


def autoscaler_object(model: ServiceModel, scaling: Scaling) -> dict[str, Any]:
    """The HPA, or KEDA's ScaledObject (which creates an HPA of its own)."""
    if scaling.autoscaler == "keda":
        return scaled_object(model, scaling)
    return horizontal_pod_autoscaler(model, scaling)
