"""Service level objectives: SLI recording rules, multiwindow multi-burn-rate alerts.

The alerts are the Google SRE workbook's (chapter "Alerting on SLOs"): a *page* when the
error budget burns fast over a long and a short window together (2 % of the budget in 1 h,
checked against 5 m; 5 % in 6 h, against 30 m), a *ticket* for a slow burn (10 % in 1 d,
against 2 h; 10 % in 3 d, against 6 h).  The burn-rate factors follow from the SLO's
window: for 30 days they are 14.4, 6, 3 and 1.  The short window makes an alert stop soon
after the burn stops; requiring both windows keeps one blip from paging.

SLIs are error ratios recorded per window as ``slo:sli_error:ratio_rate<window>`` with
labels ``slo``, ``service`` and ``namespace``.  No traffic (a scrape gap, a stopped
service) gives no ratio, hence no alert.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.utils import floatToGoString

from ..config import SLO, MeshConfig
from .promql import Queries

#: (name, severity, [(long window, short window, share of the budget consumed)]).
ALERT_WINDOWS: tuple[tuple[str, str, tuple[tuple[str, str, float], ...]], ...] = (
    ("Page", "critical", (("1h", "5m", 0.02), ("6h", "30m", 0.05))),
    ("Ticket", "warning", (("1d", "2h", 0.10), ("3d", "6h", 0.10))),
)
WINDOW_HOURS = {"5m": 5 / 60, "30m": 0.5, "1h": 1, "2h": 2, "6h": 6, "1d": 24, "3d": 72}
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
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels(slo, config).items()) + "}"


def sli_expr(slo: SLO, q: Queries, window: str) -> str:
    """Share of bad requests over ``window`` (empty when there were no requests)."""
    matchers = (f'path="{slo.route}"',) if slo.route is not None else ()
    if slo.kind == "availability":
        total = q.metric("http_request_total")
        server_error = 'status=~"5.."'
        bad = f"sum(rate({total}{q.selector(*matchers, server_error)}[{window}]))"
        every = f"sum(rate({total}{q.selector(*matchers)}[{window}]))"
        return f"({bad} or vector(0)) / {every}"
    name = q.metric("http_request_duration_seconds")
    assert slo.threshold is not None
    bound = floatToGoString(slo.threshold)  # type: ignore[no-untyped-call]
    fast_enough = f'le="{bound}"'
    count = f"sum(rate({name}_count{q.selector(*matchers)}[{window}]))"
    good = f"sum(rate({name}_bucket{q.selector(*matchers, fast_enough)}[{window}]))"
    return f"({count} - ({good} or vector(0))) / {count}"


def recording_rules(config: MeshConfig, q: Queries) -> list[dict[str, object]]:
    """The SLI of every window the alerts read, the SLO's own window (as the average of the
    5 m ratios, as Sloth does) and the error budget left over it."""
    raw = Queries(q.job, q.namespace, q.prefix)
    rules: list[dict[str, object]] = []
    for slo in config.slo:
        tags = labels(slo, config)
        for window in SLI_WINDOWS:
            rules.append(
                {"record": sli_record(window), "expr": sli_expr(slo, raw, window), "labels": tags}
            )
        short = sli_record("5m") + selector(slo, config)
        period = f"sum_over_time({short}[{slo.window}]) / count_over_time({short}[{slo.window}])"
        rules.append({"record": sli_record(slo.window), "expr": period, "labels": tags})
        remaining = f"1 - {sli_record(slo.window)}{selector(slo, config)} / {slo.error_budget:g}"
        rules.append(
            {"record": "slo:error_budget_remaining:ratio", "expr": remaining, "labels": tags}
        )
    return rules


def alerts(config: MeshConfig, camel: str) -> list[SLOAlert]:
    found = []
    for slo in config.slo:
        sel = selector(slo, config)
        budget = slo.error_budget
        for name, severity, pairs in ALERT_WINDOWS:
            both = [
                f"({sli_record(long)}{sel} > {burn_factor(slo, long, consumed) * budget:g} "
                f"and {sli_record(short)}{sel} > {burn_factor(slo, long, consumed) * budget:g})"
                for long, short, consumed in pairs
            ]
            kind = "".join(part.capitalize() for part in slo.name.split("-") if part.isalpha())
            alert = f"{camel}SLO{kind}Budget{name}"
            found.append(SLOAlert(alert, severity, " or ".join(both), slo))
    return found
