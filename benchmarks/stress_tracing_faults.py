"""Tracing faults under load: a backend that is unreachable, refusing or black-holing.

    python benchmarks/stress_tracing_faults.py [--requests 50000]

For each fault, gunicorn (1 worker, 4 threads) serves REQUESTS requests with every request
sampled. Asserted (exit 1 otherwise): no failed request; median latency within 10 % of
tracing off; worker RSS growth bounded; every span accounted for in /metrics
(exported + dropped = requests). Prints a Markdown table for docs/reliability.md.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

import requests
from loadlib import Gunicorn, LoadResult, load, metric, rss_kib

RSS_BOUND_MIB = 40.0
LATENCY_BOUND = 1.10
QUEUE = 4096  # the default span_queue_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=50_000)
    args = parser.parse_args()

    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))
    refused_port = refusing.getsockname()[1]
    refusing.close()  # nothing listens: connections are refused
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(1024)  # accepts, never answers: the exporter times out
    udp_closed = refused_port  # no UDP listener either: datagrams vanish

    modes = {
        "tracing off": {"MESHMETRICS_TRACING": "off"},
        "jaeger agent unreachable (UDP)": {
            "MESHMETRICS_TRACING": "jaeger",
            "MESHMETRICS_TRACE_ENDPOINT": f"127.0.0.1:{udp_closed}",
        },
        "otlp collector refusing": {
            "MESHMETRICS_TRACING": "otlp",
            "MESHMETRICS_TRACE_ENDPOINT": f"http://127.0.0.1:{refused_port}/v1/traces",
        },
        "otlp collector black-holing": {
            "MESHMETRICS_TRACING": "otlp",
            "MESHMETRICS_TRACE_ENDPOINT": f"http://127.0.0.1:{blackhole.getsockname()[1]}/v1/traces",
        },
    }
    # The modes' loads are interleaved, and their order rotates from round to round, so
    # machine noise and position in the round hit every mode alike.
    rounds = 10
    servers = {
        name: Gunicorn(workers=1, env={**env, "MESHMETRICS_SAMPLER": "const:1"})
        for name, env in modes.items()
    }
    results: dict[str, LoadResult] = {name: LoadResult() for name in modes}
    rss: dict[str, tuple[int, int]] = {}
    texts: dict[str, str] = {}
    try:
        workers = {name: next(iter(server.worker_pids())) for name, server in servers.items()}
        for server in servers.values():
            load(server.base, 2_000)  # warm up: imports, caches, the tracer, a full queue
        start_rss = {name: rss_kib(pid) for name, pid in workers.items()}
        started = time.monotonic()
        order = list(servers)
        for round_index in range(rounds):
            shift = round_index % len(order)
            for name in order[shift:] + order[:shift]:
                server = servers[name]
                part = load(server.base, args.requests // rounds)
                results[name].sent += part.sent
                results[name].failed += part.failed
                results[name].latencies += part.latencies
        elapsed = time.monotonic() - started
        rss = {name: (start_rss[name], rss_kib(pid)) for name, pid in workers.items()}
        time.sleep(1.0)
        texts = {
            name: requests.get(f"{s.base}/metrics", timeout=10).text for name, s in servers.items()
        }
    finally:
        for server in servers.values():
            server.stop()
    rows, problems = [], []
    baseline = results["tracing off"].median_ms
    for name, env in modes.items():
        result, text = results[name], texts[name]
        rss_growth = (rss[name][1] - rss[name][0]) / 1024
        spans = result.sent + 2_000 + 1  # + the warm-up and gunicorn's start-up probe
        # confirmed (HTTP 2xx) plus only sent (UDP to a Jaeger agent confirms nothing)
        exported = metric(text, "meshmetrics_spans_exported_total") + metric(
            text, "meshmetrics_spans_sent_total"
        )
        dropped = {
            r: metric(text, "meshmetrics_spans_dropped_total", reason=r)
            for r in ("queue_full", "export_error", "too_large")
        }
        ratio = result.median_ms / baseline
        accounted = exported + sum(dropped.values())
        drops = " / ".join(
            f"{dropped[r]:,.0f}" for r in ("queue_full", "export_error", "too_large")
        )
        rows.append(
            f"| {name} | {result.sent:,} | {result.failed} | {result.median_ms:.2f} | "
            f"{ratio:.2f} | {rss_growth:+.1f} | {exported:,.0f} | {drops} |"
        )
        if result.failed:
            problems.append(f"{name}: {result.failed} failed requests")
        if ratio > LATENCY_BOUND:
            problems.append(
                f"{name}: median latency {ratio:.2f}x tracing off (bound {LATENCY_BOUND})"
            )
        if rss_growth > RSS_BOUND_MIB:
            problems.append(f"{name}: RSS grew {rss_growth:.1f} MiB (bound {RSS_BOUND_MIB})")
        # spans still queued (at most the queue and one batch in flight) are not lost yet
        if env["MESHMETRICS_TRACING"] != "off" and not spans - QUEUE - 100 <= accounted <= spans:
            problems.append(f"{name}: {accounted:.0f} spans accounted for, {spans} made")
    total = sum(r.sent for r in results.values())
    print(f"{total:,} requests in {elapsed:.0f} s, {rounds} interleaved rounds")
    blackhole.close()
    print(
        "| fault | requests | failed | median ms | vs off | RSS growth MiB | exported | "
        "dropped: queue full / export error / too large |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
