"""SLO burn-rate alerts under promtool's rule unit tests, on synthetic series.

Availability 99.9 % over 30 days (a budget of 0.1 % of requests): the page fires on a fast
burn within the expected minutes, a slow burn opens a ticket without paging, a rate within
the budget fires nothing, and neither does a scrape gap.  Latency 99 % under 0.5 s pages
when a fifth of the requests are slower.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask

from meshmetrics import instrument
from meshmetrics.config import SLO, ConfigError, MeshConfig
from meshmetrics.manifests import build_objects, model_from_config
from meshmetrics.manifests.slo import burn_factor
from meshmetrics.manifests.validate import validate_object

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")
CONFIG = MeshConfig(
    service="svc", namespace="ns", release="r", slo="availability:99.9;latency:99:0.5"
)
SEL = 'job="svc",namespace="ns",path="/x",method="GET"'
PAGE, TICKET = "SvcSLOAvailabilityBudgetPage", "SvcSLOAvailabilityBudgetTicket"
LATENCY_PAGE = "SvcSLOLatencyBudgetPage"


def test_burn_factors_are_the_workbooks_for_30_days_and_scale_with_the_window() -> None:
    month = SLO("availability", 99.9)
    factors = [
        burn_factor(month, w, c) for w, c in (("1h", 0.02), ("6h", 0.05), ("1d", 0.1), ("3d", 0.1))
    ]
    assert factors == pytest.approx([14.4, 6, 3, 1])
    week = SLO("availability", 99.9, window="7d")
    assert burn_factor(week, "1h", 0.02) == pytest.approx(14.4 * 7 / 30)


def test_slo_options_are_checked_at_configuration_time() -> None:
    with pytest.raises(ConfigError, match=r"one of 0\.005, 0\.01"):
        instrument(Flask("svc"), slo="latency:99:0.3")
    for bad in (
        "availability:100",
        "availability:0",
        "speed:99",
        "latency:99",
        "availability:99:1",
    ):
        with pytest.raises(ConfigError):
            MeshConfig(service="svc", slo=bad)
    parsed = MeshConfig(service="svc", slo="latency:95:0.25:7d@/api/<int:id>").slo[0]
    assert (parsed.kind, parsed.objective, parsed.threshold, parsed.window, parsed.route) == (
        "latency",
        95,
        0.25,
        "7d",
        "/api/<int:id>",
    )


def test_slo_rules_dashboard_and_validation() -> None:
    objects = build_objects(model_from_config(CONFIG), ["rules", "dashboard"])
    rule = objects["svc-rules.yaml"]
    assert validate_object(rule) == []
    assert validate_object(objects["svc-dashboard.yaml"]) == []
    groups = {g["name"]: g["rules"] for g in rule["spec"]["groups"]}
    slo_rules = groups["ns.svc.slo"]
    records = [r["record"] for r in slo_rules if "record" in r]
    assert records.count("slo:sli_error:ratio_rate1h") == 2  # one per objective
    assert "slo:error_budget_remaining:ratio" in records
    alerts = [r for r in slo_rules if "alert" in r]
    assert {a["labels"]["severity"] for a in alerts} == {"critical", "warning"}
    assert slo_rules.index(alerts[0]) > max(i for i, r in enumerate(slo_rules) if "record" in r)
    dashboard = objects["svc-dashboard.yaml"]["data"]["ns-svc.json"]
    assert "slo:error_budget_remaining:ratio" in dashboard


def firing(alertname: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": f'ALERTS{{alertname="{alertname}",alertstate="firing",'
        + ",".join(f'{k}="{v}"' for k, v in labels.items())
        + "}",
        "value": 1,
    }


def run_case(
    tmp_path: Path, series: list[dict[str, str]], checks: list[tuple[str, list[str]]]
) -> subprocess.CompletedProcess[str]:
    """``checks``: (eval time, alert names that must be firing, and no other SLO alert)."""
    rule = build_objects(model_from_config(CONFIG), ["rules"])["svc-rules.yaml"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    tests = []
    for at, names in checks:
        expected = []
        for name in sorted(names):
            slo = "availability" if "Availability" in name else "latency-0.5"
            severity = "critical" if name.endswith("Page") else "warning"
            expected.append(firing(name, namespace="ns", service="svc", severity=severity, slo=slo))
        tests.append(
            {
                "expr": 'ALERTS{alertstate="firing",alertname=~"SvcSLO.*"}',
                "eval_time": at,
                "exp_samples": expected,
            }
        )
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True
    )


def requests_series(ok: str, errors: str) -> list[dict[str, str]]:
    return [
        {"series": f'flask_http_request_total{{{SEL},status="200"}}', "values": ok},
        {"series": f'flask_http_request_total{{{SEL},status="500"}}', "values": errors},
    ]


@needs_promtool
def test_fast_burn_pages_within_minutes(tmp_path: Path) -> None:
    # an hour without errors, then ~4.8 % of requests fail: 48 times the budget
    series = requests_series("0+1000x180", "0x60 0+50x120")
    # the slow pair (1 d / 2 h at 3x) sees it first; the page needs 1 h / 5 m at 14.4x or
    # 6 h / 30 m at 6x: within a quarter of an hour, not on the first minutes
    checks = [("55m", []), ("65m", [TICKET]), ("75m", [PAGE, TICKET]), ("120m", [PAGE, TICKET])]
    result = run_case(tmp_path, series, checks)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_slow_burn_opens_a_ticket_and_does_not_page(tmp_path: Path) -> None:
    # 0.4 % of requests fail for a day: 4 times the budget, a month's budget in a week
    series = requests_series("0+996x1440", "0+4x1440")
    checks = [("30m", [TICKET]), ("12h", [TICKET]), ("1d", [TICKET])]
    result = run_case(tmp_path, series, checks)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_an_error_rate_within_the_budget_fires_nothing(tmp_path: Path) -> None:
    series = requests_series("0+1999x1440", "0+1x1440")  # 0.05 %: half the budget
    result = run_case(tmp_path, series, [("10m", []), ("6h", []), ("1d", [])])
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_a_scrape_gap_fires_nothing(tmp_path: Path) -> None:
    series = requests_series("0+1999x60 _x90 180000+1999x60", "0+1x60 _x90 90+1x60")
    result = run_case(tmp_path, series, [("90m", []), ("140m", []), ("200m", [])])
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_latency_objective_pages_when_a_fifth_is_slow(tmp_path: Path) -> None:
    sel = 'job="svc",namespace="ns",path="/x",method="GET"'
    name = "flask_http_request_duration_seconds"
    series = [
        {"series": f"{name}_count{{{sel}}}", "values": "0+1000x60"},
        {"series": f'{name}_bucket{{{sel},le="0.5"}}', "values": "0+800x60"},
        {"series": f'{name}_bucket{{{sel},le="+Inf"}}', "values": "0+1000x60"},
        *requests_series("0+1000x60", "0x60"),
    ]
    result = run_case(tmp_path, series, [("30m", [LATENCY_PAGE, "SvcSLOLatencyBudgetTicket"])])
    assert result.returncode == 0, result.stdout + result.stderr
