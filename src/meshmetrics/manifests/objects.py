"""Kubernetes objects that make kube-prometheus-stack scrape, chart and alert on a service.

Each object follows the rules that silently break monitoring when missed:

- ServiceMonitor / PodMonitor: the Helm ``release`` label (Prometheus' selector),
  ``selector.matchLabels.app`` = the service, ``namespaceSelector`` = the service's
  namespace, and the endpoint by **port name**, with the metrics path and interval;
- dashboard ConfigMap: the ``grafana_dashboard: "1"`` label (a string) the Grafana
  sidecar looks for, a data key unique across the cluster;
- PrometheusRule: the ``release`` label too, or the operator never loads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cache
from typing import TYPE_CHECKING, Any

from ..config import ConfigError, MeshConfig, decimal_text
from ..formats import (
    DNS1123_LABEL_RULE,
    LABEL_KEY_RULE,
    LABEL_VALUE_RULE,
    is_dns1123_label,
    is_label_key,
    is_label_value,
)
from . import ambient, autoscaling, kiali, slo, workload
from .autoscaling import Scaling
from .model import ServiceModel
from .promql import RECORD_WINDOW, escape
from .workload import Workload

if TYPE_CHECKING:
    import yaml

# yaml and the dashboard's builder (the ``manifests`` extra) are imported where objects are
# built or written: the command's options and help need neither.

API_MONITORING = "monitoring.coreos.com/v1"
API_ISTIO_SECURITY = "security.istio.io/v1beta1"
KINDS = (
    "servicemonitor",
    "podmonitor",
    "service",
    "peerauthentication",
    "dashboard",
    "rules",
    "istio-monitors",
    "deployment",
    "autoscaler",
    "kiali",
)
DEFAULT_KINDS = ("servicemonitor", "dashboard", "rules")
#: Exemplars of sampled requests carry the trace id under this label (see tracing.server).
TRACE_ID_LABEL = "trace_id"


def default_kinds(config: MeshConfig) -> tuple[str, ...]:
    """What ``manifests`` emits without ``--kind``: under STRICT mTLS, the policy too."""
    return (*DEFAULT_KINDS, "peerauthentication") if config.mtls == "strict" else DEFAULT_KINDS


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


@dataclass(frozen=True)
class AlertRule:
    """An alert whose expression is ``value op threshold`` (kept apart for tests)."""

    name: str
    value: str
    op: str
    threshold: float | None
    duration: str
    severity: str
    summary: str
    description: str

    @property
    def expr(self) -> str:
        if self.threshold is None:
            return self.value
        return f"{self.value} {self.op} {self.threshold:g}"


def _metadata(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": labels}


def _labels(model: ServiceModel, *, release: bool) -> dict[str, str]:
    labels = {"app": model.config.service, "app.kubernetes.io/managed-by": "meshmetrics"}
    if release:
        labels["release"] = model.config.release
    return labels


def scrape_port(config: MeshConfig) -> str:
    """The port *name* Prometheus scrapes: the metrics port's when there is one."""
    return config.metrics_port_name if config.metrics_port is not None else config.port_name


def monitor_namespace(model: ServiceModel, options: ManifestOptions) -> str:
    return options.monitor_namespace or model.config.namespace


def _monitor(
    model: ServiceModel, options: ManifestOptions, kind: str, endpoints_key: str
) -> dict[str, Any]:
    c = model.config
    return {
        "apiVersion": API_MONITORING,
        "kind": kind,
        "metadata": _metadata(
            c.service, monitor_namespace(model, options), _labels(model, release=True)
        ),
        "spec": {
            "selector": {"matchLabels": {"app": c.service}},
            "namespaceSelector": {"matchNames": [c.namespace]},
            # Kiali's queries filter on app and version, which only the pod carries
            "podTargetLabels": ["app", "version"],
            endpoints_key: [
                {"port": scrape_port(c), "path": c.metrics_path, "interval": c.scrape_interval}
            ],
        },
    }


def service_monitor(model: ServiceModel, options: ManifestOptions) -> dict[str, Any]:
    """Selects the Service by ``app`` label and scrapes its port by *name*."""
    return _monitor(model, options, "ServiceMonitor", "endpoints")


def pod_monitor(model: ServiceModel, options: ManifestOptions) -> dict[str, Any]:
    """Selects pods by ``app`` label and scrapes their container port by *name*."""
    return _monitor(model, options, "PodMonitor", "podMetricsEndpoints")


