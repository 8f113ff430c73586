"""What a running Prometheus really loaded: the monitors' scrape pools, the rule groups.

Its API's answers are read as untrusted input: an answer of the wrong shape (``[]``, no
``data``, ``activeTargets: null``, nesting past the JSON parser's depth) is one ``UNKNOWN``
finding, never a traceback.
"""

from __future__ import annotations

import json
from http.client import HTTPException
from typing import Any

from .findings import Finding, Severity
from .objects import MONITOR_KINDS, KubeObject, mappings, text, view
from .scrape import get


class UnexpectedAnswerError(ValueError):
    """The Prometheus API answered something other than what it documents."""


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except RecursionError:
        raise UnexpectedAnswerError("JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise UnexpectedAnswerError(f"not JSON ({exc})") from None


def _prometheus_api(base: str, path: str, timeout: float) -> dict[str, Any]:
    """The ``data`` object of ``/api/v1/<path>``."""
    answer = get(f"{base.rstrip('/')}/api/v1/{path}", timeout=timeout)
    if answer.status != 200:
        raise UnexpectedAnswerError(f"/api/v1/{path} answered {answer.status}")
    body = _json(answer.body)
    if not isinstance(body, dict):
        raise UnexpectedAnswerError(f"/api/v1/{path} answered a {type(body).__name__}")
    if body.get("status") != "success":
        raise UnexpectedAnswerError(f"/api/v1/{path}: {text(body.get('error'), 'no success')}")
    data = body.get("data")
    if not isinstance(data, dict):
        raise UnexpectedAnswerError(f"/api/v1/{path} answered no data object")
    return data


def _listed(data: dict[str, Any], key: str, path: str) -> list[dict[str, Any]]:
    if not isinstance(data.get(key), list):
        raise UnexpectedAnswerError(f"/api/v1/{path}: {key} is not a list")
    return mappings(data[key])


def check_live(base: str, objects: list[dict[str, Any]], timeout: float = 10.0) -> list[Finding]:
    """Did this Prometheus select the monitors and load the rules?

    A monitor or rule whose ``release`` label (or namespace) Prometheus does not select is
    ignored without a trace in the cluster, and so is any alert inside it: only Prometheus'
    own API shows it.  prometheus-operator names scrape pools
    ``serviceMonitor/<namespace>/<name>/<endpoint>`` (``podMonitor/...``)."""
    try:
        targets = _listed(_prometheus_api(base, "targets", timeout), "activeTargets", "targets")
        rules = _listed(_prometheus_api(base, "rules", timeout), "groups", "rules")
    except (OSError, ValueError, HTTPException) as exc:
        return [
            Finding(
                Severity.UNKNOWN,
                base,
                f"cannot read the Prometheus API ({type(exc).__name__}: {exc})"[:300],
                "is --prometheus the Prometheus' base URL (kubectl port-forward svc/NAME 9090)?",
            )
        ]
    pools = {text(t.get("scrapePool")) for t in targets}
    groups = {text(g.get("name")) for g in rules}
    findings: list[Finding] = []
    for obj in view(objects, *MONITOR_KINDS):
        findings.append(_monitor_loaded(base, obj, pools))
    for obj in view(objects, "PrometheusRule"):
        findings.append(_rule_loaded(base, obj, groups))
    return findings


def _monitor_loaded(base: str, obj: KubeObject, pools: set[str]) -> Finding:
    prefix = f"{obj.kind[0].lower()}{obj.kind[1:]}/{obj.namespace}/{obj.name}/"
    if any(pool.startswith(prefix) for pool in pools):
        return Finding(Severity.OK, obj.ref, f"Prometheus scrapes it ({prefix}*)")
    return Finding(
        Severity.ERROR,
        obj.ref,
        f"Prometheus at {base} has no scrape pool {prefix}*: it did not select "
        f"this monitor (release label {obj.labels.get('release')!r}, or its namespace)",
        "compare with kubectl get prometheus -A -o yaml: serviceMonitorSelector "
        "and serviceMonitorNamespaceSelector",
    )


def _rule_loaded(base: str, obj: KubeObject, groups: set[str]) -> Finding:
    wanted = [text(g.get("name")) for g in mappings(obj.spec.get("groups"))]
    missing = [g for g in wanted if g not in groups]
    if missing:
        return Finding(
            Severity.ERROR,
            obj.ref,
            f"Prometheus at {base} did not load rule group(s) {missing}: the rule "
            f"is ignored, its alerts too (release label {obj.labels.get('release')!r})",
            "compare with the Prometheus' ruleSelector and ruleNamespaceSelector",
        )
    return Finding(Severity.OK, obj.ref, f"Prometheus loaded {wanted}")
