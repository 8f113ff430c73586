"""Cluster objects generated from the same configuration the app runs with.

:mod:`.model` (what the service exports), :mod:`.promql` (its queries),
:mod:`.dashboard` (Grafana), :mod:`.objects` (the kinds, and building them: one module
per kind, :mod:`.monitors`, :mod:`.service`, :mod:`.grafana`, :mod:`.rules`,
:mod:`.istio`), :mod:`.writing` (YAML, every file or none) and :mod:`.validate` (strict
offline validation with the shipped schemas).  The cluster objects: :mod:`.workload` (Deployment),
:mod:`.autoscaling` (HPA, prometheus-adapter values, KEDA), :mod:`.kiali` (dashboards),
:mod:`.ambient` (Istio's ambient mode) and :mod:`.cluster_schemas` (their schemas).
Building the dashboard, writing YAML and validating need the ``manifests`` extra, imported
where they are used: the package itself (the options, kinds and queries) imports without
it.  The request path never imports it.
"""

from .grafana import grafana_values
from .model import MetricFamily, ServiceModel, model_from_config, model_from_registry
from .objects import DEFAULT_KINDS, KINDS, build_objects, default_kinds
from .options import ManifestOptions
from .writing import to_multi_yaml, to_yaml

__all__ = [
    "DEFAULT_KINDS",
    "KINDS",
    "ManifestOptions",
    "MetricFamily",
    "ServiceModel",
    "build_objects",
    "default_kinds",
    "grafana_values",
    "model_from_config",
    "model_from_registry",
    "to_multi_yaml",
    "to_yaml",
]
