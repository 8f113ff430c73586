"""Every combination of ``manifests`` options, generated (issue 21 item 17).

The command line runs in-process (click's ``CliRunner``, as :func:`helpers.run_cli`) over
objectives (any text: quotes, backslashes, newlines, surrogates, low objectives, windows
Prometheus cannot hold), kinds, mTLS, recording rules, namespaces and release labels.  An
accepted combination yields objects that pass the shipped strict schemas, rule names unique
per group and no (record, labels) pair twice; after the examples, promtool checks every
generated rule file at once (``check rules --lint-fatal`` with one file per example, as
its duplicate check is per file: one process, not one per example).  A
rejected combination is one line naming an option given, exit 2, nothing on stdout.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from helpers import run_cli
from meshmetrics.config import DEFAULT_BUCKETS
from meshmetrics.manifests import KINDS
from meshmetrics.manifests.validate import validate_text

PROMTOOL = shutil.which("promtool")

_LABEL = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?\Z")
_ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=6)
_NAMESPACE = st.one_of(_LABEL, _LABEL, _LABEL, _ANY_TEXT)
_RELEASE = st.one_of(st.from_regex(r"\A[A-Za-z0-9]([-A-Za-z0-9_.]{0,8}[A-Za-z0-9])?\Z"), _ANY_TEXT)
_VALID_DECIMAL = st.decimals(min_value=84, max_value=Decimal("99.999"), places=3).map(str)
_DECIMAL = st.one_of(
    _VALID_DECIMAL,
    _VALID_DECIMAL,
    st.decimals(min_value=0, max_value=100, places=3).map(str),
    st.sampled_from(["99.9", "99", "90", "83.334", "83.3", "1_0", "1e1", "inf", "nan", "-1"]),
)
_WINDOW = st.one_of(
    st.sampled_from(["30d", "1h", "2h", "6h", "1d", "3d", "4w", "720h", "106751d"]),
    st.sampled_from(["7d", "28d", "90d", "50h", "3d", "30d"]),
    st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 10**9), st.sampled_from("dhwmsy")),
)
_ROUTE = st.one_of(
    st.text(max_size=8).map(lambda text: "/" + text),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=8).map(lambda t: "/" + t),
    st.sampled_from(['/a"b', "/a\\b", "/a\nb", "/{{ $value }}", "/x}}", "/"]),
    st.from_regex(r"\A/[ab12/-]{0,4}\Z"),  # routes whose names differ by digits or dashes
    st.text(max_size=4),
)


@st.composite
def _objective(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["availability", "latency"]))
    text = f"{kind}:{draw(_DECIMAL)}"
    if kind == "latency":
        text += ":" + draw(
            st.one_of(st.sampled_from([f"{b:g}" for b in DEFAULT_BUCKETS]), _DECIMAL)
        )
    if draw(st.booleans()):
        text += ":" + draw(_WINDOW)
    if draw(st.booleans()):
        text += "@" + draw(_ROUTE)
    return text


@st.composite
def _arguments(draw: st.DrawFn) -> list[str]:
    args = ["manifests", "--service", "svc"]
    usual = [kind for kind in KINDS if kind not in ("podmonitor", "peerauthentication")]
    pool = draw(st.sampled_from([KINDS, usual, usual]))
    kinds = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4, unique=True))
    if "rules" not in kinds and draw(st.integers(0, 3)):  # mostly with rules: promtool's part
        kinds.append("rules")
    args += ["--kind", ",".join(kinds)]
    for objective in draw(st.lists(_objective(), max_size=3)):
        args += ["--slo", objective]
    port = draw(st.booleans())
    if port:
        args += ["--metrics-port", "9464"]
    if draw(st.booleans()):
        args += ["--mtls", draw(st.sampled_from(["strict", "permissive"] if port else ["strict"]))]
    if draw(st.booleans()):
        args.append("--no-recording-rules")
    for flag in ("--namespace", "--monitor-namespace", "--dashboard-namespace"):
        if draw(st.integers(0, 3)) == 0:
            args += [flag, draw(_NAMESPACE)]
    if draw(st.integers(0, 3)) == 0:
        args += ["--istio-namespace", draw(_NAMESPACE)]
    if draw(st.integers(0, 3)) == 0:
        args += ["--release", draw(_RELEASE)]
    args += draw(_cluster_arguments(kinds))
    for flag, usual in (
        ("--port-name", ["http", "web-2", "metrics"]),
        ("--prefix", ["shop", "", "a:b_c"]),
        ("--path", ["/metrics", "/internal/metrics"]),
        ("--interval", ["15s", "1m30s", "2562047h"]),
    ):
        if draw(st.integers(0, 5)) == 0:
            value = draw(st.one_of(st.sampled_from(usual), _ANY_TEXT, _ANY_TEXT.map(str.strip)))
            args += [flag, value]
    return args


_VALID_AUTOSCALE = st.builds(
    lambda metric, value: f"{metric}:{value}",
    st.sampled_from(["rps", "inflight"]),
    st.decimals(min_value=Decimal("0.001"), max_value=1000, places=3).map(str),
)


def _mostly(valid: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any]) -> Any:
    """Valid values three times in four: the rejections are one line each, but most
    examples should reach the consumers (schemas, promtool)."""
    return st.integers(0, 3).flatmap(lambda pick: wrong if pick == 3 else valid)


_AUTOSCALE = _mostly(
    _VALID_AUTOSCALE,
    st.one_of(
        st.sampled_from(["rps:0", "rps:-1", "rps:1_0", "cpu:50", "rps", "inflight:inf"]),
        _ANY_TEXT,
    ),
)


@st.composite
def _cluster_arguments(draw: st.DrawFn, kinds: list[str]) -> list[str]:
    """The cluster objects' options: mostly an --autoscale when an autoscaler is asked for."""
    args: list[str] = []
    if ("autoscaler" in kinds and draw(st.integers(0, 5))) or draw(st.integers(0, 5)) == 0:
        args += ["--autoscale", draw(_AUTOSCALE)]
        if draw(st.booleans()):
            args += [
                "--autoscaler",
                draw(_mostly(st.sampled_from(["hpa", "keda"]), st.just("cpu"))),
            ]
        if draw(st.integers(0, 2)) == 0:
            low = draw(_mostly(st.integers(1, 3), st.integers(-1, 0)))
            high = draw(_mostly(st.integers(3, 12), st.integers(0, 2)))
            args += ["--min-replicas", str(low), "--max-replicas", str(high)]
    if draw(st.integers(0, 3)) == 0:
        args += ["--mesh", draw(_mostly(st.sampled_from(["sidecar", "ambient"]), st.just("x")))]
    if draw(st.integers(0, 3)) == 0:
        args += ["--version", draw(_mostly(st.sampled_from(["v1", "1.2.3", "abc1"]), _ANY_TEXT))]
    return args