def service(model: ServiceModel, options: ManifestOptions) -> dict[str, Any]:
    """The Service the monitor selects: its ``app`` label and port *name* must agree."""
    c = model.config
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(c.service, c.namespace, _labels(model, release=False)),
        "spec": {
            "selector": {"app": c.service},
            "ports": [
                {
                    "name": c.port_name,
                    "port": options.service_port,
                    "targetPort": options.target_port or options.service_port,
                    "protocol": "TCP",
                },
                *(
                    [
                        {
                            "name": c.metrics_port_name,
                            "port": c.metrics_port,
                            "targetPort": c.metrics_port,
                            "protocol": "TCP",
                        }
                    ]
                    if c.metrics_port is not None
                    else []
                ),
            ],
        },
    }


def peer_authentication(model: ServiceModel, options: ManifestOptions) -> dict[str, Any]:
    """Under STRICT mTLS, the metrics port alone accepts plain text (Prometheus is outside
    the mesh); the app's port keeps the namespace's mode (``UNSET`` inherits it)."""
    c = model.config
    if c.metrics_port is None:
        raise ValueError(
            "a PeerAuthentication for scraping needs metrics_port: it exempts that port alone "
            "from mTLS (set the metrics port, e.g. metrics_port=9464)"
        )
    return {
        "apiVersion": API_ISTIO_SECURITY,
        "kind": "PeerAuthentication",
        "metadata": _metadata(f"{c.service}-metrics", c.namespace, _labels(model, release=False)),
        "spec": {
            "selector": {"matchLabels": {"app": c.service}},
            # ambient: ztunnel applies port exemptions of a STRICT workload policy only
            "mtls": {"mode": "STRICT" if options.workload.mesh == "ambient" else "UNSET"},
            "portLevelMtls": {str(c.metrics_port): {"mode": "PERMISSIVE"}},
        },
    }


def istio_monitors(model: ServiceModel, options: ManifestOptions) -> dict[str, dict[str, Any]]:
    """What makes the dashboard's Istio row non-empty: Envoy's and istiod's metrics, with the
    ``release`` label this Prometheus selects (Istio's samples say ``release: istio``).

    Envoy is scraped on its own port (15090, ``http-envoy-prom``), which serves Envoy's
    statistics only; Istio's merged endpoint (15020) would bring the app's metrics a second
    time under another job.  Both ports are outside mTLS interception."""
    c = model.config
    namespace = monitor_namespace(model, options)
    labels = {"app.kubernetes.io/managed-by": "meshmetrics", "release": c.release}
    mesh_monitors = (
        ambient.ambient_monitors(namespace, labels, options.istio_namespace, c.scrape_interval)
        if options.workload.mesh == "ambient"
        else {"istio-envoy-podmonitor.yaml": _envoy_monitor(namespace, labels, c.scrape_interval)}
    )
    istiod = {
        "apiVersion": API_MONITORING,
        "kind": "ServiceMonitor",
        "metadata": _metadata("istiod", namespace, labels),
        "spec": {
            "jobLabel": "istio",
            "targetLabels": ["app"],
            "selector": {
                "matchExpressions": [{"key": "istio", "operator": "In", "values": ["pilot"]}]
            },
            "namespaceSelector": {"matchNames": [options.istio_namespace]},
            "endpoints": [{"port": "http-monitoring", "interval": c.scrape_interval}],
        },
    }
    return {**mesh_monitors, "istio-istiod-servicemonitor.yaml": istiod}


def _envoy_monitor(namespace: str, labels: dict[str, str], interval: str) -> dict[str, Any]:
    """The sidecars' Envoy on its own port (sidecar mode)."""
    return {
        "apiVersion": API_MONITORING,
        "kind": "PodMonitor",
        "metadata": _metadata("istio-envoy", namespace, labels),
        "spec": {
            "selector": {
                "matchExpressions": [{"key": "istio-prometheus-ignore", "operator": "DoesNotExist"}]
            },
            "namespaceSelector": {"any": True},
            "jobLabel": "envoy-stats",
            "podMetricsEndpoints": [
                {
                    "port": "http-envoy-prom",
                    "path": "/stats/prometheus",
                    "interval": interval,
                    "relabelings": [
                        {
                            "action": "keep",
                            "sourceLabels": ["__meta_kubernetes_pod_container_name"],
                            "regex": "istio-proxy",
                        }
                    ],
                    # Istio's standard metrics only: Envoy's own statistics are many
                    "metricRelabelings": [
                        {"action": "keep", "sourceLabels": ["__name__"], "regex": "istio_.*"}
                    ],
                }
            ],
        },
    }


