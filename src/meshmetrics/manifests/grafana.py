"""Grafana's objects: the dashboard ConfigMap (the ``grafana_dashboard: "1"`` label, a
string, the Grafana sidecar looks for, and a data key unique across the cluster) and the
kube-prometheus-stack values that link exemplars to traces."""

from __future__ import annotations

import json
from typing import Any

from ..names import TRACE_ID_LABEL
from .metadata import monitor_namespace, object_labels, object_metadata
from .model import ServiceModel
from .options import ManifestOptions


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
        **object_labels(model, release=False),
        options.dashboard_label: options.dashboard_label_value,
    }
    from .dashboard import build_dashboard, dashboard_uid

    dashboard = build_dashboard(model)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_metadata(f"{c.service}-dashboard", namespace, labels),
        "data": {
            f"{dashboard_uid(c.namespace, c.service)}.json": json.dumps(
                dashboard, indent=2, sort_keys=True
            )
            + "\n"
        },
    }
