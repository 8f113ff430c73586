"""What one scrape of /metrics costs: meshmetrics against prometheus-flask-exporter.

A Flask app with 50 routes answered with 3 statuses each (150 label sets), in one process:
the median time of ``GET /metrics`` (in-process, through the WSGI app) in the text format and
in OpenMetrics (what Prometheus asks for first), for meshmetrics as shipped, meshmetrics with
``created_series=True``, prometheus_client's own renderer on the same registry, and
prometheus-flask-exporter (its default series: its request counter has no path label, so it
serves fewer lines).  Then the multiprocess case: gunicorn with 2, 4 and 8 workers, the
median scrape over HTTP after the same traffic.

    python benchmarks/scrape_cost.py [--no-gunicorn]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from flask import Flask

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from scrape_app import ROUTES, add_routes  # noqa: E402

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def traffic(client: Any) -> None:
    for r in range(ROUTES):
        for x in "abc":
            client.get(f"/r{r}/{x}")


def meshmetrics_app(**options: Any) -> Flask:
    from meshmetrics import instrument

    app = Flask("mm")
    instrument(app, service="mm", **options)
    add_routes(app)
    return app


def reference_app() -> Flask:
    """meshmetrics' registry, served by prometheus_client's own WSGI app (no cache)."""
    from prometheus_client import make_wsgi_app

    from meshmetrics import instrument

    app = Flask("ref")
    inst = instrument(app, service="ref", metrics_path="/meshmetrics-metrics", created_series=True)
    add_routes(app)
    reference = make_wsgi_app(inst.served)
    app.add_url_rule(
        "/metrics",
        "reference",
        lambda: Flask.response_class.from_app(reference, __import__("flask").request.environ),
    )
    return app


def pfe_app() -> Flask:
    from prometheus_client import CollectorRegistry
    from prometheus_flask_exporter import PrometheusMetrics

    app = Flask("pfe")
    PrometheusMetrics(app, registry=CollectorRegistry(), group_by="url_rule")
    add_routes(app)
    return app


def scrape_ms(client: Any, accept: str, rounds: int = 41) -> tuple[float, int]:
    times, lines = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        body = client.get("/metrics", headers={"Accept": accept}).get_data()
        times.append(time.perf_counter() - started)
        lines = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return statistics.median(times) * 1000, lines


def in_process() -> None:
    variants = {
        "meshmetrics": lambda: meshmetrics_app(),
        "meshmetrics, created_series=True": lambda: meshmetrics_app(created_series=True),
        "prometheus_client's renderer, same registry": reference_app,
        "prometheus-flask-exporter": pfe_app,
    }
    clients = {}
    for name, make in variants.items():
        client = make().test_client()
        traffic(client)
        clients[name] = client
    print(f"{ROUTES} routes x 3 statuses, one process (median of 41 scrapes, interleaved)")
    print("| variant | format | lines | median ms | µs per line |")
    print("|---|---|---|---|---|")
    results: dict[tuple[str, str], tuple[float, int]] = {}
    for _ in range(3):  # interleaved rounds: noise hits every variant alike
        for name, client in clients.items():
            for fmt, accept in (("text", "text/plain"), ("OpenMetrics", OPENMETRICS)):
                ms, lines = scrape_ms(client, accept, rounds=15)
                best = results.get((name, fmt))
                results[(name, fmt)] = (min(ms, best[0]) if best else ms, lines)
    for (name, fmt), (ms, lines) in results.items():
        print(f"| {name} | {fmt} | {lines:,} | {ms:.1f} | {ms * 1000 / lines:.2f} |")


def multiprocess() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    print("\ngunicorn workers, the same traffic spread over them; median of 21 scrapes over HTTP")
    print("| workers | files | lines | median scrape ms |")
    print("|---|---|---|---|")
    for workers in (2, 4, 8):
        print(f"| {workers} | " + " | ".join(str(x) for x in gunicorn_scrape(workers)) + " |")


def gunicorn_scrape(workers: int) -> tuple[int, str, str]:
    from helpers import Server, gunicorn_argv

    directory = tempfile.mkdtemp(prefix="meshmetrics-scrape-")
    env = {
        "PROMETHEUS_MULTIPROC_DIR": directory,
        "PYTHONPATH": f"{ROOT / 'benchmarks'}:{ROOT / 'tests'}",
    }
    server = Server(gunicorn_argv("scrape_app:app", workers), env=env)
    try:
        paths = [f"/r{r}/{x}" for r in range(ROUTES) for x in "abc"] * 3

        def hit(path: str) -> int:
            with requests.Session() as s:  # new connections: every worker answers some
                return s.get(f"{server.base}{path}", timeout=10).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(hit, paths))
        times, lines = [], 0
        for _ in range(21):
            started = time.perf_counter()
            answer = requests.get(
                f"{server.base}/metrics", headers={"Accept": OPENMETRICS}, timeout=30
            )
            times.append(time.perf_counter() - started)
            lines = sum(1 for ln in answer.content.splitlines() if ln and not ln.startswith(b"#"))
        files = len(list(Path(directory).glob("*.db")))
        return files, f"{lines:,}", f"{statistics.median(times) * 1000:.1f}"
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-gunicorn", action="store_true")
    args = parser.parse_args()
    in_process()
    if not args.no_gunicorn:
        multiprocess()


if __name__ == "__main__":
    main()
