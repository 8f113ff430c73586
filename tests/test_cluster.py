"""The cluster objects of issue 22: Deployment, autoscalers and their adapter values, Kiali
dashboards, ambient mode, their strict schemas, and the example images."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import ROOT, free_port, run_cli, wait_http
from meshmetrics.config import ConfigError, MeshConfig
from meshmetrics.manifests import build_objects, model_from_config
from meshmetrics.manifests.autoscaling import (
    Autoscale,
    Scaling,
    adapter_values,
    decimal,
    prometheus_address,
    prometheus_fullname,
    quantity,
)
from meshmetrics.manifests.kiali import custom_dashboards_patch, monitoring_dashboard
from meshmetrics.manifests.options import ManifestOptions
from meshmetrics.manifests.validate import validate_object, validate_text
from meshmetrics.manifests.workload import Workload
from meshmetrics.testing.receivers import ZipkinCollector

CONFIG = MeshConfig(
    service="cmpt756db",
    namespace="cmpt756e4",
    release="komplete-prometheus",
    version="v1",
    excluded_paths=("/api/v1/datastore/health", "/api/v1/datastore/readiness"),
)
EXAMPLES = ("cmpt756db", "cmpt756s1")


def _objects(config: MeshConfig = CONFIG, kinds: tuple[str, ...] = (), **options: Any) -> Any:
    return build_objects(model_from_config(config), kinds, ManifestOptions(**options))


def _deployment(config: MeshConfig = CONFIG, **options: Any) -> dict[str, Any]:
    found: dict[str, Any] = _objects(config, ("deployment",), **options)[
        f"{config.service}-deployment.yaml"
    ]
    return found


# -- the Deployment ------------------------------------------------------------------------


def test_deployment_carries_what_istio_kiali_and_the_hpa_need() -> None:
    config = CONFIG.replace(metrics_port=9464, tracing="zipkin")
    deployment = _deployment(config, service_port=30002)
    assert validate_object(deployment) == []
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"] == {"app": "cmpt756db", "version": "v1"}
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "cmpt756db"}}
    assert deployment["spec"]["replicas"] == 1
    annotations = template["metadata"]["annotations"]
    assert not [k for k in annotations if k.startswith("prometheus.io/")]
    assert annotations["prometheus.istio.io/merge-metrics"] == "false"
    assert annotations["kiali.io/dashboards"] == "meshmetrics-flask"
    (container,) = template["spec"]["containers"]
    assert container["ports"] == [
        {"name": "http", "containerPort": 30002, "protocol": "TCP"},
        {"name": "http-metrics", "containerPort": 9464, "protocol": "TCP"},
    ]
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/api/v1/datastore/readiness",
        "port": "http",
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/v1/datastore/health"
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PORT"] == "30002"
    assert env["MESHMETRICS_NAMESPACE"] == "cmpt756e4"
    assert env["MESHMETRICS_VERSION"] == "v1"
    assert env["MESHMETRICS_METRICS_PORT"] == "9464"
    assert env["MESHMETRICS_TRACING"] == "zipkin"
    assert env["MESHMETRICS_TRACE_ENDPOINT"] == "http://localhost:9411/api/v2/spans"
    assert env["OTEL_SERVICE_NAME"] == "cmpt756db"
    assert "k8s.pod.name=$(POD_NAME)" in env["OTEL_RESOURCE_ATTRIBUTES"]
    # the Service the monitor selects routes to these pods, on these ports
    service = _objects(config, ("service",), service_port=30002)["cmpt756db-service.yaml"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [30002, 9464]


def test_the_environment_configures_the_app_as_generated() -> None:
    """What the Deployment sets, the app resolves to the configuration it came from."""
    from meshmetrics.config import resolve_config

    config = CONFIG.replace(metrics_port=9464, mtls="strict", tracing="otlp")
    (container,) = _deployment(config)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env["POD_NAME"] = "cmpt756db-abc"
    resolved = resolve_config({}, default_service="x", environ=env)
    for option in ("service", "namespace", "version", "metrics_port", "mtls", "tracing"):
        assert getattr(resolved, option) == getattr(config, option), option
    assert resolved.trace_endpoint == config.trace_endpoint


def test_no_health_path_means_a_tcp_probe_and_autoscaling_drops_replicas() -> None:
    config = MeshConfig(service="api", excluded_paths=())
    deployment = _deployment(config, scaling=Scaling(Autoscale.parse("rps:5")))
    assert "replicas" not in deployment["spec"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["tcpSocket"] == {"port": "http"}
    assert validate_object(deployment) == []


def test_ambient_mode_objects() -> None:
    config = CONFIG.replace(metrics_port=9464, mtls="strict")
    ambient = Workload(mesh="ambient")
    deployment = _deployment(config, workload=ambient)
    template = deployment["spec"]["template"]["metadata"]
    assert template["labels"]["istio.io/dataplane-mode"] == "ambient"
    assert not [k for k in template["annotations"] if "istio.io/" in k.split("/")[0] + "/"]
    objects = _objects(config, ("istio-monitors", "peerauthentication"), workload=ambient)
    assert "istio-envoy-podmonitor.yaml" not in objects  # no sidecar Envoy on 15090
    ztunnel = objects["istio-ztunnel-podmonitor.yaml"]
    assert ztunnel["spec"]["selector"] == {"matchLabels": {"app": "ztunnel"}}
    assert ztunnel["spec"]["namespaceSelector"] == {"matchNames": ["istio-system"]}
    assert "istio-waypoints-podmonitor.yaml" in objects
    policy = objects["cmpt756db-peerauthentication.yaml"]["spec"]
    assert policy["mtls"] == {"mode": "STRICT"}  # ztunnel honours port exemptions of STRICT
    assert policy["selector"] == {"matchLabels": {"app": "cmpt756db"}}
    assert all(validate_object(o) == [] for o in objects.values())
    sidecar = _objects(config, ("istio-monitors", "peerauthentication"))
    assert "istio-envoy-podmonitor.yaml" in sidecar
    assert sidecar["cmpt756db-peerauthentication.yaml"]["spec"]["mtls"] == {"mode": "UNSET"}
    # a sidecar annotation on an ambient pod is caught
    deployment["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] = "true"
    assert any("ambient" in e for e in validate_object(deployment))


# -- autoscaling ----------------------------------------------------------------------------


def test_hpa_and_keda_objects() -> None:
    scaling = Scaling(Autoscale.parse("inflight:2.5"), min_replicas=2, max_replicas=6)
    hpa = _objects(CONFIG, ("autoscaler",), scaling=scaling)["cmpt756db-hpa.yaml"]
    assert validate_object(hpa) == []
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "cmpt756db",
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric == {
        "type": "Pods",
        "pods": {
            "metric": {"name": "flask_http_requests_inflight"},
            "target": {"type": "AverageValue", "averageValue": "2500m"},
        },
    }
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    keda = Scaling(Autoscale.parse("rps:10"), autoscaler="keda")
    scaled = _objects(CONFIG, ("autoscaler",), scaling=keda)["cmpt756db-scaledobject.yaml"]
    assert validate_object(scaled) == []
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metricType"] == "AverageValue"
    assert trigger["metadata"]["serverAddress"] == (
        "http://komplete-prometheus-kube-p-prometheus.istio-system.svc:9090"
    )
    assert trigger["metadata"]["query"] == (
        'sum(rate(flask_http_request_total{namespace="cmpt756e4",service="cmpt756db"}[2m]))'
    )
    assert scaled["spec"]["minReplicaCount"] == 1
    scaled["spec"]["minReplicaCount"] = 0
    assert any("cannot scale it up from zero" in e for e in validate_object(scaled))


def test_adapter_values_for_the_course_prometheus() -> None:
    values = adapter_values(model_from_config(CONFIG), Scaling())
    assert values["prometheus"] == {
        "url": "http://komplete-prometheus-kube-p-prometheus.istio-system.svc",
        "port": 9090,
    }
    assert values["rules"]["default"] is False
    for rule in values["rules"]["custom"]:
        assert "<<.LabelMatchers>>" in rule["metricsQuery"]
        assert "<<.GroupBy>>" in rule["metricsQuery"]
    assert validate_object(values) == []
    # the chart's default rules would derive these names too: a collision when enabled
    values["rules"]["default"] = True
    assert validate_object(values) == []  # ours are not default-derived names
    values["rules"]["custom"][0]["name"]["as"] = "flask_http_request"
    assert any("default rules" in e for e in validate_object(values))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(metricsQuery="sum(rate(<<.Series>>[2m]))"), "<<.LabelMatchers>>"),
        (
            lambda r: r.update(metricsQuery='sum(rate(<<.Series>>{ns="{{.Namespace}}"}[2m]))'),
            "delimiter",
        ),
        (lambda r: r["resources"]["overrides"].pop("namespace"), "namespace"),
        (lambda r: r.update(seriesQuerry="x"), "seriesQuerry"),
    ],
)
def test_adapter_values_mistakes_are_named(change: Any, message: str) -> None:
    values = adapter_values(model_from_config(CONFIG), Scaling())
    change(values["rules"]["custom"][0])
    assert any(message in e for e in validate_object(values)), validate_object(values)


def test_release_names_give_the_chart_fullname() -> None:
    assert prometheus_fullname("komplete-prometheus") == "komplete-prometheus-kube-p"
    assert prometheus_fullname("kube-prometheus-stack") == "kube-prometheus-stack"
    assert prometheus_fullname("prom") == "prom-kube-prometheus-stack"
    assert prometheus_fullname("a" * 25 + "-b") == "a" * 25
    assert [quantity(v) for v in (10, 0.5, 2.125)] == ["10", "500m", "2125m"]
    for url, address in (
        ("https://prometheus.example", ("https://prometheus.example", 443)),
        (
            "http://prometheus-operated.monitoring.svc:9090/",
            ("http://prometheus-operated.monitoring.svc", 9090),
        ),
    ):
        assert prometheus_address(CONFIG, Scaling(prometheus_url=url)) == address
    big = Autoscale.parse("rps:123456.789")
    assert big.spec == "rps:123456.789"
    assert quantity(big.target) == "123456789m"
    keda = Scaling(big, autoscaler="keda")
    scaled = _objects(CONFIG, ("autoscaler",), scaling=keda)["cmpt756db-scaledobject.yaml"]
    assert scaled["spec"]["triggers"][0]["metadata"]["threshold"] == "123456.789"


def test_hand_written_objects_outside_the_subset_are_not_ours_to_refuse() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x", "labels": {"app": "x"}},
        "spec": {"clusterIP": "None", "ports": [{"port": 80}], "sessionAffinity": "None"},
    }
    assert validate_object(service) == []
    service["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "meshmetrics"
    assert any("clusterIP" in e for e in validate_object(service))


# -- Kiali ----------------------------------------------------------------------------------


def test_kiali_dashboard_in_both_forms() -> None:
    model = model_from_config(CONFIG)
    old, new = monitoring_dashboard(model), custom_dashboards_patch(model)
    assert old["apiVersion"] == "monitoring.kiali.io/v1alpha1"
    assert old["kind"] == "MonitoringDashboard"
    assert old["spec"]["discoverOn"] == "flask_http_request_total"
    (entry,) = new["spec"]["custom_dashboards"]
    assert entry["name"] == old["metadata"]["name"] == "meshmetrics-flask"
    assert entry["discoverOn"] == old["spec"]["discoverOn"]
    old_charts = [i["chart"] for i in old["spec"]["items"]]
    new_charts = [i["chart"] for i in entry["items"]]
    assert all("metricName" in c and "metrics" not in c for c in old_charts)
    assert all("metrics" in c and "metricName" not in c for c in new_charts)
    types = {c["metricName"]: c["dataType"] for c in old_charts}
    assert types["flask_http_request_duration_seconds"] == "histogram"
    assert types["flask_http_requests_in_progress"] == "raw"
    assert validate_object(old) == []
    assert validate_object(new) == []
    del new["spec"]["custom_dashboards"][0]["items"][0]["chart"]["metrics"]
    assert any("needs metrics" in e for e in validate_object(new))
    monitor = _objects(CONFIG, ("servicemonitor",))["cmpt756db-servicemonitor.yaml"]
    assert monitor["spec"]["podTargetLabels"] == ["app", "version"]


# -- every accepted combination is valid, every rejected one is one line --------------------

_FLAG_VALUES = {
    "--autoscale": st.one_of(
        st.builds(
            lambda m, n: f"{m}:{n}",
            st.sampled_from(["rps", "inflight", "cpu", ""]),
            st.one_of(
                st.integers(-2, 10**6).map(str),
                st.decimals(0, 1000, places=4, allow_nan=False).map(str),
                st.just("x"),
            ),
        ),
    ),
    "--min-replicas": st.integers(-1, 12).map(str),
    "--max-replicas": st.integers(-1, 12).map(str),
    "--autoscaler": st.sampled_from(["hpa", "keda"]),
    "--scale-down-window": st.integers(-5, 4000).map(str),
    "--mesh": st.sampled_from(["sidecar", "ambient"]),
    "--image": st.sampled_from(
        [
            "shop:v1",
            "registry.local:5000/team/shop:1.0",
            "Shop:v1",
            "shop:",
            "a/b/c@sha256:" + "0" * 64,
        ]
    ),
    "--env-secret": st.sampled_from(["jwt", "app.secrets", "Bad_Secret"]),
    "--prometheus-url": st.sampled_from(
        [
            "http://prometheus-operated.monitoring.svc:9090",
            "https://prometheus.example",
            "prometheus:9090",
            "http://p/path",
            "http://p:99999",
            "http://-..-",
            "http://10.96.0.12:9090/",
        ]
    ),
    "--version": st.sampled_from(["v1", "2.0.1", "-bad"]),
    "--prefix": st.one_of(
        st.sampled_from(["", "_", "a:b", "App", "9x"]),
        st.from_regex(r"\A[a-zA-Z_:][a-zA-Z0-9_:]{0,90}\Z"),
    ),
    "--metrics-port": st.sampled_from(["9464", "0"]),
    "--port-name": st.sampled_from(["http", "http-web", "a-very-long-port-name"]),
    "--tracing": st.sampled_from(["zipkin", "otlp", "jaeger", "off", "carrier-pigeon"]),
    "--trace-endpoint": st.sampled_from(
        ["http://zipkin.istio-system:9411/api/v2/spans", "jaeger-agent:6831", "nowhere"]
    ),
}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(sorted(_FLAG_VALUES)), st.just(None), max_size=6).flatmap(
        lambda keys: st.fixed_dictionaries({k: _FLAG_VALUES[k] for k in keys})
    )
)
def test_every_accepted_combination_is_valid_and_every_rejected_one_names_its_flag(
    flags: dict[str, str],
) -> None:
    args = ["manifests", "--service", "shop", "--namespace", "shop-ns", "--release", "prom"]
    for flag, value in flags.items():
        args += [flag, value]
    kinds = "deployment,service,servicemonitor,kiali,istio-monitors"
    result = run_cli(*args, "--kind", kinds)
    if result.returncode == 0:
        assert validate_text(result.stdout) == [], (flags, validate_text(result.stdout))
        for values_flag in ("--adapter-values", "--kiali-patch"):
            values = run_cli(*args, values_flag)
            assert values.returncode == 0, values.stderr
            assert validate_text(values.stdout) == []
        return
    assert result.returncode == 2, (flags, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, (flags, result.stderr)
    named = [flag for flag in flags if flag in lines[0]]
    assert named, (flags, lines[0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--autoscale", "rps:10", "--autoscaler", "keda", "--min-replicas", "0"],
            "invalid --min-replicas 0 (from the command line): must be a whole number from 1 (a pod that does not exist reports no requests",
        ),
        (["--autoscale", "rps"], "invalid --autoscale 'rps'"),
        (
            ["--autoscale", "rps:1", "--min-replicas", "4", "--max-replicas", "2"],
            "invalid --min-replicas 4",
        ),
        (["--kind", "autoscaler"], "needs --autoscale"),
        (["--mesh", "mixed"], "--mesh"),
        (["--image", "UPPER:case"], "invalid --image"),
        (["--scale-down-window", "3601"], "invalid --scale-down-window"),
        (["--adapter-values", "--kiali-patch"], "one values file at a time without --out"),
    ],
)
def test_rejected_options_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = run_cli("manifests", "--service", "shop", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -- the examples: their k8s/ passes check, their image runs ------------------------------


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_k8s_pass_check_and_hold_everything(name: str) -> None:
    k8s = ROOT / "examples" / name / "k8s"
    files = sorted(str(p) for p in k8s.glob("*.yaml"))
    result = run_cli("check", *files, "--release", "komplete-prometheus", cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {yaml.safe_load(Path(f).read_text())["kind"] for f in files}
    assert {
        "Deployment",
        "Service",
        "ServiceMonitor",
        "ConfigMap",
        "PrometheusRule",
        "MonitoringDashboard",
    } <= kinds
    if name == "cmpt756s1":
        assert "HorizontalPodAutoscaler" in kinds
        values = sorted(str(p) for p in (k8s / "values").glob("*.yaml"))
        assert [Path(v).name for v in values] == [
            "kiali-custom-dashboards-patch.yaml",
            "prometheus-adapter-values.yaml",
        ]
        both = run_cli("check", *files, *values, "--release", "komplete-prometheus", cwd=ROOT)
        assert both.returncode == 0, both.stdout + both.stderr


def test_check_refuses_a_broken_autoscaler(tmp_path: Path) -> None:
    k8s = ROOT / "examples" / "cmpt756s1" / "k8s"
    for path in k8s.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    hpa = yaml.safe_load((tmp_path / "cmpt756s1-hpa.yaml").read_text())
    hpa["spec"]["metrics"][0]["pods"]["target"] = {"type": "Value", "value": "10"}
    (tmp_path / "cmpt756s1-hpa.yaml").write_text(yaml.safe_dump(hpa))
    files = sorted(str(p) for p in tmp_path.glob("*.yaml"))
    result = run_cli("check", *files, "--release", "komplete-prometheus")
    assert result.returncode != 0
    assert "AverageValue" in result.stdout + result.stderr


def _dockerfile(name: str) -> list[tuple[str, str]]:
    """The instructions of an example's Dockerfile (continuations joined)."""
    text = (ROOT / "examples" / name / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, rest = line.strip().partition(" ")
            found.append((instruction.upper(), rest.strip()))
    return found


@pytest.mark.parametrize("name", EXAMPLES)
def test_dockerfile_builds_from_the_repository(name: str) -> None:
    steps = _dockerfile(name)
    assert steps[0][0] == "FROM"
    assert re.fullmatch(r"python:3\.\d+-slim", steps[0][1])
    extras = set(
        __import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"][
            "optional-dependencies"
        ]
    )
    for instruction, rest in steps:
        if instruction == "COPY":
            *sources, _ = rest.split()
            assert all((ROOT / s).exists() for s in sources), rest  # the context is the repo
        if instruction == "RUN" and "pip install" in rest:
            wanted = re.findall(r"'\.\[([^\]]*)\]'", rest)
            assert wanted
            assert set(wanted[0].split(",")) <= extras
    users = [rest for instruction, rest in steps if instruction == "USER"]
    assert users
    assert users[-1].isdigit()  # runAsNonRoot checks a UID
    assert users[-1] != "0"
    env = dict(re.findall(r"(\w+)=(\S+)", next(r for i, r in steps if i == "ENV")))
    deployment = yaml.safe_load(
        (ROOT / "examples" / name / "k8s" / f"{name}-deployment.yaml").read_text()
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert env["PORT"] == str(container["ports"][0]["containerPort"])
    assert container["image"] == f"{name}:latest"
    assert f"minikube image build -t {name}:latest -f examples/{name}/Dockerfile ." in (
        (ROOT / "examples" / name / "Dockerfile").read_text()
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_dockerfile_cmd_serves_the_app_and_its_probes(
    name: str, tmp_path: Path, zipkin: ZipkinCollector
) -> None:
    """The image's CMD, exactly, in a directory laid out as the image's /app, with the
    Deployment's environment (its span collector moved to loopback)."""
    steps = _dockerfile(name)
    cmd = json.loads(next(rest for instruction, rest in steps if instruction == "CMD"))
    assert cmd[:3] == ["gunicorn", "-c", "python:meshmetrics.gunicorn"]
    shutil.copy(ROOT / "examples" / name / "app.py", tmp_path / "app.py")
    port = free_port()
    deployment = yaml.safe_load(
        (ROOT / "examples" / name / "k8s" / f"{name}-deployment.yaml").read_text()
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        **{e["name"]: e["value"] for e in container["env"] if "value" in e},
        "PORT": str(port),
        "MESHMETRICS_TRACE_ENDPOINT": zipkin.endpoint,
        # the image binds 0.0.0.0:$PORT; here, loopback only
        "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port}",
        "JWT_SECRET": "k" * 64,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    proc = subprocess.Popen(
        shlex.split(shlex.join(cmd)),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/metrics", proc=proc)
        for probe in ("readinessProbe", "livenessProbe"):
            path = container[probe]["httpGet"]["path"]
            assert requests.get(base + path, timeout=10).status_code == 200, path
        text = requests.get(f"{base}/metrics", timeout=10).text
        assert f'service="{name}"' in text
        assert 'version="v1"' in text
        # what the Kiali dashboard's CPU and memory charts read, per gunicorn worker
        assert "\nprocess_cpu_seconds_total{" in text
        assert "\nprocess_resident_memory_bytes{" in text
        # the Deployment's tracing settings reach the app: probes are not traced, a request is
        assert zipkin.spans == []
        requests.get(
            f"{base}/api/v1/{'datastore/read' if name == 'cmpt756db' else 'user/x'}", timeout=10
        )
        (span,) = zipkin.wait_for(1, timeout=20)
        assert span.service == name
        assert "health" not in text.split("flask_http_request_total", 1)[-1].split("\n# ")[0]
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(imagePullPolicy="Sometimes"), "Sometimes"),
        (lambda c: c["ports"][0].update(name="http-metrics-port"), "http-metrics-port"),
        (
            lambda c: c.update(livenessProbe={"httpGet": {"path": "health", "port": "http"}}),
            "health",
        ),
        (lambda c: c["resources"]["requests"].update(cpu="lots"), "lots"),
        (lambda c: c.update(volumeMountz=[]), "volumeMountz"),
    ],
)
def test_deployment_schema_names_what_is_wrong(change: Any, message: str) -> None:
    deployment = _deployment()
    change(deployment["spec"]["template"]["spec"]["containers"][0])
    errors = validate_object(deployment)
    assert any(message in e for e in errors), errors


def test_deployment_refuses_a_version_a_pod_label_cannot_carry() -> None:
    args = ["--version", "1.0+build"]  # a fine version for the metrics' label
    result = run_cli("manifests", "--service", "shop", "--kind", "deployment", *args)
    assert result.returncode == 2
    assert "--version '1.0+build' cannot be the pods' version label" in result.stderr
    assert run_cli("manifests", "--service", "shop", "--kind", "service", *args).returncode == 0


def _example_objects(name: str) -> list[dict[str, Any]]:
    k8s = ROOT / "examples" / name / "k8s"
    return [yaml.safe_load(p.read_text()) for p in sorted(k8s.glob("*.yaml"))]


def _hand_written_without_version(by_kind: dict[str, Any]) -> None:
    deployment = by_kind["Deployment"]
    del deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    del deployment["spec"]["template"]["metadata"]["labels"]["version"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o: o["Deployment"]["spec"].update(replicas=2), "spec.replicas is set"),
        (
            lambda o: o["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"].update(name="s2"),
            "scales Deployment 's2', not among the files",
        ),
        (lambda o: o["Service"]["spec"]["ports"][0].update(targetPort=8080), "targets 8080"),
        (lambda o: o["Service"]["spec"]["selector"].update(app="other"), "matches no Deployment"),
    ],
)
def test_objects_that_disagree_with_each_other_are_named(change: Any, message: str) -> None:
    objects = _example_objects("cmpt756s1")
    assert validate_text(yaml.safe_dump_all(objects)) == []
    by_kind = {o["kind"]: o for o in objects}
    change(by_kind)
    errors = validate_text(yaml.safe_dump_all(objects))
    assert any(message in e for e in errors), errors


