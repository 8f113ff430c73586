"""Istio's objects: the PeerAuthentication that lets Prometheus scrape under STRICT mTLS,
and the monitors of the mesh itself (Envoy, istiod)."""

from __future__ import annotations

from typing import Any

from . import ambient
from .metadata import API_MONITORING, monitor_namespace, object_labels, object_metadata
from .model import ServiceModel
from .options import ManifestOptions

API_ISTIO_SECURITY = "security.istio.io/v1beta1"


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
        "metadata": object_metadata(
            f"{c.service}-metrics", c.namespace, object_labels(model, release=False)
        ),
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
        "metadata": object_metadata("istiod", namespace, labels),
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
        "metadata": object_metadata("istio-envoy", namespace, labels),
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
