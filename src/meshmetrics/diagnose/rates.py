"""Per-route rate, errors, latency and in-flight between two scrapes of ``/metrics``: the
engine of ``meshmetrics top``.

Numbers come from the difference between two scrapes, like Prometheus' ``rate()``:
request rate and 5xx ratio from the request counter, p50/p95/p99 from the latency
histogram's bucket increases, in-flight from the gauge.  A target that goes away is
shown as down and picked up again when it returns (a restarted process' counters
reset: its first scrape after the restart counts from zero).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.client import HTTPException
from typing import Any, TextIO, cast

from prometheus_client.parser import text_fd_to_metric_families

from .scrape import Deadline, lines, metrics_url, open_page


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' ``histogram_quantile`` over cumulative ``(upper bound, count)`` buckets."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return math.nan
    rank, lower, below = q * total, 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = upper, count
    return lower


@dataclass
class Scrape:
    """What one scrape of one target says, per route."""

    service: str
    at: float
    totals: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    errors: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    client_errors: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    buckets: dict[str, dict[float, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
    in_flight: dict[str, float] = field(default_factory=lambda: defaultdict(float))


@dataclass(frozen=True)
class Row:
    service: str
    route: str
    requests: float
    client_errors: float
    rate: float
    error_ratio: float
    p50: float
    p95: float
    p99: float
    in_flight: float


def scrape(url: str, timeout: float = 5.0) -> Scrape:
    """Parse one target's exposition within ``timeout`` seconds in all.

    Raises ``OSError`` (``TimeoutError`` past the deadline), ``HTTPException`` or
    ``ValueError`` (an error status, a body too large, invalid UTF-8 or exposition).
    """
    deadline = Deadline(timeout)
    with open_page(metrics_url(url), None, deadline) as page:
        if page.status != 200:
            raise ValueError(f"answered {page.status}")
        # the text parser only iterates over its argument: lines as they arrive
        return _read(
            url, text_fd_to_metric_families(cast("TextIO", lines(page.answer.chunks(), deadline)))
        )


def _read(url: str, families: Iterable[Any]) -> Scrape:
    result = Scrape(service=url, at=time.monotonic())
    for family in families:
        for s in family.samples:
            if s.name.endswith("service_info") and "service" in s.labels:
                result.service = s.labels["service"]
            path = s.labels.get("path")
            if path is None:
                continue
            if s.name.endswith("http_request_total"):
                result.totals[path] += s.value
                status = s.labels.get("status", "")
                if status.startswith("5"):
                    result.errors[path] += s.value
                elif status.startswith("4"):
                    result.client_errors[path] += s.value
            elif s.name.endswith("http_request_duration_seconds_bucket"):
                result.buckets[path][float(s.labels["le"])] += s.value
            elif s.name.endswith("http_requests_in_progress"):
                result.in_flight[path] += s.value
    return result


def _delta(now: float, before: float) -> float:
    return now - before if now >= before else now  # a reset counter counts from zero


def rows(before: Scrape, after: Scrape) -> list[Row]:
    """Per-route figures between two scrapes of one target, busiest first."""
    seconds = max(after.at - before.at, 1e-9)
    out = []
    for route, total in after.totals.items():
        requests_delta = _delta(total, before.totals.get(route, 0.0))
        errors_delta = _delta(after.errors.get(route, 0.0), before.errors.get(route, 0.0))
        old = before.buckets.get(route, {})
        increases = [
            (le, _delta(count, old.get(le, 0.0))) for le, count in after.buckets[route].items()
        ]
        client_delta = _delta(
            after.client_errors.get(route, 0.0), before.client_errors.get(route, 0.0)
        )
        out.append(
            Row(
                after.service,
                route,
                requests_delta,
                client_delta,
                requests_delta / seconds,
                errors_delta / requests_delta if requests_delta else 0.0,
                quantile(0.5, increases),
                quantile(0.95, increases),
                quantile(0.99, increases),
                after.in_flight.get(route, 0.0),
            )
        )
    return sorted(out, key=lambda r: -r.rate)


class Top:
    """Keeps the last scrape of each target and turns the next one into rows."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.last: dict[str, Scrape] = {}
        self.down: dict[str, str] = {}

    def poll(self) -> list[Row]:
        table: list[Row] = []
        for url in self.urls:
            try:
                current = scrape(url)
            except (OSError, HTTPException, ValueError) as exc:
                self.down[url] = type(exc).__name__
                self.last.pop(url, None)  # when it returns it may be a new process
                continue
            self.down.pop(url, None)
            previous = self.last.get(url)
            self.last[url] = current
            if previous is not None:
                table += rows(previous, current)
        return sorted(table, key=lambda r: -r.rate)


def snapshot(
    urls: list[str], interval: float, during: Callable[[], None] | None = None
) -> tuple[list[Row], dict[str, str]]:
    """Scrape, wait ``interval`` (running ``during`` meanwhile), scrape again: rows, down."""
    top = Top(urls)
    top.poll()
    started = time.monotonic()
    if during is not None:
        during()
    time.sleep(max(0.0, interval - (time.monotonic() - started)))
    return top.poll(), dict(top.down)


def render(table: list[Row], down: dict[str, str]) -> Any:
    """A rich Table of the rows (and of the targets that are down)."""
    from rich.table import Table

    out = Table(title="meshmetrics top", title_justify="left")
    for column in ("service", "route"):
        out.add_column(column)
    for column in ("req/s", "5xx %", "p50 ms", "p95 ms", "p99 ms", "in-flight"):
        out.add_column(column, justify="right")
    for r in table:
        out.add_row(
            r.service,
            r.route,
            f"{r.rate:.1f}",
            f"{r.error_ratio * 100:.1f}",
            *(f"{v * 1000:.1f}" if v == v else "-" for v in (r.p50, r.p95, r.p99)),
            f"{r.in_flight:.0f}",
        )
    for url, reason in down.items():
        out.add_row(url, f"[red]DOWN ({reason})[/red]", *[""] * 6)
    return out