def test_pods_without_the_monitors_pod_target_labels_are_valid_objects() -> None:
    """Scraped all the same: `check` warns (test_check_objects), validation does not fail."""
    objects = _example_objects("cmpt756s1")
    _hand_written_without_version({o["kind"]: o for o in objects})
    assert validate_text(yaml.safe_dump_all(objects)) == []


def test_an_hpa_and_a_scaled_object_on_one_deployment_fight() -> None:
    objects = _example_objects("cmpt756s1")
    keda = Scaling(Autoscale.parse("rps:10"), autoscaler="keda")
    config = CONFIG.replace(service="cmpt756s1")
    objects.append(_objects(config, ("autoscaler",), scaling=keda)["cmpt756s1-scaledobject.yaml"])
    errors = validate_text(yaml.safe_dump_all(objects))
    assert any("two autoscalers fight" in e for e in errors), errors


@given(st.text(max_size=30))
def test_autoscale_parses_or_names_the_option(text: str) -> None:
    try:
        parsed = Autoscale.parse(text)
    except ConfigError as exc:
        error: ConfigError | None = exc
    else:
        error = None
    if error is not None:
        assert (error.option, error.value) == ("autoscale", text)
        return
    assert parsed.metric in ("rps", "inflight")
    assert 0 < parsed.target <= 1e9
    assert Autoscale.parse(parsed.spec) == parsed  # the spec reads back


