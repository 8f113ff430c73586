"""Will each ServiceMonitor/PodMonitor select its Service/pods: by namespace, labels, port
*name*, and the Helm ``release`` label Prometheus selects monitors by."""

from __future__ import annotations

from typing import Any

from .findings import Finding, Severity
from .mtls import check_mtls
from .objects import labels_match, monitor_namespaces


def check_manifests(objects: list[dict[str, Any]], release: str | None) -> list[Finding]:
    findings: list[Finding] = []
    services = [o for o in objects if o.get("kind") == "Service"]
    pods = [
        o for o in objects if o.get("kind") in ("Pod", "Deployment", "StatefulSet", "DaemonSet")
    ]
    monitors = [o for o in objects if o.get("kind") in ("ServiceMonitor", "PodMonitor")]
    if not monitors:
        return [Finding(Severity.ERROR, "manifests", "no ServiceMonitor or PodMonitor found")]
    for monitor in monitors:
        meta = monitor.get("metadata", {})
        name = f"{monitor['kind']}/{meta.get('namespace', 'default')}/{meta.get('name')}"
        labels = meta.get("labels") or {}
        if release is not None and labels.get("release") != release:
            findings.append(
                Finding(
                    Severity.ERROR,
                    name,
                    f"label release={labels.get('release')!r}, Prometheus selects "
                    f"release={release!r}: the monitor is ignored",
                    f"add metadata.labels.release: {release}",
                )
            )
        elif release is None and "release" not in labels:
            findings.append(
                Finding(
                    Severity.WARNING,
                    name,
                    "no release label: kube-prometheus-stack ignores it by default",
                    "add metadata.labels.release: <helm release>",
                )
            )
        if monitor["kind"] == "ServiceMonitor":
            findings += _check_service_monitor(name, monitor, services)
        else:
            findings += _check_pod_monitor(name, monitor, pods)
    return findings + check_mtls(objects)


def _check_service_monitor(
    name: str, monitor: dict[str, Any], services: list[dict[str, Any]]
) -> list[Finding]:
    spec = monitor.get("spec", {})
    namespaces = monitor_namespaces(monitor)
    selector = spec.get("selector") or {}
    if not services:
        return [
            Finding(
                Severity.WARNING,
                name,
                "no Service given to check against",
                "add the Service's YAML (kubectl get svc NAME -o yaml)",
            )
        ]
    in_ns = [
        s
        for s in services
        if namespaces is None or s["metadata"].get("namespace", "default") in namespaces
    ]
    selected = [s for s in in_ns if labels_match(selector, s["metadata"].get("labels") or {})]
    if not selected:
        near = [s for s in services if labels_match(selector, s["metadata"].get("labels") or {})]
        if near:
            ns = near[0]["metadata"].get("namespace", "default")
            return [
                Finding(
                    Severity.ERROR,
                    name,
                    f"Service {near[0]['metadata']['name']} has the labels but is in "
                    f"namespace {ns}, outside namespaceSelector {sorted(namespaces or [])}",
                    f"set spec.namespaceSelector.matchNames: [{ns}]",
                )
            ]
        return [
            Finding(
                Severity.ERROR,
                name,
                f"selector {selector.get('matchLabels') or selector} matches no Service "
                f"(Service labels: {[s['metadata'].get('labels') for s in in_ns]})",
                "make selector.matchLabels equal the Service's metadata.labels (app: NAME)",
            )
        ]
    findings = []
    for service in selected:
        svc = service["metadata"]["name"]
        port_names = [p.get("name") for p in service.get("spec", {}).get("ports", [])]
        for endpoint in spec.get("endpoints") or []:
            port = endpoint.get("port")
            if port is None:
                findings.append(
                    Finding(
                        Severity.WARNING,
                        name,
                        "endpoint without a port name",
                        "name the Service port and use endpoints[].port",
                    )
                )
            elif port not in port_names:
                findings.append(
                    Finding(
                        Severity.ERROR,
                        name,
                        f"endpoint port {port!r} is not a port name of "
                        f"Service {svc} (names: {port_names})",
                        "endpoints[].port is the Service port's *name*, not its number",
                    )
                )
            else:
                findings.append(
                    Finding(
                        Severity.OK,
                        name,
                        f"selects Service {svc}, port {port!r}, path "
                        f"{endpoint.get('path', '/metrics')}",
                    )
                )
    return findings


def _check_pod_monitor(
    name: str, monitor: dict[str, Any], workloads: list[dict[str, Any]]
) -> list[Finding]:
    spec = monitor.get("spec", {})
    namespaces = monitor_namespaces(monitor)
    selector = spec.get("selector") or {}
    for workload in workloads:
        meta = workload["metadata"]
        template = workload.get("spec", {}).get("template", workload)
        labels = template.get("metadata", {}).get("labels") or {}
        if namespaces is not None and meta.get("namespace", "default") not in namespaces:
            continue
        if not labels_match(selector, labels):
            continue
        containers = template.get("spec", {}).get("containers", [])
        names = [p.get("name") for c in containers for p in c.get("ports", [])]
        findings = []
        for endpoint in spec.get("podMetricsEndpoints") or []:
            if endpoint.get("port") in names:
                findings.append(
                    Finding(
                        Severity.OK,
                        name,
                        f"selects {workload['kind']} {meta['name']}, port {endpoint['port']!r}",
                    )
                )
            else:
                findings.append(
                    Finding(
                        Severity.ERROR,
                        name,
                        f"port {endpoint.get('port')!r} is not a container "
                        f"port name of {meta['name']} (names: {names})",
                        "name the container port",
                    )
                )
        return findings
    if not workloads:
        return [
            Finding(
                Severity.WARNING,
                name,
                "no pod template given to check against",
                "add the Deployment's YAML (kubectl get deploy NAME -o yaml)",
            )
        ]
    return [
        Finding(
            Severity.ERROR, name, "selects no pod template given", "check selector and namespace"
        )
    ]
