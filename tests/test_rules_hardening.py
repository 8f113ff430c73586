"""Generated rules that Prometheus refused or that could never fire (issue 21, items 7-11,
14, 15): each case through promtool (``check rules --lint-fatal``, ``test rules``) or the
command line, as an operator would meet it."""

from __future__ import annotations

import re
import shutil
import string
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import PYTHON, ROOT, run_cli
from meshmetrics.config import SLO, ConfigError, MeshConfig
from meshmetrics.formats import MAX_DURATION_MS, duration_ms, is_label_value
from meshmetrics.manifests import ManifestOptions, build_objects, model_from_config
from meshmetrics.manifests.promql import escape

PROMTOOL = shutil.which("promtool")
UNITS = ("y", "w", "d", "h", "m", "s", "ms")
UNIT_MS = dict(
    zip(
        UNITS,
        (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1),
        strict=True,
    )
)
CONFIG_TWO = MeshConfig(service="svc", slo="availability:99.9;latency:99:0.5")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")


def rule_groups(config: MeshConfig) -> list[dict[str, Any]]:
    rule = build_objects(model_from_config(config), ["rules"])[f"{config.service}-rules.yaml"]
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def promtool_check(
    tmp_path: Path, groups: list[dict[str, Any]]
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, "check", "rules", "--lint-fatal", str(path)], capture_output=True, text=True
    )


# -- item 7: label values are PromQL strings; windows Prometheus can hold -------------------


@pytest.mark.parametrize("char", ["\\", '"', "\n", "\t", "\x00", "\u2028", "{{", "}}", "é"])
def test_escape_reads_back_as_the_value(char: str) -> None:
    value = f"/a{char}b"
    # Go's strconv.Unquote and PromQL read what Python's unicode_escape reads, for these
    decoded = escape(value).encode("ascii", "backslashreplace").decode("unicode_escape")
    assert decoded == value
    assert "\n" not in escape(value)


