"""Tracing health from meshmetrics' span counters on a ``/metrics`` page."""

from __future__ import annotations

from typing import Any

from ..names import SPAN_COUNTERS_PREFIX, SPANS_DROPPED, SPANS_EXPORTED, SPANS_SENT
from .findings import Finding, Severity


def wanted_samples(family: str) -> bool:
    """Does :func:`tracing_health` read this family's samples?"""
    return family.startswith(SPAN_COUNTERS_PREFIX) or family.endswith("http_request")


def _sum(families: list[Any], sample: str, **labels: str) -> float | None:
    values = [
        s.value
        for f in families
        for s in f.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(values) if values else None


def tracing_health(url: str, families: list[Any]) -> list[Finding]:
    """What meshmetrics' span counters say: spans lost, export failures, or no span at all
    while requests are served (the usual cause: a backend host or port nobody listens on)."""
    exported = _sum(families, SPANS_EXPORTED)
    sent = _sum(families, SPANS_SENT)
    if exported is None and sent is None:
        return []  # tracing off, or OpenTelemetry's SDK exports (its own metrics)
    findings = []
    requests_served = sum(
        s.value
        for f in families
        if f.name.endswith("http_request")
        for s in f.samples
        if s.name.endswith("http_request_total")
    )
    drops = {
        reason: _sum(families, SPANS_DROPPED, reason=reason) or 0.0
        for reason in ("export_error", "queue_full", "too_large", "rejected")
    }
    fix = {
        "export_error": "the backend refused or is unreachable: check trace_endpoint (the "
        "app's log names the first error); with Istio, install the Jaeger add-on "
        "(samples/addons/jaeger.yaml) and use zipkin.istio-system:9411 or OTLP on 4318",
        "queue_full": "the backend cannot keep up: sample less (sampler=probabilistic:0.1) "
        "or raise span_queue_size",
        "too_large": "spans above the UDP datagram limit: use tracing=otlp or zipkin",
        "rejected": "the collector accepted the batch but rejected these spans (OTLP "
        "partial_success): the app's log names the collector's reason once",
    }
    for reason, count in drops.items():
        if count:
            findings.append(
                Finding(
                    Severity.WARNING, url, f"{count:,.0f} spans dropped ({reason})", fix[reason]
                )
            )
    if sent:
        findings.append(
            Finding(
                Severity.INFO,
                url,
                f"{sent:,.0f} spans sent over UDP to a Jaeger agent: UDP confirms nothing, "
                "these may have reached nobody",
                "prefer tracing=otlp or zipkin, whose deliveries are confirmed",
            )
        )
    if not exported and not sent and requests_served and not any(drops.values()):
        findings.append(
            Finding(
                Severity.INFO,
                url,
                f"no span exported yet for {requests_served:,.0f} requests",
                "spans leave in batches every 0.5 s; if this stays, check the sampler "
                "(const:0? the mesh's PILOT_TRACE_SAMPLING decides for requests through Envoy)",
            )
        )
    if exported and not any(drops.values()):
        findings.append(Finding(Severity.OK, url, f"{exported:,.0f} spans delivered, none dropped"))
    return findings
