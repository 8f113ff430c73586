"""Will each ServiceMonitor/PodMonitor select its Service/pods: by namespace, labels, port
*name*, and the Helm ``release`` label Prometheus selects monitors by.

Objects the mesh installs are judged as such: a monitor looking only in namespaces of which
no object was given (istiod's Service in ``istio-system``) is not checked against the
app's objects, and Istio's sidecar port (``http-envoy-prom``) is the injected proxy's, not
one the app's pod template declares.
"""

from __future__ import annotations

from typing import Any

from .findings import Finding, Severity
from .mtls import check_mtls
from .objects import (
    ISTIO_SIDECAR_PORTS,
    MONITOR_KINDS,
    WORKLOAD_KINDS,
    KubeObject,
    PodTemplate,
    labels_match,
    mapping,
    mappings,
    monitor_namespaces,
    text,
    view,
)
from .overlap import double_scrapes


def check_manifests(objects: list[dict[str, Any]], release: str | None) -> list[Finding]:
    findings: list[Finding] = []
    services = view(objects, "Service")
    pods = [PodTemplate.of(w) for w in view(objects, *WORKLOAD_KINDS)]
    monitors = view(objects, *MONITOR_KINDS)
    if not monitors:
        return [Finding(Severity.ERROR, "manifests", "no ServiceMonitor or PodMonitor found")]
    for monitor in monitors:
        findings += _release(monitor, release)
        if monitor.kind == "ServiceMonitor":
            findings += _check_service_monitor(monitor, services)
        else:
            findings += _check_pod_monitor(monitor, pods)
    findings += [f for monitor in monitors for f in _pod_target_labels(monitor, pods)]
    return findings + double_scrapes(monitors, services, pods) + check_mtls(objects)


def _pod_target_labels(monitor: KubeObject, pods: list[PodTemplate]) -> list[Finding]:
    """``podTargetLabels`` the monitored pods do not carry: the scrape works, but the
    series lack the label (Kiali's dashboards query ``{namespace, app, version}``)."""
    wanted = monitor.spec.get("podTargetLabels")
    wanted = [w for w in wanted if isinstance(w, str)] if isinstance(wanted, list) else []
    app = mapping(mapping(monitor.spec.get("selector")).get("matchLabels")).get("app")
    findings = []
    for pod in pods:
        if not wanted or app is None or pod.labels.get("app") != app:
            continue
        missing = [label for label in wanted if label not in pod.labels]
        if missing:
            findings.append(
                Finding(
                    Severity.WARNING,
                    monitor.ref,
                    f"podTargetLabels {missing} are not labels of {pod.workload.ref}'s pods: "
                    "its series lack them, and Kiali's dashboards (which query app and "
                    "version) find nothing",
                    f"add {', '.join(missing)} to the pod template's labels",
                )
            )
    return findings


def _release(monitor: KubeObject, release: str | None) -> list[Finding]:
    found = monitor.labels.get("release")
    if release is not None and found != release:
        return [
            Finding(
                Severity.ERROR,
                monitor.ref,
                f"label release={found!r}, Prometheus selects "
                f"release={release!r}: the monitor is ignored",
                f"add metadata.labels.release: {release}",
            )
        ]
    if release is None and found is None:
        return [
            Finding(
                Severity.WARNING,
                monitor.ref,
                "no release label: kube-prometheus-stack ignores it by default",
                "add metadata.labels.release: <helm release>",
            )
        ]
    return []


def _not_given(monitor: KubeObject, what: str, namespaces: set[str] | None) -> Finding:
    where = f"namespace(s) {sorted(namespaces)}" if namespaces else "any namespace"
    return Finding(
        Severity.INFO,
        monitor.ref,
        f"selects {what} in {where}, none of which was given: not checked here",
        f"add its YAML (kubectl get {'svc' if what == 'Services' else 'pods'} -n NAMESPACE "
        "-o yaml), or check it live with --prometheus",
    )