@needs_promtool
def test_routes_with_quotes_backslashes_newlines_and_braces_pass_promtool(tmp_path: Path) -> None:
    routes = ['/a"b', "/c\\d", "/e\nf", "/g{{ $value }}h", "/x}}", "/ü/\u2028/\x7f"]
    slo = ";".join(f"availability:99.9@{route}" for route in routes[:1])
    config = MeshConfig(
        service="svc",
        slo=[slo, *(SLO("latency", 99, 0.5, "30d", route) for route in routes[1:])],
    )
    result = promtool_check(tmp_path, rule_groups(config))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_a_backslash_in_a_route_matches_the_backslash_not_a_backspace(tmp_path: Path) -> None:
    config = MeshConfig(service="svc", namespace="ns", slo="availability:99.9@/a\\b")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups(config)}))
    sel = 'job="svc",namespace="ns",path="/a\\\\b"'  # the series of the route /a\b
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'flask_http_request_total{{{sel},status="200"}}',
                        "values": "0+90x20",
                    },
                    {
                        "series": f'flask_http_request_total{{{sel},status="500"}}',
                        "values": "0+10x20",
                    },
                ],
                "promql_expr_test": [
                    {
                        "expr": "slo:sli_error:ratio_rate5m",
                        "eval_time": "10m",
                        "exp_samples": [
                            {
                                "labels": 'slo:sli_error:ratio_rate5m{namespace="ns",'
                                'service="svc",slo="availability-a-b"}',
                                "value": 0.1,
                            }
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_durations_follow_prometheus_limits() -> None:
    # model.ParseDuration: int64 nanoseconds, "duration out of range" beyond
    assert MAX_DURATION_MS == 9_223_372_036_854
    assert duration_ms("106751d") is not None
    assert duration_ms("106752d") is None
    assert duration_ms("99999999d") is None
    assert duration_ms("1h30m") == 5_400_000
    assert [duration_ms(text) for text in ("", "1.5h", "h", "1m1h", " 1h")] == [None] * 5


@pytest.mark.parametrize("window", ["99999999d", "106752d", "15251w", "2562048h", "0d", "1y"])
def test_an_slo_window_prometheus_cannot_hold_is_one_line_exit_2(window: str) -> None:
    result = run_cli("manifests", "--service", "svc", "--slo", f"availability:99.9:{window}")
    assert result.returncode == 2, result.stdout
    assert result.stderr.count("\n") == 1
    assert "invalid --slo" in result.stderr
    assert result.stdout == ""


def test_a_scrape_interval_prometheus_cannot_hold_is_refused() -> None:
    with pytest.raises(ConfigError, match="scrape_interval"):
        MeshConfig(service="svc", scrape_interval="300y")


def test_with_app_an_slo_route_the_app_lacks_is_refused_listing_its_routes() -> None:
    app = str(ROOT / "examples" / "cmpt756s1" / "app.py")
    result = run_cli("manifests", "--app", app, "--slo", "availability:99.9@/api/v1/usr")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "invalid --slo 'availability:99.9@/api/v1/usr': the app has no route" in result.stderr
    assert "/api/v1/user/<user_id>" in result.stderr
    ok = run_cli("manifests", "--app", app, "--slo", "availability:99.9@/api/v1/user/<user_id>")
    assert ok.returncode == 0, ok.stderr


# -- item 8: an SLO window equal to an SLI window is recorded once ------------------------


@pytest.mark.parametrize("window", ["1h", "2h", "6h", "1d", "49h"])
def test_windows_too_short_for_a_page_are_refused(window: str) -> None:
    """Under 50 h, every page pair burns slower than the budget allows: it would page
    while the objective is met (the SLI windows 1h to 1d included)."""
    with pytest.raises(ConfigError, match="an SLO window of at least 50h"):
        MeshConfig(service="svc", slo=f"availability:99.9:{window}")


@needs_promtool
@pytest.mark.parametrize("window", ["50h", "3d", "30d"])
def test_each_series_is_recorded_once_whatever_the_window(tmp_path: Path, window: str) -> None:
    config = MeshConfig(service="svc", slo=f"availability:99.9:{window};latency:99:0.5:{window}")
    groups = rule_groups(config)
    for group in groups:
        keys = [
            (r["record"], tuple(sorted(r.get("labels", {}).items())))
            for r in group["rules"]
            if "record" in r
        ]
        assert len(keys) == len(set(keys))
    result = promtool_check(tmp_path, groups)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_names_are_unique_whatever_the_routes() -> None:
    routes = ["/a1", "/a2", "/a-1", "/b1c", "/b-1-c", "/api/user", "/"]
    slos = [f"availability:99.9@{route}" for route in routes]
    config = MeshConfig(service="svc", slo=[*slos, "latency:99:0.025", "latency:99:0.005"])
    groups = rule_groups(config)
    for group in groups:
        names = [r["alert"] for r in group["rules"] if "alert" in r]
        assert len(names) == len(set(names)), names
    names = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    assert {"SvcSLOAvailabilityApiUserBudgetPage", "SvcSLOAvailabilityRootBudgetPage"} <= names
    # one objective of a kind keeps the short name the alert always had
    assert {r["alert"] for r in rule_groups(CONFIG_TWO)[1]["rules"] if "alert" in r} == {
        "SvcSLOAvailabilityBudgetPage",
        "SvcSLOAvailabilityBudgetTicket",
        "SvcSLOLatencyBudgetPage",
        "SvcSLOLatencyBudgetTicket",
    }


# -- item 9: alerts that can fire; plain decimals -----------------------------------------


def _thresholds(groups: list[dict[str, Any]]) -> list[float]:
    exprs = [r["expr"] for g in groups for r in g["rules"] if "alert" in r and "SLO" in r["alert"]]
    return [float(x) for expr in exprs for x in re.findall(r"> ([0-9.e+-]+)", expr)]


def test_no_burn_rate_threshold_an_error_ratio_cannot_reach() -> None:
    groups = rule_groups(MeshConfig(service="svc", slo="availability:90"))
    thresholds = _thresholds(groups)
    assert thresholds
    assert max(thresholds) < 1  # the 1 h pair (1.44) is left out
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    assert {"SvcSLOAvailabilityBudgetPage", "SvcSLOAvailabilityBudgetTicket"} <= alerts


@pytest.mark.parametrize(
    ("spec", "least"),
    [
        ("availability:83.3", "83.334"),
        ("availability:50", "83.334"),
        ("latency:90:0.5:90d", "94.445"),
    ],
)
def test_an_objective_whose_page_cannot_fire_is_refused_naming_the_least(
    spec: str, least: str
) -> None:
    result = run_cli("manifests", "--service", "svc", "--slo", spec)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"at least {least} for a" in result.stderr
    kind, _, rest = spec.partition(":")
    rest = rest.partition(":")[2]
    fixed = f"{kind}:{least}" + (f":{rest}" if rest else "")
    accepted = run_cli("manifests", "--service", "svc", "--slo", fixed)
    assert accepted.returncode == 0, accepted.stderr


def test_an_objective_is_shown_as_written_not_rounded() -> None:
    result = run_cli("manifests", "--service", "svc", "--slo", "availability:99.99999")
    assert result.returncode == 0, result.stderr
    assert "SLO 99.99999% of requests" in result.stdout  # :g wrote "SLO 100%"
    assert "(99.99999%)" in result.stdout
    assert "100%" not in result.stdout


@pytest.mark.parametrize(
    "objective", ["1_0", "9_9.9", "1e1", "9.99e1", "inf", "nan", "-99", "+99", "0x63", "99,9", ""]
)
def test_objectives_are_plain_decimals(objective: str) -> None:
    with pytest.raises(ConfigError, match="plain decimals"):
        MeshConfig(service="svc", slo=f"availability:{objective}")
    with pytest.raises(ConfigError, match="plain decimals"):
        MeshConfig(service="svc", slo=f"latency:99:{objective or 'x'}")
    assert MeshConfig(service="svc", slo="availability:99.95%").slo[0].objective == 99.95
    assert MeshConfig(service="svc", slo="latency:99.5:.5").slo[0].threshold == 0.5


# -- item 10: a dashboard without its PrometheusRule --------------------------------------


def test_a_dashboard_without_rules_reads_raw_series_and_says_so() -> None:
    result = run_cli(
        "manifests",
        "--service",
        "svc",
        "--kind",
        "servicemonitor,dashboard",
        "--slo",
        "availability:99.9",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("INFO: the dashboard reads the raw series")
    assert result.stderr.count("\n") == 1
    # recorded series are level:metric:operations names; raw queries have no ':' names
    assert "slo:" not in result.stdout
    assert "namespace_job_path" not in result.stdout
    together = run_cli("manifests", "--service", "svc", "--slo", "availability:99.9")
    assert together.stderr == ""
    assert "slo:error_budget_remaining:ratio" in together.stdout


# -- item 11: one monitor per pods --------------------------------------------------------


def test_a_servicemonitor_and_a_podmonitor_together_are_refused() -> None:
    result = run_cli("manifests", "--service", "svc", "--kind", "servicemonitor,podmonitor")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--kind servicemonitor and --kind podmonitor" in result.stderr
    with pytest.raises(ValueError, match="servicemonitor and podmonitor"):
        build_objects(
            model_from_config(MeshConfig(service="svc")), ["servicemonitor", "podmonitor"]
        )


# -- item 14: names and namespaces by one set of rules ------------------------------------


@pytest.mark.parametrize("value", ["A B", "", "a/b", "../x", "x\n", "-x", "x" * 64])
@pytest.mark.parametrize(
    "flag", ["--istio-namespace", "--monitor-namespace", "--dashboard-namespace", "--namespace"]
)
def test_namespace_options_are_kubernetes_names(flag: str, value: str) -> None:
    result = run_cli("manifests", "--service", "svc", flag, value)
    assert result.returncode == 2, (flag, value, result.stdout)
    assert result.stderr.count("\n") == 1
    assert f"invalid {flag}" in result.stderr


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--port-name", "http\n"),
        ("--prefix", "flask\n"),
        ("--path", "/metrics\n"),
        ("--release", "r\n"),
    ],
)
def test_a_trailing_newline_is_no_name(flag: str, value: str) -> None:
    # a "$"-anchored pattern matches before a final newline: the rules use \A...\Z
    result = run_cli("manifests", "--service", "svc", flag, value)
    assert result.returncode == 2, result.stdout
    assert f"invalid {flag}" in result.stderr


def test_manifest_options_check_their_namespaces() -> None:
    for name in ("istio_namespace", "monitor_namespace", "dashboard_namespace"):
        with pytest.raises(ConfigError, match=name):
            ManifestOptions(**{name: "a/b"})


def test_the_kubernetes_name_rules_are_defined_once() -> None:
    pattern = re.compile(r"\[-A-Za-z0-9_\.\]|\[-a-z0-9\]")
    defining = [
        path.name
        for path in (ROOT / "src" / "meshmetrics").rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert defining == ["formats.py"]


# -- item 15: help without the extra; no stale command ------------------------------------


def test_manifests_help_lists_its_options_without_the_extra() -> None:
    code = (
        "import sys\n"
        "for m in ('yaml', 'grafana_foundation_sdk', 'jsonschema'): sys.modules[m] = None\n"
        "from meshmetrics.cli import run\n"
        "sys.exit(run(sys.argv[1:]))\n"
    )
    shown = subprocess.run(
        [PYTHON, "-c", code, "manifests", "--help"], capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    for flag in ("--slo", "--kind", "--istio-namespace", "--recording-rules"):
        assert flag in shown.stdout
    run = subprocess.run(
        [PYTHON, "-c", code, "manifests", "--service", "x"], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1
    assert "pip install 'meshmetrics[manifests]'" in run.stderr


def test_no_text_mentions_a_command_that_does_not_exist() -> None:
    from meshmetrics.cli import COMMANDS

    texts = [ROOT / "pyproject.toml", ROOT / "README.md"]
    texts += [*(ROOT / "src").rglob("*.py"), *(ROOT / "docs").glob("*.md")]
    said = {
        (path.name, name)
        for path in texts
        for name in re.findall(r"(?:python -m |`)meshmetrics ([a-z]+)", path.read_text())
    }
    assert {(where, name) for where, name in said if name not in COMMANDS} == set()


# -- properties of the parsers and generators touched here --------------------------------

_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)  # any text Prometheus can hold
_ALNUM = set(string.ascii_letters + string.digits)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_escape_is_a_string_literal_that_reads_back_as_the_value(value: str) -> None:
    escaped = escape(value)
    assert "\n" not in escaped
    assert re.search(r'(?<!\\)(\\\\)*"', escaped) is None  # no quote left unescaped
    assert escaped.encode("ascii", "backslashreplace").decode("unicode_escape") == value


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from("aZ09-_.x/é A"), max_size=70))
def test_label_value_rule_is_kubernetes(value: str) -> None:
    chars = _ALNUM | set("-_.")
    expected = value == "" or (
        len(value) <= 63 and set(value) <= chars and value[0] in _ALNUM and value[-1] in _ALNUM
    )
    assert is_label_value(value, empty=True) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**15), st.sampled_from(UNITS)), max_size=3))
