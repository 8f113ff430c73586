"""The generated manifests against a real Prometheus scraping a real instrumented app.

Prometheus scrapes the app with the labels prometheus-operator derives from the generated
ServiceMonitor, loads the generated rules, and then every PromQL expression of the
generated dashboard and rules must be valid and return data.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from helpers import PYTHON, Server
from meshmetrics.cli.manifests import load_app
from meshmetrics.manifests.dashboard import dashboard_expressions
from meshmetrics.manifests.objects import build_objects
from meshmetrics.manifests.options import ManifestOptions
from meshmetrics.manifests.rules import alert_rules
from meshmetrics.manifests.service_model import build_model
from meshmetrics.testing.prometheus import LocalPrometheus, prometheus_binary, target_from_monitor

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        prometheus_binary() is None or shutil.which("promtool") is None,
        reason="Debian's prometheus/promtool not installed (apt-get install -y prometheus)",
    ),
]
RATE_WINDOW = "30s"  # stands in for Grafana's $__rate_interval


class _Envoy(BaseHTTPRequestHandler):
    """Serves istio_* metrics as an Envoy sidecar reports them for the destination."""

    scrapes = 0

    def do_GET(self) -> None:
        type(self).scrapes += 1
        n = type(self).scrapes
        # the standard labels Istio documents for istio_requests_total and
        # istio_request_duration_milliseconds, as the destination's sidecar reports them
        labels = {
            "reporter": "destination",
            "source_workload": "istio-ingressgateway",
            "source_workload_namespace": "istio-system",
            "source_principal": "spiffe://cluster.local/ns/istio-system/sa/ingressgateway",
            "source_app": "istio-ingressgateway",
            "source_version": "unknown",
            "source_cluster": "Kubernetes",
            "source_canonical_service": "istio-ingressgateway",
            "source_canonical_revision": "latest",
            "destination_workload": "shop",
            "destination_workload_namespace": "shop-ns",
            "destination_principal": "spiffe://cluster.local/ns/shop-ns/sa/default",
            "destination_app": "shop",
            "destination_version": "v1",
            "destination_service": "shop.shop-ns.svc.cluster.local",
            "destination_service_name": "shop",
            "destination_service_namespace": "shop-ns",
            "destination_cluster": "Kubernetes",
            "destination_canonical_service": "shop",
            "destination_canonical_revision": "v1",
            "request_protocol": "http",
            "grpc_response_status": "",
            "response_flags": "-",
            "connection_security_policy": "mutual_tls",
        }
        sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
        lines = [
            "# TYPE istio_requests_total counter",
            f'istio_requests_total{{{sel},response_code="200"}} {n * 10}',
            f'istio_requests_total{{{sel},response_code="503"}} {n}',
            "# TYPE istio_request_duration_milliseconds histogram",
        ]
        for le, share in (("5", 0.5), ("25", 0.9), ("100", 1.0), ("+Inf", 1.0)):
            lines.append(
                f'istio_request_duration_milliseconds_bucket{{{sel},le="{le}"}} {n * 11 * share}'
            )
        lines += [
            f"istio_request_duration_milliseconds_sum{{{sel}}} {n * 60}",
            f"istio_request_duration_milliseconds_count{{{sel}}} {n * 11}",
        ]
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def envoy() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Envoy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def drive_traffic(base: str) -> None:
    # Spread over several 1 s scrapes: a series first seen with its final value has no
    # increase for rate() to see (Prometheus cannot know it started at 0).
    for burst in range(4):
        for i in range(15):
            assert requests.get(f"{base}/orders/{burst}-{i}", timeout=10).status_code == 200
        assert requests.get(f"{base}/orders/missing", timeout=10).status_code == 404
        assert requests.get(f"{base}/orders/broken", timeout=10).status_code == 500
        assert requests.get(f"{base}/no/such/route", timeout=10).status_code == 404
        time.sleep(1.2)


def test_every_dashboard_and_rule_expression_returns_data(
    start_server: Callable[..., Server], envoy: str
) -> None:
    app_code = "from apps.shop import app; app.run(host='127.0.0.1', port=0)"
    server = start_server([PYTHON, "-c", app_code])

    model = build_model(load_app("apps.shop"), {}, podmonitor=False, istio=True)
    options = ManifestOptions(error_ratio=0.01, latency_p95=0.0001)
    objects = build_objects(model, ["servicemonitor", "dashboard", "rules"], options)
    monitor = objects["shop-servicemonitor.yaml"]
    dashboard = json.loads(next(iter(objects["shop-dashboard.yaml"]["data"].values())))
    # a dashboard emitted without its PrometheusRule (and with SLO panels) reads raw series
    slos = ("availability:99.9@/orders/<order_id>", "latency:99:0.5")
    slo_model = build_model(load_app("apps.shop"), {"slo": slos}, podmonitor=False, istio=False)
    alone = build_objects(slo_model, ["servicemonitor", "dashboard"], options)
    raw_dashboard = json.loads(next(iter(alone["shop-dashboard.yaml"]["data"].values())))
    groups = objects["shop-rules.yaml"]["spec"]["groups"]
    target = target_from_monitor(monitor, f"127.0.0.1:{server.port}", pod="shop-7d9f-abcde")
    assert target.labels == {
        "job": "shop",
        "namespace": "shop-ns",
        "service": "shop",
        "pod": "shop-7d9f-abcde",
        "endpoint": "http",
    }

    metrics_text = requests.get(f"{server.base}/metrics", timeout=10).text
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=metrics_text, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout.strip() == "", lint.stdout
    assert lint.stderr.strip() == "", lint.stderr

    envoy_target = target_from_monitor(monitor, envoy, pod="istio-proxy")
    with LocalPrometheus([target, envoy_target], rule_groups=groups) as prom:
        assert prom.wait_for('up{job="shop",namespace="shop-ns"} == 1'), prom.log()[-2000:]
        drive_traffic(server.base)
        # two scrapes after the traffic so every rate() has its increase
        time.sleep(3)
        expressions = [
            e.replace("$__rate_interval", RATE_WINDOW) for e in dashboard_expressions(dashboard)
        ]
        assert len(expressions) >= 15
        empty = [expr for expr in expressions if not prom.query(expr)]
        assert empty == [], "dashboard queries without data:\n" + "\n".join(empty)
        raw = [
            e.replace("$__rate_interval", RATE_WINDOW) for e in dashboard_expressions(raw_dashboard)
        ]
        assert len(raw) >= len(expressions) - 2 + 4  # no Istio row; two panels per objective
        assert [e for e in raw if re.search(r"[a-z]:[a-z]", e)] == []  # no recorded series
        empty = [expr for expr in raw if not prom.query(expr)]
        assert empty == [], "dashboard (without rules) queries without data:\n" + "\n".join(empty)

        rules = alert_rules(model, options)
        for rule in rules:
            prom.query(rule.expr)  # valid, or ValueError from Prometheus
        valued = [r.value for r in rules if not r.value.startswith("absent(")]
        assert [v for v in valued if not prom.query(v)] == []
        loaded = prom.api("rules")["groups"]
        assert [g["name"] for g in loaded] == ["shop-ns.shop.rules"]
        assert {r["health"] for g in loaded for r in g["rules"]} == {"ok"}
        # with thresholds this low, the error and latency alerts become pending or firing
        expected = {"ShopHighErrorRatio", "ShopHighLatencyP95"}
        deadline, seen = time.monotonic() + 20, set()
        while seen != expected and time.monotonic() < deadline:
            seen = {
                s["metric"]["alertname"]
                for s in prom.query("ALERTS")
                if s["metric"]["alertname"] in expected
            }
            time.sleep(0.5)
        assert seen == expected
        assert prom.query('absent(up{job="shop",namespace="shop-ns"})') == []

        # every recorded series equals its raw expression, at the rule's own evaluation time;
        # the app is stopped first, so no scrape lands between an evaluation and the check
        server.stop()
        time.sleep(3)
        recording = [r for g in groups for r in g["rules"] if "record" in r]
        assert len(recording) == 4
        compared = 0
        for rule in recording:
            stamps = prom.query(f"timestamp({rule['record']})")
            if not stamps:  # the in-progress gauge is stale once the app is gone: both empty
                assert prom.query(rule["expr"]) == [], rule["record"]
                continue
            at = stamps[0]["value"][1]
            recorded = {_key(r): float(r["value"][1]) for r in _query_at(prom, rule["record"], at)}
            raw = {_key(r): float(r["value"][1]) for r in _query_at(prom, rule["expr"], at)}
            assert recorded.keys() == raw.keys(), rule["record"]
            for key, value in raw.items():
                assert recorded[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (rule, key)
                compared += 1
        assert compared >= 10


def _key(result: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in result["metric"].items() if k != "__name__"))


def _query_at(prom: LocalPrometheus, expr: str, at: str) -> list[dict[str, Any]]:
    data = prom.api("query", query=expr, time=at)
    result: list[dict[str, Any]] = data["result"]
    return result