@given(
    st.sampled_from(["rps", "inflight"]),
    st.decimals(min_value="0.001", max_value="1000000000", places=3, allow_nan=False),
)
def test_every_accepted_target_is_an_exact_quantity(metric: str, number: Any) -> None:
    parsed = Autoscale.parse(f"{metric}:{number}")
    text = quantity(parsed.target)
    milli = int(text[:-1]) if text.endswith("m") else int(text) * 1000
    assert milli == int(number * 1000)
    assert float(decimal(parsed.target)) == float(number)


# -- review (issue 22 item 2): --prometheus-url's host is a host ----------------------------

_HOSTISH = st.text(alphabet="abcXYZ019.-", min_size=1, max_size=12)


@given(st.sampled_from(["http", "https"]), _HOSTISH, st.one_of(st.none(), st.integers(0, 70000)))
def test_prometheus_url_is_accepted_only_with_a_real_host(
    scheme: str, host: str, port: int | None
) -> None:
    """Every URL the adapter values and KEDA's serverAddress may carry names a DNS name or
    an IPv4 address: ``http://-..-`` was accepted and written into the ScaledObject."""
    url = f"{scheme}://{host}" + ("" if port is None else f":{port}")
    labels = host.lower().split(".")
    dns = len(host) <= 253 and all(
        re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", label) for label in labels
    )
    good = dns and (port is None or 1 <= port <= 65535)
    if not good:
        with pytest.raises(ConfigError) as refused:
            Scaling(prometheus_url=url)
        assert refused.value.option == "prometheus_url"
        return
    scaling = Scaling(prometheus_url=url)
    base, number = prometheus_address(CONFIG, scaling)
    assert base == f"{scheme}://{host}"
    assert number == (port or (443 if scheme == "https" else 80))


