"""Does every recorded series a dashboard reads have a rule recording it?

A dashboard whose panels read recording rules (``level:metric:operations``, the names with
a colon) shows nothing when the PrometheusRule recording them is not deployed: Grafana
draws "No data" without an error.  Series without a colon are scraped ones and not judged
here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from .findings import Finding, Severity
from .objects import KubeObject, mapping, mappings, text, view

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_NAME = re.compile(r"(?<![\w:$.])[a-zA-Z_:][a-zA-Z0-9_:]*")


def recorded_names(expr: str) -> set[str]:
    """The recording-rule names (with a colon) a PromQL expression reads."""
    bare = _BRACES.sub("", _STRING.sub('""', expr))
    return {name for name in _NAME.findall(bare) if ":" in name.strip(":")}


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard, those in collapsed rows too (however deep)."""
    pending = mappings(dashboard.get("panels"))
    while pending:
        panel = pending.pop(0)
        yield panel
        pending[:0] = mappings(panel.get("panels"))


def _dashboards(configmap: KubeObject) -> Iterator[tuple[str, dict[str, Any]]]:
    for key, value in mapping(configmap.raw.get("data")).items():
        if not (isinstance(key, str) and key.endswith(".json") and isinstance(value, str)):
            continue
        try:
            dashboard = json.loads(value)
        except (ValueError, RecursionError):
            continue  # the schema validation reports it
        if isinstance(dashboard, dict):
            yield key, dashboard


def _records(objects: list[dict[str, Any]]) -> set[str]:
    return {
        text(rule.get("record"))
        for obj in view(objects, "PrometheusRule")
        for group in mappings(obj.spec.get("groups"))
        for rule in mappings(group.get("rules"))
        if rule.get("record")
    }


def check_dashboards(objects: list[dict[str, Any]]) -> list[Finding]:
    """An ERROR per panel reading a recorded series that no PrometheusRule given records."""
    records = _records(objects)
    findings = []
    for configmap in view(objects, "ConfigMap"):
        for key, dashboard in _dashboards(configmap):
            where = f"{configmap.ref}[{key}]"
            for panel in _panels(dashboard):
                exprs = [text(t.get("expr")) for t in mappings(panel.get("targets"))]
                missing = sorted({n for e in exprs for n in recorded_names(e)} - records)
                if missing:
                    findings.append(_blank_panel(where, text(panel.get("title"), "?"), missing))
    return findings


def _blank_panel(where: str, title: str, missing: list[str]) -> Finding:
    return Finding(
        Severity.ERROR,
        where,
        f"panel {title!r} reads {', '.join(missing)}, which no PrometheusRule given records: "
        "the panel stays blank",
        "deploy the PrometheusRule that records it (meshmetrics manifests emits it with "
        "--kind rules) and give its file here, or emit the dashboard with "
        "--no-recording-rules",
    )
