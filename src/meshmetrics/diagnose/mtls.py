"""Istio's mTLS (PeerAuthentication): will Prometheus, outside the mesh, get through?"""

from __future__ import annotations

from typing import Any

from .findings import Finding, Severity
from .objects import KubeObject, labels_match, mapping, mappings, string_map, text, view

#: Where a policy without a selector applies to the whole mesh (Istio's root namespace).
MESH_ROOT_NAMESPACE = "istio-system"


def _selects_workloads(policy: KubeObject) -> bool:
    return bool(mapping(mapping(policy.spec.get("selector")).get("matchLabels")))


def _mode_of(policy: KubeObject, port: int | None) -> str:
    """The policy's own mode for ``port`` (``UNSET`` inherits)."""
    if port is not None:
        port_level = mapping(mapping(policy.spec.get("portLevelMtls")).get(str(port)))
        mode = text(port_level.get("mode"))
        if mode and mode != "UNSET":
            return mode
    return text(mapping(policy.spec.get("mtls")).get("mode"), "UNSET") or "UNSET"


def _mtls_mode(
    policies: list[KubeObject], namespace: str, labels: dict[str, str], port: int | None
) -> tuple[str, str]:
    """The mode Istio applies to ``port`` of a workload, and the policy deciding it.

    Workload policies (with a selector) win over the namespace's, which wins over the
    mesh's; ``UNSET`` inherits from the next level; a port-level mode wins within a policy.
    """
    workload = [
        p
        for p in policies
        if p.namespace == namespace
        and _selects_workloads(p)
        and labels_match(mapping(p.spec.get("selector")), labels)
    ]
    namespace_wide = [p for p in policies if p.namespace == namespace and not _selects_workloads(p)]
    mesh = [p for p in policies if p.namespace == MESH_ROOT_NAMESPACE and not _selects_workloads(p)]
    for found in (workload, namespace_wide, mesh):
        for policy in found:
            mode = _mode_of(policy, port)
            if mode != "UNSET":
                return mode, policy.ref
    return "PERMISSIVE", "Istio's default"


def check_mtls(objects: list[dict[str, Any]]) -> list[Finding]:
    """Will Prometheus, outside the mesh and in plain text, get through to each scraped port?"""
    policies = view(objects, "PeerAuthentication")
    if not policies:
        return []
    findings: list[Finding] = []
    services = view(objects, "Service")
    for monitor in view(objects, "ServiceMonitor"):
        selector = mapping(monitor.spec.get("selector"))
        for service in services:
            if labels_match(selector, service.labels):
                findings += _service_mtls(monitor, service, policies)
    return findings


def _service_mtls(
    monitor: KubeObject, service: KubeObject, policies: list[KubeObject]
) -> list[Finding]:
    pod_labels = string_map(service.spec.get("selector"))
    ports = {text(p.get("name")): p for p in mappings(service.spec.get("ports"))}
    findings = []
    for endpoint in mappings(monitor.spec.get("endpoints")):
        name = text(endpoint.get("port"))
        entry = ports.get(name) if name else None
        if entry is None:
            continue
        target = entry.get("targetPort", entry.get("port"))
        port = target if isinstance(target, int) and not isinstance(target, bool) else None
        mode, decided_by = _mtls_mode(policies, service.namespace, pod_labels, port)
        if mode == "STRICT":
            findings.append(
                Finding(
                    Severity.ERROR,
                    monitor.ref,
                    f"port {name!r} ({target}) of Service {service.name} is under STRICT "
                    f"mTLS ({decided_by}): Prometheus, outside the mesh, scrapes in plain "
                    "text and the sidecar rejects it",
                    "serve the metrics on a port of their own and exempt it alone: "
                    "metrics_port=9464 (MESHMETRICS_METRICS_PORT=9464), then meshmetrics "
                    "manifests --mtls strict --metrics-port 9464",
                )
            )
        else:
            findings.append(
                Finding(
                    Severity.OK,
                    monitor.ref,
                    f"port {name!r} ({target}) accepts plain text ({mode}, {decided_by})",
                )
            )
    return findings
