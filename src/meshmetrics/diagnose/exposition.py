"""A ``/metrics`` URL: reachable, a format Prometheus accepts, parses (in both formats),
the request metrics there; then its cardinality, lint and tracing health."""

from __future__ import annotations

from http.client import HTTPException
from typing import Any
from urllib.parse import urlsplit

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from .._http import BodyTooLargeError
from .cardinality import cardinality
from .findings import Finding, Severity
from .lint import lint
from .scrape import MAX_BODY, exposition_text, get, metrics_url
from .tracing import tracing_health

_ACCEPTED_TYPES = ("text/plain", "application/openmetrics-text")


def check_url(
    target: str,
    *,
    headers: dict[str, str] | None = None,
    max_series: int = 2000,
    max_label_values: int = 100,
    timeout: float = 10.0,
    max_bytes: int = MAX_BODY,
) -> list[Finding]:
    url = metrics_url(target)
    try:
        response = get(url, headers=headers, timeout=timeout, max_bytes=max_bytes)
    except TimeoutError:
        return [
            Finding(
                Severity.ERROR,
                url,
                f"no complete answer within {timeout:g} s",
                "the app is stuck or the scrape is too large: Prometheus' scrape_timeout "
                "(10 s by default) fails the same way",
            )
        ]
    except BodyTooLargeError as exc:
        return [
            Finding(
                Severity.ERROR,
                url,
                str(exc)[:300],
                "a page this large is a cardinality problem of its own: look for raw paths "
                "or ids in labels (raise the limit with --max-bytes to see them)",
            )
        ]
    except (OSError, ValueError, HTTPException) as exc:
        return [
            Finding(
                Severity.ERROR,
                url,
                f"unreachable ({type(exc).__name__}: {exc})"[:300],
                "is the service running? with minikube: kubectl port-forward svc/NAME PORT",
            )
        ]
    if response.status == 404:
        return [_diagnose_404(url, headers, timeout)]
    if response.status in (401, 403):
        return [
            Finding(
                Severity.ERROR,
                url,
                f"{response.status}: the metrics need credentials",
                "pass them with --header 'Authorization: ...'; in the ServiceMonitor use "
                "endpoints[].authorization or basicAuth",
            )
        ]
    if response.status != 200:
        return [Finding(Severity.ERROR, url, f"answered {response.status}", "see the app's log")]
    findings = [Finding(Severity.OK, url, "reachable")]
    content_type = response.content_type
    media = content_type.split(";")[0].strip().lower()
    if media not in _ACCEPTED_TYPES:
        findings.append(
            Finding(
                Severity.ERROR,
                url,
                f"Content-Type {content_type or '(none)'!r} is not a Prometheus format",
                "Prometheus 3 fails such scrapes: answer 'text/plain; version=0.0.4' or "
                "'application/openmetrics-text; version=1.0.0' (prometheus_client does)",
            )
        )
        return findings
    try:
        parser = parse_om if media == "application/openmetrics-text" else parse_text
        families = list(parser(exposition_text(response)))
    except Exception as exc:  # the parsers raise ValueError and friends
        findings.append(
            Finding(
                Severity.ERROR,
                url,
                f"exposition does not parse: {exc}"[:300],
                "fix the exporter; Prometheus drops the whole scrape",
            )
        )
        return findings
    findings.append(Finding(Severity.OK, url, f"{content_type} parses: {len(families)} families"))
    if media == "text/plain":
        findings.append(_check_openmetrics(url, headers, timeout))
    findings += _expected_families(url, families)
    findings += cardinality(url, families, max_series, max_label_values)
    findings += lint(url, families)
    findings += tracing_health(url, families)
    return findings


def _check_openmetrics(url: str, headers: dict[str, str] | None, timeout: float) -> Finding:
    """What Prometheus negotiates first (and needs for exemplars): OpenMetrics."""
    accept = {**(headers or {}), "Accept": "application/openmetrics-text; version=1.0.0"}
    try:
        response = get(url, headers=accept, timeout=timeout)
        media = response.content_type.split(";")[0].strip().lower()
        if media != "application/openmetrics-text":
            return Finding(
                Severity.INFO, url, "no OpenMetrics offered (text format only): no exemplars"
            )
        families = list(parse_om(exposition_text(response)))  # type: ignore[no-untyped-call]
    except Exception as exc:
        return Finding(
            Severity.ERROR,
            url,
            f"the OpenMetrics answer does not parse: {exc}"[:300],
            "Prometheus asks for OpenMetrics first: fix the exporter",
        )
    return Finding(Severity.OK, url, f"OpenMetrics parses too: {len(families)} families")


def _diagnose_404(url: str, headers: dict[str, str] | None, timeout: float) -> Finding:
    parts = urlsplit(url)
    root = f"{parts.scheme}://{parts.netloc}/"
    try:
        get(root, headers=headers, timeout=timeout)
    except (OSError, ValueError, HTTPException):
        return Finding(Severity.ERROR, url, "404", "check the metrics path")
    return Finding(
        Severity.ERROR,
        url,
        "404 while the app answers: the metrics endpoint is not registered",
        "typical of prometheus-flask-exporter under app.run(debug=True)/flask run --debug: "
        "the reloader's serving process drops /metrics unless DEBUG_METRICS=1; "
        "meshmetrics.instrument(app) keeps it on. Otherwise check metrics_path",
    )


def _expected_families(url: str, families: list[Any]) -> list[Finding]:
    names = {f.name for f in families}
    prefixes = {
        n[: -len("http_request_duration_seconds")]
        for n in names
        if n.endswith("http_request_duration_seconds")
    }
    if not prefixes:
        return [
            Finding(
                Severity.WARNING,
                url,
                "no *_http_request_duration_seconds family: not a "
                "meshmetrics/prometheus-flask-exporter app, or no request measured yet",
                "instrument the app with meshmetrics.instrument(app)",
            )
        ]
    prefix = sorted(prefixes)[0]
    missing = [
        f"{prefix}{n}"
        for n in ("http_request", "http_request_exceptions")
        if f"{prefix}{n}" not in names
    ]
    if missing:
        return [
            Finding(
                Severity.WARNING, url, f"missing {', '.join(missing)}: dashboards will show gaps"
            )
        ]
    return [Finding(Severity.OK, url, f"request metrics present (prefix {prefix!r})")]
