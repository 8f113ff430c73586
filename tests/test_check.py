"""`meshmetrics check`: each known cause of an empty Grafana, reproduced and reported."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask, Response, request

from helpers import PYTHON, Server, free_port, run_cli
from meshmetrics import instrument


def good_app() -> Flask:
    app = Flask("good")
    instrument(app, service="good")

    @app.route("/users/<uid>")
    def user(uid: str) -> str:
        return uid

    return app


def test_healthy_service_is_clean(serve: Callable[[Flask], str]) -> None:
    app = good_app()
    base = serve(app)
    for i in range(20):
        app.test_client().get(f"/users/{i}")
    result = run_cli("check", base)  # a base URL: /metrics is appended
    assert result.returncode == 0, result.stdout
    assert f"OK    {base}/metrics: reachable" in result.stdout
    assert "request metrics present (prefix 'flask_')" in result.stdout
    assert "lint clean" in result.stdout
    assert "WARN" not in result.stdout


@pytest.mark.slow
def test_reloader_404_is_explained(start_server: Callable[..., Server]) -> None:
    server = start_server([PYTHON, "apps/pfe_debug.py", "0"])
    result = run_cli("check", f"{server.base}/metrics")
    assert result.returncode == 1
    assert "404 while the app answers" in result.stdout
    assert "DEBUG_METRICS=1" in result.stdout


def test_raw_path_labels_and_lint(serve: Callable[[Flask], str]) -> None:
    from prometheus_client import CollectorRegistry, Counter
    from prometheus_flask_exporter import PrometheusMetrics

    app = Flask("raw")
    registry = CollectorRegistry()
    PrometheusMetrics(app, registry=registry)  # labels by raw path
    Counter("badName", "", registry=registry).inc()

    @app.route("/users/<uid>")
    def user(uid: str) -> str:
        return uid

    base = serve(app)
    for i in range(30):
        app.test_client().get(f"/users/{1000 + i}")
    result = run_cli("check", f"{base}/metrics", "--max-series", "50")
    assert result.returncode == 0, result.stdout  # warnings only
    assert "holds raw paths ('/users/10" in result.stdout
    assert "has 9" in result.stdout or "series (> 50)" in result.stdout
    assert "badName_total: no help text" in result.stdout
    assert "badName_total: metric names should be written in 'snake_case'" in result.stdout


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("text/html", "# TYPE x counter\nx_total 1\n", "is not a Prometheus format"),
        ("", "x 1\n", "is not a Prometheus format"),
        ("text/plain; version=0.0.4", "this is { not metrics\n", "exposition does not parse"),
    ],
)
def test_bad_exposition(
    serve: Callable[[Flask], str], content_type: str, body: str, message: str
) -> None:
    app = Flask("bad")

    @app.route("/metrics")
    def metrics() -> Response:
        response = Response(body)
        if content_type:
            response.headers["Content-Type"] = content_type
        else:
            del response.headers["Content-Type"]
        return response

    result = run_cli("check", f"{serve(app)}/metrics")
    assert result.returncode == 1
    assert message in result.stdout


def test_credentials_and_unreachable(serve: Callable[[Flask], str]) -> None:
    app = Flask("locked")

    def guard(view: Any) -> Any:
        def wrapped() -> Any:
            return view() if request.headers.get("Authorization") == "Bearer t" else ("no", 401)

        return wrapped

    instrument(app, metrics_auth=guard)
    base = serve(app)
    locked = run_cli("check", base)
    assert locked.returncode == 1
    assert "401: the metrics need credentials" in locked.stdout
    assert run_cli("check", base, "--header", "Authorization: Bearer t").returncode == 0
    port = free_port()
    down = run_cli("check", f"http://127.0.0.1:{port}/metrics")
    assert down.returncode == 1
    assert "unreachable" in down.stdout


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "cmpt756s1", "namespace": "cmpt756e4", "labels": {"app": "cmpt756s1"}},
    "spec": {"selector": {"app": "cmpt756s1"}, "ports": [{"name": "http", "port": 30000}]},
}
MONITOR = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "ServiceMonitor",
    "metadata": {
        "name": "cmpt756s1",
        "namespace": "cmpt756e4",
        "labels": {"release": "komplete-prometheus"},
    },
    "spec": {
        "selector": {"matchLabels": {"app": "cmpt756s1"}},
        "namespaceSelector": {"matchNames": ["cmpt756e4"]},
        "endpoints": [{"port": "http", "path": "/metrics"}],
    },
}


def write(tmp_path: Path, *objects: dict[str, Any], as_list: bool = False) -> str:
    path = tmp_path / "objects.yaml"
    if as_list:  # what kubectl get -o yaml prints
        path.write_text(
            yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": list(objects)})
        )
    else:
        path.write_text(yaml.safe_dump_all(objects))
    return str(path)


def patched(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    import copy

    out = copy.deepcopy(obj)
    node = out
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return out


@pytest.mark.parametrize(
    ("monitor", "service", "message"),
    [
        (MONITOR, SERVICE, None),
        (
            patched(MONITOR, "metadata.labels", {}),
            SERVICE,
            "label release=None, Prometheus selects release='komplete-prometheus'",
        ),
        (
            patched(MONITOR, "spec.namespaceSelector", {"matchNames": ["c756ns"]}),
            SERVICE,
            "outside namespaceSelector ['c756ns']",
        ),
        (
            patched(MONITOR, "spec.endpoints", [{"port": "30000"}]),
            SERVICE,
            "is not a port name of Service cmpt756s1",
        ),
        (MONITOR, patched(SERVICE, "spec.ports", [{"port": 30000}]), "is not a port name"),
        (
            patched(MONITOR, "spec.selector", {"matchLabels": {"app": "s1"}}),
            SERVICE,
            "matches no Service",
        ),
    ],
    ids=["good", "no-release", "namespace", "port-number", "unnamed-port", "labels"],
)
def test_monitor_against_service(
    tmp_path: Path, monitor: dict[str, Any], service: dict[str, Any], message: str | None
) -> None:
    result = run_cli(
        "check",
        write(tmp_path, service, monitor, as_list=message is None),
        "--release",
        "komplete-prometheus",
    )
    if message is None:
        assert result.returncode == 0, result.stdout
        assert "selects Service cmpt756s1, port 'http'" in result.stdout
    else:
        assert result.returncode == 1, result.stdout
        assert message in result.stdout


def test_pod_monitor_against_deployment(tmp_path: Path) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "cmpt756db", "namespace": "cmpt756e4"},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "cmpt756db"}},
                "spec": {
                    "containers": [
                        {"name": "db", "ports": [{"name": "http", "containerPort": 30002}]}
                    ]
                },
            }
        },
    }
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "cmpt756db", "namespace": "cmpt756e4", "labels": {"release": "kps"}},
        "spec": {
            "selector": {"matchLabels": {"app": "cmpt756db"}},
            "podMetricsEndpoints": [{"port": "http"}],
        },
    }
    assert (
        run_cli("check", write(tmp_path, deployment, monitor), "--release", "kps").returncode == 0
    )
    wrong = patched(monitor, "spec.podMetricsEndpoints", [{"port": "metrics"}])
    result = run_cli("check", write(tmp_path, deployment, wrong))
    assert result.returncode == 1
    assert "is not a container port name" in result.stdout


def test_generated_manifests_check_clean() -> None:
    from helpers import ROOT

    files = sorted(str(p) for p in (ROOT / "examples" / "cmpt756db" / "k8s").glob("*.yaml"))
    result = run_cli("check", *files, "--release", "komplete-prometheus")
    assert result.returncode == 0, result.stdout


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    missing = run_cli("check", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2
    assert "neither an http(s) URL nor a file" in missing.stderr
    assert run_cli("check").returncode == 2
    assert run_cli("check", "http://127.0.0.1:1/", "--header", "nocolon").returncode == 2
