"""Kubernetes objects as ``check`` reads them: loaded from files, read through a view that
never trusts their shape, selected by labels and namespaces.

YAML of the wrong shape (``metadata: null``, ``spec: []``, ``endpoints: [1]``, ``labels:
[x]``) is valid YAML: the API server would reject it (the strict schema validation says so),
and here every field of the wrong type reads as absent, so a check reports what it finds
instead of stopping with a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

MONITOR_KINDS = ("ServiceMonitor", "PodMonitor")
WORKLOAD_KINDS = ("Pod", "Deployment", "StatefulSet", "DaemonSet")
#: The label (or annotation) a pod opts out of Istio's sidecar with.
SIDECAR_INJECT = "sidecar.istio.io/inject"
#: The port Istio's injected ``istio-proxy`` container declares for Envoy's own statistics
#: (``/stats/prometheus``; 15020 is the agent's merged endpoint).
ISTIO_SIDECAR_PORTS = {"http-envoy-prom": 15090}


class UnreadableInputError(ValueError):
    """An input ``check`` cannot read at all (not YAML, nested past the parser's limit)."""


def mapping(value: object) -> dict[str, Any]:
    """``value`` if it is a mapping, else an empty one."""
    return value if isinstance(value, dict) else {}


def mappings(value: object) -> list[dict[str, Any]]:
    """The mappings in ``value`` if it is a list (other items dropped), else none."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def text(value: object, default: str = "") -> str:
    """``value`` if a string, a number's text (YAML reads ``name: 1`` as one), else ``default``."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return default


def texts(value: object) -> list[str]:
    """The text of each item of ``value`` if it is a list, else none."""
    return [text(v) for v in value] if isinstance(value, list) else []


def string_map(value: object) -> dict[str, str]:
    """A label map: string keys to their values' text; anything else dropped."""
    return {k: text(v) for k, v in mapping(value).items() if isinstance(k, str)}


@dataclass(frozen=True)
class KubeObject:
    """The fields every check reads, each of the right type whatever the YAML held."""

    kind: str
    name: str
    namespace: str
    labels: dict[str, str]
    spec: dict[str, Any]
    raw: dict[str, Any]

    @classmethod
    def of(cls, raw: dict[str, Any]) -> KubeObject:
        meta = mapping(raw.get("metadata"))
        return cls(
            kind=text(raw.get("kind")),
            name=text(meta.get("name"), "?"),
            namespace=text(meta.get("namespace")) or "default",
            labels=string_map(meta.get("labels")),
            spec=mapping(raw.get("spec")),
            raw=raw,
        )

    @property
    def ref(self) -> str:
        """``Kind/namespace/name``, as findings name objects."""
        return f"{self.kind}/{self.namespace}/{self.name}"


def view(objects: list[dict[str, Any]], *kinds: str) -> list[KubeObject]:
    """The objects of these kinds (all objects without kinds), as views."""
    seen = [KubeObject.of(o) for o in objects if isinstance(o, dict)]
    return [o for o in seen if not kinds or o.kind in kinds]


def parse_manifests(path: Path) -> list[dict[str, Any]]:
    """The objects of one file; :class:`UnreadableInputError` when it cannot be read."""
    import yaml

    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        problem = " ".join(str(exc).split())  # one line
        raise UnreadableInputError(f"cannot read {path}: {problem}"[:300]) from None
    except RecursionError:
        raise UnreadableInputError(f"cannot read {path}: nested too deeply") from None
    refused = aliasing_problem(docs)
    if refused is not None:
        raise UnreadableInputError(f"cannot read {path}: {refused}")
    objects: list[dict[str, Any]] = []
    for doc in docs:
        if isinstance(doc, dict) and text(doc.get("kind")).endswith("List"):
            objects += mappings(doc.get("items"))
        elif isinstance(doc, dict):
            objects.append(doc)
    return objects


#: go-yaml's limits (kubectl and the API server decode with it): past ~400k nodes, ever
#: less of a document may come from alias expansion (99 % down to 10 % at 4M nodes).
_ALIAS_RATIO_LOW, _ALIAS_RATIO_HIGH = 400_000, 4_000_000


def _allowed_alias_ratio(nodes: int) -> float:
    if nodes <= _ALIAS_RATIO_LOW:
        return 0.99
    if nodes >= _ALIAS_RATIO_HIGH:
        return 0.10
    share = (nodes - _ALIAS_RATIO_LOW) / (_ALIAS_RATIO_HIGH - _ALIAS_RATIO_LOW)
    return 0.99 - 0.89 * share


def aliasing_problem(documents: list[Any]) -> str | None:
    """Why loaded YAML is refused as Kubernetes' YAML parser (go-yaml) refuses it, or
    ``None``: an anchor that contains itself, or "excessive aliasing" (a billion-laughs
    document: a kilobyte whose aliases expand to 9**9 nodes, which every later check
    would walk).  PyYAML shares an aliased node, so the count here is linear in the
    text; each node's expanded size is computed once."""
    sizes: dict[int, int] = {}  # id of a list/dict -> nodes it expands to, itself included
    aliased = 0  # nodes that come from expanding an alias (every reuse of a node)
    stack: list[tuple[Any, bool]] = [(documents, False)]
    open_ids: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = list(node.values()) if isinstance(node, dict) else node
        if done:
            open_ids.discard(key)
            sizes[key] = 1 + sum(
                sizes.get(id(c), 1) if isinstance(c, list | dict) else 1 for c in children
            )
            continue
        if key in open_ids:
            return "an anchor contains itself (Kubernetes' YAML parser refuses it)"
        if key in sizes:  # a reuse: the alias expands to the whole node again
            aliased += sizes[key]
            continue
        open_ids.add(key)
        stack.append((node, True))
        stack += [(c, False) for c in reversed(children) if isinstance(c, list | dict)]
    total = sizes[id(documents)]
    if aliased > 100 and total > 1000 and aliased / total > _allowed_alias_ratio(total):
        return (
            f"excessive aliasing: its anchors expand to {total} nodes, {aliased} of them "
            "copies (Kubernetes' YAML parser refuses such a document)"
        )
    return None


def labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Does a Kubernetes label selector (``matchLabels``, ``matchExpressions``) match?"""
    for key, value in mapping(selector.get("matchLabels")).items():
        if labels.get(key) != text(value, default="\0"):
            return False
    for expr in mappings(selector.get("matchExpressions")):
        key, op = text(expr.get("key")), expr.get("operator")
        values = texts(expr.get("values"))
        if (op == "In" and labels.get(key) not in values) or (
            op == "NotIn" and labels.get(key) in values
        ):
            return False
        if (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def monitor_namespaces(monitor: KubeObject) -> set[str] | None:
    """Namespaces a monitor looks in; None for any."""
    selector = mapping(monitor.spec.get("namespaceSelector"))
    if selector.get("any") is True:
        return None
    return set(texts(selector.get("matchNames"))) or {monitor.namespace}


@dataclass(frozen=True)
class PodTemplate:
    """The pods a workload runs: their labels and container ports (name → number)."""

    workload: KubeObject
    labels: dict[str, str]
    ports: dict[str, int | None]
    sidecar_opt_out: bool

    @classmethod
    def of(cls, workload: KubeObject) -> PodTemplate:
        template = (
            workload.raw if workload.kind == "Pod" else mapping(workload.spec.get("template"))
        )
        meta = mapping(template.get("metadata"))
        containers = mappings(mapping(template.get("spec")).get("containers"))
        ports = {
            text(p.get("name")): p.get("containerPort")
            for c in containers
            for p in mappings(c.get("ports"))
            if text(p.get("name"))
        }
        labels = string_map(meta.get("labels"))
        annotations = string_map(meta.get("annotations"))
        inject = labels.get(SIDECAR_INJECT) or annotations.get(SIDECAR_INJECT)
        return cls(
            workload,
            labels,
            {name: n if isinstance(n, int) else None for name, n in ports.items()},
            sidecar_opt_out=inject == "false",
        )
