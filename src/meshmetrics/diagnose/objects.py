"""Kubernetes objects as ``check`` reads them: loaded from files, selected by labels and
namespaces."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_manifests(paths: list[Path]) -> list[dict[str, Any]]:
    """Every object in the files (``kind: List`` from ``kubectl get -o yaml`` unpacked)."""
    import yaml

    objects: list[dict[str, Any]] = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            items = doc.get("items") if doc.get("kind", "").endswith("List") else [doc]
            objects += [o for o in items or [] if isinstance(o, dict)]
    return objects


def labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (
            op == "NotIn" and labels.get(key) in values
        ):
            return False
        if (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def monitor_namespaces(monitor: dict[str, Any]) -> set[str] | None:
    """Namespaces a monitor looks in; None for any."""
    selector = monitor.get("spec", {}).get("namespaceSelector") or {}
    if selector.get("any"):
        return None
    names = selector.get("matchNames")
    return set(names) if names else {monitor.get("metadata", {}).get("namespace", "default")}
