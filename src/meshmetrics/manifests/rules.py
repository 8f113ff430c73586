"""The PrometheusRule: the ``release`` label too (or the operator never loads it), the
recording rules, the alerts of one service and the burn-rate alerts of its SLOs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..config import decimal_text
from . import slo
from .metadata import (
    API_MONITORING,
    monitor_namespace,
    object_labels,
    object_metadata,
    scrape_port,
)
from .model import ServiceModel
from .options import ManifestOptions
from .promql import RECORD_WINDOW, escape


@dataclass(frozen=True)
class AlertRule:
    """An alert whose expression is ``value op threshold`` (kept apart for tests)."""

    name: str
    value: str
    op: str
    threshold: float | None
    duration: str
    severity: str
    summary: str
    description: str

    @property
    def expr(self) -> str:
        if self.threshold is None:
            return self.value
        return f"{self.value} {self.op} {self.threshold:g}"


def alert_rules(model: ServiceModel, options: ManifestOptions) -> list[AlertRule]:
    """The alerts of one service, evaluated over 5-minute windows."""
    c = model.config
    q = type(model.queries)(
        model.queries.job,
        model.queries.namespace,
        model.queries.prefix,
        RECORD_WINDOW,
        recorded=model.recording_rules,
    )
    camel = _camel(c.service)
    where = f"{c.service} in namespace {c.namespace}"
    return [
        AlertRule(
            f"{camel}HighErrorRatio",
            q.error_ratio(by=""),
            ">",
            options.error_ratio,
            "5m",
            "warning",
            f"{c.service}: more than {options.error_ratio:.0%} of requests fail with 5xx",
            f"{{{{ $value | humanizePercentage }}}} of the requests to {where} answered 5xx "
            "over the last 5 minutes.",
        ),
        AlertRule(
            f"{camel}HighLatencyP95",
            q.latency_quantile(0.95, by=""),
            ">",
            options.latency_p95,
            "10m",
            "warning",
            f"{c.service}: p95 latency above {options.latency_p95:g}s",
            f"p95 latency of {where} is {{{{ $value | humanizeDuration }}}}.",
        ),
        AlertRule(
            f"{camel}TargetDown",
            q.up(),
            "==",
            0,
            "5m",
            "critical",
            f"{c.service}: a metrics target is down",
            f"Prometheus cannot scrape {{{{ $labels.pod }}}} of {where}.",
        ),
        AlertRule(
            f"{camel}MetricsAbsent",
            f"absent({q.up()})",
            "",
            None,
            "10m",
            "warning",
            f"{c.service}: Prometheus has no target",
            f"No target of {where} is known to Prometheus: check the Service's app label, "
            f'its port name ("{scrape_port(c)}") and the monitor\'s namespace selector. (A wrong '
            "release label hides this rule as well: meshmetrics check --prometheus URL "
            "finds that.)",
        ),
    ]


def prometheus_rule(model: ServiceModel, options: ManifestOptions) -> dict[str, Any]:
    c = model.config
    recording = (
        [{"record": r.record, "expr": r.expr} for r in model.queries.recording_rules()]
        if model.recording_rules
        else []
    )
    # one group: its rules run in order at one evaluation time, so the alerts read the
    # series recorded a moment before
    rules: list[dict[str, Any]] = recording + [
        {
            "alert": rule.name,
            "expr": rule.expr,
            "for": rule.duration,
            "labels": {"severity": rule.severity, "service": c.service, "namespace": c.namespace},
            "annotations": {"summary": rule.summary, "description": rule.description},
        }
        for rule in alert_rules(model, options)
    ]
    groups: list[dict[str, Any]] = [{"name": f"{c.namespace}.{c.service}.rules", "rules": rules}]
    if c.slo:
        groups.append({"name": f"{c.namespace}.{c.service}.slo", "rules": slo_rules(model)})
    return {
        "apiVersion": API_MONITORING,
        "kind": "PrometheusRule",
        "metadata": object_metadata(
            f"{c.service}-rules",
            monitor_namespace(model, options),
            object_labels(model, release=True),
        ),
        "spec": {"groups": groups},
    }


def slo_rules(model: ServiceModel) -> list[dict[str, Any]]:
    """SLI recording rules first, then the burn-rate alerts reading them (one group)."""
    c = model.config
    rules: list[dict[str, Any]] = list(slo.recording_rules(c, model.queries))
    for alert in slo.alerts(c, _camel(c.service)):
        objective = alert.slo
        what = (
            "of requests answered without 5xx"
            if objective.kind == "availability"
            else f"of requests answered within {objective.threshold:g}s"
        )
        # a template literal: the route's text as is, whatever '{{' or quotes it holds
        where = f' on {{{{ "{escape(objective.route)}" }}}}' if objective.route else ""
        speed = "fast: page" if alert.severity == "critical" else "steadily: ticket"
        rules.append(
            {
                "alert": alert.name,
                "expr": alert.expr,
                "labels": {"severity": alert.severity, **slo.labels(objective, c)},
                "annotations": {
                    "summary": f"{c.service}: the {objective.name} error budget burns {speed}",
                    "description": (
                        f"SLO {decimal_text(objective.objective)}% {what}{where} "
                        f"over {objective.window}: "
                        "{{ $value | humanizePercentage }} of requests are bad, which spends the "
                        "error budget faster than it allows."
                    ),
                },
            }
        )
    return rules


def _camel(service: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[-.]", service))