def _given_flags(args: list[str]) -> set[str]:
    return {arg for arg in args if arg.startswith("--")}


def _check_accepted(args: list[str], stdout: str, batch: list[tuple[list[str], Any]]) -> None:
    objects = [doc for doc in yaml.safe_load_all(stdout) if doc is not None]
    assert objects, args
    crds = "".join(f"---\n{yaml.safe_dump(o)}" for o in objects if o["kind"] != "Service")
    assert validate_text(crds) == [], args
    for rule in (o for o in objects if o["kind"] == "PrometheusRule"):
        for group in rule["spec"]["groups"]:
            rules = group["rules"]
            alerts = [r["alert"] for r in rules if "alert" in r]
            assert len(alerts) == len(set(alerts)), args
            records = [
                (r["record"], tuple(sorted(r.get("labels", {}).items())))
                for r in rules
                if "record" in r
            ]
            assert len(records) == len(set(records)), args
            thresholds = [
                float(x) for r in rules if "SLO" in r.get("alert", "") for x in _numbers(r["expr"])
            ]
            assert all(t < 1 for t in thresholds), args  # every burn-rate pair can fire
        batch.append((args, rule["spec"]["groups"]))


def _numbers(expr: str) -> list[str]:
    return re.findall(r"> ([0-9.e+-]+)", expr)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")
def test_every_option_combination_is_valid_output_or_one_line(tmp_path: Path) -> None:
    batch: list[tuple[list[str], Any]] = []
    seen = {"accepted": 0, "rejected": 0}

    @settings(
        max_examples=500,
        deadline=None,
        # the same examples on every run (no database replaying other runs' examples):
        # .ci/run is no lottery
        derandomize=True,
        database=None,
        # a failure prints its arguments whole; shrinking one took > 5 min on a busy machine
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(_arguments())
    def check(args: list[str]) -> None:
        result = run_cli(*args)
        if result.returncode == 0:
            seen["accepted"] += 1
            _check_accepted(args, result.stdout, batch)
            assert all(line.startswith("INFO: ") for line in result.stderr.splitlines()), args
            return
        seen["rejected"] += 1
        assert result.returncode == 2, (args, result.stderr)
        assert result.stdout == "", args
        assert result.stderr.count("\n") == 1, (args, result.stderr)
        named = set(re.findall(r"--[a-z]+(?:-[a-z]+)*", result.stderr))
        assert named & _given_flags(args), (args, result.stderr)

    check()
    assert seen["accepted"] >= 30, seen
    assert seen["rejected"] >= 30, seen
    assert len(batch) >= 20, len(batch)
    files = []
    for index, (_, groups) in enumerate(batch):
        files.append(tmp_path / f"example-{index}.yaml")
        files[-1].write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "rules", "--lint-fatal", *map(str, files)],
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    failing = sorted({int(n) for n in re.findall(r"example-([0-9]+)\.yaml\s*\n\s*FAILED", output)})
    assert result.returncode == 0, output[-3000:] + "\n" + repr([batch[n][0] for n in failing])
    assert output.count("SUCCESS") == len(files)
