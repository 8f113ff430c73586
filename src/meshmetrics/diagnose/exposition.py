"""A ``/metrics`` URL: reachable, a format Prometheus accepts, parses (in both formats),
the request metrics there; then its cardinality, lint and tracing health.

One deadline (``timeout``) covers the whole check: both downloads, the parsing (line by
line as the page arrives) and the judgement; a family's samples are judged and dropped
as soon as it is parsed, so memory follows the largest family, not the page.
"""

from __future__ import annotations

from collections.abc import Iterator
from http.client import HTTPException
from typing import Any, TextIO, cast
from urllib.parse import urlsplit

from prometheus_client.openmetrics.parser import text_fd_to_metric_families as parse_om
from prometheus_client.parser import text_fd_to_metric_families as parse_text

from .._http import BodyTooLargeError, IncompleteBodyError
from .cardinality import Tally, family_cardinality, summary
from .findings import Finding, Severity
from .lint import lint
from .scrape import (
    MAX_BODY,
    PART_BREAK,
    USERINFO_REFUSED,
    Deadline,
    Family,
    Page,
    get,
    has_userinfo,
    in_parts,
    lines,
    metrics_url,
    open_page,
    shown,
    url_problem,
)
from .tracing import tracing_health, wanted_samples

_ACCEPTED_TYPES = ("text/plain", "application/openmetrics-text")
_OPENMETRICS = "application/openmetrics-text"
#: Largest family the OpenMetrics pass parses (its parser cannot be handed a family in
#: parts: it refuses a family seen twice): ~100 MB of samples.
OPENMETRICS_FAMILY_LIMIT = 100_000


def _failed(url: str, exc: BaseException, timeout: float) -> Finding:
    """Why the page could not be read whole."""
    if isinstance(exc, TimeoutError):
        return Finding(
            Severity.ERROR,
            url,
            f"no complete answer within {timeout:g} s",
            "the app is stuck or the scrape is too large: Prometheus' scrape_timeout "
            "(10 s by default) fails the same way; raise --timeout to read it whole",
        )
    if isinstance(exc, IncompleteBodyError):
        return Finding(
            Severity.ERROR,
            url,
            str(exc)[:300],
            "the app or a proxy closed the connection mid-answer (a crashed worker, an "
            "idle timeout): Prometheus fails such a scrape (unexpected EOF)",
        )
    if isinstance(exc, BodyTooLargeError):
        return Finding(
            Severity.ERROR,
            url,
            str(exc)[:300],
            "a page this large is a cardinality problem of its own: look for raw paths "
            "or ids in labels (raise the limit with --max-bytes to see them)",
        )
    return Finding(
        Severity.ERROR,
        url,
        f"unreachable ({type(exc).__name__}: {exc})"[:300],
        "is the service running? with minikube: kubectl port-forward svc/NAME PORT",
    )


def check_url(
    target: str,
    *,
    headers: dict[str, str] | None = None,
    max_series: int = 2000,
    max_label_values: int = 100,
    timeout: float = 10.0,
    max_bytes: int = MAX_BODY,
) -> list[Finding]:
    """Everything a ``/metrics`` URL shows, within ``timeout`` seconds in all."""
    problem = url_problem(target)
    if problem is not None:
        return [Finding(Severity.ERROR, shown(target), problem)]
    url = metrics_url(target)
    if has_userinfo(url):
        return [Finding(Severity.ERROR, shown(url), USERINFO_REFUSED)]
    deadline = Deadline(timeout)
    try:
        with open_page(url, headers, deadline, max_bytes) as page:
            findings = _redirected(url, page)
            checks = (max_series, max_label_values)
            return findings + _read_page(url, headers, page, deadline, checks)
    except (OSError, ValueError, HTTPException) as exc:
        return [_failed(url, exc, timeout)]


def _redirected(url: str, page: Page) -> list[Finding]:
    if not page.redirects:
        return []
    dropped = any(r.headers_dropped for r in page.redirects)
    return [
        Finding(
            Severity.WARNING if dropped else Severity.INFO,
            url,
            "redirected: " + "; ".join(r.describe() for r in page.redirects),
            "give the final URL (and point the ServiceMonitor's path there)" if dropped else "",
        )
    ]


def _read_page(
    url: str,
    headers: dict[str, str] | None,
    page: Page,
    deadline: Deadline,
    checks: tuple[int, int],
) -> list[Finding]:
    refused = _refused(url, page, deadline)
    if refused is not None:
        return [refused]
    findings = [Finding(Severity.OK, url, "reachable")]
    media = page.content_type.split(";")[0].strip().lower()
    if media not in _ACCEPTED_TYPES:
        return [*findings, _not_a_format(url, page.content_type)]
    judged: list[Finding] = []
    try:
        families = list(_judged_families(url, page, media, deadline, checks, judged))
    except (TimeoutError, BodyTooLargeError, IncompleteBodyError):
        raise
    except Exception as exc:  # the parsers raise ValueError and friends
        problem = f"exposition does not parse: {exc}"[:300]
        fix = "fix the exporter; Prometheus drops the whole scrape"
        return [*findings, Finding(Severity.ERROR, url, problem, fix)]
    parsed = f"{page.content_type} parses: {len(families)} families"
    findings.append(Finding(Severity.OK, url, parsed))
    if media == "text/plain":
        findings.append(_openmetrics(url, headers, deadline, families))
    findings += _expected_families(url, families)
    findings.append(summary(url, {f.name: f.series for f in families}))
    return findings + judged + lint(url, families) + tracing_health(url, families)


