"""benchmarks/bench_mix.py without valgrind: every variant builds and serves the whole mix
with the statuses it expects, every sampled variant's sink receives every span, and the
goal arithmetic and the docs region it writes are right."""

from __future__ import annotations

import concurrent.futures
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_mix
from _mix_app import MIX_STATUSES, Mix, make_app
from _mix_goals import goal_rows
from _mix_sinks import LocalSinks
from _mix_variants import VARIANTS

N = 16  # two rounds of the mix


@pytest.fixture(scope="module")
def sinks() -> Iterator[LocalSinks]:
    local = LocalSinks()
    yield local
    local.close()


def _checked(run: bench_mix.Run) -> None:
    assert run.wrong == []
    assert run.served == bench_mix.WARM + N
    assert run.spans == run.expected_spans
    assert run.expected_spans == run.served * VARIANTS[run.variant].spans_per_request


#: Run in processes of their own, side by side: the variants that need one, and those
#: whose app takes seconds to build (10,000 routes).
APART = [n for n, v in VARIANTS.items() if v.isolated or v.extra_routes > 1000]


@pytest.mark.parametrize("name", [n for n in VARIANTS if n not in APART])
def test_variant_serves_the_mix_and_delivers_every_span(name: str, sinks: LocalSinks) -> None:
    _checked(bench_mix.run_in_process(name, N, sinks))


def test_other_variants_in_processes_of_their_own(sinks: LocalSinks) -> None:
    assert {"meshmetrics-multiproc", "meshmetrics-otel", "meshmetrics-routes-10000"} < set(APART)
    with concurrent.futures.ThreadPoolExecutor(len(APART)) as pool:
        runs = list(pool.map(lambda name: bench_mix.run(name, N, sinks, None), APART))
    assert [run.variant for run in runs] == APART
    for run in runs:
        _checked(run)


def test_every_sampled_tracing_variant_expects_a_span_a_request() -> None:
    tracers = ("jaeger", "otlp", "zipkin", "otel", "opentracing")
    tracing = {n for n in VARIANTS if any(tracer in n for tracer in tracers)}
    assert {n for n, v in VARIANTS.items() if v.spans_per_request} == tracing
    assert not VARIANTS["meshmetrics-unsampled"].spans_per_request
    assert VARIANTS["meshmetrics-unsampled"].sink == "jaeger"  # checked to receive none


def test_a_wrong_status_is_reported() -> None:
    app = make_app()

    @app.before_request
    def fail() -> None:
        raise RuntimeError("broken")

    mix = Mix()
    mix.drive(app, len(MIX_STATUSES))
    assert len(mix.wrong) == len(MIX_STATUSES)
    assert mix.wrong[0] == ("GET", "/api/v1/user/u-1001", "500 INTERNAL SERVER ERROR")


def test_goals_are_computed_from_the_figures_of_the_run() -> None:
    figures = {
        "bare": 400_000.0,
        "pfe": 600_000.0,
        "meshmetrics": 440_000.0,
        "meshmetrics-multiproc": 460_000.0,
        "meshmetrics-unsampled": 456_000.0,
        "meshmetrics-jaeger": 540_000.0,
        "meshmetrics-otlp-http": 530_000.0,
        "pfe-opentracing": 1_600_000.0,
        "bare-unmatched": 300_000.0,
        "meshmetrics-unmatched": 342_000.0,
    }
    rows = {r.label: r for r in goal_rows(figures, {"meshmetrics-jaeger": "9/9"})}
    metrics = rows[VARIANTS["meshmetrics"].label]
    assert (metrics.added, metrics.met) == ("+40.0k", True)
    assert metrics.goal.startswith("0.20\u00d7 pfe's +200.0k")
    assert rows[VARIANTS["meshmetrics-multiproc"].label].met is False  # 60k / 200k > 0.25
    assert rows[VARIANTS["meshmetrics-unsampled"].label].met is False  # +16k > +15k
    jaeger = rows[VARIANTS["meshmetrics-jaeger"].label]
    assert jaeger.goal.startswith("+100.0k over metrics = 0.10\u00d7 the peer's +1,000.0k")
    assert (jaeger.met, jaeger.spans) == (True, "9/9")
    otlp = rows[VARIANTS["meshmetrics-otlp-http"].label]
    assert otlp.goal.endswith("0.90\u00d7 our Jaeger path (≤ 1.00\u00d7)")
    spread = rows[next(label for label in rows if label.startswith("spread"))]
    assert (spread.goal, spread.met) == ("max/min 1.05 (≤ 1.10)", True)


def test_write_replaces_only_the_region(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(f"# P\n\nbefore\n{bench_mix.BEGIN}\nold\n{bench_mix.END}\nafter\n")
    bench_mix.write_region(doc, "new table\n")
    assert (
        doc.read_text() == f"# P\n\nbefore\n{bench_mix.BEGIN}\nnew table\n{bench_mix.END}\nafter\n"
    )