@pytest.mark.parametrize("url", ["http://-..-", "http://a..b:9090", "http://-p:9090", "http://p-."])
def test_prometheus_url_without_a_host_names_the_flag(url: str) -> None:
    args = ["manifests", "--service", "shop", "--namespace", "shop-ns", "--release", "prom"]
    result = run_cli(*args, "--kind", "autoscaler", "--autoscale", "rps:5", "--prometheus-url", url)
    assert result.returncode == 2, result.stdout
    assert "--prometheus-url" in result.stderr, result.stderr


# -- review (issue 22 item 3): one dashboard name per metric prefix -------------------------

_PREFIXES = st.one_of(st.just(""), st.from_regex(r"\A[a-zA-Z_:][a-zA-Z0-9_:]{0,80}\Z"))


def _dashboard_name(prefix: str) -> str:
    from meshmetrics.manifests.kiali import dashboard_name

    return dashboard_name(model_from_config(CONFIG.replace(prefix=prefix)))


@given(_PREFIXES, _PREFIXES)
def test_kiali_dashboard_names_are_object_names_one_per_prefix(first: str, second: str) -> None:
    """Services whose metric names differ must not share a dashboard name (the second
    apply replaced the first's dashboard: ``a_b``/``a:b``/``A_b`` and ``""``/``_`` did),
    and every name is a valid object name (a long prefix made one over 253 characters)."""
    one, other = _dashboard_name(first), _dashboard_name(second)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", one), one
    assert (one == other) == (first == second), (first, second, one)


