"""`meshmetrics check` on manifest files of any shape, and on what a Prometheus API answers:
findings or one line, never a traceback; exit 3 when an input could not be checked at all;
blank dashboards, double scrapes and the mesh's own monitors judged right."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask, Response

from helpers import run_cli, serve_in_thread
from test_check import MONITOR, SERVICE, patched, write

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "cmpt756s1", "namespace": "cmpt756e4"},
    "spec": {
        "template": {
            "metadata": {"labels": {"app": "cmpt756s1"}},
            "spec": {
                "containers": [{"name": "s1", "ports": [{"name": "http", "containerPort": 30000}]}]
            },
        }
    },
}
#: The Deployment as Istio and Kiali want its pods: labelled with app and version.
VERSIONED = copy.deepcopy(DEPLOYMENT)
VERSIONED["spec"]["template"]["metadata"]["labels"]["version"] = "v1"
POD_MONITOR = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PodMonitor",
    "metadata": {"name": "cmpt756s1", "namespace": "cmpt756e4", "labels": {"release": "kps"}},
    "spec": {
        "selector": {"matchLabels": {"app": "cmpt756s1"}},
        "podMetricsEndpoints": [{"port": "http"}],
    },
}


# -- 12: valid YAML of the wrong shape -----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "reported"),
    [
        ("metadata", None, "metadata: None is not of type 'object'"),
        ("spec", None, "spec: None is not of type 'object'"),
        ("spec.endpoints", [1], "spec.endpoints.0: 1 is not of type 'object'"),
        ("metadata.labels", ["x"], "metadata.labels: must be a mapping"),
        ("spec.selector", "app", "spec.selector: 'app' is not of type 'object'"),
        ("spec.namespaceSelector", {"matchNames": "cmpt756e4"}, "is not of type 'array'"),
    ],
)
def test_a_monitor_of_the_wrong_shape_gets_findings(
    tmp_path: Path, path: str, value: Any, reported: str
) -> None:
    result = run_cli("check", write(tmp_path, SERVICE, patched(MONITOR, path, value)))
    assert result.returncode == 1, result.stdout
    assert reported in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "service",
    [
        patched(SERVICE, "spec", None),
        patched(SERVICE, "spec.ports", [1, None, "http"]),
        patched(SERVICE, "metadata.labels", ["app"]),
        patched(SERVICE, "spec.selector", [{"app": "x"}]),
    ],
)
def test_a_service_of_the_wrong_shape_gets_findings(tmp_path: Path, service: Any) -> None:
    result = run_cli("check", write(tmp_path, service, MONITOR, DEPLOYMENT, POD_MONITOR))
    assert result.returncode in (0, 1), result.stdout
    assert result.stdout.strip().splitlines()[-1].endswith("warning(s)")


@pytest.mark.parametrize(
    ("text", "reported"),
    [
        ("a: [\n", "expected the node content"),
        ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
        ("a: b\n\tc: d\n", "cannot read"),
    ],
    ids=["unclosed", "200k-deep", "tab"],
)
def test_a_file_that_is_not_yaml_is_one_line_and_exit_3(
    tmp_path: Path, text: str, reported: str
) -> None:
    path = tmp_path / "objects.yaml"
    path.write_text(text)
    result = run_cli("check", str(path))
    assert result.returncode == 3, result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"UNKNOWN {path}: cannot read")
    assert reported in lines[0]
    assert lines[-1] == "0 error(s), 0 warning(s), 1 input(s) not checked"


def test_errors_found_win_over_an_input_not_checked(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [\n")
    result = run_cli("check", str(broken), write(tmp_path, SERVICE, MONITOR), "--release", "x")
    assert result.returncode == 1, result.stdout
    assert "1 input(s) not checked" in result.stdout


def test_help_documents_the_exit_statuses() -> None:
    out = " ".join(run_cli("check", "--help").stdout.split())
    assert "0 no error found; 1 errors found; 2 bad usage; 3 an input could not be checked" in out


# -- 12: a Prometheus API answering the wrong shape ---------------------------------------


@pytest.fixture
def prometheus_answering() -> Iterator[Callable[[bytes], str]]:
    stops: list[Callable[[], None]] = []

    def start(body: bytes) -> str:
        app = Flask("fake_prometheus")

        @app.route("/api/v1/<path:what>")
        def api(what: str) -> Response:
            return Response(body, content_type="application/json")

        base, stop = serve_in_thread(app)
        stops.append(stop)
        return base

    yield start
    for stop in stops:
        stop()


@pytest.mark.parametrize(
    ("body", "reported"),
    [
        (b"[]", "answered a list"),
        (b'{"status": "success"}', "answered no data object"),
        (b'{"status": "success", "data": {"activeTargets": null}}', "activeTargets is not a list"),
        (b'{"status": "success", "data": []}', "answered no data object"),
        (b"[" * 200_000 + b"]" * 200_000, "JSON nested too deeply"),
        (b'{"status": "error", "error": "boom"}', "boom"),
        (b"\xff\xfe", "not JSON"),
    ],
    ids=["list", "no-data", "targets-null", "data-list", "200k-deep", "error", "bytes"],
)
def test_a_prometheus_api_of_the_wrong_shape_is_one_line_and_exit_3(
    tmp_path: Path, prometheus_answering: Callable[[bytes], str], body: bytes, reported: str
) -> None:
    base = prometheus_answering(body)
    files = write(tmp_path, SERVICE, MONITOR)
    result = run_cli("check", files, "--release", "komplete-prometheus", "--prometheus", base)
    assert result.returncode == 3, result.stdout
    unknown = [line for line in result.stdout.splitlines() if line.startswith("UNKNOWN")]
    assert len(unknown) == 1, result.stdout
    assert reported in unknown[0]


def test_a_prometheus_api_with_odd_items_checks_what_it_can(
    tmp_path: Path, prometheus_answering: Callable[[bytes], str]
) -> None:
    answer = {
        "status": "success",
        "data": {
            "activeTargets": [
                1,
                None,
                {"scrapePool": 7},
                {"scrapePool": "serviceMonitor/cmpt756e4/cmpt756s1/0"},
            ],
            "groups": [{"name": None}, "x"],
        },
    }
    base = prometheus_answering(json.dumps(answer).encode())
    result = run_cli("check", write(tmp_path, SERVICE, MONITOR), "--prometheus", base)
    assert "OK    ServiceMonitor/cmpt756e4/cmpt756s1: Prometheus scrapes it" in result.stdout


# -- 10: a dashboard reading recorded series no rule given records ------------------------


def generated(*args: str) -> list[dict[str, Any]]:
    result = run_cli(
        "manifests", "--service", "cmpt756s1", "--namespace", "cmpt756e4", "--release", "kps", *args
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_a_dashboard_without_its_rules_is_an_error_per_panel(tmp_path: Path) -> None:
    # emitted with its rules, then the PrometheusRule left out (alone, `manifests` now
    # builds the dashboard on raw series: the pair no longer reads recorded ones)
    with_rules = generated("--kind", "servicemonitor,dashboard,rules")
    objects = [o for o in with_rules if o.get("kind") != "PrometheusRule"]
    result = run_cli("check", write(tmp_path, SERVICE, *objects), "--release", "kps")
    assert result.returncode == 1, result.stdout
    assert (
        "ERROR ConfigMap/cmpt756e4/cmpt756s1-dashboard[cmpt756e4-cmpt756s1.json]: panel "
        "'Request rate by route' reads namespace_job_path_code:flask_http_request:rate5m, "
        "which no PrometheusRule given records" in result.stdout
    )
    assert (
        "panel 'In-flight requests' reads namespace_job_path:flask_http_requests_in_progress:sum"
        in result.stdout
    )
    together = write(tmp_path, SERVICE, *with_rules)
    assert run_cli("check", together, "--release", "kps").returncode == 0
    for raw in (
        generated("--kind", "servicemonitor,dashboard", "--no-recording-rules"),
        generated("--kind", "servicemonitor,dashboard"),  # alone: raw series
    ):
        assert run_cli("check", write(tmp_path, SERVICE, *raw), "--release", "kps").returncode == 0


def test_recorded_names_read_from_promql() -> None:
    from meshmetrics.diagnose.dashboards import recorded_names

    expr = (
        'sum by (path) (a:b:rate5m{job="x:y",path=~"/a:b"}) / max_over_time(c_total[5m:1m])'
        " + on(job) group_left level:metric:op offset 5m"
    )
    assert recorded_names(expr) == {"a:b:rate5m", "level:metric:op"}


# -- 11: a ServiceMonitor and a PodMonitor for the same pods -------------------------------


def test_a_service_monitor_and_a_pod_monitor_on_the_same_pods_warn(tmp_path: Path) -> None:
    service_monitor = patched(MONITOR, "metadata.labels", {"release": "kps"})
    result = run_cli("check", write(tmp_path, SERVICE, DEPLOYMENT, service_monitor, POD_MONITOR))
    assert result.returncode == 0, result.stdout
    assert (
        "WARN  ServiceMonitor/cmpt756e4/cmpt756s1: scrapes the pods {'app': 'cmpt756s1'} of "
        "Service cmpt756s1 on port 'http', and so does PodMonitor/cmpt756e4/cmpt756s1: every "
        "series twice, under job 'cmpt756s1' and job 'cmpt756e4/cmpt756s1'" in result.stdout
    )
    numbered = patched(SERVICE, "spec.ports", [{"name": "http", "port": 80, "targetPort": 30000}])
    again = run_cli("check", write(tmp_path, numbered, DEPLOYMENT, service_monitor, POD_MONITOR))
    assert "and so does PodMonitor/cmpt756e4/cmpt756s1" in again.stdout
    other_port = patched(POD_MONITOR, "spec.podMetricsEndpoints", [{"port": "admin"}])
    deployment = copy.deepcopy(DEPLOYMENT)
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"].append(
        {"name": "admin", "containerPort": 9000}
    )
    apart = run_cli("check", write(tmp_path, numbered, deployment, service_monitor, other_port))
    assert "and so does" not in apart.stdout, apart.stdout


# -- 15: meshmetrics' own --kind istio-monitors ---------------------------------------------


def test_the_istio_monitors_meshmetrics_emits_check_clean_beside_the_app(tmp_path: Path) -> None:
    istio = generated("--kind", "istio-monitors")
    app = generated("--kind", "servicemonitor")
    result = run_cli("check", write(tmp_path, SERVICE, VERSIONED, *app, *istio), "--release", "kps")
    assert result.returncode == 0, result.stdout
    assert (
        "port 'http-envoy-prom' (15090) of the istio-proxy container Istio injects" in result.stdout
    )
    assert (
        "ServiceMonitor/cmpt756e4/istiod: selects Services in namespace(s) ['istio-system'], none of which was given"
        in result.stdout
    )
    opted_out = copy.deepcopy(DEPLOYMENT)
    opted_out["spec"]["template"]["metadata"]["labels"]["sidecar.istio.io/inject"] = "false"
    result = run_cli("check", write(tmp_path, SERVICE, opted_out, *app, *istio), "--release", "kps")
    assert "opts out of the sidecar" in result.stdout


def test_the_strict_mtls_advice_names_the_flag(tmp_path: Path) -> None:
    strict = {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "cmpt756e4"},
        "spec": {"mtls": {"mode": "STRICT"}},
    }
    result = run_cli(
        "check", write(tmp_path, SERVICE, MONITOR, strict), "--release", "komplete-prometheus"
    )
    assert result.returncode == 1
    assert "meshmetrics manifests --mtls strict --metrics-port 9464" in result.stdout


def test_dashboards_nested_past_the_parsers_depth(tmp_path: Path) -> None:
    panel: dict[str, Any] = {"title": "deepest", "targets": [{"expr": "sum(a:b:rate5m)"}]}
    for _ in range(400):
        panel = {"title": "row", "panels": [panel]}
    deep_panels = json.dumps({"panels": [panel]})
    for text in ("[" * 100_000 + "]" * 100_000, deep_panels):
        configmap = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "d", "namespace": "cmpt756e4"},
            "data": {"d.json": text},
        }
        result = run_cli("check", write(tmp_path, SERVICE, MONITOR, configmap))
        assert result.returncode in (1, 3), result.stdout
        lines = result.stdout.splitlines()
        errors = sum(line.startswith("ERROR ") for line in lines)
        assert lines[-1].startswith(f"{errors} error(s)")
    assert "panel 'deepest' reads a:b:rate5m" in result.stdout


def test_pod_target_labels_the_pods_lack_warn_without_failing(tmp_path: Path) -> None:
    monitor = generated("--kind", "servicemonitor")  # podTargetLabels: [app, version]
    result = run_cli("check", write(tmp_path, SERVICE, DEPLOYMENT, *monitor), "--release", "kps")
    assert result.returncode == 0, result.stdout
    assert (
        "WARN  ServiceMonitor/cmpt756e4/cmpt756s1: podTargetLabels ['version'] are not labels "
        "of Deployment/cmpt756e4/cmpt756s1's pods" in result.stdout
    )
    clean = run_cli("check", write(tmp_path, SERVICE, VERSIONED, *monitor), "--release", "kps")
    assert "podTargetLabels" not in clean.stdout, clean.stdout