def grafana_values(model: ServiceModel, options: ManifestOptions) -> dict[str, Any]:
    """kube-prometheus-stack Helm values that make the latency panels' exemplars links to
    the trace in Jaeger: exemplar storage in Prometheus, a Jaeger datasource (Istio's
    add-on: Service ``tracing``, port 80, base path ``/jaeger``), and the chart's Prometheus
    datasource pointing ``trace_id`` exemplars at it."""
    return {
        "prometheus": {"prometheusSpec": {"enableFeatures": ["exemplar-storage"]}},
        "grafana": {
            "sidecar": {
                "datasources": {
                    "exemplarTraceIdDestinations": {
                        "datasourceUid": "jaeger",
                        "traceIdLabelName": TRACE_ID_LABEL,
                    }
                }
            },
            "additionalDataSources": [
                {
                    "name": "Jaeger",
                    "type": "jaeger",
                    "uid": "jaeger",
                    "access": "proxy",
                    "url": f"http://tracing.{options.istio_namespace}/jaeger",
                }
            ],
        },
    }


def dashboard_configmap(model: ServiceModel, options: ManifestOptions) -> dict[str, Any]:
    c = model.config
    namespace = options.dashboard_namespace or monitor_namespace(model, options)
    labels = {
        **_labels(model, release=False),
        options.dashboard_label: options.dashboard_label_value,
    }
    from .dashboard import build_dashboard, dashboard_uid

    dashboard = build_dashboard(model)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(f"{c.service}-dashboard", namespace, labels),
        "data": {
            f"{dashboard_uid(c.namespace, c.service)}.json": json.dumps(
                dashboard, indent=2, sort_keys=True
            )
            + "\n"
        },
    }


def alert_rules(model: ServiceModel, options: ManifestOptions) -> list[AlertRule]:
    """The alerts of one service, evaluated over 5-minute windows."""
    c = model.config
    q = type(model.queries)(
        model.queries.job,
        model.queries.namespace,
        model.queries.prefix,
        RECORD_WINDOW,
        recorded=model.recording_rules,
    )
    camel = _camel(c.service)
    where = f"{c.service} in namespace {c.namespace}"
    return [
        AlertRule(
            f"{camel}HighErrorRatio",
            q.error_ratio(by=""),
            ">",
            options.error_ratio,
            "5m",
            "warning",
            f"{c.service}: more than {options.error_ratio:.0%} of requests fail with 5xx",
            f"{{{{ $value | humanizePercentage }}}} of the requests to {where} answered 5xx "
            "over the last 5 minutes.",
        ),
        AlertRule(
            f"{camel}HighLatencyP95",
            q.latency_quantile(0.95, by=""),
            ">",
            options.latency_p95,
            "10m",
            "warning",
            f"{c.service}: p95 latency above {options.latency_p95:g}s",
            f"p95 latency of {where} is {{{{ $value | humanizeDuration }}}}.",
        ),
        AlertRule(
            f"{camel}TargetDown",
            q.up(),
            "==",
            0,
            "5m",
            "critical",
            f"{c.service}: a metrics target is down",
            f"Prometheus cannot scrape {{{{ $labels.pod }}}} of {where}.",
        ),
        AlertRule(
            f"{camel}MetricsAbsent",
            f"absent({q.up()})",
            "",
            None,
            "10m",
            "warning",
            f"{c.service}: Prometheus has no target",
            f"No target of {where} is known to Prometheus: check the Service's app label, "
            f'its port name ("{scrape_port(c)}") and the monitor\'s namespace selector. (A wrong '
            "release label hides this rule as well: meshmetrics check --prometheus URL "
            "finds that.)",
        ),
    ]


def prometheus_rule(model: ServiceModel, options: ManifestOptions) -> dict[str, Any]:
    c = model.config
    recording = (
        [{"record": r.record, "expr": r.expr} for r in model.queries.recording_rules()]
        if model.recording_rules
        else []
    )
    # one group: its rules run in order at one evaluation time, so the alerts read the
    # series recorded a moment before
    rules: list[dict[str, Any]] = recording + [
        {
            "alert": rule.name,
            "expr": rule.expr,
            "for": rule.duration,
            "labels": {"severity": rule.severity, "service": c.service, "namespace": c.namespace},
            "annotations": {"summary": rule.summary, "description": rule.description},
        }
        for rule in alert_rules(model, options)
    ]
    groups: list[dict[str, Any]] = [{"name": f"{c.namespace}.{c.service}.rules", "rules": rules}]
    if c.slo:
        groups.append({"name": f"{c.namespace}.{c.service}.slo", "rules": slo_rules(model)})
    return {
        "apiVersion": API_MONITORING,
        "kind": "PrometheusRule",
        "metadata": _metadata(
            f"{c.service}-rules", monitor_namespace(model, options), _labels(model, release=True)
        ),
        "spec": {"groups": groups},
    }


