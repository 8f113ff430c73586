"""The Deployment that runs a service, generated from the same configuration as its monitors.

What Istio, Kiali, the HPA and Prometheus need from it, and miss silently otherwise:

- pod labels ``app`` and ``version`` (Istio's telemetry and Kiali's app/version views);
  the selector is ``app`` alone, so a new version is a rollout, not a refused update;
- named container ports: ``http`` (Istio picks the protocol by the name) and, with
  ``metrics_port``, ``http-metrics``, the names the Service and the monitor use;
- probes on the health paths the metrics exclude, so probing is never counted;
- resource requests (an HPA on CPU, and the scheduler, need them);
- the ``MESHMETRICS_*``/``OTEL_*`` environment the configuration implies;
- no ``prometheus.io/*`` annotations (Istio would merge the app's metrics into Envoy's
  scrape); in sidecar mode ``prometheus.istio.io/merge-metrics: "false"`` says so;
- ``/tmp`` on a memory-backed emptyDir: gunicorn's worker heartbeat (``os.fchmod``, which
  "may block a worker for arbitrary time" on a disk-backed filesystem) and the metrics'
  multiprocess files (written on every request) go to the temporary directory, else the
  image's overlay on disk.  Its size counts against the memory limit: bounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, MeshConfig
from ..formats import is_dns1123_subdomain, is_label_value
from .model import ServiceModel

#: Istio's modes of the data plane: a sidecar Envoy per pod, or ztunnel (+ waypoints).
MESH_MODES = ("sidecar", "ambient")
MANAGED_BY = {"app.kubernetes.io/managed-by": "meshmetrics"}
#: Where gunicorn listens when ``PORT`` is set and no ``--bind`` is given.
PORT_ENV = "PORT"
#: The temporary directory (``tempfile.gettempdir()`` without ``TMPDIR``) and its tmpfs.
TMP_DIR = "/tmp"
TMP_VOLUME = "tmp"
TMP_SIZE = "64Mi"
_LIVENESS_NAMES = ("health", "healthz", "livez", "live", "liveness")
_READINESS_NAMES = ("readiness", "ready", "readyz")
# a container image reference: [registry[:port]/]name[/name...][:tag][@digest]
# (distribution/reference's grammar: the registry is a domain name, then a port)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_IMAGE = re.compile(
    rf"\A(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?\Z"
)


@dataclass(frozen=True)
class Workload:
    """How the service's pods run: image, resources, the mesh's data-plane mode."""

    #: Container image (default ``<service>:latest``, built into minikube's runtime).
    image: str | None = None
    cpu_request: str = "100m"
    memory_request: str = "128Mi"
    memory_limit: str = "256Mi"
    #: Istio's data plane in the namespace: ``sidecar`` or ``ambient`` (ztunnel).
    mesh: str = "sidecar"
    #: Secrets whose keys become the container's environment (the app's own settings,
    #: e.g. a JWT key every replica must share).
    secrets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.image is not None and (
            not isinstance(self.image, str) or len(self.image) > 255 or not _IMAGE.match(self.image)
        ):
            raise ConfigError(
                "image",
                self.image,
                "argument",
                "a container image reference such as cmpt756s1:v1 or "
                "registry.example:5000/team/cmpt756s1:v1 (lower-case name, optional tag/digest)",
            )
        for secret in self.secrets:
            if not is_dns1123_subdomain(secret):
                raise ConfigError(
                    "env_secret", secret, "argument", "a Secret's name (a DNS-1123 subdomain)"
                )
        if self.mesh not in MESH_MODES:
            raise ConfigError("mesh", self.mesh, "argument", f"one of {', '.join(MESH_MODES)}")

    def image_of(self, config: MeshConfig) -> str:
        return self.image or f"{config.service}:latest"


def probe_paths(config: MeshConfig) -> tuple[str | None, str | None]:
    """``(liveness, readiness)`` among the excluded paths, by their last segment; the
    readiness probe falls back on the liveness path."""

    def first(names: tuple[str, ...]) -> str | None:
        return next(
            (p for p in config.excluded_paths if p.rstrip("/").rsplit("/", 1)[-1] in names), None
        )

    live = first(_LIVENESS_NAMES)
    ready = first(_READINESS_NAMES) or live
    return live, ready


def environment(config: MeshConfig, port: int) -> list[dict[str, Any]]:
    """What the process must be told in the pod: the facts only the cluster knows."""
    env: list[dict[str, Any]] = [
        {"name": PORT_ENV, "value": str(port)},
        {"name": "MESHMETRICS_SERVICE", "value": config.service},
        {"name": "MESHMETRICS_NAMESPACE", "value": config.namespace},
        {"name": "MESHMETRICS_VERSION", "value": config.version},
    ]
    if config.metrics_port is not None:
        env += [
            {"name": "MESHMETRICS_METRICS_PORT", "value": str(config.metrics_port)},
            {"name": "MESHMETRICS_METRICS_PORT_NAME", "value": config.metrics_port_name},
        ]
    if config.mtls != "permissive":
        env.append({"name": "MESHMETRICS_MTLS", "value": config.mtls})
    if config.tracing != "off":
        env.append({"name": "MESHMETRICS_TRACING", "value": config.tracing})
        if config.trace_endpoint is not None and config.tracing != "otel":
            env.append({"name": "MESHMETRICS_TRACE_ENDPOINT", "value": str(config.trace_endpoint)})
        env += [
            {"name": "OTEL_SERVICE_NAME", "value": config.service},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "OTEL_RESOURCE_ATTRIBUTES",
                "value": f"k8s.namespace.name={config.namespace},k8s.pod.name=$(POD_NAME),"
                f"service.version={config.version}",
            },
        ]
    return env


def _check_labels(config: MeshConfig) -> None:
    """The version becomes a pod label: stricter than the metric label it also is."""
    if not is_label_value(config.version, empty=True):
        raise ValueError(
            f"--version {config.version!r} cannot be the pods' version label: at most 63 "
            "characters of A-Z, a-z, 0-9, '-', '_', '.', starting and ending alphanumeric"
        )


def _probe(path: str | None, port_name: str, period: int) -> dict[str, Any]:
    if path is None:  # no health route excluded from the metrics: the port answers
        return {"tcpSocket": {"port": port_name}, "periodSeconds": period}
    return {"httpGet": {"path": path, "port": port_name}, "periodSeconds": period}


def pod_labels(model: ServiceModel, workload: Workload) -> dict[str, str]:
    c = model.config
    labels = {"app": c.service, "version": c.version}
    if workload.mesh == "ambient":  # enrols the pod in ztunnel without a namespace label
        labels["istio.io/dataplane-mode"] = "ambient"
    return labels


def deployment(
    model: ServiceModel,
    workload: Workload,
    *,
    service_port: int,
    target_port: int | None,
    replicas: int | None,
    kiali_dashboard: str,
) -> dict[str, Any]:
    """An ``apps/v1`` Deployment; ``replicas=None`` when an autoscaler owns the count
    (a ``replicas`` in the applied manifest would reset it on every apply)."""
    c = model.config
    _check_labels(c)
    port = target_port or service_port
    live, ready = probe_paths(c)
    ports = [{"name": c.port_name, "containerPort": port, "protocol": "TCP"}]
    if c.metrics_port is not None:
        ports.append(
            {"name": c.metrics_port_name, "containerPort": c.metrics_port, "protocol": "TCP"}
        )
    annotations = {"kiali.io/dashboards": kiali_dashboard}
    if workload.mesh == "sidecar":
        annotations["prometheus.istio.io/merge-metrics"] = "false"
    container: dict[str, Any] = {
        "name": c.service,
        "image": workload.image_of(c),
        "imagePullPolicy": "IfNotPresent",
        "ports": ports,
        "env": environment(c, port),
        **(
            {"envFrom": [{"secretRef": {"name": name}} for name in workload.secrets]}
            if workload.secrets
            else {}
        ),
        "readinessProbe": _probe(ready, c.port_name, 5),
        "livenessProbe": {**_probe(live, c.port_name, 10), "failureThreshold": 3},
        "resources": {
            "requests": {"cpu": workload.cpu_request, "memory": workload.memory_request},
            "limits": {"memory": workload.memory_limit},
        },
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True},
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": TMP_DIR}],
    }
    spec: dict[str, Any] = {} if replicas is None else {"replicas": replicas}
    spec |= {
        "selector": {"matchLabels": {"app": c.service}},
        "template": {
            "metadata": {"labels": pod_labels(model, workload), "annotations": annotations},
            "spec": {
                "containers": [container],
                "volumes": [
                    {"name": TMP_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": TMP_SIZE}}
                ],
            },
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": c.service,
            "namespace": c.namespace,
            "labels": {"app": c.service, "version": c.version, **MANAGED_BY},
        },
        "spec": spec,
    }
