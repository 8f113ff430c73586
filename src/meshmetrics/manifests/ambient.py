"""What changes when the namespace runs Istio's ambient mode (ztunnel, optional waypoints).

- No sidecar: no Envoy on 15090 in the app's pods and no metrics merging; the app's
  ``/metrics`` is scraped on its own port, as in sidecar mode.
- ztunnel (a DaemonSet in Istio's namespace) reports L4 metrics only
  (``istio_tcp_*``), on port 15020; ``istio_requests_total`` exists only where a waypoint
  proxy handles the traffic (``reporter="waypoint"``).  Without a waypoint the app's own
  request counter is the only L7 request signal.
- ``portLevelMtls`` is honoured for a policy with a workload selector outside the root
  namespace, and turned into a ztunnel rule only when the workload's mode is STRICT: the
  generated policy says STRICT rather than inheriting it (``UNSET``).
"""

from __future__ import annotations

from typing import Any

#: ztunnel's and a waypoint's metrics port (the Envoy-based waypoint serves its statistics
#: merged there, and has no application to count twice).
ISTIO_METRICS_PORT = 15020
#: The label Istio puts on the waypoint proxies it deploys.
WAYPOINT_LABEL = "gateway.istio.io/managed"
WAYPOINT_CONTROLLER = "istio.io-mesh-controller"


def _pod_monitor(
    name: str,
    namespace: str,
    labels: dict[str, str],
    selector: dict[str, Any],
    namespaces: dict[str, Any],
    interval: str,
) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": selector,
            "namespaceSelector": namespaces,
            "jobLabel": "app",
            "podMetricsEndpoints": [
                {
                    "path": "/stats/prometheus",
                    "interval": interval,
                    "relabelings": [
                        {
                            "action": "keep",
                            "sourceLabels": ["__meta_kubernetes_pod_container_port_number"],
                            "regex": str(ISTIO_METRICS_PORT),
                        }
                    ],
                    "metricRelabelings": [
                        {"action": "keep", "sourceLabels": ["__name__"], "regex": "istio_.*"}
                    ],
                }
            ],
        },
    }


def ambient_monitors(
    namespace: str, labels: dict[str, str], istio_namespace: str, interval: str
) -> dict[str, dict[str, Any]]:
    """ztunnel's L4 metrics, and the L7 ones of any waypoint (instead of the sidecars')."""
    ztunnel = _pod_monitor(
        "istio-ztunnel",
        namespace,
        labels,
        {"matchLabels": {"app": "ztunnel"}},
        {"matchNames": [istio_namespace]},
        interval,
    )
    waypoint = _pod_monitor(
        "istio-waypoints",
        namespace,
        labels,
        {"matchLabels": {WAYPOINT_LABEL: WAYPOINT_CONTROLLER}},
        {"any": True},
        interval,
    )
    return {
        "istio-ztunnel-podmonitor.yaml": ztunnel,
        "istio-waypoints-podmonitor.yaml": waypoint,
    }