def test_the_flask_prefix_keeps_its_dashboard_name() -> None:
    assert _dashboard_name("flask") == "meshmetrics-flask"
    assert _dashboard_name("") == "meshmetrics"
    assert _dashboard_name("my_app") == "meshmetrics-my-app"


# -- review (issue 22 item 1): --image is a reference a container runtime can pull ----------

# distribution/reference's grammar (regexp.go): the oracle the image option is checked against
_D_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_D_DOMAIN = rf"{_D_COMPONENT}(?:\.{_D_COMPONENT})*(?::[0-9]+)?"
_D_PATH = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_D_REFERENCE = re.compile(
    rf"(?:{_D_DOMAIN}/)?{_D_PATH}(?:/{_D_PATH})*(?::[\w][\w.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?"
)


_IMAGE_PARTS = st.text(alphabet="ab9-._:A", min_size=1, max_size=8)


@given(
    st.one_of(st.none(), _IMAGE_PARTS),
    st.lists(_IMAGE_PARTS, min_size=1, max_size=2),
    st.one_of(st.none(), _IMAGE_PARTS),
)
def test_image_is_accepted_exactly_when_it_is_a_reference(
    registry: str | None, path: list[str], tag: str | None
) -> None:
    """``-/x``, ``a..b/x`` and ``.:5000/x`` were accepted: a registry host must be a
    domain name (components of letters, digits and inner '-') with an optional port."""
    image = "/".join(([registry] if registry else []) + path) + (f":{tag}" if tag else "")
    if _D_REFERENCE.fullmatch(image) is None:
        with pytest.raises(ConfigError) as refused:
            Workload(image=image)
        assert refused.value.option == "image"
    else:
        assert Workload(image=image).image == image


