"""The goals of issue 23 over ``bench_mix.py``'s figures, and the markdown it writes.

Every ratio is computed from figures of the same run: a variant's instructions per request
"added over bare" is over bare Flask serving the same app and mix; a tracing variant's
"over metrics" is over meshmetrics with metrics only; a peer's tracing is what it adds
over prometheus-flask-exporter alone (the metrics it is wired with), so both sides of a
tracing ratio count tracing alone.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from _mix_variants import ROUTE_COUNTS, VARIANTS, sdk_exporter

Figures = dict[str, float]
METRICS = "meshmetrics"
JAEGER_PEER, OTEL_PEER = "pfe-opentracing", "pfe-otel-flask"
#: The metrics a peer's tracing is wired with: its tracing alone is over this.
PEER_BASE = "pfe"
#: Variant -> (its share of prometheus-flask-exporter's added cost at most).
PFE_SHARE = {"meshmetrics": 0.20, "meshmetrics-multiproc": 0.25}
#: Tracing variant -> (the peer, the share of the peer's tracing at most).
PEER_SHARE = {
    "meshmetrics-jaeger": (JAEGER_PEER, 0.10),
    "meshmetrics-otlp-http": (JAEGER_PEER, 0.10),
    "meshmetrics-otlp-grpc": (JAEGER_PEER, 0.10),
    "meshmetrics-zipkin": (JAEGER_PEER, 0.10),
    "meshmetrics-otel": (OTEL_PEER, 0.15),
    "meshmetrics-otel-counting": (f"{OTEL_PEER}-counting", 0.15),
}
UNSAMPLED_LIMIT = 15_000
X = "\u00d7"  # times
FLAT = ("meshmetrics", *(f"meshmetrics-routes-{n}" for n in ROUTE_COUNTS), "meshmetrics-unmatched")
FLAT_LIMIT = 1.10


@dataclass
class Row:
    label: str
    instructions: str
    added: str
    goal: str
    met: bool | None
    spans: str = ""


def k(value: float, sign: bool = False) -> str:
    return f"{value / 1000:{'+' if sign else ''},.1f}k"


def bare_of(name: str) -> str:
    """The bare Flask variant serving the same app and mix as ``name``."""
    variant = VARIANTS[name]
    if variant.unmatched:
        return "bare-unmatched"
    return f"bare-routes-{variant.extra_routes + 4}" if variant.extra_routes else "bare"


def added(figures: Figures, name: str) -> float | None:
    base = bare_of(name)
    return figures[name] - figures[base] if name in figures and base in figures else None


def _over(figures: Figures, name: str, base: str) -> float | None:
    return figures[name] - figures[base] if name in figures and base in figures else None


def goal_of(figures: Figures, name: str) -> tuple[str, bool | None]:
    """The ratio or difference issue 23 sets a goal on, and whether it is met."""
    if name in PFE_SHARE:
        ours, pfe = added(figures, name), added(figures, "pfe")
        if ours is None or not pfe:
            return "", None
        share = ours / pfe
        return f"{share:.2f}{X} pfe's {k(pfe, True)} (≤ {PFE_SHARE[name]:.2f}{X})", (
            share <= PFE_SHARE[name]
        )
    if name == "meshmetrics-unsampled":
        over = _over(figures, name, METRICS)
        if over is None:
            return "", None
        return (
            f"{k(over, True)} over metrics (≤ {k(UNSAMPLED_LIMIT, True)})",
            over <= UNSAMPLED_LIMIT,
        )
    if name in PEER_SHARE:
        return _peer_goal(figures, name)
    if name in (JAEGER_PEER, OTEL_PEER, f"{OTEL_PEER}-counting"):
        tracing = _over(figures, name, PEER_BASE)
        return (f"tracing alone {k(tracing, True)} over pfe", None) if tracing else ("", None)
    return "", None


def _peer_goal(figures: Figures, name: str) -> tuple[str, bool | None]:
    peer, limit = PEER_SHARE[name]
    over, theirs = _over(figures, name, METRICS), _over(figures, peer, PEER_BASE)
    if over is None or not theirs:
        return "", None
    share = over / theirs
    text = (
        f"{k(over, True)} over metrics = {share:.2f}{X} the peer's {k(theirs, True)} "
        f"(≤ {limit:.2f}{X})"
    )
    met = share <= limit
    jaeger = _over(figures, "meshmetrics-jaeger", METRICS)
    if name == "meshmetrics-otlp-http" and jaeger is not None:
        text += f"; {over / jaeger:.2f}{X} our Jaeger path (≤ 1.00{X})"
        met = met and over <= jaeger
    export = _over(figures, name, f"{name}-counting")
    if name == "meshmetrics-otel" and export is not None:
        text += f"; the SDK's export alone {k(export, True)}"
    return text, met


def goal_rows(figures: Figures, spans: dict[str, str]) -> list[Row]:
    rows = []
    for name in VARIANTS:
        if name not in figures:
            continue
        extra = added(figures, name)
        goal, met = goal_of(figures, name)
        if name in FLAT[1:] and (base := added(figures, METRICS)) and extra is not None:
            goal = f"{extra / base:.2f}{X} the 4-route app's added"
        rows.append(
            Row(
                VARIANTS[name].label,
                k(figures[name]),
                "—" if name.startswith("bare") else k(extra or 0.0, True),
                goal,
                met,
                spans.get(name, ""),
            )
        )
    flat = [a for a in (added(figures, n) for n in FLAT) if a is not None]
    if len(flat) > 1:
        spread = max(flat) / min(flat)
        rows.append(
            Row(
                "spread of meshmetrics' added cost: 4, 100, 10,000 routes, unmatched paths",
                "",
                f"{k(min(flat), True)} to {k(max(flat), True)}",
                f"max/min {spread:.2f} (≤ {FLAT_LIMIT:.2f})",
                spread <= FLAT_LIMIT,
            )
        )
    return rows


def table(rows: list[Row], preamble: str) -> str:
    lines = [
        preamble,
        "",
        "| variant | instructions/request | added over bare | ratio / goal | met? "
        "| spans received |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = {True: "yes", False: "**no**", None: ""}[r.met]
        lines.append(f"| {r.label} | {r.instructions} | {r.added} | {r.goal} | {met} | {r.spans} |")
    return "\n".join(lines) + "\n"


PACKAGES = (
    "flask",
    "werkzeug",
    "prometheus_client",
    "prometheus-flask-exporter",
    "jaeger-client",
    "Flask-OpenTracing",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-flask",
    "opentelemetry-exporter-otlp-proto-http",
    "grpcio",
)


def _versions() -> str:
    found = []
    for package in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            found.append(f"{package} {version(package)}")
    return ", ".join(found)


def _tool(*command: str) -> str:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=Path(__file__).parent, check=False
        )
    except OSError:
        return "?"
    return done.stdout.strip() or "?"


def commit() -> str:
    """The checkout's commit (read when the run starts: the code it measures)."""
    described = _tool("git", "describe", "--always", "--dirty")
    return described if described != "?" else "(not a git checkout)"


def environment(
    counts: tuple[int, int], seconds: float, jobs: int, quick: bool, measured: str
) -> str:
    few, many = counts
    exporter = (
        "the SDK's OTLP/HTTP exporter (opentelemetry-exporter-otlp-proto-http) to the "
        "OTLP/HTTP sink"
        if sdk_exporter() == "otlp-http"
        else "an in-process exporter that only counts (opentelemetry-exporter-otlp-proto-"
        "http is not installed)"
    )
    return (
        f"Command: `python benchmarks/bench_mix.py{' --quick' if quick else ''} --jobs {jobs} "
        f"--write docs/performance.md` at commit {measured}"
        f"; {few} and {many} requests a variant; the whole run took {seconds / 60:.1f} min. "
        f"Python {sys.version.split()[0]}, {_versions()}, {_tool('valgrind', '--version')}. "
        f"The OpenTelemetry variants export with a `BatchSpanProcessor` and {exporter}."
    )
