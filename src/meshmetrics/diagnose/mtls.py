"""Istio's mTLS (PeerAuthentication): will Prometheus, outside the mesh, get through?"""

from __future__ import annotations

from typing import Any

from .findings import Finding, Severity
from .objects import labels_match

#: Where a policy without a selector applies to the whole mesh (Istio's root namespace).
MESH_ROOT_NAMESPACE = "istio-system"


def _mtls_mode(
    policies: list[dict[str, Any]], namespace: str, labels: dict[str, str], port: int | None
) -> tuple[str, str]:
    """The mode Istio applies to ``port`` of a workload, and the policy deciding it.

    Workload policies (with a selector) win over the namespace's, which wins over the
    mesh's; ``UNSET`` inherits from the next level; a port-level mode wins within a policy.
    """
    workload = [
        p
        for p in policies
        if p["metadata"].get("namespace", "default") == namespace
        and (p.get("spec", {}).get("selector") or {}).get("matchLabels")
        and labels_match(p["spec"]["selector"], labels)
    ]
    namespace_wide = [
        p
        for p in policies
        if p["metadata"].get("namespace", "default") == namespace
        and not (p.get("spec", {}).get("selector") or {}).get("matchLabels")
    ]
    mesh = [
        p
        for p in policies
        if p["metadata"].get("namespace") == MESH_ROOT_NAMESPACE
        and not (p.get("spec", {}).get("selector") or {}).get("matchLabels")
    ]
    for found in (workload, namespace_wide, mesh):
        for policy in found:
            spec = policy.get("spec") or {}
            where = f"PeerAuthentication/{policy['metadata'].get('namespace', 'default')}/"
            where += str(policy["metadata"].get("name"))
            port_mode = ((spec.get("portLevelMtls") or {}).get(str(port)) or {}).get("mode")
            if port is not None and port_mode and port_mode != "UNSET":
                return port_mode, where
            mode = (spec.get("mtls") or {}).get("mode", "UNSET")
            if mode != "UNSET":
                return mode, where
    return "PERMISSIVE", "Istio's default"


def check_mtls(objects: list[dict[str, Any]]) -> list[Finding]:
    """Will Prometheus, outside the mesh and in plain text, get through to each scraped port?"""
    policies = [o for o in objects if o.get("kind") == "PeerAuthentication"]
    if not policies:
        return []
    findings: list[Finding] = []
    services = [o for o in objects if o.get("kind") == "Service"]
    for monitor in (o for o in objects if o.get("kind") == "ServiceMonitor"):
        mname = f"ServiceMonitor/{monitor['metadata'].get('namespace', 'default')}/"
        mname += str(monitor["metadata"].get("name"))
        selector = monitor.get("spec", {}).get("selector") or {}
        for service in services:
            if not labels_match(selector, service["metadata"].get("labels") or {}):
                continue
            namespace = service["metadata"].get("namespace", "default")
            pod_labels = service.get("spec", {}).get("selector") or {}
            ports = {p.get("name"): p for p in service.get("spec", {}).get("ports", [])}
            for endpoint in monitor.get("spec", {}).get("endpoints") or []:
                entry = ports.get(endpoint.get("port"))
                if entry is None:
                    continue
                target = entry.get("targetPort", entry.get("port"))
                port = target if isinstance(target, int) else None
                mode, decided_by = _mtls_mode(policies, namespace, pod_labels, port)
                if mode == "STRICT":
                    findings.append(
                        Finding(
                            Severity.ERROR,
                            mname,
                            f"port {endpoint.get('port')!r} ({target}) of Service "
                            f"{service['metadata']['name']} is under STRICT mTLS "
                            f"({decided_by}): Prometheus, outside the mesh, scrapes in plain "
                            "text and the sidecar rejects it",
                            "serve the metrics on a port of their own and exempt it alone: "
                            "metrics_port=9464, then meshmetrics manifests --mtls strict",
                        )
                    )
                else:
                    findings.append(
                        Finding(
                            Severity.OK,
                            mname,
                            f"port {endpoint.get('port')!r} ({target}) accepts plain text "
                            f"({mode}, {decided_by})",
                        )
                    )
    return findings
