"""Strict schemas of the cluster objects (Deployment, Service, HPA, ScaledObject, Kiali
dashboards) and of the values files (prometheus-adapter's chart values, the Kiali CR's
custom dashboards), with the rules across fields a schema cannot say.

:mod:`.validate` consults this module for the kinds it does not know itself; the
Deployment and Service subsets apply to objects meshmetrics generated (labelled
``app.kubernetes.io/managed-by: meshmetrics``): a hand-written Service may use fields
outside the subset, and those stay the API server's business.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

import jsonschema  # type: ignore[import-untyped]

_OBJECTS = (
    "deployments",
    "services",
    "horizontalpodautoscalers",
    "scaledobjects",
    "monitoringdashboards",
)
_VALUES = {"kiali-custom-dashboards": "spec", "prometheus-adapter-values": "rules"}
#: Kinds checked only when meshmetrics generated them (the schema is what it emits).
_OURS_ONLY = {("apps/v1", "Deployment"), ("v1", "Service")}
#: ``scheme://host`` then what the chart cannot append a port to: ``(:port)``, ``(/path)``.
_URL_TAIL = re.compile(r"https?://(?:\[[^\]]*\]|[^/:?#\[]+)(:[0-9]*)?([/?#].*)?")
_METRIC_NAME = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)")


def _load(name: str) -> dict[str, Any]:
    text = resources.files("meshmetrics.manifests").joinpath("schemas", f"{name}.json")
    loaded: dict[str, Any] = json.loads(text.read_text())
    return loaded


def _validator(schema: dict[str, Any]) -> Any:
    from .validate import _strict  # one strictness for every shipped schema

    return jsonschema.Draft7Validator(_strict(schema))


@cache
def _object_validators() -> dict[tuple[str, str], Any]:
    found = {}
    for name in _OBJECTS:
        doc = _load(name)
        for version, schema in doc["versions"].items():
            api = f"{doc['group']}/{version}" if doc["group"] else version
            found[(api, doc["kind"])] = _validator(schema)
    return found


@cache
def _values_validators() -> dict[str, Any]:
    return {name: _validator(_load(name)["schema"]) for name in _VALUES}


def _dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a mapping, else empty: objects that are not validated yet
    (a hand-written Service, a document of the wrong shape) are read without trusting
    their shape."""
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The mappings of ``value`` when it is a list, else none."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _managed(obj: dict[str, Any]) -> bool:
    labels = _dict(_dict(obj.get("metadata")).get("labels"))
    return bool(labels.get("app.kubernetes.io/managed-by") == "meshmetrics")


def validator_for(obj: dict[str, Any]) -> Any | None:
    """The strict validator of ``obj``'s kind, or ``None`` (not one of ours)."""
    key = (str(obj.get("apiVersion")), str(obj.get("kind")))
    if key in _OURS_ONLY and not _managed(obj):
        return None
    return _object_validators().get(key)


def _schema_errors(validator: Any, doc: Any) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


def values_kind(doc: dict[str, Any]) -> str | None:
    """Which values file a document without ``kind`` is: the adapter's chart values
    (``rules``), a Kiali CR patch (``spec.custom_dashboards``), or neither."""
    if "apiVersion" in doc or "kind" in doc:
        return None
    if isinstance(doc.get("spec"), dict) and "custom_dashboards" in doc["spec"]:
        return "kiali-custom-dashboards"
    if "rules" in doc and ("prometheus" in doc or isinstance(doc.get("rules"), dict)):
        return "prometheus-adapter-values"
    return None


def values_errors(doc: dict[str, Any]) -> list[str] | None:
    """The problems of a values file, or ``None`` when it is not one this module knows."""
    kind = values_kind(doc)
    if kind is None:
        return None
    errors = _schema_errors(_values_validators()[kind], doc)
    if kind == "prometheus-adapter-values" and not errors:
        errors += adapter_rule_errors(doc)
    if kind == "kiali-custom-dashboards" and not errors:
        for index, dashboard in enumerate(doc["spec"]["custom_dashboards"]):
            errors += [f"spec.custom_dashboards.{index}.{e}" for e in dashboard_errors(dashboard)]
    return errors


