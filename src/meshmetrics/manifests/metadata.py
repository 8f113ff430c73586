"""What every generated object shares: its metadata and labels, the namespace of the
monitoring objects, and the port Prometheus scrapes."""

from __future__ import annotations

from typing import Any

from ..config import MeshConfig
from .model import ServiceModel
from .options import ManifestOptions

API_MONITORING = "monitoring.coreos.com/v1"


def object_metadata(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": labels}


def object_labels(model: ServiceModel, *, release: bool) -> dict[str, str]:
    labels = {"app": model.config.service, "app.kubernetes.io/managed-by": "meshmetrics"}
    if release:
        labels["release"] = model.config.release
    return labels


def scrape_port(config: MeshConfig) -> str:
    """The port *name* Prometheus scrapes: the metrics port's when there is one."""
    return config.metrics_port_name if config.metrics_port is not None else config.port_name


def monitor_namespace(model: ServiceModel, options: ManifestOptions) -> str:
    return options.monitor_namespace or model.config.namespace
