"""A Kiali runtime dashboard for the Flask services meshmetrics instruments.

Kiali ships runtime dashboards for Go, JVM, Node.js and others, none for Python.  It has
had two places for one:

- Kiali before 1.36 (the course's 1.27): a ``MonitoringDashboard`` resource
  (``monitoring.kiali.io/v1alpha1``), the dashboard under ``spec``, one ``metricName`` per
  chart;
- Kiali 1.36 and later: an entry of the Kiali CR's ``spec.custom_dashboards``, one
  ``metrics`` list per chart; emitted as a merge patch of that CR.

Either way Kiali asks Prometheus for ``{namespace=…, app=…, version=…}``: the series need
``app`` and ``version``, which the ServiceMonitor copies from the pod (``podTargetLabels``).
A pod picks the dashboard by its ``kiali.io/dashboards`` annotation (and Kiali discovers it
on its own when the app exports the request counter: ``discoverOn``).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from .model import ServiceModel
from .workload import MANAGED_BY

API_KIALI_MONITORING = "monitoring.kiali.io/v1alpha1"
RUNTIME = "Flask"
_NAME = "meshmetrics"
#: Prefixes whose dashboard name reads back: lower-case words joined by single ``_``.
_PLAIN_PREFIX = re.compile(r"(?:[a-z0-9]+(?:_[a-z0-9]+)*)?")
_MAX_NAME = 63
_DIGEST = 10


def dashboard_name(model: ServiceModel) -> str:
    """One dashboard per metric prefix (every service with the same names shares it): a
    DNS-1123 label.  A prefix of lower-case words joined by single ``_`` reads back from
    its name (``my_app`` → ``meshmetrics-my-app``); any other (``App``, ``a:b``, ``_``, a
    long one) gets a digest of the prefix after ``--``, which the first kind never has, so
    two prefixes never share a name (the later dashboard would replace the earlier)."""
    prefix = model.config.prefix
    base = _NAME + "".join(f"-{word}" for word in prefix.split("_") if prefix)
    if _PLAIN_PREFIX.fullmatch(prefix) and len(base) <= _MAX_NAME:
        return base
    digest = hashlib.sha256(prefix.encode()).hexdigest()[:_DIGEST]
    slug = re.sub(r"[^a-z0-9]+", "-", prefix.lower()).strip("-")
    head = f"{_NAME}-{slug}"[: _MAX_NAME - _DIGEST - 2].rstrip("-")
    return f"{head}--{digest}"


def _chart(
    name: str, metric: str, data_type: str, labels: tuple[tuple[str, str], ...], unit: str = ""
) -> dict[str, Any]:
    chart: dict[str, Any] = {"name": name, "spans": 6, "metricName": metric, "dataType": data_type}
    if unit:
        chart["unit"] = unit
    if labels:
        chart["aggregations"] = [{"label": lab, "displayName": shown} for lab, shown in labels]
    return chart


def charts(model: ServiceModel) -> list[dict[str, Any]]:
    """The charts, in the pre-1.36 form (``metricName``)."""
    p = model.config.metric_prefix
    route = ("path", "Route")
    pod = ("pod", "Pod")
    found = [
        _chart(
            "Request rate",
            f"{p}http_request_total",
            "rate",
            (route, ("method", "Method"), ("status", "Status"), pod),
        ),
        _chart(
            "Exceptions",
            f"{p}http_request_exceptions_total",
            "rate",
            (route, ("exception", "Exception"), pod),
        ),
        _chart(
            "Latency",
            f"{p}http_request_duration_seconds",
            "histogram",
            (route, ("method", "Method"), pod),
            "seconds",
        ),
        _chart("Requests in progress", f"{p}http_requests_in_progress", "raw", (route, pod)),
    ]
    if model.process_metrics:
        found += [
            _chart("Process CPU", "process_cpu_seconds_total", "rate", (pod,)),
            _chart("Resident memory", "process_resident_memory_bytes", "raw", (pod,), "bytes"),
        ]
    return found


def _dashboard_body(model: ServiceModel, *, modern: bool) -> dict[str, Any]:
    items = []
    for chart in charts(model):
        if modern:  # 1.36+: metricName alone is deprecated
            chart = dict(chart)
            metric = chart.pop("metricName")
            chart["metrics"] = [{"metricName": metric, "displayName": chart["name"]}]
        items.append({"chart": chart})
    return {
        "title": f"{RUNTIME} (meshmetrics)",
        "runtime": RUNTIME,
        "discoverOn": f"{model.config.metric_prefix}http_request_total",
        "items": items,
    }


def monitoring_dashboard(model: ServiceModel) -> dict[str, Any]:
    """Kiali < 1.36: the resource, in the service's namespace."""
    return {
        "apiVersion": API_KIALI_MONITORING,
        "kind": "MonitoringDashboard",
        "metadata": {
            "name": dashboard_name(model),
            "namespace": model.config.namespace,
            "labels": dict(MANAGED_BY),
        },
        "spec": _dashboard_body(model, modern=False),
    }


def custom_dashboards_patch(model: ServiceModel) -> dict[str, Any]:
    """Kiali >= 1.36: a merge patch adding the dashboard to the Kiali CR
    (``kubectl patch kiali kiali -n istio-system --type merge --patch-file FILE``).  A merge
    patch replaces the whole list: add other custom dashboards to the file."""
    return {
        "spec": {
            "custom_dashboards": [
                {"name": dashboard_name(model), **_dashboard_body(model, modern=True)}
            ]
        }
    }


def kiali_queries(
    model: ServiceModel, namespace: str, app: str, version: str, window: str = "1m"
) -> dict[str, str]:
    """Each chart's PromQL as Kiali builds it (``business/dashboards.go``): the labels
    ``{namespace, app, version}``, ``rate()`` or ``histogram_quantile()`` by ``dataType``,
    summed by the chart's aggregation labels (here: none chosen, so one line)."""
    labels = f'namespace="{namespace}",app="{app}",version="{version}"'
    queries = {}
    for chart in charts(model):
        metric, kind = chart["metricName"], chart["dataType"]
        if kind == "rate":
            expr = f"sum(rate({metric}{{{labels}}}[{window}]))"
        elif kind == "histogram":
            expr = (
                f"histogram_quantile(0.5, sum(rate({metric}_bucket{{{labels}}}[{window}])) by (le))"
            )
        else:
            expr = f"sum({metric}{{{labels}}})"
        queries[chart["name"]] = expr
    return queries
