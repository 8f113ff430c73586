"""Service level objectives: SLI recording rules, multiwindow multi-burn-rate alerts.

The alerts are the Google SRE workbook's (chapter "Alerting on SLOs"): a *page* when the
error budget burns fast over a long and a short window together (2 % of the budget in 1 h,
checked against 5 m; 5 % in 6 h, against 30 m), a *ticket* for a slow burn (10 % in 1 d,
against 2 h; 10 % in 3 d, against 6 h).  The burn-rate factors follow from the SLO's
window: for 30 days they are 14.4, 6, 3 and 1.  The short window makes an alert stop soon
after the burn stops; requiring both windows keeps one blip from paging.  A pair whose
threshold is not below an error ratio of 1 could never fire and is left out (low objectives,
long windows); an objective that would leave an alert without a pair is refused when it is
configured (:class:`~meshmetrics.config.SLO`).

SLIs are error ratios recorded per window as ``slo:sli_error:ratio_rate<window>`` with
labels ``slo``, ``service`` and ``namespace``, each recorded once per objective (an SLO
window equal to an SLI window is that SLI).  No traffic (a scrape gap, a stopped service)
gives no ratio, hence no alert.  Every label value is written as a PromQL string
(:func:`~meshmetrics.manifests.promql.escape`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.utils import floatToGoString

from ..config import (
    BURN_RATE_ALERTS,
    BURN_RATE_WINDOW_HOURS,
    SLO,
    MeshConfig,
    burn_rate_threshold,
)
from .promql import Queries, escape, number

#: (name, severity, [(long window, short window, share of the budget consumed)]).
ALERT_WINDOWS = BURN_RATE_ALERTS
WINDOW_HOURS = BURN_RATE_WINDOW_HOURS
SLI_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


@dataclass(frozen=True)
class SLOAlert:
    name: str
    severity: str
    expr: str
    slo: SLO


def sli_record(window: str) -> str:
    return f"slo:sli_error:ratio_rate{window}"


def burn_factor(slo: SLO, long_window: str, consumed: float) -> float:
    """How many times faster than the budget allows: ``consumed`` of it in ``long_window``."""
    return consumed * slo.window_hours / WINDOW_HOURS[long_window]


def labels(slo: SLO, config: MeshConfig) -> dict[str, str]:
    return {"slo": slo.name, "service": config.service, "namespace": config.namespace}


def selector(slo: SLO, config: MeshConfig) -> str:
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels(slo, config).items()) + "}"


def sli_expr(slo: SLO, q: Queries, window: str) -> str:
    """Share of bad requests over ``window`` (empty when there were no requests)."""
    matchers = (f'path="{escape(slo.route)}"',) if slo.route is not None else ()
    if slo.kind == "availability":
        total = q.metric("http_request_total")
        server_error = 'status=~"5.."'
        bad = f"sum(rate({total}{q.selector(*matchers, server_error)}[{window}]))"
        every = f"sum(rate({total}{q.selector(*matchers)}[{window}]))"
        return f"({bad} or vector(0)) / {every}"
    name = q.metric("http_request_duration_seconds")
    assert slo.threshold is not None
    bound = floatToGoString(slo.threshold)  # type: ignore[no-untyped-call]
    fast_enough = f'le="{escape(bound)}"'
    count = f"sum(rate({name}_count{q.selector(*matchers)}[{window}]))"
    good = f"sum(rate({name}_bucket{q.selector(*matchers, fast_enough)}[{window}]))"
    return f"({count} - ({good} or vector(0))) / {count}"


def recording_rules(config: MeshConfig, q: Queries) -> list[dict[str, object]]:
    """The SLI of every window the alerts read, the SLO's own window (as the average of the
    5 m ratios, as Sloth does, unless it is one of those windows) and the error budget left
    over it: each series once per objective."""
    raw = Queries(q.job, q.namespace, q.prefix)
    rules: list[dict[str, object]] = []
    for slo in config.slo:
        tags = labels(slo, config)
        for window in SLI_WINDOWS:
            rules.append(
                {"record": sli_record(window), "expr": sli_expr(slo, raw, window), "labels": tags}
            )
        if slo.window not in SLI_WINDOWS:
            short = sli_record("5m") + selector(slo, config)
            period = (
                f"sum_over_time({short}[{slo.window}]) / count_over_time({short}[{slo.window}])"
            )
            rules.append({"record": sli_record(slo.window), "expr": period, "labels": tags})
        budget = number(slo.error_budget)
        remaining = f"1 - {sli_record(slo.window)}{selector(slo, config)} / {budget}"
        rules.append(
            {"record": "slo:error_budget_remaining:ratio", "expr": remaining, "labels": tags}
        )
    return rules


def live_pairs(slo: SLO, pairs: tuple[tuple[str, str, float], ...]) -> list[tuple[str, str, str]]:
    """(long window, short window, threshold as written) of the pairs worth an alert: a
    threshold not below 1 is an error ratio no traffic reaches, and a burn slower than the
    budget allows (a short SLO window) is no incident: the objective is met."""
    found = []
    for long, short, consumed in pairs:
        threshold = number(burn_rate_threshold(slo.error_budget, slo.window_hours, long, consumed))
        if float(threshold) < 1 and burn_factor(slo, long, consumed) >= 1:
            found.append((long, short, threshold))
    return found


def alert_stems(objectives: tuple[SLO, ...]) -> dict[SLO, str]:
    """The part of each objective's alert names that tells it apart: its name's words
    (``Availability``, ``LatencyApiUser``); where two objectives share them, every part of
    the name (``AvailabilityA1``, ``Latency0025``), and a digest of the name if even that is
    shared.  Alert names stay unique in their group, whatever the routes and thresholds."""
    words = {slo: _camel(slo.name, str.isalpha) for slo in objectives}
    shared = [slo for slo in objectives if list(words.values()).count(words[slo]) > 1]
    every = {slo: _camel(slo.name, str.isalnum) for slo in shared}
    stems = dict(words)
    for slo in shared:
        stems[slo] = every[slo]
        if list(every.values()).count(every[slo]) > 1:
            stems[slo] += "X" + hashlib.sha256(slo.name.encode()).hexdigest()[:8]
    return stems


def _camel(name: str, keep: Callable[[str], bool]) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^a-z0-9]+", name) if keep(part))


def alerts(config: MeshConfig, camel: str) -> list[SLOAlert]:
    found = []
    stems = alert_stems(config.slo)
    for slo in config.slo:
        sel = selector(slo, config)
        for name, severity, pairs in ALERT_WINDOWS:
            both = [
                f"({sli_record(long)}{sel} > {threshold} "
                f"and {sli_record(short)}{sel} > {threshold})"
                for long, short, threshold in live_pairs(slo, pairs)
            ]
            if not both:  # a page without pairs is refused by SLO(); a ticket is left out
                continue
            alert = f"{camel}SLO{stems[slo]}Budget{name}"
            found.append(SLOAlert(alert, severity, " or ".join(both), slo))
    return found