def test_duration_is_prometheus_parse_duration(parts: list[tuple[int, str]]) -> None:
    ordered = sorted(dict((unit, n) for n, unit in parts).items(), key=lambda p: UNITS.index(p[0]))
    text = "".join(f"{n}{unit}" for unit, n in ordered)
    total = sum(n * UNIT_MS[unit] for unit, n in ordered)
    expected = None if not text or total > MAX_DURATION_MS else total
    assert duration_ms(text) == expected


_SLO_TEXT = st.one_of(
    st.text(max_size=30),
    st.builds(
        "{}:{}{}{}{}".format,
        st.sampled_from(["availability", "latency", "Latency", "speed"]),
        st.decimals(min_value=0, max_value=101, places=4).map(str),
        st.sampled_from(["", ":0.5", ":0.25", ":0.3", ":1e-1", ":1_0"]),
        st.sampled_from(["", ":30d", ":7d", ":1h", ":99999999d", ":0d"]),
        st.one_of(st.just(""), st.text(max_size=8).map(lambda route: "@" + route)),
    ),
)


@settings(max_examples=300, deadline=None)
@given(_SLO_TEXT)
def test_any_slo_text_is_an_slo_or_a_config_error(text: str) -> None:
    try:
        objectives = MeshConfig(service="svc", slo=text).slo
    except ConfigError as exc:
        refused = exc.option
        assert refused == "slo"
        return
    for objective in objectives:  # what was accepted reads back the same, and can alert
        assert MeshConfig(service="svc", slo=objective.spec).slo == (objective,)


@settings(max_examples=200, deadline=None)
@given(
    st.decimals(min_value=Decimal("83.334"), max_value=Decimal("99.9999"), places=4),
    st.sampled_from(["30d", "28d", "4w", "720h", "50h", "3d", "7d"]),
)
def test_every_accepted_objective_has_alerts_that_can_fire(objective: Decimal, window: str) -> None:
    try:
        config = MeshConfig(service="svc", slo=f"availability:{objective}:{window}")
    except ConfigError as exc:
        refused: ConfigError | None = exc
    else:
        refused = None
    if refused is not None:  # only for the objective's floor over this window
        assert "could never fire" in str(refused)
        return
    groups = rule_groups(config)
    alerts = [r for g in groups for r in g["rules"] if "alert" in r and "SLO" in r["alert"]]
    # the page always; the ticket unless the window is too short for its pairs to burn
    # faster than the budget allows (under 240 h)
    assert [a["alert"].endswith("BudgetPage") for a in alerts][:1] == [True]
    assert len(alerts) == (2 if config.slo[0].window_hours >= 240 else 1)
    assert max(_thresholds(groups)) < 1
