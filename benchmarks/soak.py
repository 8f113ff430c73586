"""Soak: a bounded wrk run against gunicorn with metrics and sampled tracing.

    python benchmarks/soak.py [--seconds 60]

gunicorn (2 workers x 4 threads) serves the load app with every request traced to a Jaeger
agent on loopback. Asserted (exit 1 otherwise): no error response or socket error, each
worker's RSS growth below RSS_BOUND_MIB after warm-up, request counter in /metrics equal to
what wrk sent (+ the warm-up), and no span lost inside meshmetrics. "Spans received" is what
the Python test agent decoded: past its socket buffer the kernel drops datagrams, outside
meshmetrics. Needs Debian's wrk
(falls back to a Python load loop without it).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time

import requests
from loadlib import Gunicorn, load, metric, rss_kib

from meshmetrics.testing.receivers import JaegerAgent

RSS_BOUND_MIB = 25.0
WARMUP = 2_000
CONNECTIONS = 16


def run_wrk(base: str, seconds: int) -> tuple[int, int, str]:
    """(requests, errors, summary) from wrk, or from a Python loop without wrk."""
    wrk = shutil.which("wrk")
    if wrk is None:
        result = load(base, 0, clients=4, seconds=seconds)
        return result.sent, result.failed, f"python load loop: {result.sent} requests"
    out = subprocess.run(
        [wrk, "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", f"{base}/api/v1/user/soak"],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    sent = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket:
        errors += sum(int(n) for n in socket.groups())
    return sent, errors, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    agent = JaegerAgent()
    server = Gunicorn(
        workers=2,
        env={
            "MESHMETRICS_TRACING": "jaeger",
            "MESHMETRICS_TRACE_ENDPOINT": agent.endpoint,
            "MESHMETRICS_SAMPLER": "const:1",
        },
    )
    problems = []
    try:
        workers = sorted(server.worker_pids())
        load(server.base, WARMUP)
        before = {pid: rss_kib(pid) for pid in workers}
        sent, errors, summary = run_wrk(server.base, args.seconds)
        after = {pid: rss_kib(pid) for pid in workers}
        time.sleep(1.5)  # the exporters' last batches
        text = requests.get(f"{server.base}/metrics", timeout=10).text
    finally:
        server.stop()
        agent.close()
    counted = metric(text, "flask_http_request_total", path="/api/v1/user/<user_id>")
    # the soak's agent is UDP: its spans count as sent (nothing confirms them)
    exported = metric(text, "meshmetrics_spans_exported_total") + metric(
        text, "meshmetrics_spans_sent_total"
    )
    dropped = metric(text, "meshmetrics_spans_dropped_total")
    print(summary.strip())
    print(
        "\n| seconds | requests | errors | counted in /metrics | spans exported | spans dropped | "
        "spans received | RSS growth per worker MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    growth = [(after[p] - before[p]) / 1024 for p in workers]
    print(
        f"| {args.seconds} | {sent:,} | {errors} | {counted:,.0f} | {exported:,.0f} | "
        f"{dropped:,.0f} | {len(agent.spans):,} | {', '.join(f'{g:+.1f}' for g in growth)} |"
    )
    if errors:
        problems.append(f"{errors} error responses or socket errors")
    if max(growth) > RSS_BOUND_MIB:
        problems.append(f"RSS grew {max(growth):.1f} MiB (bound {RSS_BOUND_MIB})")
    # wrk does not count the requests still in flight on its 16 connections when it stops
    if not sent + WARMUP <= counted <= sent + WARMUP + CONNECTIONS:
        problems.append(f"/metrics counted {counted:.0f} requests, wrk sent {sent + WARMUP}")
    if dropped:
        problems.append(f"{dropped:.0f} spans dropped inside meshmetrics")
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
