"""A fleet's worth of data in a real Prometheus: every dashboard panel, raw against recorded.

Builds the series a service of N pods with R routes exports over H hours at a 30 s
scrape interval (request counter and latency histogram by method, route and status; the
in-flight gauge), with a planted error burst on one route and a latency regression on
another; writes it as OpenMetrics, backfills it with ``promtool tsdb create-blocks-from
openmetrics``, backfills the generated recording rules with ``promtool tsdb
create-blocks-from rules`` against a Prometheus serving the raw data, restarts Prometheus
on both, then:

- times every request panel of the generated dashboard through ``/api/v1/query_range``
  (the whole period, a 30 s step, as Grafana asks), once on the raw series (the queries of
  ``--no-recording-rules``) and once on the recorded ones; median of 3 runs each;
- checks that the recorded panels show what the raw ones show (same series, values within
  1e-6 relative), and that the alerts' expressions see the planted burst and regression
  where they were planted, and nothing before.

    python benchmarks/fleet.py                        # 200 pods x 30 routes x 2 h (minutes)
    python benchmarks/fleet.py --pods 4 --hours 1     # the bounded form CI runs

Exits 1 when a check fails, or (full size only) when a recorded panel takes over 100 ms.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from meshmetrics.config import MeshConfig
from meshmetrics.manifests import build_objects, model_from_config
from meshmetrics.manifests.options import ManifestOptions
from meshmetrics.manifests.promql import Queries
from meshmetrics.manifests.rules import alert_rules
from meshmetrics.testing.prometheus import LocalPrometheus

STEP = 30  # seconds between samples (the scrape interval)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
#: Share of requests per latency bucket (upper bound), normal and regressed.
NORMAL = {0.01: 0.2, 0.025: 0.3, 0.05: 0.3, 0.1: 0.15, 0.25: 0.05}
SLOW = {0.25: 0.2, 0.5: 0.4, 1.0: 0.3, 2.5: 0.1}
REQUESTS_PER_STEP = 30  # per pod and route: 1 request/s
CONFIG = MeshConfig(service="fleet", namespace="shop", release="komplete-prometheus")


def le_text(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def series_labels(pod: int, route: int) -> str:
    """The labels prometheus-operator and meshmetrics give one pod's route."""
    return (
        f'job="fleet",namespace="shop",service="fleet",pod="fleet-{pod}",endpoint="http",'
        f'method="GET",path="/r{route}/<id>"'
    )


class Incidents:
    """Where the error burst (route 1) and the latency regression (route 2) are planted."""

    def __init__(self, steps: int, start: int) -> None:
        self.burst = (int(steps * 0.55), int(steps * 0.65))
        self.regression = int(steps * 0.75)
        self.start = start

    def errors(self, route: int, step: int) -> int:
        if route == 1 and self.burst[0] <= step < self.burst[1]:
            return REQUESTS_PER_STEP // 3
        if route == 3:
            return 1 if step % 40 == 0 else 0  # a trickle, within any budget
        return 0

    def profile(self, route: int, step: int) -> dict[float, float]:
        return SLOW if route == 2 and step >= self.regression else NORMAL

    def marks(self) -> dict[str, int]:
        return {
            "burst_start": self.start + self.burst[0] * STEP,
            "burst_end": self.start + self.burst[1] * STEP,
            "regression": self.start + self.regression * STEP,
        }


def write_requests(out: Any, base: str, route: int, plan: Incidents, steps: int) -> None:
    ok = errors = 0
    ok_lines, error_lines = [], []
    for step in range(steps):
        bad = plan.errors(route, step)
        ok += REQUESTS_PER_STEP - bad
        errors += bad
        ts = plan.start + step * STEP
        ok_lines.append(f'flask_http_request_total{{{base},status="200"}} {ok} {ts}\n')
        error_lines.append(f'flask_http_request_total{{{base},status="500"}} {errors} {ts}\n')
    out.writelines(ok_lines)
    out.writelines(error_lines)


def write_latency(out: Any, base: str, route: int, plan: Incidents, steps: int) -> None:
    name = "flask_http_request_duration_seconds"
    bounds = (*BUCKETS, float("inf"))
    counts = dict.fromkeys(bounds, 0.0)
    total = total_sum = 0.0
    lines: dict[float, list[str]] = {b: [] for b in bounds}
    sums, totals = [], []
    for step in range(steps):
        profile = plan.profile(route, step)
        for bound in bounds:
            counts[bound] += profile.get(bound, 0.0) * REQUESTS_PER_STEP
        running = 0.0
        ts = plan.start + step * STEP
        for bound in bounds:
            running += counts[bound]
            le = le_text(bound)
            lines[bound].append(f'{name}_bucket{{{base},le="{le}"}} {running:g} {ts}\n')
        total += REQUESTS_PER_STEP
        total_sum += sum(b * share for b, share in profile.items()) * REQUESTS_PER_STEP
        totals.append(f"{name}_count{{{base}}} {total:g} {ts}\n")
        sums.append(f"{name}_sum{{{base}}} {total_sum:g} {ts}\n")
    for bound in bounds:
        out.writelines(lines[bound])
    out.writelines(totals)
    out.writelines(sums)


