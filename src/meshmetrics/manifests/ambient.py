"""What changes when the namespace runs Istio's ambient mode (ztunnel, optional waypoints).

- No sidecar: no Envoy on 15090 in the app's pods and no metrics merging; the app's
  ``/metrics`` is scraped on its own port, as in sidecar mode.
- ztunnel (a DaemonSet in Istio's namespace) reports L4 metrics only (``istio_tcp_*``),
  on port 15020 (``ztunnel-stats``); ``istio_requests_total`` exists only where a
  waypoint proxy handles the traffic (``reporter="waypoint"``).  Without a waypoint the
  app's own request counter is the only L7 request signal.
- ``portLevelMtls`` is honoured for a policy with a workload selector outside the root
  namespace, and turned into a ztunnel rule only when the workload's mode is STRICT: the
  generated policy says STRICT rather than inheriting it (``UNSET``).
"""

from __future__ import annotations

from typing import Any

#: ztunnel's DaemonSet: pods labelled ``app: ztunnel``, metrics on 15020 (``ztunnel-stats``,
#: served at ``/metrics`` and ``/stats/prometheus``) - Istio's ztunnel chart.
ZTUNNEL_PORT = "ztunnel-stats"
#: Waypoints are Gateways of class ``istio-waypoint``; their Envoy's own statistics are on
#: ``http-envoy-prom`` (15090), as a sidecar's (Istio's waypoint template).
WAYPOINT_CLASS_LABEL = "gateway.networking.k8s.io/gateway-class-name"
WAYPOINT_CLASS = "istio-waypoint"


def _pod_monitor(
    name: str,
    namespace: str,
    labels: dict[str, str],
    selector: dict[str, Any],
    namespaces: dict[str, Any],
    endpoint: dict[str, Any],
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
                    **endpoint,
                    # Istio's standard metrics only
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
        {"port": ZTUNNEL_PORT, "path": "/metrics", "interval": interval},
    )
    waypoint = _pod_monitor(
        "istio-waypoints",
        namespace,
        labels,
        {"matchLabels": {WAYPOINT_CLASS_LABEL: WAYPOINT_CLASS}},
        {"any": True},
        {"port": "http-envoy-prom", "path": "/stats/prometheus", "interval": interval},
    )
    return {
        "istio-ztunnel-podmonitor.yaml": ztunnel,
        "istio-waypoints-podmonitor.yaml": waypoint,
    }
