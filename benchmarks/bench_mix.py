"""Instructions per request of a realistic request mix, every variant and peer in one run.

    python benchmarks/bench_mix.py                          # the table, every variant
    python benchmarks/bench_mix.py --quick --variants bare,meshmetrics
    python benchmarks/bench_mix.py --write docs/performance.md
    python benchmarks/bench_mix.py --verify                 # no valgrind: statuses, spans

The mix (``_mix_app.py``): eight requests with Istio/Envoy's headers through the WSGI
callable: GETs of a templated route (some with ``traceparent``), a query string with a
token, a POST with a JSON body, a 404, an ``abort(400)``, a HEAD.  Each variant
(``_mix_variants.py``) runs in its own process under ``valgrind --tool=callgrind``, twice
(few and many requests): the difference divided by the extra requests is the per-request
count, free of start-up cost.  Callgrind counts every thread, so background export is in
the figure; spans go to real receivers in a separate process (``_mix_sinks.py``), and the
run checks each received every span.  ``--check`` exits 1 when a goal of issue 23 is missed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _mix_app import Mix
from _mix_callgrind import Callgrind, start_counting, totals
from _mix_goals import Figures, commit, environment, goal_rows, table
from _mix_sinks import LocalSinks, SinkProcess
from _mix_variants import VARIANTS, Variant, check_environment

#: Requests served before the measured ones: every prebuilt environ of the mix once.
#: meshmetrics' figure settles only after ~100 requests (586k a request over requests
#: 48-112, 543k from then on, on main): a shorter warm-up biases short runs.
WARM = 128
#: Requests of the two runs of a variant (multiples of the mix's 8): full and --quick.
FULL = (96, 608)
QUICK = (32, 160)
BEGIN, END = "<!-- bench_mix:begin -->", "<!-- bench_mix:end -->"
Sinks = LocalSinks | SinkProcess


@dataclass
class Run:
    """One process serving ``n`` requests of the mix: what it cost and delivered."""

    variant: str
    n: int
    instructions: int | None
    served: int
    wrong: list[list[str]]
    spans: int
    expected_spans: int


# -- the measured process --------------------------------------------------------------


def worker(name: str, n: int, endpoint: str | None, own_process: bool = True) -> dict[str, Any]:
    """Build the variant, warm it, serve ``n`` requests, flush its spans.  In a process of
    its own (not in a test's), the start-up heap is frozen before the measured requests."""
    variant = VARIANTS[name]
    check_environment(variant)

    built = variant.build(endpoint)
    mix = Mix(unmatched=variant.unmatched, sampled=variant.sampled)
    mix.drive(built.app, WARM)
    built.drain()
    # The app's start-up objects leave the collector's view: a full collection then walks
    # what the requests made, not the whole heap.  Otherwise whether one of them (tens of
    # millions of instructions, heap-sized) falls between the two runs' ends decides a
    # tracing figure by up to 15 %.
    if own_process:
        gc.collect()
        gc.freeze()
    start_counting()
    mix.drive(built.app, n, WARM)
    built.finish()
    for name in variant.fresh_dirs:  # the variant did use its directory
        assert os.listdir(os.environ[name]), f"{variant.label}: nothing written to ${name}"
    exported = built.exported() if built.exported is not None else None
    return {"served": WARM + n, "wrong": mix.wrong, "exported": exported}


# -- the parent ------------------------------------------------------------------------


#: Environment variables that configure what is measured: only a variant sets them.
CONFIGURING = ("MESHMETRICS_", "OTEL_", "JAEGER_", "PROMETHEUS_MULTIPROC_DIR")


def _environment_of(variant: Variant, scratch: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(CONFIGURING)}
    env["PYTHONHASHSEED"] = "0"
    for key in variant.fresh_dirs:
        env[key] = tempfile.mkdtemp(dir=scratch)
    return env


def run(name: str, n: int, sinks: Sinks, callgrind: Callgrind | None) -> Run:
    """Serve ``n`` requests of ``name`` in a process of its own (under callgrind or not)."""
    variant = VARIANTS[name]
    endpoint = sinks.open(variant.sink) if variant.sink else None
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        command = [sys.executable, __file__, "--worker", name, str(n), endpoint or "-"]
        env = _environment_of(variant, scratch)
        if callgrind is not None:
            command = callgrind.command(command, out)
            env.update(callgrind.environment())
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"{name} ({n} requests) failed:\n{done.stderr[-3000:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        instructions = totals(out) if callgrind is not None else None
    return _result(name, n, instructions, report, endpoint, sinks)


def run_in_process(name: str, n: int, sinks: Sinks) -> Run:
    """``run`` without valgrind, in this process (a variant not ``isolated``)."""
    variant = VARIANTS[name]
    assert not variant.isolated, f"{name} needs a process of its own"
    endpoint = sinks.open(variant.sink) if variant.sink else None
    return _result(name, n, None, worker(name, n, endpoint, own_process=False), endpoint, sinks)


def _result(
    name: str,
    n: int,
    instructions: int | None,
    report: dict[str, Any],
    endpoint: str | None,
    sinks: Sinks,
) -> Run:
    """The run's figures, with the spans its sink received (or its exporter counted)."""
    expected = report["served"] * VARIANTS[name].spans_per_request
    if report["exported"] is not None:
        spans = int(report["exported"])
        if endpoint is not None:
            sinks.count(endpoint)  # closes the receiver the variant did not use
    elif endpoint is not None:
        spans = sinks.count(endpoint, expected, 30.0)
    else:
        spans = 0
    return Run(name, n, instructions, report["served"], report["wrong"], spans, expected)


def measure(
    names: list[str], counts: tuple[int, int], jobs: int, callgrind: bool = True
) -> tuple[Figures, list[Run]]:
    """Every variant's two runs, ``jobs`` processes at a time; the per-request figures."""
    sinks = SinkProcess()
    scratch = tempfile.TemporaryDirectory()
    counter = Callgrind.prepared(Path(scratch.name)) if callgrind else None
    try:
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            # the costliest first: the route-count variants register 10,000 routes
            order = sorted(names, key=lambda v: -VARIANTS[v].extra_routes)
            runs = list(
                pool.map(
                    lambda job: run(job[0], job[1], sinks, counter),
                    [(name, n) for name in order for n in counts],
                )
            )
    finally:
        sinks.close()
        scratch.cleanup()
    figures: Figures = {}
    if callgrind:
        by = {(r.variant, r.n): r for r in runs}
        few, many = counts
        for name in names:
            extra = by[name, many].instructions or 0
            base = by[name, few].instructions or 0
            figures[name] = (extra - base) / (many - few)
    return figures, runs


def problems(runs: list[Run]) -> list[str]:
    """Wrong statuses, and spans a sink did not receive."""
    found = []
    for r in runs:
        if r.wrong:
            found.append(f"{r.variant}: {len(r.wrong)} wrong statuses, e.g. {r.wrong[0]}")
        if r.spans != r.expected_spans:
            found.append(f"{r.variant}: {r.spans} spans received of {r.expected_spans} sent")
    return found


def spans_received(runs: list[Run]) -> dict[str, str]:
    """``received/expected`` spans of each variant, its runs summed."""
    totals: dict[str, list[int]] = {}
    for r in runs:
        total = totals.setdefault(r.variant, [0, 0])
        total[0] += r.spans
        total[1] += r.expected_spans
    return {name: f"{got:,}/{want:,}" for name, (got, want) in totals.items() if want or got}


def write_region(path: Path, text: str) -> None:
    """Replace what stands between the bench_mix markers of ``path`` with ``text``."""
    doc = path.read_text()
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    path.write_text(doc[:start] + "\n" + text.rstrip("\n") + "\n" + doc[end:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--jobs", type=int, default=2, help="callgrind processes at a time")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK} requests, not {FULL}")
    parser.add_argument("--write", type=Path, help="replace the table region of this file")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    parser.add_argument("--verify", action="store_true", help="no valgrind: statuses, spans")
    args = parser.parse_args()
    if args.worker:
        name, n, endpoint = args.worker
        print(json.dumps(worker(name, int(n), None if endpoint == "-" else endpoint)))
        return 0
    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    counts = QUICK if args.quick or args.verify else FULL
    started, measured = time.monotonic(), commit()
    figures, runs = measure(names, counts, args.jobs, callgrind=not args.verify)
    found = problems(runs)
    print("\n".join(found) or f"{len(runs)} runs: every status and span as expected")
    if args.verify:
        return 1 if found else 0
    rows = goal_rows(figures, spans_received(runs))
    text = table(
        rows, environment(counts, time.monotonic() - started, args.jobs, args.quick, measured)
    )
    print(text)
    if args.write:
        write_region(args.write, text)
    missed = [row for row in rows if row.met is False]
    return 1 if found or (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
