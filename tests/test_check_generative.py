"""`meshmetrics check` fed generated input of any shape: manifests whose fields hold any
type, YAML/JSON text of any kind, Prometheus API payloads of any shape.  Every run ends in
findings or one line (exit 0, 1 or 3), never a traceback."""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask, Response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import ROOT, run_cli, serve_in_thread
from test_check import MONITOR, SERVICE
from test_check_objects import DEPLOYMENT, POD_MONITOR

POLICY = {
    "apiVersion": "security.istio.io/v1",
    "kind": "PeerAuthentication",
    "metadata": {"name": "default", "namespace": "cmpt756e4"},
    "spec": {
        "selector": {"matchLabels": {"app": "cmpt756s1"}},
        "mtls": {"mode": "STRICT"},
        "portLevelMtls": {"9464": {"mode": "PERMISSIVE"}},
    },
}
RULE = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PrometheusRule",
    "metadata": {"name": "r", "namespace": "cmpt756e4", "labels": {"release": "kps"}},
    "spec": {"groups": [{"name": "g", "rules": [{"record": "a:b:rate5m", "expr": "rate(b[5m])"}]}]},
}
DASHBOARD = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "d", "namespace": "cmpt756e4"},
    "data": {
        "d.json": json.dumps(
            {"panels": [{"title": "t", "targets": [{"expr": "sum(a:b:rate5m)"}], "panels": []}]}
        )
    },
}
#: What ``manifests`` generates for the cluster (Deployment, Service, HPA, Kiali dashboard)
#: and the chart values files, as the example writes them.
GENERATED = [
    doc
    for pattern in ("*-deployment.yaml", "*-service.yaml", "*-hpa.yaml", "*-kiali.yaml", "values/*")
    for path in sorted((ROOT / "examples" / "cmpt756s1" / "k8s").glob(pattern))
    for doc in yaml.safe_load_all(path.read_text())
]
VALID = [SERVICE, MONITOR, DEPLOYMENT, POD_MONITOR, POLICY, RULE, DASHBOARD, *GENERATED]
SETTINGS = settings(
    max_examples=int(os.environ.get("MESHMETRICS_FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _paths(child, (*prefix, index))


def _replace(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(obj)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@st.composite
def mutated_objects(draw: st.DrawFn) -> list[Any]:
    """The valid objects with a few fields, anywhere in them, holding any value."""
    objects = draw(st.lists(st.sampled_from(VALID), min_size=1, max_size=6))
    out = []
    for obj in objects:
        for _ in range(draw(st.integers(0, 3))):
            path = draw(st.sampled_from(list(_paths(obj))[1:]))
            obj = _replace(obj, path, draw(values))
        out.append(obj)
    return out


def _check(text: str, *args: str) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "objects.yaml"
        path.write_text(text, encoding="utf-8")
        result = run_cli("check", str(path), *args)
    assert result.returncode in (0, 1, 3), result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1].startswith(f"{sum(line.startswith('ERROR ') for line in lines)} error(s)")
    return result.returncode, result.stdout


@SETTINGS
@given(mutated_objects())
def test_manifests_whose_fields_hold_anything(objects: list[Any]) -> None:
    _check(yaml.safe_dump_all(objects), "--release", "kps")


@SETTINGS
@given(st.lists(values, max_size=4))
def test_documents_of_any_shape(documents: list[Any]) -> None:
    _check(yaml.safe_dump_all(documents))


@SETTINGS
@given(st.text(max_size=200))
def test_any_text(text: str) -> None:
    code, out = _check(text)
    if code == 3:
        assert out.splitlines()[0].startswith("UNKNOWN")


@pytest.fixture(scope="module")
def prometheus() -> Iterator[tuple[str, list[bytes]]]:
    answer = [b""]
    app = Flask("generated_prometheus")

    @app.route("/api/v1/<path:what>")
    def api(what: str) -> Response:
        return Response(answer[0], content_type="application/json")

    base, stop = serve_in_thread(app)
    yield base, answer
    stop()


api_payloads = (
    values
    | st.fixed_dictionaries(
        {"status": st.sampled_from(["success", "error"]) | values, "data": values}
    )
    | st.fixed_dictionaries(
        {
            "status": st.just("success"),
            "data": st.fixed_dictionaries(
                {"activeTargets": values | st.lists(values), "groups": values | st.lists(values)}
            ),
        }
    )
)


@SETTINGS
@given(api_payloads)
def test_prometheus_api_payloads_of_any_shape(
    prometheus: tuple[str, list[bytes]], payload: Any
) -> None:
    base, answer = prometheus
    answer[0] = json.dumps(payload).encode()
    _check(yaml.safe_dump_all([SERVICE, MONITOR]), "--prometheus", base)


@pytest.fixture(scope="module")
def exporter() -> Iterator[tuple[str, list[tuple[bytes, str]]]]:
    answer = [(b"", "text/plain")]
    app = Flask("generated_exporter")

    @app.route("/metrics")
    def metrics() -> Response:
        body, content_type = answer[0]
        return Response(body, content_type=content_type)

    base, stop = serve_in_thread(app)
    yield base, answer
    stop()


exposition_lines = st.sampled_from(
    [
        "# HELP x_total Help.\n",
        "# TYPE x_total counter\n",
        "# TYPE h histogram\n",
        'x_total{path="/users/1234"} 1\n',
        'h_bucket{le="+Inf"} 1\n',
        "h_count 1\n",
        "flask_http_request_duration_seconds_count 1\n",
        'flask_service_info{version="3f2a9c1e8b7d6a5f4e3d"} 1\n',
        'meshmetrics_spans_dropped_total{reason="queue_full"} 3\n',
        "# EOF\n",
    ]
) | st.text(max_size=30).map(lambda t: t + "\n")


@SETTINGS
@given(
    st.lists(exposition_lines, max_size=12),
    st.sampled_from(
        ["text/plain; version=0.0.4", "application/openmetrics-text; version=1.0.0", "text/html"]
    ),
)
def test_metrics_pages_of_any_content(
    exporter: tuple[str, list[tuple[bytes, str]]], page: list[str], content_type: str
) -> None:
    base, answer = exporter
    answer[0] = ("".join(page).encode("utf-8", "surrogatepass"), content_type)
    result = run_cli("check", base)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1].startswith(f"{sum(line.startswith('ERROR ') for line in lines)} error(s)")
