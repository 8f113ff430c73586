"""The generated PrometheusRule: valid for promtool, and alerts fire when they should."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from meshmetrics.config import MeshConfig
from meshmetrics.manifests import ManifestOptions, build_objects
from meshmetrics.manifests.model import model_from_config

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install -y prometheus)"
)
CONFIG = MeshConfig(service="cmpt756s1", namespace="cmpt756e4", release="komplete-prometheus")
SEL = 'job="cmpt756s1",namespace="cmpt756e4"'


def write_rules(tmp_path: Path, options: ManifestOptions | None = None) -> Path:
    rule = build_objects(model_from_config(CONFIG), ["rules"], options)["cmpt756s1-rules.yaml"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


@needs_promtool
def test_promtool_check_rules(tmp_path: Path) -> None:
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(write_rules(tmp_path))], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def promtool_test(
    tmp_path: Path,
    series: list[dict[str, str]],
    alerts: list[dict[str, object]],
    options: ManifestOptions | None = None,
) -> subprocess.CompletedProcess[str]:
    rules = write_rules(tmp_path, options)
    test = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": alerts}],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    return subprocess.run(
        [PROMTOOL, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True
    )


def fired(
    alert: str, severity: str, summary: str, description: str, **extra: str
) -> dict[str, object]:
    """An expected alert: its labels and its rendered annotations."""
    return {
        "exp_labels": {
            "alertname": alert,
            "severity": severity,
            "service": "cmpt756s1",
            "namespace": "cmpt756e4",
            **extra,
        },
        "exp_annotations": {"summary": summary, "description": description},
    }


@needs_promtool
def test_error_ratio_alert_fires_after_five_minutes(tmp_path: Path) -> None:
    series = [
        {"series": f'flask_http_request_total{{{SEL},path="/",status="200"}}', "values": "0+90x20"},
        {"series": f'flask_http_request_total{{{SEL},path="/",status="500"}}', "values": "0+10x20"},
        {"series": f'up{{{SEL},pod="s1-0"}}', "values": "1x20"},
    ]
    error_alert = fired(
        "Cmpt756s1HighErrorRatio",
        "warning",
        "cmpt756s1: more than 5% of requests fail with 5xx",
        "10% of the requests to cmpt756s1 in namespace cmpt756e4 answered 5xx over the last "
        "5 minutes.",
    )
    alerts = [
        {"eval_time": "4m", "alertname": "Cmpt756s1HighErrorRatio", "exp_alerts": []},
        {"eval_time": "12m", "alertname": "Cmpt756s1HighErrorRatio", "exp_alerts": [error_alert]},
        {"eval_time": "12m", "alertname": "Cmpt756s1MetricsAbsent", "exp_alerts": []},
    ]
    result = promtool_test(tmp_path, series, alerts)
    assert result.returncode == 0, result.stdout + result.stderr
    # below the threshold (10 % errors, threshold 20 %): silent
    quiet = [{"eval_time": "12m", "alertname": "Cmpt756s1HighErrorRatio", "exp_alerts": []}]
    result = promtool_test(tmp_path, series, quiet, ManifestOptions(error_ratio=0.2))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_latency_down_and_absent_alerts(tmp_path: Path) -> None:
    bucket = "flask_http_request_duration_seconds_bucket"
    series = [
        {"series": f'{bucket}{{{SEL},path="/",le="0.25"}}', "values": "0+1x20"},
        {"series": f'{bucket}{{{SEL},path="/",le="1.0"}}', "values": "0+10x20"},
        {"series": f'{bucket}{{{SEL},path="/",le="+Inf"}}', "values": "0+10x20"},
        {"series": f'up{{{SEL},pod="s1-0"}}', "values": "0x20"},
    ]
    latency = fired(
        "Cmpt756s1HighLatencyP95",
        "warning",
        "cmpt756s1: p95 latency above 0.5s",
        "p95 latency of cmpt756s1 in namespace cmpt756e4 is 958.3ms.",
    )
    down = fired(
        "Cmpt756s1TargetDown",
        "critical",
        "cmpt756s1: a metrics target is down",
        "Prometheus cannot scrape s1-0 of cmpt756s1 in namespace cmpt756e4.",
        pod="s1-0",
        job="cmpt756s1",
    )
    alerts = [
        {"eval_time": "9m", "alertname": "Cmpt756s1HighLatencyP95", "exp_alerts": []},
        {"eval_time": "15m", "alertname": "Cmpt756s1HighLatencyP95", "exp_alerts": [latency]},
        {"eval_time": "8m", "alertname": "Cmpt756s1TargetDown", "exp_alerts": [down]},
    ]
    result = promtool_test(tmp_path, series, alerts)
    assert result.returncode == 0, result.stdout + result.stderr
    nothing = [{"series": 'up{job="other",namespace="x"}', "values": "1x20"}]
    absent = fired(
        "Cmpt756s1MetricsAbsent",
        "warning",
        "cmpt756s1: Prometheus has no target",
        "No target of cmpt756s1 in namespace cmpt756e4 is known to Prometheus: check the "
        "Service's app label, its port name (\"http\") and the monitor's namespace selector. "
        "(A wrong release label hides this rule as well: meshmetrics check --prometheus URL "
        "finds that.)",
        job="cmpt756s1",
    )
    alerts = [{"eval_time": "15m", "alertname": "Cmpt756s1MetricsAbsent", "exp_alerts": [absent]}]
    result = promtool_test(tmp_path, nothing, alerts)
    assert result.returncode == 0, result.stdout + result.stderr
