"""Manifests for the cluster as it is (issue 13): STRICT mTLS, the mesh's own monitors,
exemplars from the app through a real Prometheus to the Grafana datasource settings."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
import yaml
from flask import Flask

from helpers import PYTHON, Server, run_cli
from meshmetrics import instrument
from meshmetrics.config import ConfigError, MeshConfig, resolve_config
from meshmetrics.diagnose.monitors import check_manifests
from meshmetrics.manifests import build_objects, default_kinds, grafana_values, model_from_config
from meshmetrics.manifests.grafana import TRACE_ID_LABEL
from meshmetrics.manifests.options import ManifestOptions
from meshmetrics.manifests.validate import validate_object
from meshmetrics.testing.prometheus import LocalPrometheus, prometheus_binary, target_from_monitor
from meshmetrics.testing.receivers import OTLPCollector

STRICT = MeshConfig(
    service="cmpt756s1",
    namespace="cmpt756e4",
    release="komplete-prometheus",
    mtls="strict",
    metrics_port=9464,
)


# -- STRICT mTLS -------------------------------------------------------------------------


def test_strict_mtls_without_a_metrics_port_is_refused_at_configuration() -> None:
    with pytest.raises(ConfigError) as info:
        instrument(Flask("svc"), mtls="strict")
    assert info.value.option == "mtls"
    # the fix is named the way the value was given: argument, variable, flag
    assert str(info.value).endswith("; set metrics_port=9464")
    with pytest.raises(ConfigError, match=r"; set MESHMETRICS_METRICS_PORT=9464$"):
        resolve_config({}, default_service="svc", environ={"MESHMETRICS_MTLS": "strict"})
    app = Flask("svc")
    app.config["MESHMETRICS_MTLS"] = "strict"
    with pytest.raises(
        ConfigError, match=r"; set app.config\['MESHMETRICS_METRICS_PORT'\] = 9464$"
    ):
        instrument(app)
    result = run_cli("manifests", "--service", "svc", "--mtls", "strict")
    assert result.returncode == 2
    assert "invalid --mtls 'strict' (from the command line)" in result.stderr
    assert result.stderr.rstrip().endswith("; set --metrics-port 9464")
    assert "MESHMETRICS_" not in result.stderr
    result = run_cli("manifests", "--service", "svc", "--kind", "peerauthentication")
    assert result.returncode == 2
    assert "--kind peerauthentication needs --metrics-port" in result.stderr


def test_strict_mtls_objects_exempt_the_metrics_port_alone() -> None:
    objects = build_objects(model_from_config(STRICT), [*default_kinds(STRICT), "service"])
    assert "cmpt756s1-peerauthentication.yaml" in objects
    policy = objects["cmpt756s1-peerauthentication.yaml"]
    service = objects["cmpt756s1-service.yaml"]
    monitor = objects["cmpt756s1-servicemonitor.yaml"]
    assert policy["apiVersion"] == "security.istio.io/v1beta1"
    assert policy["spec"] == {
        "selector": {"matchLabels": {"app": "cmpt756s1"}},
        "mtls": {"mode": "UNSET"},
        "portLevelMtls": {"9464": {"mode": "PERMISSIVE"}},
    }
    assert policy["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    metrics_port = {p["name"]: p for p in service["spec"]["ports"]}["http-metrics"]
    assert metrics_port["targetPort"] == 9464
    assert monitor["spec"]["endpoints"][0]["port"] == "http-metrics"
    for obj in objects.values():
        assert validate_object(obj) == [], obj["kind"]
    namespace_strict = {
        "apiVersion": "security.istio.io/v1beta1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "cmpt756e4"},
        "spec": {"mtls": {"mode": "STRICT"}},
    }
    findings = check_manifests([*objects.values(), namespace_strict], "komplete-prometheus")
    mtls = [f for f in findings if "mTLS" in f.message or "plain text" in f.message]
    assert [f.severity for f in mtls] == ["OK"]
    assert "PERMISSIVE, PeerAuthentication/cmpt756e4/cmpt756s1-metrics" in mtls[0].message


def test_check_names_a_scrape_port_under_strict_mtls() -> None:
    permissive = MeshConfig(service="svc", namespace="ns", release="r")
    objects = list(
        build_objects(model_from_config(permissive), ["servicemonitor", "service"]).values()
    )
    for where in ("ns", "istio-system"):  # the namespace's policy, or the mesh's
        policy = {
            "apiVersion": "security.istio.io/v1beta1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": where},
            "spec": {"mtls": {"mode": "STRICT"}},
        }
        findings = check_manifests([*objects, policy], "r")
        errors = [f for f in findings if f.severity == "ERROR"]
        assert len(errors) == 1
        assert "under STRICT mTLS" in errors[0].message
        assert "metrics_port" in errors[0].fix
    assert all(f.severity != "ERROR" for f in check_manifests(objects, "r"))


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"portLevelMtls": {"9464": {"mode": "PERMISSIVE"}}}, "needs spec.selector.matchLabels"),
        (
            {
                "selector": {"matchLabels": {"app": "x"}},
                "portLevelMtls": {"70000": {"mode": "DISABLE"}},
            },
            "not a port number",
        ),
        ({"mtls": {"mode": "LOOSE"}}, "is not one of"),
        ({"mtls": {"mode": "STRICT"}, "portLevelMTLS": {}}, "Additional properties"),
    ],
)
def test_peer_authentication_validation_is_strict(spec: dict[str, Any], says: str) -> None:
    policy = {
        "apiVersion": "security.istio.io/v1beta1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": spec,
    }
    assert any(says in error for error in validate_object(policy)), validate_object(policy)


# -- the mesh's own metrics ----------------------------------------------------------------


def test_istio_monitors_are_selected_by_the_release_and_scrape_envoy_alone() -> None:
    objects = build_objects(
        model_from_config(MeshConfig(service="s", release="komplete-prometheus")),
        ["istio-monitors"],
        ManifestOptions(monitor_namespace="istio-system"),
    )
    envoy = objects["istio-envoy-podmonitor.yaml"]
    istiod = objects["istio-istiod-servicemonitor.yaml"]
    for monitor in (envoy, istiod):
        assert monitor["metadata"]["labels"]["release"] == "komplete-prometheus"
        assert validate_object(monitor) == []
    endpoint = envoy["spec"]["podMetricsEndpoints"][0]
    assert (endpoint["port"], endpoint["path"]) == ("http-envoy-prom", "/stats/prometheus")
    assert envoy["spec"]["namespaceSelector"] == {"any": True}
    assert istiod["spec"]["namespaceSelector"] == {"matchNames": ["istio-system"]}
    assert istiod["spec"]["endpoints"][0]["port"] == "http-monitoring"


# -- exemplars -----------------------------------------------------------------------------


def test_latency_panels_ask_for_exemplars_and_grafana_is_told_their_label() -> None:
    config = MeshConfig(service="svc")
    objects = build_objects(model_from_config(config), ["dashboard"])
    dashboard = json.loads(next(iter(objects["svc-dashboard.yaml"]["data"].values())))
    latency = [p for p in dashboard["panels"] if p.get("title", "").startswith("Latency")]
    assert len(latency) == 3
    assert all(t.get("exemplar") is True for p in latency for t in p["targets"])
    values = grafana_values(model_from_config(config), ManifestOptions())
    destination = values["grafana"]["sidecar"]["datasources"]["exemplarTraceIdDestinations"]
    assert destination == {"datasourceUid": "jaeger", "traceIdLabelName": TRACE_ID_LABEL}
    jaeger = values["grafana"]["additionalDataSources"][0]
    assert (jaeger["uid"], jaeger["type"]) == ("jaeger", "jaeger")
    assert values["prometheus"]["prometheusSpec"]["enableFeatures"] == ["exemplar-storage"]
    printed = run_cli("manifests", "--service", "svc", "--grafana-values")
    assert printed.returncode == 0
    assert yaml.safe_load(printed.stdout) == values


@pytest.mark.slow
@pytest.mark.skipif(prometheus_binary() is None, reason="Debian's prometheus is not installed")
def test_exemplars_reach_a_real_prometheus_with_the_trace_ids_exported(
    start_server: Callable[..., Server],
) -> None:
    collector = OTLPCollector()
    env = {"MESHMETRICS_TRACING": "otlp", "MESHMETRICS_TRACE_ENDPOINT": collector.endpoint}
    app_code = "from apps.shop import app; app.run(host='127.0.0.1', port=0)"
    server = start_server([PYTHON, "-c", app_code], env=env)
    config = MeshConfig(service="shop", namespace="shop-ns", release="komplete-prometheus")
    monitor = build_objects(model_from_config(config), ["servicemonitor"])[
        "shop-servicemonitor.yaml"
    ]
    target = target_from_monitor(monitor, f"127.0.0.1:{server.port}", pod="shop-1")
    try:
        with LocalPrometheus([target], features=("exemplar-storage",)) as prom:
            assert prom.wait_for('up{job="shop"} == 1'), prom.log()[-2000:]
            for i in range(20):
                assert requests.get(f"{server.base}/orders/{i}", timeout=10).status_code == 200
            deadline, found = time.monotonic() + 20, []
            while not found and time.monotonic() < deadline:
                time.sleep(1)
                found = prom.exemplars('flask_http_request_duration_seconds_bucket{job="shop"}')
            exemplars = [e for series in found for e in series["exemplars"]]
            assert exemplars, prom.log()[-2000:]
            ids = {e["labels"][TRACE_ID_LABEL] for e in exemplars}
            assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
            exported = {f"{s.trace_id:032x}" for s in collector.wait_for(20)}
            assert ids <= exported  # each exemplar links to a trace that reached the backend
    finally:
        collector.close()


@pytest.mark.slow
@pytest.mark.skipif(prometheus_binary() is None, reason="Debian's prometheus is not installed")
def test_check_against_a_live_prometheus_finds_what_it_ignored(
    start_server: Callable[..., Server], tmp_path: Any
) -> None:
    """A wrong release label hides the monitor and every rule with it: only Prometheus' API
    tells. Prometheus here loaded shop's monitor and rules, not those of "orders"."""
    app_code = "from apps.shop import app; app.run(host='127.0.0.1', port=0)"
    server = start_server([PYTHON, "-c", app_code])
    shop = MeshConfig(service="shop", namespace="shop-ns", release="komplete-prometheus")
    loaded = build_objects(model_from_config(shop), ["servicemonitor", "rules"])
    ignored = build_objects(
        model_from_config(MeshConfig(service="orders", namespace="shop-ns", release="wrong")),
        ["servicemonitor", "rules"],
    )
    target = target_from_monitor(
        loaded["shop-servicemonitor.yaml"], f"127.0.0.1:{server.port}", pod="shop-1"
    )
    groups = loaded["shop-rules.yaml"]["spec"]["groups"]
    for name, obj in {**loaded, **ignored}.items():
        (tmp_path / name).write_text(yaml.safe_dump(obj))
    with LocalPrometheus([target], rule_groups=groups) as prom:
        assert prom.wait_for('up{job="shop"} == 1'), prom.log()[-2000:]
        result = run_cli(
            "check", *sorted(str(p) for p in tmp_path.glob("*.yaml")), "--prometheus", prom.url
        )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(
        line.startswith("OK    ServiceMonitor/shop-ns/shop: Prometheus scrapes it")
        for line in lines
    )
    assert any(
        line.startswith("OK    PrometheusRule/shop-ns/shop-rules: Prometheus loaded")
        for line in lines
    )
    assert any(
        line.startswith("ERROR ServiceMonitor/shop-ns/orders") and "'wrong'" in line
        for line in lines
    )
    assert any(line.startswith("ERROR PrometheusRule/shop-ns/orders-rules") for line in lines)
