"""How many series each metric holds, and label values that multiply them: raw paths, ids."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from .findings import Finding, Severity

_ID_LIKE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$|^[0-9a-f]{16,}$|^\d{4,}$",
    re.I,
)
_RAW_PATH_SEGMENT = re.compile(r"/(\d+|[0-9a-f]{8,}(-[0-9a-f]{4,})*)(/|$)", re.I)


def series_counts(families: Iterable[Any]) -> dict[str, int]:
    """Series (samples) per family."""
    return {f.name: len(f.samples) for f in families}


def cardinality(
    url: str, families: list[Any], max_series: int, max_label_values: int
) -> list[Finding]:
    counts = series_counts(families)
    total = sum(counts.values())
    findings = [
        Finding(
            Severity.INFO,
            url,
            f"{total} series in {len(counts)} families; largest: "
            + ", ".join(f"{n} {c}" for n, c in sorted(counts.items(), key=lambda i: -i[1])[:3]),
        )
    ]
    for family in families:
        if counts[family.name] > max_series:
            findings.append(
                Finding(
                    Severity.WARNING,
                    url,
                    f"{family.name} has {counts[family.name]} series (> {max_series})",
                    "find the unbounded label below",
                )
            )
        values: dict[str, set[str]] = defaultdict(set)
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label not in ("le", "quantile"):
                    values[label].add(value)
        for label, seen in values.items():
            raw_paths = [v for v in seen if v.startswith("/") and _RAW_PATH_SEGMENT.search(v)]
            ids = [v for v in seen if _ID_LIKE.match(v)]
            if raw_paths:
                findings.append(
                    Finding(
                        Severity.WARNING,
                        url,
                        f"{family.name}{{{label}}} holds raw paths ({raw_paths[0]!r}, "
                        f"{len(raw_paths)} in all): one series per URL",
                        "label by route template (meshmetrics does; prometheus-flask-exporter: "
                        "group_by='url_rule')",
                    )
                )
            elif ids:
                findings.append(
                    Finding(
                        Severity.WARNING,
                        url,
                        f"{family.name}{{{label}}} holds ids ({ids[0]!r}, {len(ids)} in all)",
                        "drop ids from labels",
                    )
                )
            elif len(seen) > max_label_values:
                findings.append(
                    Finding(
                        Severity.WARNING,
                        url,
                        f"{family.name}{{{label}}} has {len(seen)} values (> {max_label_values})",
                        "bound that label",
                    )
                )
    return findings