def _check_service_monitor(monitor: KubeObject, services: list[KubeObject]) -> list[Finding]:
    namespaces = monitor_namespaces(monitor)
    selector = mapping(monitor.spec.get("selector"))
    if not services:
        return [
            Finding(
                Severity.WARNING,
                monitor.ref,
                "no Service given to check against",
                "add the Service's YAML (kubectl get svc NAME -o yaml)",
            )
        ]
    in_ns = [s for s in services if namespaces is None or s.namespace in namespaces]
    selected = [s for s in in_ns if labels_match(selector, s.labels)]
    if selected:
        return [f for s in selected for f in _service_ports(monitor, s)]
    near = [s for s in services if labels_match(selector, s.labels)]
    if near:
        return [
            Finding(
                Severity.ERROR,
                monitor.ref,
                f"Service {near[0].name} has the labels but is in namespace "
                f"{near[0].namespace}, outside namespaceSelector {sorted(namespaces or [])}",
                f"set spec.namespaceSelector.matchNames: [{near[0].namespace}]",
            )
        ]
    if not in_ns:
        return [_not_given(monitor, "Services", namespaces)]
    return [
        Finding(
            Severity.ERROR,
            monitor.ref,
            f"selector {selector.get('matchLabels') or selector} matches no Service "
            f"(Service labels: {[s.labels for s in in_ns]})",
            "make selector.matchLabels equal the Service's metadata.labels (app: NAME)",
        )
    ]


def _service_ports(monitor: KubeObject, service: KubeObject) -> list[Finding]:
    port_names = [text(p.get("name")) for p in mappings(service.spec.get("ports"))]
    findings = []
    for endpoint in mappings(monitor.spec.get("endpoints")):
        port = endpoint.get("port")
        if port is None:
            findings.append(
                Finding(
                    Severity.WARNING,
                    monitor.ref,
                    "endpoint without a port name",
                    "name the Service port and use endpoints[].port",
                )
            )
        elif text(port) not in port_names or not isinstance(port, str):
            findings.append(
                Finding(
                    Severity.ERROR,
                    monitor.ref,
                    f"endpoint port {port!r} is not a port name of "
                    f"Service {service.name} (names: {port_names})",
                    "endpoints[].port is the Service port's *name*, not its number",
                )
            )
        else:
            findings.append(
                Finding(
                    Severity.OK,
                    monitor.ref,
                    f"selects Service {service.name}, port {port!r}, path "
                    f"{text(endpoint.get('path'), '/metrics')}",
                )
            )
    return findings


def _check_pod_monitor(monitor: KubeObject, pods: list[PodTemplate]) -> list[Finding]:
    namespaces = monitor_namespaces(monitor)
    selector = mapping(monitor.spec.get("selector"))
    if not pods:
        return [
            Finding(
                Severity.WARNING,
                monitor.ref,
                "no pod template given to check against",
                "add the Deployment's YAML (kubectl get deploy NAME -o yaml)",
            )
        ]
    in_ns = [p for p in pods if namespaces is None or p.workload.namespace in namespaces]
    selected = [p for p in in_ns if labels_match(selector, p.labels)]
    if selected:
        return [f for p in selected for f in _pod_ports(monitor, p)]
    if not in_ns:
        return [_not_given(monitor, "pods", namespaces)]
    return [
        Finding(
            Severity.ERROR,
            monitor.ref,
            "selects no pod template given",
            "check selector and namespace",
        )
    ]


def _pod_ports(monitor: KubeObject, pod: PodTemplate) -> list[Finding]:
    findings = []
    workload = f"{pod.workload.kind} {pod.workload.name}"
    for endpoint in mappings(monitor.spec.get("podMetricsEndpoints")):
        port = text(endpoint.get("port"))
        if port in ISTIO_SIDECAR_PORTS:
            findings.append(_sidecar_port(monitor, pod, port))
        elif port in pod.ports:
            findings.append(Finding(Severity.OK, monitor.ref, f"selects {workload}, port {port!r}"))
        else:
            findings.append(
                Finding(
                    Severity.ERROR,
                    monitor.ref,
                    f"port {endpoint.get('port')!r} is not a container "
                    f"port name of {pod.workload.name} (names: {sorted(pod.ports)})",
                    "name the container port",
                )
            )
    return findings


def _sidecar_port(monitor: KubeObject, pod: PodTemplate, port: str) -> Finding:
    workload = f"{pod.workload.kind} {pod.workload.name}"
    if pod.sidecar_opt_out:
        return Finding(
            Severity.INFO,
            monitor.ref,
            f"{workload} opts out of the sidecar (sidecar.istio.io/inject: 'false'): no "
            f"{port!r} port to scrape there",
        )
    return Finding(
        Severity.OK,
        monitor.ref,
        f"selects {workload}, port {port!r} ({ISTIO_SIDECAR_PORTS[port]}) of the "
        "istio-proxy container Istio injects",
    )
