"""`python -m meshmetrics manifests`: the objects, their validity, and the CLI contract."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import (
    TESTS,
    run_cli,
)
from meshmetrics.config import MeshConfig
from meshmetrics.manifests import KINDS, build_objects, to_multi_yaml
from meshmetrics.manifests.dashboard import dashboard_expressions, dashboard_uid
from meshmetrics.manifests.model import model_from_config

SNAPSHOTS = TESTS / "snapshots"
CONFIG = MeshConfig(service="cmpt756s1", namespace="cmpt756e4", release="komplete-prometheus")


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def by_kind(text: str) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs(text)}


def test_service_monitor_follows_the_operator_rules() -> None:
    objects = build_objects(model_from_config(CONFIG), ["servicemonitor"])
    monitor = objects["cmpt756s1-servicemonitor.yaml"]
    assert monitor["metadata"]["labels"]["release"] == "komplete-prometheus"
    assert monitor["metadata"]["namespace"] == "cmpt756e4"
    assert monitor["spec"]["selector"] == {"matchLabels": {"app": "cmpt756s1"}}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["cmpt756e4"]}
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]


def test_monitor_service_and_dashboard_agree(validator: Any) -> None:
    config = MeshConfig(
        service="orders",
        namespace="shop",
        port_name="metrics",
        metrics_path="/internal/metrics",
        scrape_interval="15s",
        prefix="shop",
        release="prom",
    )
    model = model_from_config(config)
    # the PeerAuthentication needs metrics_port, the autoscaler --autoscale; the mesh-wide
    # monitors are tested apart
    apart = ("peerauthentication", "istio-monitors", "autoscaler")
    everything = [k for k in KINDS if k not in apart]
    # a ServiceMonitor and a PodMonitor of the same pods are refused together: built apart
    objects = build_objects(model, [k for k in everything if k != "podmonitor"])
    objects.update(build_objects(model, ["podmonitor"]))
    text = to_multi_yaml(objects.values())
    kinds = by_kind(text)
    svc, monitor, pod = kinds["Service"], kinds["ServiceMonitor"], kinds["PodMonitor"]
    assert svc["metadata"]["labels"]["app"] == monitor["spec"]["selector"]["matchLabels"]["app"]
    assert svc["spec"]["ports"][0]["name"] == monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/internal/metrics"
    assert pod["spec"]["podMetricsEndpoints"][0]["interval"] == "15s"
    assert kinds["PrometheusRule"]["metadata"]["labels"]["release"] == "prom"
    crd_text = to_multi_yaml(d for d in docs(text) if d["kind"] != "Service")
    assert validator.validate_text(crd_text) == []
    dashboard = json.loads(next(iter(kinds["ConfigMap"]["data"].values())))
    for expr in dashboard_expressions(dashboard):
        if "istio_" not in expr:
            assert 'job="orders",namespace="shop"' in expr
            assert "flask_" not in expr


@pytest.mark.parametrize(
    "config",
    [
        CONFIG,
        MeshConfig(service="a" * 63, namespace="b" * 63, prefix=""),
        MeshConfig(service="db", namespace="default", port_name="http-metrics"),
    ],
    ids=["course", "longest-names", "no-prefix"],
)
def test_every_kind_passes_strict_validation(validator: Any, config: MeshConfig) -> None:
    for kinds in (["servicemonitor", "dashboard", "rules"], ["podmonitor"]):
        text = to_multi_yaml(build_objects(model_from_config(config), kinds).values())
        assert validator.validate_text(text) == []


def test_dashboard_configmap_and_model() -> None:
    objects = build_objects(model_from_config(CONFIG), ["dashboard"])
    configmap = objects["cmpt756s1-dashboard.yaml"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    ((key, payload),) = configmap["data"].items()
    assert key == "cmpt756e4-cmpt756s1.json"
    dashboard = json.loads(payload)
    assert dashboard["uid"] == "cmpt756e4-cmpt756s1"
    variables = dashboard["templating"]["list"]
    assert [(v["name"], v["type"], v["query"]) for v in variables] == [
        ("datasource", "datasource", "prometheus")
    ]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p["datasource"] == {"type": "prometheus", "uid": "${datasource}"} for p in panels)
    titles = [p["title"] for p in panels]
    for expected in (
        "Request rate by route",
        "Error ratio (5xx) by route",
        "Latency p95 by route",
        "Latency p99 by route",
        "In-flight requests",
        "Unhandled exceptions",
        "CPU",
        "Resident memory",
        "Open file descriptors",
        "Mesh request rate by response code",
    ):
        assert expected in titles
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_yaml_quotes_label_value_and_keeps_dashboard_readable() -> None:
    text = to_multi_yaml(build_objects(model_from_config(CONFIG), ["dashboard"]).values())
    assert "grafana_dashboard: '1'" in text
    assert "cmpt756e4-cmpt756s1.json: |" in text


def test_dashboard_uid_is_bounded_and_stable() -> None:
    uid = dashboard_uid("n" * 63, "s" * 63)
    assert len(uid) <= 40
    assert uid == dashboard_uid("n" * 63, "s" * 63)
    assert uid != dashboard_uid("n" * 63, "s" * 62 + "t")
    assert set(uid) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


def test_dashboard_snapshot() -> None:
    """The generated dashboard, kept reviewable: regenerate with MESHMETRICS_UPDATE_SNAPSHOTS=1."""
    objects = build_objects(model_from_config(CONFIG), ["dashboard", "rules"])
    payload = next(iter(objects["cmpt756s1-dashboard.yaml"]["data"].values()))
    snapshot = SNAPSHOTS / "cmpt756s1-dashboard.json"
    if os.environ.get("MESHMETRICS_UPDATE_SNAPSHOTS") == "1":
        snapshot.parent.mkdir(exist_ok=True)
        snapshot.write_text(payload)
    assert payload == snapshot.read_text()


# -- the command -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "app_arg", ["apps.shop", "apps.shop:app", "apps.shop:create_app()", "apps/shop.py"]
)
def test_app_forms_like_flask_app(app_arg: str) -> None:
    result = run_cli("manifests", "--app", app_arg)
    assert result.returncode == 0, result.stderr
    kinds = by_kind(result.stdout)
    assert kinds["ServiceMonitor"]["metadata"]["labels"]["release"] == "komplete-prometheus"
    assert kinds["ServiceMonitor"]["spec"]["namespaceSelector"]["matchNames"] == ["shop-ns"]
    dashboard = json.loads(next(iter(kinds["ConfigMap"]["data"].values())))
    exprs = "\n".join(dashboard_expressions(dashboard))
    # every custom metric of the app gets a panel that fits its type
    assert "sum by (status) (rate(shop_orders_total{" in exprs
    assert "histogram_quantile(0.95, sum by (le) (rate(shop_order_lookup_seconds_bucket{" in exprs
    assert 'sum by (warehouse) (shop_stock_items{job="shop",namespace="shop-ns"})' in exprs
    assert "rate(shop_payment_seconds_sum{" in exprs


def test_options_override_the_app_config() -> None:
    result = run_cli(
        "manifests",
        "--app",
        "apps.shop",
        "--namespace",
        "prod",
        "--release",
        "kps",
        "--monitor-namespace",
        "monitoring",
        "--interval",
        "10s",
        "--kind",
        "servicemonitor",
    )
    assert result.returncode == 0, result.stderr
    monitor = by_kind(result.stdout)["ServiceMonitor"]
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["prod"]
    assert monitor["spec"]["endpoints"][0]["interval"] == "10s"


def test_flask_command_group_gives_the_same_output() -> None:
    import subprocess

    from helpers import PYTHON

    via_flask = subprocess.run(
        [PYTHON, "-m", "flask", "--app", "apps.shop", "meshmetrics", "manifests"],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )
    assert via_flask.returncode == 0, via_flask.stderr
    assert via_flask.stdout == run_cli("manifests", "--app", "apps.shop").stdout


def test_out_and_check(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    written = run_cli("manifests", "--app", "apps.shop", "--out", str(out))
    assert written.returncode == 0, written.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["shop-dashboard.yaml", "shop-rules.yaml", "shop-servicemonitor.yaml"]
    assert run_cli("manifests", "--app", "apps.shop", "--check", str(out)).returncode == 0
    monitor = out / "shop-servicemonitor.yaml"
    monitor.write_text(monitor.read_text().replace("release: komplete-prometheus", "release: x"))
    drift = run_cli("manifests", "--app", "apps.shop", "--check", str(out))
    assert drift.returncode == 1
    assert "-    release: x" in drift.stdout
    assert "+    release: komplete-prometheus" in drift.stdout
    assert "differ from the app" in drift.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--service", "Cmpt756_DB"], "invalid --service 'Cmpt756_DB'"),
        (["--service", "db", "--port-name", "http-metrics-port"], "invalid --port-name"),
        (["--service", "db", "--kind", "statefulset"], "unknown --kind 'statefulset'"),
        (["--service", "db", "--interval", "30"], "invalid --interval '30'"),
        (["--service", "db", "--monitor-namespace", "Mon"], "invalid --monitor-namespace 'Mon'"),
        (["--service", "db", "--dashboard-label", "novalue"], "must be KEY=VALUE"),
        ([], "--service is required without --app"),
        (["--app", "no_such_module_here"], "cannot load app 'no_such_module_here'"),
        (["--app", "apps.plain"], "has no meshmetrics instrumentation"),
        (["--app", "apps.shop", "--prefix", "other"], "--prefix conflicts with the app's prefix"),
        (["--bogus"], "No such option '--bogus'"),
        (["--service", "db", "--path", "metrics"], "invalid --path 'metrics'"),
        (["--service", "db", "--release", "-bad-"], "invalid --release '-bad-'"),
        (["--service", "db", "--namespace", "x" * 64], "invalid --namespace"),
        (["--service", "db", "--service-port", "0"], "--service-port"),
        (["--service", "db", "--error-ratio", "lots"], "--error-ratio"),
        (
            ["--app", "apps/shop.py", "--path", "/other"],
            "--path conflicts with the app's metrics_path",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "out"
    result = run_cli("manifests", *args, "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert result.stdout == ""
    assert not out.exists()


def test_unwritable_out_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli("manifests", "--service", "db", "--out", str(blocker / "k8s"))
    assert result.returncode == 2
    assert "cannot write to" in result.stderr
    assert blocker.read_text() == "not a directory"


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--dashboard-label", "a/b/c=1"], "--dashboard-label"),
        (["--dashboard-label", "Bad Key=1"], "--dashboard-label"),
        (["--dashboard-label", "grafana_dashboard=-1-"], "--dashboard-label"),
        (["--error-ratio", "nan"], "--error-ratio"),
        (["--error-ratio", "-1"], "--error-ratio"),
        (["--error-ratio", "7"], "--error-ratio"),
        (["--latency-p95", "inf"], "--latency-p95"),
        (["--latency-p95", "0"], "--latency-p95"),
        (["--latency-p95", "60"], "p95 latency threshold 60s"),
        (["--path", "/<path:p>"], "--path"),
    ],
)
def test_bad_manifest_options_exit_2_in_one_line_writing_nothing(
    tmp_path: Any, args: list[str], flag: str
) -> None:
    out = tmp_path / "k8s"
    result = run_cli("manifests", "--service", "svc", *args, "--out", str(out))
    assert result.returncode == 2
    assert flag in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()


def test_a_directory_in_place_of_an_output_file_changes_nothing(tmp_path: Any) -> None:
    out = tmp_path / "k8s"
    out.mkdir()
    (out / "svc-dashboard.yaml").write_text("old dashboard\n")
    (out / "svc-servicemonitor.yaml").mkdir()
    result = run_cli("manifests", "--service", "svc", "--out", str(out))
    assert result.returncode == 2
    assert "svc-servicemonitor.yaml: it exists and is not a regular file" in result.stderr
    assert (out / "svc-dashboard.yaml").read_text() == "old dashboard\n"
    assert sorted(p.name for p in out.iterdir()) == [
        "svc-dashboard.yaml",
        "svc-servicemonitor.yaml",
    ]


def test_a_write_failing_half_way_puts_every_file_back(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    out = tmp_path / "k8s"
    out.mkdir()
    for name in ("svc-servicemonitor.yaml", "svc-dashboard.yaml", "svc-rules.yaml"):
        (out / name).write_text(f"old {name}\n")
    real_replace = os.replace
    calls = {"n": 0}

    def flaky_replace(src: Any, dst: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    result = run_cli("manifests", "--service", "svc", "--out", str(out))
    assert result.returncode == 2
    assert "nothing was changed" in result.stderr
    for name in ("svc-servicemonitor.yaml", "svc-dashboard.yaml", "svc-rules.yaml"):
        assert (out / name).read_text() == f"old {name}\n"
    assert sorted(p.name for p in out.iterdir()) == [
        "svc-dashboard.yaml",
        "svc-rules.yaml",
        "svc-servicemonitor.yaml",
    ]


def test_check_against_a_file_that_is_not_utf8_shows_a_diff(tmp_path: Any) -> None:
    out = tmp_path / "k8s"
    assert run_cli("manifests", "--service", "svc", "--out", str(out)).returncode == 0
    (out / "svc-rules.yaml").write_bytes(b"\xff\xfe not utf-8\n")
    result = run_cli("manifests", "--service", "svc", "--check", str(out))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "svc-rules.yaml" in result.stdout