def write_openmetrics(path: Path, pods: int, routes: int, steps: int, start: int) -> dict[str, int]:
    """The fleet's exposition over time; returns where the incidents were planted."""
    plan = Incidents(steps, start)
    with path.open("w") as out:
        out.write("# TYPE flask_http_request counter\n")
        for pod in range(pods):
            for route in range(routes):
                write_requests(out, series_labels(pod, route), route, plan, steps)
        out.write("# TYPE flask_http_request_duration_seconds histogram\n")
        for pod in range(pods):
            for route in range(routes):
                base = series_labels(pod, route) + ',status="200"'
                write_latency(out, base, route, plan, steps)
        out.write("# TYPE flask_http_request_exceptions counter\n")
        for pod in range(pods):
            base = series_labels(pod, 1) + ',status="500",exception="TimeoutError"'
            raised = 0
            for step in range(steps):
                raised += plan.errors(1, step)
                ts = start + step * STEP
                out.write(f"flask_http_request_exceptions_total{{{base}}} {raised} {ts}\n")
        out.write("# TYPE flask_http_requests_in_progress gauge\n")
        for pod in range(pods):
            for route in range(routes):
                base = series_labels(pod, route)
                out.writelines(
                    f"flask_http_requests_in_progress{{{base}}} {(pod + route + step) % 3} "
                    f"{start + step * STEP}\n"
                    for step in range(steps)
                )
        out.write("# EOF\n")
    return plan.marks()


def prometheus(data: Path) -> LocalPrometheus:
    """A Prometheus serving the backfilled TSDB ``data`` (scraping nothing)."""
    prom = LocalPrometheus(
        [],
        data_dir=data,
        flags=("--storage.tsdb.retention.time=30d", "--query.lookback-delta=2m"),
        query_timeout=120,
    )
    prom.start(timeout=120)
    return prom


def panels(recorded: bool) -> list[tuple[str, str]]:
    """The dashboard's request panels: on the recorded series, or (``--no-recording-rules``)
    on the raw ones with the same 5 m window, so both show the same numbers."""
    model = model_from_config(CONFIG, recording_rules=recorded, istio=False)
    objects = build_objects(model, ["dashboard", "rules"])  # alone, it reads raw series
    dashboard = json.loads(next(iter(objects["fleet-dashboard.yaml"]["data"].values())))
    titled = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            if "http_request" in expr and "exceptions" not in expr:
                titled.append((panel["title"], expr.replace("$__rate_interval", "5m")))
    return titled