@pytest.mark.parametrize("image", ["-/x", "a..b/x", ".:5000/x", "a-.io/x:1"])
def test_an_image_with_a_broken_registry_names_the_flag(image: str) -> None:
    args = ["manifests", "--service", "shop", "--namespace", "shop-ns", "--release", "prom"]
    result = run_cli(*args, "--kind", "deployment", "--image", image)
    assert result.returncode == 2, result.stdout
    assert "--image" in result.stderr, result.stderr


# -- review (issue 22 item 2): the chart appends prometheus.port to prometheus.url ----------


@pytest.mark.parametrize(
    ("url", "port", "fine"),
    [
        ("http://prom.ns.svc", 9090, True),
        ("http://prom.ns.svc:9090", None, True),
        ("http://prom.ns.svc/", None, True),
        ("http://{{ .Release.Name }}-prometheus.ns.svc", 9090, True),  # templated: not read
        ("http://prom.ns.svc:9090", 9090, False),  # --prometheus-url=http://prom...:9090:9090
        ("http://prom.ns.svc/", 9090, False),  # --prometheus-url=http://prom.ns.svc/:9090
        ("http://prom.ns.svc/prometheus", 9090, False),  # the path goes in prometheus.path
    ],
)
def test_adapter_values_whose_rendered_url_is_broken_are_named(
    url: str, port: int | None, fine: bool
) -> None:
    """The chart renders ``--prometheus-url={{url}}{{if port}}:{{port}}{{end}}{{path}}``
    (charts/prometheus-adapter/templates/deployment.yaml): a URL with its own port or path
    next to ``prometheus.port`` passed check and gave the adapter a URL it cannot reach."""
    values = adapter_values(model_from_config(CONFIG), Scaling())
    values["prometheus"] = {"url": url, **({} if port is None else {"port": port})}
    errors = validate_object(values)
    assert (errors == []) == fine, errors
    if not fine:
        assert any("prometheus.url" in e and "prometheus.port" in e for e in errors), errors