def _prometheus_url_errors(values: dict[str, Any]) -> list[str]:
    """The chart renders ``--prometheus-url={{url}}{{if port}}:{{port}}{{end}}{{path}}``: a
    ``url`` with a port or a path of its own next to ``port`` gives an unreachable URL."""
    prometheus = values.get("prometheus") or {}
    url, port = str(prometheus.get("url", "")), prometheus.get("port")
    tail = _URL_TAIL.match(url)
    if not port or "{{" in url or tail is None or not (tail.group(1) or tail.group(2)):
        return []
    rendered = f"{url}:{port}{prometheus.get('path', '')}"
    return [
        f"prometheus.url: {url!r} has a port or a path of its own, and the chart appends "
        f"prometheus.port to it ({rendered}): give the host alone (a path goes in "
        "prometheus.path), or leave prometheus.port out"
    ]


def adapter_rule_errors(values: dict[str, Any]) -> list[str]:
    """What prometheus-adapter would accept and then serve wrongly (or never)."""
    rules = values.get("rules") or {}
    errors: list[str] = _prometheus_url_errors(values)
    names: dict[str, int] = {}
    defaults = rules.get("default", True)  # the chart's default is true
    for index, rule in enumerate(rules.get("custom") or []):
        where = f"rules.custom.{index}"
        query = rule["metricsQuery"]
        for field in ("<<.LabelMatchers>>", "<<.GroupBy>>"):
            if field not in query:
                errors.append(
                    f"{where}.metricsQuery: has no {field}: the adapter asks for a set of "
                    "pods of one namespace and expects one value per object"
                )
        if "{{" in query:
            errors.append(
                f"{where}.metricsQuery: '{{{{' is Go's default delimiter; the adapter's "
                "templates use << and >>"
            )
        overrides = (rule.get("resources") or {}).get("overrides") or {}
        resources_named = {v.get("resource") for v in overrides.values()}
        if "template" not in (rule.get("resources") or {}) and not (
            resources_named & {"namespace", "namespaces"}
        ):
            errors.append(f"{where}.resources: a namespaced resource needs namespace mapped")
        name = _exposed_name(rule)
        if name is not None:
            if name in names:
                errors.append(
                    f"{where}.name: {name!r} is also rules.custom.{names[name]}'s: rules must "
                    "be mutually exclusive"
                )
            names[name] = index
            series = _METRIC_NAME.match(rule["seriesQuery"])
            if defaults and series and name in _default_names(series.group(1)):
                errors.append(
                    f"{where}.name: {name!r} is what the chart's default rules make of "
                    f"{series.group(1)} (rules.default is on): set rules.default: false or "
                    "another name"
                )
    return errors


def _exposed_name(rule: dict[str, Any]) -> str | None:
    """The name a rule serves, when it is a literal (``as`` without ``$`` references)."""
    name = rule.get("name") or {}
    exposed = name.get("as")
    if isinstance(exposed, str) and exposed and "$" not in exposed:
        return exposed
    return None


def _default_names(series: str) -> set[str]:
    """The names the prometheus-adapter chart's default rules derive from a series."""
    names = {series}  # gauges keep their name
    for suffix in ("_seconds_total", "_total"):
        if series.endswith(suffix):
            names.add(series[: -len(suffix)])
    return names


def dashboard_errors(body: dict[str, Any]) -> list[str]:
    """A Kiali dashboard's charts each name a metric."""
    errors = []
    for index, item in enumerate(body.get("items") or []):
        chart = item.get("chart")
        if chart is not None and "metricName" not in chart and "metrics" not in chart:
            errors.append(f"items.{index}.chart: needs metrics (or metricName)")
        if chart is None and "include" not in item:
            errors.append(f"items.{index}: needs chart or include")
    return errors


