"""Strict offline validation of monitoring manifests, with the schemas this package ships.

ServiceMonitor, PodMonitor and PrometheusRule are checked against prometheus-operator
v0.93's CRD schemas (``schemas/``, see its NOTICE) the way the API server would
prune them, but strictly: an unknown or misspelt field is an error rather than
silently dropped.  Dashboard ConfigMaps are checked for Kubernetes' size and key
rules and their dashboards linted against Grafana's dashboard schema.  Metadata
follows Kubernetes' name and label rules; duplicate YAML keys are errors.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import yaml
from jsonschema import validators

from ..formats import is_dns1123_label, is_dns1123_subdomain, is_label_key, is_label_value

_CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_OBJECT_META = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "labels",
        "annotations",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "ownerReferences",
        "finalizers",
        "managedFields",
        "selfLink",
    }
)
_CRDS = ("servicemonitors", "podmonitors", "prometheusrules", "peerauthentications")
CONFIGMAP_LIMIT = 1024 * 1024
ANNOTATIONS_LIMIT = 256 * 1024
OPERATOR_VERSION = "v0.93"


def _schema_text(name: str) -> str:
    return resources.files("meshmetrics.manifests").joinpath("schemas", name).read_text()


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Unknown fields fail; RE2 inline flags become Python's; ``nullable`` is honoured."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            node["pattern"] = re.sub(r"^\^\(\?([a-z]+)\)", r"(?\1)^", pattern)
        if node.get("nullable") and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.values():
            walk(value)

    walk(schema)
    properties = schema.get("properties", {})
    if "metadata" in properties:
        properties["metadata"] = {"type": "object"}  # checked by _metadata_errors
    return schema


@cache
def _crd_validators() -> dict[tuple[str, str], Any]:
    found: dict[tuple[str, str], Any] = {}
    for name in _CRDS:
        crd = json.loads(_schema_text(f"{name}.json"))
        for version, schema in crd["versions"].items():
            cls = validators.validator_for(schema, default=jsonschema.Draft4Validator)
            found[(f"{crd['group']}/{version}", crd["kind"])] = cls(_strict(schema))
    return found


@cache
def _dashboard_validator() -> Any:
    return jsonschema.Draft7Validator(json.loads(_schema_text("grafana-dashboard.json")))


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key repeated in one mapping."""


def _mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    keys = [loader.construct_object(key, deep=deep) for key, _ in node.value]
    repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
    if repeated:
        raise yaml.constructor.ConstructorError(
            None, None, f"duplicate key(s) {', '.join(repeated)}", node.start_mark
        )
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def documents(text: str) -> Iterator[Any]:
    """The YAML documents of ``text`` (``yaml.YAMLError`` on duplicate keys)."""
    for doc in yaml.load_all(text, Loader=_UniqueKeyLoader):
        if doc is not None:
            yield doc


def validate_text(text: str) -> list[str]:
    """Every problem of every object in a YAML text; empty when all are valid."""
    try:
        objects = list(documents(text))
    except yaml.YAMLError as exc:
        return [f"YAML: {exc}"]
    errors: list[str] = []
    unpacked: list[Any] = []
    for obj in objects:  # `kubectl get -o yaml` wraps objects in a List
        is_list = isinstance(obj, dict) and str(obj.get("kind", "")).endswith("List")
        items = obj.get("items") if is_list else [obj]
        unpacked += items if isinstance(items, list) else [obj]
    for index, obj in enumerate(unpacked):
        where = _where(obj, index)
        errors += [f"{where}: {e}" for e in validate_object(obj)]
    if not errors:  # the objects of one text together: autoscaler, Service, pods, monitor
        from .cluster_schemas import cross_errors

        errors += cross_errors(unpacked)
    return errors


def _where(obj: Any, index: int) -> str:
    if isinstance(obj, dict):
        meta = obj.get("metadata")
        name = meta.get("name", f"#{index}") if isinstance(meta, dict) else f"#{index}"
        return f"{obj.get('kind', '?')} {name}"
    return f"document #{index}"


def validate_object(obj: Any) -> list[str]:
    """The problems of one Kubernetes object (known kinds only)."""
    if not isinstance(obj, dict):
        return ["not a mapping"]
    from . import cluster_schemas  # the cluster objects' and values files' schemas

    values = cluster_schemas.values_errors(obj)
    if values is not None:  # a Helm values file or a CR patch: no metadata
        return values
    errors = _metadata_errors(obj.get("metadata"))
    kind, api = obj.get("kind"), obj.get("apiVersion")
    if (api, kind) == ("v1", "ConfigMap"):
        return errors + _configmap_errors(obj)
    validator = _crd_validators().get((str(api), str(kind))) or cluster_schemas.validator_for(obj)
    if validator is None:
        if isinstance(api, str) and api.startswith("monitoring.coreos.com/"):
            return [*errors, f"unknown apiVersion/kind {api}/{kind} for prometheus-operator"]
        return errors  # Services, Deployments…: metadata only
    for error in validator.iter_errors(obj):
        path = ".".join(str(p) for p in error.absolute_path) or "<root>"
        errors.append(f"{path}: {error.message}")
    if kind == "PeerAuthentication":
        spec = obj.get("spec")
        errors += _peer_authentication_errors(spec if isinstance(spec, dict) else {})
    if not errors:
        errors += cluster_schemas.semantic_errors(obj)
    return errors


