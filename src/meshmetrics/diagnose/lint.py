"""The rules of ``promtool check metrics`` (client_golang's promlint) over parsed families."""

from __future__ import annotations

import re
from typing import Any

from .findings import Finding, Severity

_CAMEL = re.compile(r"[a-z][A-Z]")
_ABBREVIATED_UNITS = re.compile(r"_(ms|us|ns|sec|secs|kb|mb|gb|b)(_|$)")


def lint(url: str, families: list[Any]) -> list[Finding]:
    """The rules of ``promtool check metrics`` (client_golang's promlint)."""
    problems: list[str] = []
    for f in families:
        exposed = f"{f.name}_total" if f.type == "counter" else f.name
        if not f.documentation:
            problems.append(f"{exposed}: no help text")
        if _CAMEL.search(f.name):
            problems.append(
                f"{exposed}: metric names should be written in 'snake_case' not 'camelCase'"
            )
        if f.type != "counter" and f.name.endswith("_total"):
            problems.append(f'{exposed}: non-counter metrics should not have "_total" suffix')
        if f.type not in ("histogram", "summary", "gaugehistogram") and f.name.endswith(
            ("_bucket", "_count", "_sum")
        ):
            problems.append(
                f"{exposed}: non-histogram and non-summary metrics should not have "
                '"_bucket", "_count" or "_sum" suffixes'
            )
        if _ABBREVIATED_UNITS.search(f.name):
            problems.append(f"{exposed}: metric names should not contain abbreviated units")
    if not problems:
        return [Finding(Severity.OK, url, "lint clean (promtool check metrics rules)")]
    return [Finding(Severity.WARNING, url, p) for p in problems]