def time_query(prom: LocalPrometheus, expr: str, start: int, end: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(3):
        began = time.perf_counter()
        result = prom.api("query_range", query=expr, start=start, end=end, step=STEP)["result"]
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000, result


def check_recorded(prom: LocalPrometheus, recording: list[dict[str, Any]], at: int) -> list[str]:
    """Each recorded sample equals its rule's expression evaluated at that sample's own
    timestamp (rule groups run at an offset within their interval, so a recorded series
    lags its raw expression by up to one interval: compared at one instant, they agree)."""
    failures = []
    for rule in recording:
        window = prom.api("query", query=f"{rule['record']}[5m]", time=at)["result"]
        compared, worst = 0, 0.0
        for series in window[:20]:
            labels = {k: v for k, v in series["metric"].items() if k != "__name__"}
            for ts, value in series["values"][-3:]:
                raw = prom.api("query", query=rule["expr"], time=ts)["result"]
                match = [r for r in raw if r["metric"] == labels]
                if len(match) != 1:
                    failures.append(f"{rule['record']}: {len(match)} raw series for {labels}")
                    continue
                a, b = float(value), float(match[0]["value"][1])
                worst = max(worst, abs(a - b) / max(abs(b), 1e-12))
                compared += 1
        print(f"{rule['record']}: {compared} samples compared, max relative difference {worst:.1e}")
        if not compared or worst > 1e-9:
            failures.append(f"{rule['record']} differs from its expression ({worst:g})")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--routes", type=int, default=30)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()
    if shutil.which("promtool") is None or shutil.which("prometheus") is None:
        print("needs Debian's prometheus and promtool (apt-get install -y prometheus)")
        return 1
    work = Path(tempfile.mkdtemp(prefix="meshmetrics-fleet-"))
    data = work / "data"
    steps = int(args.hours * 3600 / STEP)
    end_time = int(time.time()) // 3600 * 3600 - 3 * 3600  # whole hours, well in the past
    start = end_time - steps * STEP
    failures: list[str] = []
    try:
        began = time.perf_counter()
        marks = write_openmetrics(work / "fleet.om", args.pods, args.routes, steps, start)
        size = (work / "fleet.om").stat().st_size
        series = args.pods * args.routes * (2 + 17 + 1) + args.pods
        took = time.perf_counter() - began
        print(
            f"{args.pods} pods x {args.routes} routes x {args.hours:g} h at {STEP} s: "
            f"{series:,} series, {series * steps:,} samples, "
            f"{size / 1e6:,.0f} MB of OpenMetrics written in {took:.0f} s"
        )
        began = time.perf_counter()
        subprocess.run(
            [
                "promtool",
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                str(work / "fleet.om"),
                str(data),
            ],
            check=True,
            capture_output=True,
        )
        (work / "fleet.om").unlink()
        print(f"backfilled raw series in {time.perf_counter() - began:.0f} s")
        rule = build_objects(model_from_config(CONFIG), ["rules"])["fleet-rules.yaml"]
        recording = [r for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r]
        (work / "recording.yaml").write_text(
            yaml.safe_dump(
                {"groups": [{"name": "fleet", "interval": f"{STEP}s", "rules": recording}]}
            )
        )
        prom = prometheus(data)
        try:
            began = time.perf_counter()
            subprocess.run(
                [
                    "promtool",
                    "tsdb",
                    "create-blocks-from",
                    "rules",
                    f"--url={prom.url}",
                    f"--start={start}",
                    f"--end={end_time}",
                    f"--output-dir={work / 'rules-data'}",
                    "--eval-interval=30s",
                    str(work / "recording.yaml"),
                ],
                check=True,
                capture_output=True,
            )
            took = time.perf_counter() - began
            print(f"backfilled {len(recording)} recording rules in {took:.0f} s")
        finally:
            prom.stop()
        for block in (work / "rules-data").iterdir():
            shutil.move(str(block), data / block.name)
        prom = prometheus(data)
        try:
            failures += check_recorded(prom, recording, end_time - 600)
            print("\n| panel | raw ms | recorded ms | speed-up | series |")
            print("|---|---|---|---|---|")
            raw_panels, recorded_panels = panels(False), panels(True)
            for (title, raw_expr), (_, rec_expr) in zip(raw_panels, recorded_panels, strict=True):
                raw_ms, raw = time_query(prom, raw_expr, start + 600, end_time)
                rec_ms, rec = time_query(prom, rec_expr, start + 600, end_time)
                raw_keys = {tuple(sorted(r["metric"].items())) for r in raw}
                if raw_keys != {tuple(sorted(r["metric"].items())) for r in rec}:
                    failures.append(f"{title}: the recorded panel shows other series than the raw")
                if args.pods >= 200 and rec_ms > 100:
                    failures.append(f"{title}: {rec_ms:.0f} ms recorded (target 100 ms)")
                speedup = raw_ms / max(rec_ms, 0.01)
                print(f"| {title} | {raw_ms:,.0f} | {rec_ms:,.1f} | {speedup:,.0f}x | {len(rec)} |")
            failures += check_incidents(prom, marks)
        finally:
            prom.stop()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


def check_incidents(prom: LocalPrometheus, marks: dict[str, int]) -> list[str]:
    """The alerts' expressions (on recorded series) see the burst and the regression."""
    model = model_from_config(CONFIG)
    options = ManifestOptions()
    rules = {r.name: r for r in alert_rules(model, options)}
    q = Queries("fleet", "shop", "flask_", "5m", recorded=True)
    failures = []
    by_route_errors = q.error_ratio(by="path")
    during = prom.api("query", query=by_route_errors, time=marks["burst_end"])["result"]
    hot = {r["metric"]["path"] for r in during if float(r["value"][1]) > options.error_ratio}
    if hot != {"/r1/<id>"}:
        failures.append(f"error burst seen on {hot}, planted on /r1/<id>")
    before = prom.api(
        "query", query=rules["FleetHighErrorRatio"].expr, time=marks["burst_start"] - 600
    )["result"]
    if before:
        failures.append("the error-ratio alert fires before the burst")
    p95 = q.latency_quantile(0.95, by="path")
    after = prom.api("query", query=p95, time=marks["regression"] + 900)["result"]
    slow = {r["metric"]["path"] for r in after if float(r["value"][1]) > options.latency_p95}
    if slow != {"/r2/<id>"}:
        failures.append(f"latency regression seen on {slow}, planted on /r2/<id>")
    print(f"\nincidents: error burst seen on {sorted(hot)}, latency regression on {sorted(slow)}")
    return failures


if __name__ == "__main__":
    sys.exit(main())
