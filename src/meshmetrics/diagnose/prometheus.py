"""What a running Prometheus really loaded: the monitors' scrape pools, the rule groups."""

from __future__ import annotations

import json
from http.client import HTTPException
from typing import Any

from .findings import Finding, Severity
from .scrape import get


def _prometheus_api(base: str, path: str, timeout: float) -> Any:
    answer = get(f"{base.rstrip('/')}/api/v1/{path}", timeout=timeout)
    if answer.status != 200:
        raise ValueError(f"answered {answer.status}")
    body = json.loads(answer.body)
    if body.get("status") != "success":
        raise ValueError(str(body.get("error")))
    return body["data"]


def check_live(base: str, objects: list[dict[str, Any]], timeout: float = 10.0) -> list[Finding]:
    """Did this Prometheus select the monitors and load the rules?

    A monitor or rule whose ``release`` label (or namespace) Prometheus does not select is
    ignored without a trace in the cluster, and so is any alert inside it: only Prometheus'
    own API shows it.  prometheus-operator names scrape pools
    ``serviceMonitor/<namespace>/<name>/<endpoint>`` (``podMonitor/...``)."""
    try:
        pools = {
            t.get("scrapePool", "")
            for t in _prometheus_api(base, "targets", timeout)["activeTargets"]
        }
        groups = {g.get("name") for g in _prometheus_api(base, "rules", timeout)["groups"]}
    except (OSError, ValueError, HTTPException) as exc:
        return [
            Finding(
                Severity.ERROR, base, f"Prometheus API unreachable ({type(exc).__name__}: {exc})"
            )
        ]
    findings: list[Finding] = []
    for obj in objects:
        kind, meta = obj.get("kind"), obj.get("metadata") or {}
        namespace, name = meta.get("namespace", "default"), meta.get("name")
        where = f"{kind}/{namespace}/{name}"
        if kind in ("ServiceMonitor", "PodMonitor"):
            prefix = f"{kind[0].lower()}{kind[1:]}/{namespace}/{name}/"
            if any(pool.startswith(prefix) for pool in pools):
                findings.append(Finding(Severity.OK, where, f"Prometheus scrapes it ({prefix}*)"))
            else:
                findings.append(
                    Finding(
                        Severity.ERROR,
                        where,
                        f"Prometheus at {base} has no scrape pool {prefix}*: it did not select "
                        f"this monitor (release label {meta.get('labels', {}).get('release')!r}, "
                        "or its namespace)",
                        "compare with kubectl get prometheus -A -o yaml: serviceMonitorSelector "
                        "and serviceMonitorNamespaceSelector",
                    )
                )
        elif kind == "PrometheusRule":
            wanted = [g.get("name") for g in (obj.get("spec") or {}).get("groups") or []]
            missing = [g for g in wanted if g not in groups]
            if missing:
                findings.append(
                    Finding(
                        Severity.ERROR,
                        where,
                        f"Prometheus at {base} did not load rule group(s) {missing}: the rule "
                        f"is ignored, its alerts too (release label "
                        f"{meta.get('labels', {}).get('release')!r})",
                        "compare with the Prometheus' ruleSelector and ruleNamespaceSelector",
                    )
                )
            else:
                findings.append(Finding(Severity.OK, where, f"Prometheus loaded {wanted}"))
    return findings
