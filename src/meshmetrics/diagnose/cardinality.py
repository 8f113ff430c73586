"""How many series each metric holds, and label values that multiply them: raw paths, ids.

Judged family by family as the page is parsed (nothing of a family is kept after it).
An info metric (``*_info``, OpenMetrics' ``info`` type) holds one series per process whose
labels describe it (a version that is a git SHA, a build id): its cardinality is its series
count, whatever its values look like.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .findings import Finding, Severity

_ID_LIKE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$|^[0-9a-f]{16,}$|^\d{4,}$",
    re.I,
)
_RAW_PATH_SEGMENT = re.compile(r"/(\d+|[0-9a-f]{8,}(-[0-9a-f]{4,})*)(/|$)", re.I)


def is_info(family: Any) -> bool:
    """An info metric: one series per process, labels describing it."""
    return bool(family.type == "info" or family.name.endswith("_info"))


def summary(url: str, counts: dict[str, int]) -> Finding:
    """Series in all, and the largest families."""
    largest = sorted(counts.items(), key=lambda i: -i[1])[:3]
    return Finding(
        Severity.INFO,
        url,
        f"{sum(counts.values())} series in {len(counts)} families; largest: "
        + ", ".join(f"{n} {c}" for n, c in largest),
    )


@dataclass
class Tally:
    """What cardinality needs of a family, gathered part by part as it is parsed: its
    series count and each label's distinct values (not the samples)."""

    name: str
    type: str
    series: int = 0
    values: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, samples: Iterable[Any]) -> None:
        for sample in samples:
            self.series += 1
            for label, value in sample.labels.items():
                if label not in ("le", "quantile"):
                    self.values[label].add(value)


def family_cardinality(
    url: str, family: Tally, max_series: int, max_label_values: int
) -> list[Finding]:
    """The warnings about one family: too many series, labels that multiply them."""
    findings = []
    if family.series > max_series:
        findings.append(
            Finding(
                Severity.WARNING,
                url,
                f"{family.name} has {family.series} series (> {max_series})",
                "find the unbounded label below",
            )
        )
    for label, seen in family.values.items():
        finding = _label(url, family, label, seen, max_label_values)
        if finding is not None:
            findings.append(finding)
    return findings


def _label(
    url: str, family: Any, label: str, seen: set[str], max_label_values: int
) -> Finding | None:
    where = f"{family.name}{{{label}}}"
    if not is_info(family):
        raw_paths = sorted(v for v in seen if v.startswith("/") and _RAW_PATH_SEGMENT.search(v))
        if raw_paths:
            return Finding(
                Severity.WARNING,
                url,
                f"{where} holds raw paths ({raw_paths[0]!r}, {len(raw_paths)} in all): "
                "one series per URL",
                "label by route template (meshmetrics does; prometheus-flask-exporter: "
                "group_by='url_rule')",
            )
        ids = sorted(v for v in seen if _ID_LIKE.match(v))
        if ids:
            return Finding(
                Severity.WARNING,
                url,
                f"{where} holds ids ({ids[0]!r}, {len(ids)} in all)",
                "drop ids from labels",
            )
    if len(seen) > max_label_values:
        return Finding(
            Severity.WARNING,
            url,
            f"{where} has {len(seen)} values (> {max_label_values})",
            "bound that label",
        )
    return None
