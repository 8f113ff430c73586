"""``meshmetrics check``: why Prometheus does not see a service."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._errors import fail, needs_extra

if TYPE_CHECKING:
    from ..diagnose.findings import Finding


@click.command(
    "check",
    epilog="Exit status: 0 no error found; 1 errors found; 2 bad usage; 3 an input could not "
    "be checked (a file that is not YAML, an unusable Prometheus API answer) and no error "
    "was found elsewhere.",
)
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
@click.option("--release", help="The Helm release Prometheus selects monitors by.")
@click.option(
    "--prometheus",
    metavar="URL",
    help="A running Prometheus (e.g. port-forwarded): check that it scrapes the monitors "
    "and loaded the rules of the manifest files given.",
)
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="Header for the metrics request (e.g. Authorization).",
)
@click.option(
    "--max-series",
    type=click.IntRange(1),
    default=2000,
    show_default=True,
    help="Warn above this many series in one metric.",
)
@click.option(
    "--max-label-values",
    type=click.IntRange(1),
    default=100,
    show_default=True,
    help="Warn above this many values of one label.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 600),
    default=10.0,
    show_default=True,
    help="Seconds the check of a URL may take in all: its answers and their parsing (a "
    "trickling or huge page is cut there, as Prometheus' scrape_timeout cuts it).",
)
@click.option(
    "--max-bytes",
    type=click.IntRange(1024),
    default=64 * 1024 * 1024,
    show_default=True,
    help="Largest /metrics body read (a larger one is refused).",
)
def check_command(
    targets: tuple[str, ...],
    release: str | None,
    prometheus: str | None,
    headers: tuple[str, ...],
    max_series: int,
    max_label_values: int,
    timeout: float,
    max_bytes: int,
) -> None:
    """Find why Prometheus does not see a service: TARGET is a /metrics URL, a service base
    URL, or manifest files (ServiceMonitor/PodMonitor with the Service/Deployment YAML, the
    dashboard and its PrometheusRule), which are also validated strictly against the
    prometheus-operator CRDs and Grafana's dashboard schema that meshmetrics ships."""
    from ..diagnose.exposition import check_url
    from ..diagnose.findings import Severity, exit_status
    from ..diagnose.scrape import USERINFO_REFUSED, has_userinfo, shown, url_problem

    parsed_headers = _headers(headers)
    urls = [t for t in targets if t.startswith(("http://", "https://"))]
    files = [Path(t) for t in targets if t not in urls]
    for url in urls:
        problem = url_problem(url)
        if problem is not None:
            fail(f"{shown(url)}: {problem}")
        if has_userinfo(url):
            fail(f"{shown(url)}: {USERINFO_REFUSED}")
    for path in files:
        if not path.is_file():
            fail(f"{path} is neither an http(s) URL nor a file")
    if prometheus is not None and not files:
        fail("--prometheus checks manifest files: give the files Prometheus should have loaded")
    if prometheus is not None and has_userinfo(prometheus):
        fail(f"--prometheus {shown(prometheus)}: {USERINFO_REFUSED}")
    findings = []
    for url in urls:
        findings += check_url(
            url,
            headers=parsed_headers,
            max_series=max_series,
            max_label_values=max_label_values,
            timeout=timeout,
            max_bytes=max_bytes,
        )
    if files:
        findings += _check_files(files, release, prometheus, timeout)
    for finding in findings:
        click.echo(finding.line())
    errors = sum(f.severity is Severity.ERROR for f in findings)
    warnings = sum(f.severity is Severity.WARNING for f in findings)
    unchecked = sum(f.severity is Severity.UNKNOWN for f in findings)
    summary = f"{errors} error(s), {warnings} warning(s)"
    click.echo(summary + (f", {unchecked} input(s) not checked" if unchecked else ""))
    sys.exit(exit_status(findings))


def _headers(headers: tuple[str, ...]) -> dict[str, str]:
    """``Name: value`` pairs; a refusal names the header by its name or position, never
    shows its value (a credential, most often)."""
    parsed = {}
    for number, header in enumerate(headers, 1):
        key, sep, value = header.partition(":")
        name = key.strip()
        if not sep or not name:
            fail(f"--header #{number} must be 'Name: value' (its text not shown)")
        shown = repr(name) if name.isascii() and name.isprintable() else f"#{number}"
        if not (key + value).isascii() or not (key + value).isprintable():
            fail(
                f"--header {shown}: HTTP header names and values are printable ASCII "
                "(the value not shown)"
            )
        parsed[name] = value.strip()
    return parsed


def _check_files(
    files: list[Path], release: str | None, prometheus: str | None, timeout: float
) -> list[Finding]:
    """Each file validated strictly, then the objects of all of them checked together."""
    try:
        from ..manifests.validate import validate_text
    except ImportError as exc:
        needs_extra("check FILE", exc)
    from ..diagnose.dashboards import check_dashboards
    from ..diagnose.findings import Finding, Severity
    from ..diagnose.monitors import check_manifests
    from ..diagnose.objects import UnreadableInputError, parse_manifests
    from ..diagnose.prometheus import check_live

    findings: list[Finding] = []
    objects = []
    readable = []
    for path in files:
        try:
            objects += parse_manifests(path)
        except UnreadableInputError as exc:
            findings.append(Finding(Severity.UNKNOWN, str(path), str(exc)))
            continue
        readable.append(path)
        try:
            problems = validate_text(path.read_text(encoding="utf-8"))
        except RecursionError:
            findings.append(Finding(Severity.UNKNOWN, str(path), "nested too deeply to validate"))
            continue
        findings += [Finding(Severity.ERROR, str(path), problem) for problem in problems]
    if len(readable) > 1:  # each file's own cross-checks ran with it; now all together
        findings += _cross_file_errors(objects, findings)
    if readable:
        findings += check_manifests(objects, release)
        findings += check_dashboards(objects)
        if prometheus is not None:
            findings += check_live(prometheus, objects, timeout)
    return findings


def _cross_file_errors(objects: list[Any], found: list[Finding]) -> list[Finding]:
    """Problems between objects of different files (an HPA in one, its Deployment in
    another), each reported once."""
    from ..diagnose.findings import Finding, Severity
    from ..manifests.cluster_schemas import cross_errors

    seen = {f.message for f in found}
    return [
        Finding(Severity.ERROR, "manifests", problem)
        for problem in cross_errors(objects)
        if not any(problem in message for message in seen)
    ]