def _peer_authentication_errors(spec: dict[str, Any]) -> list[str]:
    """Istio's rules across fields: port-level modes need a workload selector (Istio ignores
    them otherwise), and a port is 1-65535."""
    ports = spec.get("portLevelMtls") or {}
    selector = spec.get("selector")
    errors: list[str] = []
    if not isinstance(ports, dict):
        return errors  # the CRD schema reports it
    if ports and not (selector.get("matchLabels") if isinstance(selector, dict) else None):
        errors.append("spec.portLevelMtls: needs spec.selector.matchLabels (a workload selector)")
    for port in ports:
        if not str(port).isdecimal() or not 1 <= int(port) <= 65535:
            errors.append(f"spec.portLevelMtls: {port!r} is not a port number 1-65535")
    return errors


def _metadata_errors(meta: Any) -> list[str]:
    if not isinstance(meta, dict):
        return ["metadata: must be a mapping"]
    errors: list[str] = []
    name = meta.get("name")
    if not is_dns1123_subdomain(name):
        errors.append(f"metadata.name {name!r} is not a DNS-1123 subdomain")
    namespace = meta.get("namespace")
    if namespace is not None and not is_dns1123_label(namespace):
        errors.append(f"metadata.namespace {namespace!r} is not a DNS-1123 label")
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        return [*errors, "metadata.labels: must be a mapping"]
    for key, value in labels.items():
        errors += _key_errors(key, "label")
        if not is_label_value(value, empty=True):
            errors.append(f"label {key!r}: value {value!r} is not a label value (quote numbers)")
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict):
        return [*errors, "metadata.annotations: must be a mapping"]
    size = 0
    for key, value in annotations.items():
        errors += _key_errors(key, "annotation")
        size += len(str(key).encode()) + len(str(value).encode())
    if size > ANNOTATIONS_LIMIT:
        errors.append(f"metadata.annotations: {size} bytes > {ANNOTATIONS_LIMIT}")
    errors += [f"metadata: unknown field {k!r}" for k in meta if k not in _OBJECT_META]
    return errors


def _key_errors(key: Any, what: str) -> list[str]:
    if not isinstance(key, str):
        return [f"{what} key {key!r} must be a string"]
    if not is_label_key(key):
        return [f"{what} key {key!r} is not a qualified name"]
    return []


def _configmap_errors(configmap: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    data = configmap.get("data") or {}
    if not isinstance(data, dict):
        return ["data: must be a mapping"]
    size = 0
    for key, value in data.items():
        if not isinstance(key, str) or len(key) > 253 or not _CONFIGMAP_KEY.match(key):
            errors.append(f"data key {key!r} is not a valid ConfigMap key")
        if not isinstance(value, str):
            errors.append(f"data[{key!r}] must be a string")
            continue
        size += len(value.encode())
        if str(key).endswith(".json"):
            errors += [f"data[{key!r}]: {e}" for e in lint_dashboard_json(value)]
    if size > CONFIGMAP_LIMIT:
        errors.append(f"data: {size} bytes > the {CONFIGMAP_LIMIT}-byte ConfigMap limit")
    errors += [
        f"unknown field {k!r}"
        for k in configmap
        if k not in ("apiVersion", "kind", "metadata", "data", "binaryData", "immutable")
    ]
    return errors


def lint_dashboard_json(text: str) -> list[str]:
    """A Grafana dashboard's JSON against Grafana's schema, plus unique panel ids."""
    try:
        dashboard = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"not JSON: {exc}"]
    except RecursionError:
        return ["not JSON a dashboard can be: nested too deeply"]
    if not isinstance(dashboard, dict):
        return ["a dashboard is a JSON object"]
    errors = [
        f"dashboard {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in _dashboard_validator().iter_errors(dashboard)
    ]
    uid = dashboard.get("uid")
    if uid is not None and (
        not isinstance(uid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid)
    ):
        errors.append(f"dashboard uid {uid!r}: at most 40 of A-Z a-z 0-9 - _")
    ids = []
    for panel in dashboard.get("panels") or []:
        ids.append(panel.get("id"))
        ids += [p.get("id") for p in panel.get("panels") or []]
    if None in ids or len(ids) != len(set(ids)):
        errors.append("dashboard panels: every panel needs a unique id")
    return errors
