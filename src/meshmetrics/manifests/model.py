"""What the manifests are generated from: the resolved config and the registered metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from .._compat import (
    collectors,
    documentation,
    family_name,
    family_type,
    has_family_name,
    label_names,
)
from ..config import MeshConfig
from ..metrics import RequestMetrics
from .promql import Queries

#: Families that are not the app's own: process metrics get their own panels, the others
#: (span export counters, present only when tracing is on) none, so output does not
#: depend on the environment the app was imported in.
_PLATFORM_PREFIXES = ("process_", "python_", "meshmetrics_")


@dataclass(frozen=True)
class MetricFamily:
    """One metric family as registered: base name, type, label names, help."""

    name: str
    type: str
    labels: tuple[str, ...] = ()
    documentation: str = ""


@dataclass(frozen=True)
class ServiceModel:
    """A service as the manifests see it."""

    config: MeshConfig
    #: Application metrics beyond meshmetrics' own (pfe decorators, prometheus_client).
    custom_metrics: tuple[MetricFamily, ...] = ()
    #: Whether ``process_*`` metrics are exported (single-process serving).
    process_metrics: bool = True
    #: Kind of monitor: prometheus-operator sets ``job`` differently for each.
    monitor_kind: str = "ServiceMonitor"
    #: Add a row of Istio (Envoy) panels to the dashboard.
    istio: bool = True
    #: Dashboard and alerts read the recording rules the PrometheusRule carries (cheap at
    #: any number of pods); ``False``: the raw series, as before.
    recording_rules: bool = True
    #: The PrometheusRule is applied with the dashboard, so the SLO series it records exist;
    #: ``False`` (a dashboard emitted alone): the SLO panels compute them from raw series.
    rules_emitted: bool = True
    queries: Queries = field(init=False, compare=False)

    def __post_init__(self) -> None:
        job = (
            self.config.service
            if self.monitor_kind == "ServiceMonitor"
            else f"{self.config.namespace}/{self.config.service}"
        )
        object.__setattr__(
            self,
            "queries",
            Queries(
                job,
                self.config.namespace,
                self.config.metric_prefix,
                recorded=self.recording_rules,
            ),
        )


def registered_families(*registries: CollectorRegistry) -> list[MetricFamily]:
    """Every family in ``registries``, with label names even before the first sample."""
    families: dict[str, MetricFamily] = {}
    for collector in [c for registry in registries for c in collectors(registry)]:
        kind = family_type(collector)
        if kind is not None and has_family_name(collector):
            name = family_name(collector)
            families.setdefault(
                name, MetricFamily(name, kind, label_names(collector), documentation(collector))
            )
            continue
        for metric in collector.collect():
            labels = sorted({key for s in metric.samples for key in s.labels})
            families.setdefault(
                metric.name,
                MetricFamily(metric.name, metric.type, tuple(labels), metric.documentation),
            )
    return [families[name] for name in sorted(families)]


def model_from_registry(
    config: MeshConfig,
    registries: tuple[CollectorRegistry, ...],
    request_metrics: RequestMetrics,
    **options: Any,
) -> ServiceModel:
    """Split registries into meshmetrics' own families, platform ones and the app's."""
    families = registered_families(*registries)
    own = set(request_metrics.family_names)
    custom = tuple(
        f for f in families if f.name not in own and not f.name.startswith(_PLATFORM_PREFIXES)
    )
    process = any(f.name.startswith("process_") for f in families)
    return ServiceModel(config, custom_metrics=custom, process_metrics=process, **options)


def model_from_config(config: MeshConfig, **options: Any) -> ServiceModel:
    """The model of a service known only by its options (no app imported)."""
    from prometheus_client.process_collector import ProcessCollector

    registry = CollectorRegistry(auto_describe=True)
    request_metrics = RequestMetrics(config, registry)
    ProcessCollector(registry=registry)  # what a single-process app serves beside its own
    return model_from_registry(config, (registry,), request_metrics, **options)
