"""ServiceMonitor / PodMonitor: the Helm ``release`` label (Prometheus' selector),
``selector.matchLabels.app`` = the service, ``namespaceSelector`` = the service's
namespace, and the endpoint by **port name**, with the metrics path and interval."""

from __future__ import annotations

from typing import Any

from .metadata import (
    API_MONITORING,
    monitor_namespace,
    object_labels,
    object_metadata,
    scrape_port,
)
from .model import ServiceModel
from .options import ManifestOptions


def _monitor(
    model: ServiceModel, options: ManifestOptions, kind: str, endpoints_key: str
) -> dict[str, Any]:
    c = model.config
    return {
        "apiVersion": API_MONITORING,
        "kind": kind,
        "metadata": object_metadata(
            c.service, monitor_namespace(model, options), object_labels(model, release=True)
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
