"""What one scrape of /metrics costs: meshmetrics against prometheus-flask-exporter and
prometheus_client's ``MultiProcessCollector`` (issue 23 items 3 and 5), in one run.

1. Memory: a Flask app with 3,000 routes answered with 3 statuses each (9,000 label sets),
   in a fresh subprocess (5 per library, in turn): the resident memory it holds more after
   one text and one OpenMetrics scrape than before them; the median.
2. Time: 10, 50, 200 and 1,000 routes x 3 statuses, meshmetrics and
   prometheus-flask-exporter side by side in one process, ``GET /metrics`` through the WSGI
   app in both formats, interleaved rounds; the median of each, and their ratio.
3. Multiprocess: 8 worker processes write their value files the way gunicorn's workers do
   (the 50-route app, the same traffic in each) and stay alive; meshmetrics' collector and
   a whole scrape against prometheus_client's ``MultiProcessCollector`` on the same files.

    python benchmarks/scrape_cost.py [--rounds N] [--write-docs]

``--write-docs`` puts the tables into docs/performance.md (between the ``scrape`` markers).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
FORMATS = {"text": "text/plain", "OpenMetrics": OPENMETRICS}
MEMORY_ROUTES = 3000
SIZES = (10, 50, 200, 1000)
WORKERS = 8


def app_for(library: str, routes: int) -> Any:
    """A Flask app of ``routes`` routes instrumented by ``library``, after one request per
    route and status (3 label sets a route)."""
    from flask import Flask
    from scrape_app import add_routes

    app = Flask(f"{library}{routes}")
    if library == "meshmetrics":
        from meshmetrics import instrument

        instrument(app, service="bench")
    else:
        from prometheus_client import CollectorRegistry
        from prometheus_flask_exporter import PrometheusMetrics

        PrometheusMetrics(app, registry=CollectorRegistry(), group_by="url_rule")
    add_routes(app, routes)
    client = app.test_client()
    for r in range(routes):
        for x in "abc":
            client.get(f"/r{r}/{x}")
    return client


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(library: str) -> None:
    """Run in a subprocess: print the memory growth of one text and one OpenMetrics scrape."""
    client = app_for(library, MEMORY_ROUTES)
    gc.collect()
    before = rss()
    lines = 0
    for accept in FORMATS.values():
        body = client.get("/metrics", headers={"Accept": accept}).get_data()
        lines = body.count(b"\n")
        del body
    gc.collect()
    print(rss() - before, lines)


def memory_table(runs: int) -> list[str]:
    """Median growth of ``runs`` fresh subprocesses per library, started in turn (the
    allocators' high-water marks vary by a MiB from one process to the next)."""
    growth: dict[str, list[int]] = {"meshmetrics": [], "prometheus-flask-exporter": []}
    lines = {}
    for _ in range(runs):
        for library, found in growth.items():
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", library],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            found.append(int(out[0]))
            lines[library] = int(out[1])
    rows = [
        f"| library | lines per scrape | RSS growth, median of {runs} | each run (MiB) |",
        "|---|---|---|---|",
    ]
    for library, found in growth.items():
        each = ", ".join(f"{g / 2**20:+.1f}" for g in found)
        median = statistics.median(found) / 2**20
        rows.append(f"| {library} | {lines[library]:,} | {median:+.1f} MiB | {each} |")
    ratio = statistics.median(growth["meshmetrics"]) / max(
        statistics.median(growth["prometheus-flask-exporter"]), 1
    )
    rows.append(f"| **ratio** | | **{ratio:.2f}x** (goal <= 1.10x) | |")
    return rows


def interleaved(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each variant, run in turn ``rounds`` times (noise hits all alike)."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def scrape_table(rounds: int) -> list[str]:
    rows = [
        "| routes x 3 statuses | format | lines | meshmetrics ms | prometheus-flask-exporter ms "
        "| ratio |",
        "|---|---|---|---|---|---|",
    ]
    for routes in SIZES:
        clients = {lib: app_for(lib, routes) for lib in ("meshmetrics", "pfe")}
        variants: dict[str, Callable[[], object]] = {}
        lines = {}
        for fmt, accept in FORMATS.items():
            for lib, client in clients.items():
                variants[f"{lib} {fmt}"] = _scrape(client, accept)
            body = clients["meshmetrics"].get("/metrics", headers={"Accept": accept}).get_data()
            lines[fmt] = body.count(b"\n")
        medians = interleaved(variants, max(5, rounds * 50 // routes))
        for fmt in FORMATS:
            ours, theirs = medians[f"meshmetrics {fmt}"], medians[f"pfe {fmt}"]
            rows.append(
                f"| {routes:,} | {fmt} | {lines[fmt]:,} | {ours * 1000:.2f} | {theirs * 1000:.2f} "
                f"| **{ours / theirs:.2f}x** |"
            )
        del clients
        gc.collect()
    return rows


def _scrape(client: Any, accept: str) -> Callable[[], object]:
    return lambda: client.get("/metrics", headers={"Accept": accept}).get_data()


WORKER = """
import sys
sys.path.insert(0, {benchmarks!r})
from scrape_cost import app_for
app_for("meshmetrics", 50)
print("ready", flush=True)
sys.stdin.read()
"""


def multiprocess_table(rounds: int) -> list[str]:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.openmetrics.exposition import generate_latest as om_latest

    from meshmetrics import render
    from meshmetrics.exposition import ServedRegistry
    from meshmetrics.multiproc import LockedMultiProcessCollector

    directory = tempfile.mkdtemp(prefix="meshmetrics-scrape-")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
    code = WORKER.format(benchmarks=str(ROOT / "benchmarks"))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for _ in range(WORKERS)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline() == b"ready\n"
        ours = LockedMultiProcessCollector(directory)
        theirs = MultiProcessCollector(None, path=directory)  # type: ignore[no-untyped-call]
        reference = CollectorRegistry()
        reference.register(theirs)
        served = ServedRegistry(ours)
        assert render.text(served.families()) == generate_latest(reference)
        assert render.openmetrics(served.families()) == om_latest(reference)
        medians = interleaved(
            {
                "collect ours": lambda: list(ours.collect()),
                "collect theirs": lambda: list(theirs.collect()),
                "text ours": lambda: render.text(served.families()),
                "text theirs": lambda: generate_latest(reference),
                "OpenMetrics ours": lambda: render.openmetrics(served.families()),
                "OpenMetrics theirs": lambda: om_latest(reference),
            },
            rounds,
        )
        files = len(list(Path(directory).glob("*.db")))
        samples = sum(len(m.samples) for m in ours.collect())
    finally:
        for worker in workers:
            worker.communicate(b"")
    rows = [
        f"| {WORKERS} workers' files ({files} files, {samples:,} samples) | meshmetrics ms "
        "| prometheus_client ms | ratio |",
        "|---|---|---|---|",
    ]
    for step in ("collect", "text", "OpenMetrics"):
        ours_s, theirs_s = medians[f"{step} ours"], medians[f"{step} theirs"]
        what = "collect (merge the files)" if step == "collect" else f"whole scrape, {step}"
        rows.append(
            f"| {what} | {ours_s * 1000:.1f} | {theirs_s * 1000:.1f} "
            f"| **{ours_s / theirs_s:.2f}x** |"
        )
    return rows


def write_docs(tables: str) -> None:
    path = ROOT / "docs" / "performance.md"
    text = path.read_text()
    begin, end = "<!-- scrape:begin -->", "<!-- scrape:end -->"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    path.write_text(f"{head}{begin}\n{tables}\n{end}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=21, help="scrapes per variant (at 50 routes)")
    parser.add_argument("--memory-runs", type=int, default=5, help="subprocesses per library")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child("meshmetrics" if args.memory_child == "meshmetrics" else "pfe")
        return
    sections = [
        f"RSS growth, {MEMORY_ROUTES:,} routes x 3 statuses ({MEMORY_ROUTES * 3:,} label sets), "
        "a fresh subprocess per run, libraries in turn:\n",
        *memory_table(args.memory_runs),
        "\nScrape time, one process, both apps side by side, interleaved (median):\n",
        *scrape_table(args.rounds),
        f"\nMultiprocess, {WORKERS} live workers' value files, interleaved (median of "
        f"{args.rounds}):\n",
        *multiprocess_table(args.rounds),
    ]
    tables = "\n".join(sections)
    print(tables)
    if args.write_docs:
        write_docs(tables)


if __name__ == "__main__":
    main()