def semantic_errors(obj: dict[str, Any]) -> list[str]:
    """Rules across the fields of a valid object."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "HorizontalPodAutoscaler":
        return _hpa_errors(spec)
    if kind == "ScaledObject":
        return _scaled_object_errors(spec, _managed(obj))
    if kind == "MonitoringDashboard":
        return [f"spec.{e}" for e in dashboard_errors(spec)]
    if kind == "Deployment" and _managed(obj):
        return _deployment_errors(obj)
    return []


def _hpa_errors(spec: dict[str, Any]) -> list[str]:
    errors = []
    if spec.get("minReplicas", 1) > spec.get("maxReplicas", 1):
        errors.append("spec.minReplicas: above spec.maxReplicas")
    for index, metric in enumerate(spec.get("metrics") or []):
        kind = metric.get("type", "")
        body = metric.get(kind[:1].lower() + kind[1:])
        if body is None:
            errors.append(f"spec.metrics.{index}: type {kind} needs its {kind.lower()} field")
            continue
        target = body.get("target") or {}
        if kind == "Pods" and target.get("type") != "AverageValue":
            errors.append(f"spec.metrics.{index}.pods.target: a Pods metric takes AverageValue")
        field = {"AverageValue": "averageValue", "Value": "value"}.get(target.get("type", ""))
        if field and field not in target:
            errors.append(f"spec.metrics.{index}: target type {target['type']} needs {field}")
    return errors


def _scaled_object_errors(spec: dict[str, Any], ours: bool) -> list[str]:
    errors = []
    minimum = spec.get("minReplicaCount", 0)
    if minimum > spec.get("maxReplicaCount", 100):
        errors.append("spec.minReplicaCount: above spec.maxReplicaCount")
    for index, trigger in enumerate(spec.get("triggers") or []):
        if trigger.get("type") != "prometheus":
            continue
        missing = {"serverAddress", "query", "threshold"} - set(trigger.get("metadata") or {})
        if missing:
            errors.append(
                f"spec.triggers.{index}.metadata: a prometheus trigger needs "
                f"{', '.join(sorted(missing))}"
            )
        if ours and minimum < 1:
            errors.append(
                "spec.minReplicaCount: at least 1: a pod that does not exist reports no "
                "requests, so a trigger on the app's own metric cannot scale it up from zero"
            )
    return errors


def _deployment_errors(obj: dict[str, Any]) -> list[str]:
    template = (obj.get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    errors = [
        f"spec.template.metadata.annotations: {key} makes Istio merge the app's metrics into "
        "its own scrape (the ServiceMonitor scrapes the app)"
        for key in annotations
        if key.startswith("prometheus.io/")
    ]
    for label in ("app", "version"):
        if label not in labels:
            errors.append(f"spec.template.metadata.labels: needs {label} (Istio and Kiali)")
    selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        errors.append("spec.selector.matchLabels: does not match the pod template's labels")
    errors += _probe_port_errors(template)
    if labels.get("istio.io/dataplane-mode") == "ambient":
        errors += [
            f"spec.template.metadata.annotations: {key} is for sidecars; this pod runs in "
            "ambient mode"
            for key in annotations
            if key.startswith(("sidecar.istio.io/", "prometheus.istio.io/"))
        ]
    return errors


def _probe_port_errors(template: dict[str, Any]) -> list[str]:
    """A probe's port by name must be one the container names: the API server takes any
    name, and the kubelet then fails the probe on every period."""
    errors = []
    for index, container in enumerate(_dicts(_dict(template.get("spec")).get("containers"))):
        names = {str(p.get("name")) for p in _dicts(container.get("ports")) if p.get("name")}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            for action in ("httpGet", "tcpSocket", "grpc"):
                port = _dict(_dict(container.get(probe)).get(action)).get("port")
                if isinstance(port, str) and port not in names:
                    errors.append(
                        f"spec.template.spec.containers.{index}.{probe}.{action}.port: "
                        f"{port!r} is not a port this container names "
                        f"({', '.join(sorted(names)) or 'none'}): the probe would always fail"
                    )
    return errors


# -- across objects: what only the set of files shows -------------------------------------


def _ns(obj: dict[str, Any]) -> str:
    return str(_dict(obj.get("metadata")).get("namespace") or "default")


def _name(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{_ns(obj)}/{_dict(obj.get('metadata')).get('name')}"


def _template(deployment: dict[str, Any]) -> dict[str, Any]:
    return _dict(_dict(deployment.get("spec")).get("template"))


def _containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return _dicts(_dict(_template(deployment).get("spec")).get("containers"))


def _pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return _dict(_dict(_template(deployment).get("metadata")).get("labels"))


def cross_errors(objects: list[dict[str, Any]]) -> list[str]:
    """Problems between the objects of one set (a service's files together): autoscalers
    and their Deployment, the Service and its pods (a monitor's ``podTargetLabels`` that
    the pods lack are ``check``'s warning: the scrape works, Kiali's queries do not).  Objects
    that are not in the set are not guessed at."""
    objects = [o for o in objects if isinstance(o, dict)]
    deployments = {
        (_ns(o), str(_dict(o.get("metadata")).get("name"))): o
        for o in objects
        if o.get("kind") == "Deployment"
    }
    return _autoscaler_cross_errors(objects, deployments) + _service_cross_errors(
        objects, list(deployments.values())
    )


def _autoscaler_cross_errors(
    objects: list[dict[str, Any]], deployments: dict[tuple[str, str], dict[str, Any]]
) -> list[str]:
    errors: list[str] = []
    owners: dict[tuple[str, str], list[str]] = {}
    for obj in objects:
        if obj.get("kind") not in ("HorizontalPodAutoscaler", "ScaledObject"):
            continue
        ref = _dict(_dict(obj.get("spec")).get("scaleTargetRef"))
        if ref.get("kind", "Deployment") != "Deployment":
            continue
        key = (_ns(obj), str(ref.get("name")))
        owners.setdefault(key, []).append(_name(obj))
        if deployments and key not in deployments:
            errors.append(f"{_name(obj)}: scales Deployment {key[1]!r}, not among the files")
        elif key in deployments and "replicas" in _dict(deployments[key].get("spec")):
            errors.append(
                f"{_name(deployments[key])}: spec.replicas is set, and every apply resets the "
                f"count {_name(obj)} chose: leave it out"
            )
    for (_, deployment), names in owners.items():
        if len(names) > 1:
            errors.append(
                f"Deployment {deployment!r} is scaled by {' and '.join(names)}: two autoscalers "
                "fight (KEDA makes an HPA of its own)"
            )
    return errors


def _service_cross_errors(
    objects: list[dict[str, Any]], deployments: list[dict[str, Any]]
) -> list[str]:
    errors = []
    for service in objects:
        if service.get("kind") != "Service" or not deployments:
            continue
        spec = _dict(service.get("spec"))
        selector = _dict(spec.get("selector"))
        pods = [
            d
            for d in deployments
            if _ns(d) == _ns(service)
            and selector
            and all(_pod_labels(d).get(k) == v for k, v in selector.items())
        ]
        if not pods:
            errors.append(f"{_name(service)}: selector {selector} matches no Deployment's pods")
            continue
        ports = [p for d in pods for c in _containers(d) for p in _dicts(c.get("ports"))]
        numbers = {p.get("containerPort") for p in ports}
        names = {p.get("name") for p in ports}
        for port in _dicts(spec.get("ports")):
            target = port.get("targetPort", port.get("port"))
            if not isinstance(target, int | str):
                continue  # the object's own validation names it
            if target not in (numbers if isinstance(target, int) else names):
                errors.append(
                    f"{_name(service)}: port {port.get('name') or port.get('port')} targets "
                    f"{target!r}, which no container of {_name(pods[0])} declares"
                )
    return errors
