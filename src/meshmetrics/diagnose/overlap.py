"""A ServiceMonitor and a PodMonitor scraping the same pods on the same port.

Prometheus then scrapes every pod twice: each series exists under two ``job`` labels (the
Service's name, and ``<namespace>/<podmonitor>``), sums over jobs double, and rules that
pick one job switch to whichever monitor came last.
"""

from __future__ import annotations

from dataclasses import dataclass

from .findings import Finding, Severity
from .objects import (
    ISTIO_SIDECAR_PORTS,
    KubeObject,
    PodTemplate,
    labels_match,
    mapping,
    mappings,
    monitor_namespaces,
    string_map,
    text,
)


@dataclass(frozen=True)
class _Target:
    """What a ServiceMonitor's endpoint scrapes: the pods a Service selects, and a port."""

    service: KubeObject
    pod_labels: dict[str, str]
    port: str | int


def _service_targets(monitor: KubeObject, services: list[KubeObject]) -> list[_Target]:
    namespaces = monitor_namespaces(monitor)
    selector = mapping(monitor.spec.get("selector"))
    targets = []
    for service in services:
        if namespaces is not None and service.namespace not in namespaces:
            continue
        pod_labels = string_map(service.spec.get("selector"))
        if not pod_labels or not labels_match(selector, service.labels):
            continue
        ports = {text(p.get("name")): p for p in mappings(service.spec.get("ports"))}
        for endpoint in mappings(monitor.spec.get("endpoints")):
            entry = ports.get(text(endpoint.get("port")))
            if entry is not None:
                port = entry.get("targetPort", entry.get("port"))
                if isinstance(port, str | int) and not isinstance(port, bool):
                    targets.append(_Target(service, pod_labels, port))
    return targets


def _same_port(target: _Target, port: str, pods: list[PodTemplate]) -> bool:
    """Is the Service's target port the PodMonitor's container port ``port``?"""
    if isinstance(target.port, str):
        return target.port == port
    numbers = {
        p.ports.get(port)
        for p in pods
        if p.workload.namespace == target.service.namespace
        and labels_match({"matchLabels": target.pod_labels}, p.labels)
    }
    return not numbers or target.port in numbers  # no pod template given: assume it is


def _pod_monitor_hits(pod_monitor: KubeObject, target: _Target, pods: list[PodTemplate]) -> str:
    """The PodMonitor port scraping the same pods and port as ``target``, or ``''``."""
    namespaces = monitor_namespaces(pod_monitor)
    if namespaces is not None and target.service.namespace not in namespaces:
        return ""
    if not labels_match(mapping(pod_monitor.spec.get("selector")), target.pod_labels):
        return ""
    for endpoint in mappings(pod_monitor.spec.get("podMetricsEndpoints")):
        port = text(endpoint.get("port"))
        if port and port not in ISTIO_SIDECAR_PORTS and _same_port(target, port, pods):
            return port
    return ""


def double_scrapes(
    monitors: list[KubeObject], services: list[KubeObject], pods: list[PodTemplate]
) -> list[Finding]:
    findings = []
    pod_monitors = [m for m in monitors if m.kind == "PodMonitor"]
    for monitor in (m for m in monitors if m.kind == "ServiceMonitor"):
        for target in _service_targets(monitor, services):
            for pod_monitor in pod_monitors:
                port = _pod_monitor_hits(pod_monitor, target, pods)
                if port:
                    findings.append(_double(monitor, pod_monitor, target, port))
    return findings


def _double(monitor: KubeObject, pod_monitor: KubeObject, target: _Target, port: str) -> Finding:
    job = text(monitor.spec.get("jobLabel"))
    service_job = f"the value of the Service's {job!r} label" if job else repr(target.service.name)
    return Finding(
        Severity.WARNING,
        monitor.ref,
        f"scrapes the pods {target.pod_labels} of Service {target.service.name} on port "
        f"{port!r}, and so does {pod_monitor.ref}: every series twice, under job "
        f"{service_job} and job '{pod_monitor.namespace}/{pod_monitor.name}'; sums over "
        "jobs double and the recording rules' job changes",
        "keep one of the two monitors (meshmetrics manifests --kind servicemonitor or "
        "--kind podmonitor, not both)",
    )
