"""The autoscaler's metrics and the Kiali dashboard, proven on a real Prometheus (issue 22).

- Two app processes scraped as two pods of one namespace (labels as prometheus-operator
  gives them from the generated ServiceMonitor, ``app``/``version`` copied by its
  ``podTargetLabels``): each adapter rule's ``metricsQuery``, rendered as prometheus-adapter
  renders it, returns one value per pod, that pod's own;
- every chart of the Kiali dashboard, queried as Kiali queries it
  (``{namespace, app, version}``), returns data;
- the HPA's replica calculation, fed by the adapter's query over a backfilled traffic burst,
  scales up during the burst and back down only once the stabilization window has passed.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from helpers import PYTHON, Server
from meshmetrics.cli.manifests import load_app
from meshmetrics.config import MeshConfig
from meshmetrics.manifests import build_objects, model_from_config
from meshmetrics.manifests.autoscaling import (
    Autoscale,
    Scaling,
    adapter_rules,
    adapter_values,
    service_query,
)
from meshmetrics.manifests.kiali import charts, kiali_queries
from meshmetrics.manifests.options import ManifestOptions
from meshmetrics.manifests.service_model import build_model
from meshmetrics.testing.autoscaling import HpaSimulator, render_metrics_query
from meshmetrics.testing.prometheus import LocalPrometheus, prometheus_binary, target_from_monitor

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        prometheus_binary() is None or shutil.which("promtool") is None,
        reason="Debian's prometheus/promtool not installed (apt-get install -y prometheus)",
    ),
]
PODS = ("shop-7d9f-aaaaa", "shop-7d9f-bbbbb")
POD_LABELS = {"app": "shop", "version": "v1"}


def _series_name(rule: dict[str, Any]) -> str:
    return str(rule["seriesQuery"].split("{", 1)[0])


def _values(result: list[dict[str, Any]]) -> dict[str, float]:
    return {r["metric"].get("pod", ""): float(r["value"][1]) for r in result}


def _query_at(prom: LocalPrometheus, expr: str, at: float) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = prom.api("query", query=expr, time=str(at))["result"]
    return result


@pytest.fixture
def two_pods(start_server: Callable[..., Server]) -> list[Server]:
    app_code = "from apps.shop import app; app.run(host='127.0.0.1', port=0, threaded=True)"
    return [start_server([PYTHON, "-c", app_code]) for _ in PODS]


def test_adapter_rules_give_each_pod_its_own_rate_and_kiali_charts_have_data(
    two_pods: list[Server],
) -> None:
    model = build_model(
        load_app("apps.shop"),
        {"scrape_interval": "1s", "version": "v1"},
        podmonitor=False,
        istio=False,
    )
    monitor = build_objects(model, ["servicemonitor"])["shop-servicemonitor.yaml"]
    assert monitor["spec"]["podTargetLabels"] == ["app", "version"]
    targets = [
        target_from_monitor(monitor, f"127.0.0.1:{server.port}", pod=pod, pod_labels=POD_LABELS)
        for server, pod in zip(two_pods, PODS, strict=True)
    ]
    rules = adapter_values(model, Scaling())["rules"]["custom"]
    assert rules == adapter_rules(model.config)
    with LocalPrometheus(targets) as prom:
        assert len(prom.wait_for('count(up{job="shop"} == 1) == 2')) == 1, prom.log()[-2000:]
        # four times the traffic on the first pod, over several scrapes
        for round_ in range(5):
            for pod_index, server in enumerate(two_pods):
                for i in range(12 if pod_index == 0 else 2):
                    requests.get(f"{server.base}/orders/{round_}-{i}", timeout=10)
                requests.get(f"{server.base}/orders/broken", timeout=10)
            time.sleep(1.1)
        time.sleep(2.5)  # the last requests scraped
        # a moment in the past: every query below sees the same samples, none still arriving
        at = time.time() - 1.0
        for rule in rules:
            series = _series_name(rule)
            query = render_metrics_query(
                rule["metricsQuery"], series, "pod", list(PODS), namespace="shop-ns"
            )
            assert "<<" not in query
            per_pod = _values(_query_at(prom, query, at))
            assert sorted(per_pod) == sorted(PODS), (query, per_pod)
            window = query.split("[", 1)[1].split("]", 1)[0]
            for pod in PODS:
                inner = "rate" if "rate(" in query else "avg_over_time"
                own = _query_at(
                    prom,
                    f'sum({inner}({series}{{namespace="shop-ns",pod="{pod}"}}[{window}]))',
                    at,
                )
                assert per_pod[pod] == pytest.approx(float(own[0]["value"][1])), (rule, pod)
            # one pod asked for: an equality matcher, one value
            single = render_metrics_query(
                rule["metricsQuery"], series, "pod", [PODS[1]], namespace="shop-ns"
            )
            assert f'pod="{PODS[1]}"' in single
            assert list(_values(_query_at(prom, single, at))) == [PODS[1]]
            if "rate(" in query:
                assert per_pod[PODS[0]] > 2 * per_pod[PODS[1]] > 0
            # KEDA's trigger asks for the service's total (one element), which it divides
            # by the replicas: the same per-pod average the HPA computes from the adapter
            metric = "rps" if "rate(" in query else "inflight"
            (total,) = _query_at(prom, service_query(model.config, metric), at)
            assert float(total["value"][1]) == pytest.approx(sum(per_pod.values()))

        # Kiali's queries: {namespace, app, version}, which only podTargetLabels provide
        queries = kiali_queries(model, "shop-ns", "shop", "v1", window="30s")
        assert set(queries) == {chart["name"] for chart in charts(model)}
        empty = [f"{name}: {expr}" for name, expr in queries.items() if not prom.query(expr)]
        assert empty == [], "Kiali charts without data:\n" + "\n".join(empty)
        without = kiali_queries(model, "shop-ns", "shop", "v2", window="30s")
        assert prom.query(without["Request rate"]) == []  # the version really filters


# -- the HPA on a backfilled burst --------------------------------------------------------

STEP = 15  # seconds between samples (the scrape interval of this data)
BASE_RPS, BURST_RPS = 6.0, 50.0  # the service's total; 2 pods serve it in the data


def _burst_openmetrics(path: Path, start: int, steps: int, burst: tuple[int, int]) -> None:
    """Two pods' request counters: the service's total load split evenly between them."""
    lines = ["# TYPE flask_http_request counter\n"]
    for pod in PODS:
        total = 0.0
        for step in range(steps):
            rps = BURST_RPS if burst[0] <= step < burst[1] else BASE_RPS
            total += rps / len(PODS) * STEP
            labels = (
                f'job="shop",namespace="shop-ns",service="shop",pod="{pod}",endpoint="http",'
                'method="GET",path="/orders/<order_id>",status="200"'
            )
            lines.append(f"flask_http_request_total{{{labels}}} {total:g} {start + step * STEP}\n")
    lines.append("# EOF\n")
    path.write_text("".join(lines))


def test_hpa_scales_up_during_a_burst_and_down_after_the_window(tmp_path: Path) -> None:
    config = MeshConfig(
        service="shop", namespace="shop-ns", release="komplete-prometheus", scrape_interval="15s"
    )
    target, window = 10.0, 300
    scaling = Scaling(
        Autoscale.parse(f"rps:{target:g}"), min_replicas=1, max_replicas=8, scale_down_window=window
    )
    hpa = build_objects(
        model_from_config(config), ["autoscaler"], ManifestOptions(scaling=scaling)
    )["shop-hpa.yaml"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == window
    rule = adapter_rules(config)[0]
    steps = 240  # an hour at 15 s
    burst = (80, 120)  # 10 minutes of burst
    start = int(time.time()) // 3600 * 3600 - 4 * 3600
    _burst_openmetrics(tmp_path / "burst.om", start, steps, burst)
    data = tmp_path / "data"
    subprocess.run(
        [
            "promtool",
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(tmp_path / "burst.om"),
            str(data),
        ],
        check=True,
        capture_output=True,
    )
    query = render_metrics_query(
        rule["metricsQuery"], _series_name(rule), "pod", list(PODS), namespace="shop-ns"
    )
    behavior = hpa["spec"]["behavior"]["scaleDown"]  # the generated object drives the HPA
    sim = HpaSimulator(
        float(hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"]),
        hpa["spec"]["minReplicas"],
        hpa["spec"]["maxReplicas"],
        behavior["stabilizationWindowSeconds"],
    )
    history: list[tuple[int, int]] = []
    with LocalPrometheus([], data_dir=data, flags=("--storage.tsdb.retention.time=30d",)) as prom:
        for step in range(10, steps):
            now = start + step * STEP
            values = list(_values(_query_at(prom, query, now)).values())
            assert len(values) == len(PODS)
            # the load the pods report, spread over the replicas the HPA keeps
            load = sum(values)
            history.append((step, sim.step(now, [load / sim.replicas] * sim.replicas)))
    by_step = dict(history)
    raw = dict(zip([s for s, _ in history], sim.recommendations, strict=True))
    before = [r for s, r in history if s < burst[0]]
    during = [r for s, r in history if burst[0] + 10 <= s < burst[1]]
    top = math.ceil(BURST_RPS / target)  # 50 rps, 10 per pod: 5 pods
    assert set(before) == {1}  # 6 rps: one pod is enough
    assert max(during) == top
    end = burst[1]
    down = next(s for s, r in history if s > end and r < top)
    last_high = max(s for s, r in raw.items() if r == top and s < down)
    # the load fell once the rate window (2m) left the burst ...
    assert (end - last_high) * STEP <= 120
    # ... and the count held for exactly the stabilization window after the last high
    # recommendation, though the raw recommendation was lower all along
    assert (down - last_high) * STEP == window
    assert all(raw[s] < top for s in range(last_high + 1, down))
    assert by_step[steps - 1] == 1
    # without a window it would have dropped as soon as the rate fell
    eager = HpaSimulator(target, 1, 8, 0, replicas=max(during))
    with LocalPrometheus([], data_dir=data, flags=("--storage.tsdb.retention.time=30d",)) as prom:
        now = start + (end + 10) * STEP
        load = sum(_values(_query_at(prom, query, now)).values())
        assert eager.step(now, [load / eager.replicas] * eager.replicas) == 1