def slo_rules(model: ServiceModel) -> list[dict[str, Any]]:
    """SLI recording rules first, then the burn-rate alerts reading them (one group)."""
    c = model.config
    rules: list[dict[str, Any]] = list(slo.recording_rules(c, model.queries))
    for alert in slo.alerts(c, _camel(c.service)):
        objective = alert.slo
        what = (
            "of requests answered without 5xx"
            if objective.kind == "availability"
            else f"of requests answered within {objective.threshold:g}s"
        )
        # a template literal: the route's text as is, whatever '{{' or quotes it holds
        where = f' on {{{{ "{escape(objective.route)}" }}}}' if objective.route else ""
        speed = "fast: page" if alert.severity == "critical" else "steadily: ticket"
        rules.append(
            {
                "alert": alert.name,
                "expr": alert.expr,
                "labels": {"severity": alert.severity, **slo.labels(objective, c)},
                "annotations": {
                    "summary": f"{c.service}: the {objective.name} error budget burns {speed}",
                    "description": (
                        f"SLO {decimal_text(objective.objective)}% {what}{where} "
                        f"over {objective.window}: "
                        "{{ $value | humanizePercentage }} of requests are bad, which spends the "
                        "error budget faster than it allows."
                    ),
                },
            }
        )
    return rules


def _camel(service: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[-.]", service))


def _deployment(model: ServiceModel, options: ManifestOptions) -> dict[str, Any]:
    return workload.deployment(
        model,
        options.workload,
        service_port=options.service_port,
        target_port=options.target_port,
        replicas=None if options.scaling.autoscale else 1,
        kiali_dashboard=kiali.dashboard_name(model),
    )


def _autoscaler(model: ServiceModel, options: ManifestOptions) -> dict[str, Any]:
    return autoscaling.autoscaler_object(model, options.scaling)


def _kiali(model: ServiceModel, options: ManifestOptions) -> dict[str, Any]:
    return kiali.monitoring_dashboard(model)


def _file_name(model: ServiceModel, kind: str, options: ManifestOptions) -> str:
    if kind == "autoscaler":
        kind = "scaledobject" if options.scaling.autoscaler == "keda" else "hpa"
    return f"{model.config.service}-{kind}.yaml"


_BUILDERS = {
    "deployment": _deployment,
    "autoscaler": _autoscaler,
    "kiali": _kiali,
    "servicemonitor": service_monitor,
    "podmonitor": pod_monitor,
    "service": service,
    "peerauthentication": peer_authentication,
    "dashboard": dashboard_configmap,
    "rules": prometheus_rule,
}


def build_objects(
    model: ServiceModel,
    kinds: Iterable[str] | None = None,
    options: ManifestOptions | None = None,
) -> dict[str, dict[str, Any]]:
    """The requested objects (default: :func:`default_kinds`), keyed by file name
    (``<service>-<kind>.yaml``; the mesh-wide Istio monitors ``istio-*.yaml``), in KINDS
    order."""
    wanted = set(default_kinds(model.config) if kinds is None else kinds)
    unknown = wanted - set(KINDS)
    if unknown:
        raise ValueError(
            f"unknown kind(s) {', '.join(sorted(unknown))}; choose from {', '.join(KINDS)}"
        )
    if {"servicemonitor", "podmonitor"} <= wanted:
        raise ValueError(
            "kinds servicemonitor and podmonitor select the same pods: Prometheus would scrape "
            "each twice (and the rules read the PodMonitor's job); choose one"
        )
    if "dashboard" in wanted and "rules" not in wanted:
        # the recorded series would not exist: the dashboard reads the raw ones
        model = replace(model, recording_rules=False, rules_emitted=False)
    opts = options or ManifestOptions()
    largest = max(model.config.buckets)
    if opts.latency_p95 >= largest:
        raise ValueError(
            f"the p95 latency threshold {opts.latency_p95:g}s is not below the largest "
            f"histogram bucket ({largest:g}s): histogram_quantile() never reports more, so "
            "the alert could never fire; lower it or add a larger bucket"
        )
    objects: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        if kind not in wanted:
            continue
        if kind == "istio-monitors":
            objects.update(istio_monitors(model, opts))
        else:
            objects[_file_name(model, kind, opts)] = _BUILDERS[kind](model, opts)
    return objects


@cache
def _dumper() -> type[yaml.SafeDumper]:
    """Block style for multi-line strings (the dashboard JSON stays readable)."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, represent_str)
    return Dumper


def to_yaml(obj: dict[str, Any]) -> str:
    """One object as a YAML document (label values such as ``"1"`` stay quoted strings)."""
    import yaml

    return yaml.dump(obj, Dumper=_dumper(), sort_keys=False, default_flow_style=False, width=1000)


def to_multi_yaml(objects: Iterable[dict[str, Any]]) -> str:
    return "".join(f"---\n{to_yaml(obj)}" for obj in objects)