def _refused(url: str, page: Page, deadline: Deadline) -> Finding | None:
    """The finding for an answer that is not a page of metrics (``None`` for a 200)."""
    if page.status == 404:
        return _diagnose_404(url, deadline)
    if page.status in (401, 403):
        return Finding(
            Severity.ERROR,
            url,
            f"{page.status}: the metrics need credentials",
            "pass them with --header 'Authorization: ...'; in the ServiceMonitor use "
            "endpoints[].authorization or basicAuth",
        )
    if page.status != 200:
        return Finding(Severity.ERROR, url, f"answered {page.status}", "see the app's log")
    return None


def _not_a_format(url: str, content_type: str) -> Finding:
    return Finding(
        Severity.ERROR,
        url,
        f"Content-Type {content_type or '(none)'!r} is not a Prometheus format",
        "Prometheus 3 fails such scrapes: answer 'text/plain; version=0.0.4' or "
        "'application/openmetrics-text; version=1.0.0' (prometheus_client does)",
    )


def _openmetrics(
    url: str, headers: dict[str, str] | None, deadline: Deadline, families: list[Family]
) -> Finding:
    largest = max(families, key=lambda f: f.series, default=None)
    if largest is not None and largest.series > OPENMETRICS_FAMILY_LIMIT:
        return _openmetrics_not_checked(url, largest)
    return _check_openmetrics(url, headers, deadline)


def _judged_families(
    url: str,
    page: Page,
    media: str,
    deadline: Deadline,
    checks: tuple[int, int],
    judged: list[Finding],
) -> Iterator[Family]:
    """Each family as it is parsed, its cardinality judged into ``judged``, its samples
    dropped unless a later check reads them.  A text page is parsed in parts of at most
    :data:`~.scrape.PART_SAMPLES` samples, so a family of a million series is never held
    whole."""
    page_lines = lines(page.answer.chunks(), deadline)
    if media == _OPENMETRICS:
        parts = parse_om(page_lines)  # type: ignore[no-untyped-call]
    else:  # the parser only iterates over its argument
        parts = parse_text(cast("TextIO", in_parts(page_lines)))
    current: tuple[Any, Tally, list[Any]] | None = None
    for part in parts:
        if part.name == PART_BREAK:
            continue
        if current is None or current[0].name != part.name:
            if current is not None:
                yield _judge(url, current, checks, judged)
            current = (part, Tally(part.name, part.type), [])
        current[1].add(part.samples)
        if wanted_samples(part.name):
            current[2].extend(part.samples)
    if current is not None:
        yield _judge(url, current, checks, judged)


def _judge(
    url: str, current: tuple[Any, Tally, list[Any]], checks: tuple[int, int], judged: list[Finding]
) -> Family:
    first, tally, kept = current
    judged += family_cardinality(url, tally, *checks)
    return Family(first.name, first.type, first.documentation, tally.series, tuple(kept))


def _openmetrics_not_checked(url: str, largest: Family) -> Finding:
    return Finding(
        Severity.INFO,
        url,
        f"OpenMetrics answer not parsed: {largest.name} has {largest.series} series, and "
        "prometheus_client's OpenMetrics parser holds a family whole (the text format was "
        f"checked in parts); limit {OPENMETRICS_FAMILY_LIMIT}",
    )


def _check_openmetrics(url: str, headers: dict[str, str] | None, deadline: Deadline) -> Finding:
    """What Prometheus negotiates first (and needs for exemplars): OpenMetrics."""
    accept = {**(headers or {}), "Accept": "application/openmetrics-text; version=1.0.0"}
    try:
        with open_page(url, accept, deadline) as page:
            media = page.content_type.split(";")[0].strip().lower()
            if media != _OPENMETRICS:
                return Finding(
                    Severity.INFO, url, "no OpenMetrics offered (text format only): no exemplars"
                )
            count = 0
            for _ in parse_om(lines(page.answer.chunks(), deadline)):  # type: ignore[no-untyped-call]
                count += 1
    except Exception as exc:
        return Finding(
            Severity.ERROR,
            url,
            f"the OpenMetrics answer does not parse: {exc}"[:300],
            "Prometheus asks for OpenMetrics first: fix the exporter",
        )
    return Finding(Severity.OK, url, f"OpenMetrics parses too: {count} families")


def _diagnose_404(url: str, deadline: Deadline) -> Finding:
    parts = urlsplit(url)
    root = f"{parts.scheme}://{parts.netloc}/"
    try:
        get(root, timeout=deadline.remaining(root))
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
