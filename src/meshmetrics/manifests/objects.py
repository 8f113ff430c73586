"""The objects ``manifests`` emits, by kind: which kinds exist, which are emitted by
default, and :func:`build_objects`, which builds the requested ones.

One module per kind of object: :mod:`.monitors` (ServiceMonitor / PodMonitor),
:mod:`.service`, :mod:`.grafana` (the dashboard ConfigMap), :mod:`.rules`
(PrometheusRule), :mod:`.istio` (PeerAuthentication, Envoy's and istiod's monitors),
:mod:`.workload` (Deployment), :mod:`.autoscaling` and :mod:`.kiali`; the facts they share
are :class:`~.options.ManifestOptions`; :mod:`.writing` turns them into files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ..config import MeshConfig
from . import autoscaling, kiali, workload
from .grafana import dashboard_configmap
from .istio import istio_monitors, peer_authentication
from .model import ServiceModel
from .monitors import pod_monitor, service_monitor
from .options import ManifestOptions
from .rules import prometheus_rule
from .service import service

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


def default_kinds(config: MeshConfig) -> tuple[str, ...]:
    """What ``manifests`` emits without ``--kind``: under STRICT mTLS, the policy too."""
    return (*DEFAULT_KINDS, "peerauthentication") if config.mtls == "strict" else DEFAULT_KINDS


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