# -- review (issue 22 item 1): a probe on a port the container does not name --------------


@pytest.mark.parametrize(
    ("probe", "action", "port", "fine"),
    [
        ("readinessProbe", "httpGet", "http", True),
        ("readinessProbe", "httpGet", 30000, True),
        ("readinessProbe", "httpGet", "web", False),
        ("livenessProbe", "tcpSocket", "metrics", False),
        ("startupProbe", "httpGet", "htp", False),
    ],
)
def test_a_probe_on_a_port_name_the_container_lacks_is_named(
    probe: str, action: str, port: Any, fine: bool
) -> None:
    """The API server takes any port name in a probe; the kubelet then fails the probe on
    every period (``port "web" not found``): never ready, or restarted forever."""
    deployment = _deployment()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container[probe] = {action: {"port": port, **({"path": "/"} if action == "httpGet" else {})}}
    errors = validate_object(deployment)
    assert (errors == []) == fine, errors
    if not fine:
        assert any(probe in e and repr(port) in e for e in errors), errors


# -- review (issue 22 item 1): gunicorn's heartbeat and the metrics files on tmpfs ----------


def test_the_pods_temporary_directory_is_memory_backed_where_the_process_writes() -> None:
    """gunicorn's worker heartbeat (``os.fchmod`` on a temporary file) "may block a worker
    for arbitrary time if the directory is on a disk-backed filesystem" (its
    worker_tmp_dir setting), and prometheus_client writes the multiprocess files on every
    request: both go to the temporary directory, which in a container is the image's
    disk-backed overlay unless the pod mounts a memory-backed emptyDir there."""
    deployment = _deployment()
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {
        m["mountPath"]: volumes.get(m["name"]) for m in pod["containers"][0].get("volumeMounts", [])
    }
    # where meshmetrics.gunicorn and gunicorn's WorkerTmp write, in a pod's environment
    env = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "TEMP", "TMP")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    code = (
        "import os, tempfile, meshmetrics.gunicorn; "
        "print(tempfile.gettempdir()); print(os.environ['PROMETHEUS_MULTIPROC_DIR'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    heartbeat_dir, multiproc_dir = out
    for written in (heartbeat_dir, multiproc_dir):
        mount = next((m for m in mounts if (written + "/").startswith(m.rstrip("/") + "/")), None)
        assert mount is not None, (written, mounts)
        assert mounts[mount] is not None, mount
        assert mounts[mount]["emptyDir"]["medium"] == "Memory", mounts[mount]
        assert mounts[mount]["emptyDir"]["sizeLimit"]  # tmpfs counts against the memory limit
    assert validate_object(deployment) == []
