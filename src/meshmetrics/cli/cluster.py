"""The ``manifests`` options of the cluster objects (issue 22): the Deployment's pods, the
autoscaler, Istio's data-plane mode, and the values files printed instead of objects."""

from __future__ import annotations

from typing import Any

import click

from ..config import TRACING_BACKENDS
from ..manifests import ManifestOptions, ServiceModel, grafana_values
from ..manifests.autoscaling import AUTOSCALERS, Autoscale, Scaling, adapter_values
from ..manifests.kiali import custom_dashboards_patch
from ..manifests.workload import MESH_MODES, Workload


def cluster_options() -> list[Any]:
    """The pods, their autoscaler, Istio's data-plane mode and Kiali (issue 22)."""
    return [
        click.option("--version", help="The app's version: the pods' version label."),
        click.option(
            "--tracing",
            type=click.Choice(TRACING_BACKENDS, case_sensitive=False),
            help="Where the pods send spans (the Deployment's environment), e.g. zipkin.",
        ),
        click.option("--trace-endpoint", help="The span collector (URL; host:port for jaeger)."),
        click.option("--image", help="Container image of the Deployment (default SERVICE:latest)."),
        click.option(
            "--env-secret",
            multiple=True,
            metavar="SECRET",
            help="A Secret whose keys become the container's environment; repeatable.",
        ),
        click.option(
            "--mesh",
            type=click.Choice(MESH_MODES, case_sensitive=False),
            default="sidecar",
            show_default=True,
            help="Istio's data plane in the namespace: sidecar, or ambient (ztunnel).",
        ),
        click.option(
            "--autoscale",
            metavar="rps:N|inflight:N",
            help="Scale the Deployment to keep N requests per second (rps) or N requests in "
            "progress (inflight) per pod; adds the autoscaler object.",
        ),
        click.option("--min-replicas", type=int, default=1, show_default=True),
        click.option("--max-replicas", type=int, default=5, show_default=True),
        click.option(
            "--autoscaler",
            type=click.Choice(AUTOSCALERS, case_sensitive=False),
            default="hpa",
            show_default=True,
            help="hpa (with prometheus-adapter) or keda (a ScaledObject).",
        ),
        click.option(
            "--scale-down-window",
            type=int,
            default=300,
            show_default=True,
            help="Seconds of lower load before the autoscaler removes pods.",
        ),
        click.option(
            "--prometheus-url",
            help="Prometheus as the adapter and KEDA reach it (default: the release's "
            "Service in istio-system, port 9090).",
        ),
        click.option(
            "--adapter-values",
            is_flag=True,
            help="The prometheus-adapter Helm values serving the autoscaling metrics, "
            "instead of objects.",
        ),
        click.option(
            "--kiali-patch",
            is_flag=True,
            help="The Kiali CR patch adding the dashboard (Kiali 1.36+), instead of objects.",
        ),
    ]


def cluster_from_options(opts: dict[str, Any]) -> tuple[Workload, Scaling]:
    """The Deployment's and autoscaler's options (``ConfigError`` naming the option)."""
    autoscale = opts.pop("autoscale")
    workload = Workload(
        image=opts.pop("image"), mesh=opts.pop("mesh").lower(), secrets=opts.pop("env_secret")
    )
    scaling = Scaling(
        autoscale=Autoscale.parse(autoscale) if autoscale is not None else None,
        min_replicas=opts.pop("min_replicas"),
        max_replicas=opts.pop("max_replicas"),
        autoscaler=opts.pop("autoscaler").lower(),
        scale_down_window=opts.pop("scale_down_window"),
        prometheus_url=opts.pop("prometheus_url"),
    )
    return workload, scaling


#: Values files (not objects): chart values and a CR patch, by flag.
VALUE_FILES = {
    "grafana_values": "grafana-values.yaml",
    "adapter_values": "prometheus-adapter-values.yaml",
    "kiali_patch": "kiali-custom-dashboards-patch.yaml",
}


def values_documents(
    model: ServiceModel, options: ManifestOptions, wanted: set[str]
) -> dict[str, Any]:
    """The values files asked for, by file name."""
    build = {
        "grafana_values": lambda: grafana_values(model, options),
        "adapter_values": lambda: adapter_values(model, options.scaling),
        "kiali_patch": lambda: custom_dashboards_patch(model),
    }
    return {name: build[flag]() for flag, name in VALUE_FILES.items() if flag in wanted}
