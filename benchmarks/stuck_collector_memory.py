"""Memory held by the span queue while the collector is stuck, with large spans.

Each span carries a 100 kB URL and 50 headers of 2 kB (what a hostile client can send);
the exporter never returns.  Prints the spans queued, dropped and the RSS growth.

    python benchmarks/stuck_collector_memory.py [--spans 20000] [--queue-bytes 33554432]
"""

from __future__ import annotations

import argparse
import resource
import threading
from typing import Any

from meshmetrics.config import ExportResult
from meshmetrics.tracing.processor import BatchSpanProcessor, SpanCounters
from meshmetrics.tracing.sampling import ConstSampler
from meshmetrics.tracing.spans import MeshTracer


class StuckExporter:
    """A collector that accepts the connection and never answers."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: list[Any]) -> ExportResult:
        self.release.wait(600)
        return ExportResult()

    def shutdown(self) -> None:
        self.release.set()


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--queue-bytes", type=int, default=32 * 1024 * 1024)
    args = parser.parse_args()
    before = rss_mib()
    counters = SpanCounters(None)
    stuck = StuckExporter()
    processor = BatchSpanProcessor(
        stuck, counters, queue_size=4096, queue_bytes=args.queue_bytes, interval=60
    )
    tracer = MeshTracer(ConstSampler(True), processor)
    url = "http://svc/" + "x" * 100_000
    for i in range(args.spans):
        span = tracer.start_span("GET")
        span.set_tag("http.url", f"{url}{i}")
        for h in range(50):
            span.set_tag(f"http.header.h{h}", f"{'v' * 2000}{i}")
        span.finish()
    print(
        f"spans sent {args.spans:,}, queued {len(processor._queue):,}, "
        f"dropped {counters.queue_full._value.get():,.0f}, RSS +{rss_mib() - before:.1f} MiB"
    )
    stuck.release.set()


if __name__ == "__main__":
    main()
