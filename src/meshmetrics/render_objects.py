"""The sample lines of prometheus_client's own Counter, Gauge, Histogram and Summary,
written straight from their children.

``collect()`` builds a ``Sample`` and two label dicts per sample line, and the
exposition then sorts, escapes and joins the labels of every line: a histogram child
of 14 buckets does that 17 times.  Here a child's labels are escaped and joined once,
each bucket line is its bounds' ``le`` pair put in place, and nothing outlives the
scrape (no cache: memory after a scrape is what it was before).  The lines are
prometheus_client's, byte for byte (``tests/test_render.py``); the family header is
:mod:`meshmetrics.render`'s.
"""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client.openmetrics.exposition import (
    UNDERSCORES,
    escape_label_name,
    escape_metric_name,
)

from ._compat import (
    bucket_counts,
    bucket_exemplars,
    children,
    count_of,
    counter_exemplar,
    created_of,
    created_samples,
    family_name,
    label_names,
    openmetrics_sample_name,
    sum_of,
    upper_bounds,
    value_of,
)


def go_float(value: float) -> str:
    """``prometheus_client.utils.floatToGoString``: Go's formatting of a float (``+Inf``,
    ``NaN``, an exponent from 1e+07 up), with one ``repr`` and no other call."""
    number = float(value)
    text = repr(number)
    last = text[-1]
    if last == "f":
        return "+Inf" if number > 0 else "-Inf"
    if last == "n":
        return "NaN"
    dot = text.find(".")
    if number > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def escape_value(value: str) -> str:
    """A label value as both formats escape it (backslash, newline, double quote)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


#: Escaped names are memoized, a bounded number: metric and label names are few and fixed.
NAMES_MEMOIZED = 1024


@functools.lru_cache(maxsize=NAMES_MEMOIZED)
def label_name(name: str) -> str:
    """A label name as both formats write it (``underscores`` escaping)."""
    return escape_label_name(name, UNDERSCORES)


@functools.lru_cache(maxsize=NAMES_MEMOIZED)
def text_sample_name(name: str) -> str:
    """A sample name as the text format writes it."""
    return escape_metric_name(name, UNDERSCORES)


@functools.lru_cache(maxsize=NAMES_MEMOIZED)
def om_sample_name(name: str) -> str:
    """A sample name as OpenMetrics writes it."""
    return openmetrics_sample_name(name)


def exemplar_text(exemplar: Any) -> str:
    """An exemplar's OpenMetrics suffix, as ``_compose_exemplar_string`` writes it."""
    labels = ",".join(f'{k}="{escape_value(v)}"' for k, v in sorted(exemplar.labels.items()))
    if exemplar.timestamp is not None:
        return f" # {{{labels}}} {go_float(exemplar.value)} {exemplar.timestamp}"
    return f" # {{{labels}}} {go_float(exemplar.value)}"


class _Labels:
    """A family's label names, escaped and in the order the formats sort them."""

    def __init__(self, names: tuple[str, ...], split_at: str | None = None) -> None:
        self.order = sorted(range(len(names)), key=names.__getitem__)
        self.escaped = [label_name(names[i]) for i in self.order]
        self.cut = sum(1 for name in names if split_at is not None and name < split_at)

    def pairs(self, values: tuple[str, ...]) -> list[str]:
        if not values:
            return []
        return [
            f'{name}="{escape_value(values[i])}"'
            for name, i in zip(self.escaped, self.order, strict=True)
        ]


def _braced(pairs: list[str]) -> str:
    return "{" + ",".join(pairs) + "}" if pairs else ""


def sample_lines(
    family: Any, kind: str, *, om: bool, created: bool, out: list[str], late: list[str]
) -> None:
    """Append the sample lines of ``family`` (a ``kind`` of :func:`~meshmetrics._compat.
    direct_kind`) to ``out``; its ``_created`` lines to ``late`` (the text format writes
    them after the family, OpenMetrics after each child: pass ``out`` twice)."""
    name = family_name(family)
    escape = om_sample_name if om else text_sample_name
    created_name = escape(name + "_created") if created and created_samples() else None
    if kind == "histogram":
        _histogram(family, name, escape, om, created_name, out, late)
        return
    labels = _Labels(label_names(family))
    suffixes = {"counter": "_total", "gauge": "", "summary": "_count"}
    first = escape(name + suffixes[kind])
    summary_sum = escape(name + "_sum")
    for values, child in children(family):
        braced = _braced(labels.pairs(values))
        if kind == "summary":
            out.append(f"{first}{braced} {go_float(count_of(child))}\n")
            out.append(f"{summary_sum}{braced} {go_float(sum_of(child))}\n")
        elif kind == "counter" and om and (exemplar := counter_exemplar(child)):
            out.append(f"{first}{braced} {go_float(value_of(child))}{exemplar_text(exemplar)}\n")
        else:
            out.append(f"{first}{braced} {go_float(value_of(child))}\n")
        if created_name is not None and kind != "gauge":
            late.append(f"{created_name}{braced} {go_float(created_of(child))}\n")


def _histogram(
    family: Any,
    name: str,
    escape: Any,
    om: bool,
    created_name: str | None,
    out: list[str],
    late: list[str],
) -> None:
    labels = _Labels(label_names(family), split_at="le")
    bounds = upper_bounds(family)
    les = [go_float(bound) for bound in bounds]
    with_sum = bounds[0] >= 0
    bucket, count, total = escape(name + "_bucket"), escape(name + "_count"), escape(name + "_sum")
    for values, child in children(family):
        pairs = labels.pairs(values)
        before, after = ",".join(pairs[: labels.cut]), ",".join(pairs[labels.cut :])
        head = f'{bucket}{{{before}{"," if before else ""}le="'
        tail = f'"{"," if after else ""}{after}}} '
        counts = bucket_counts(child)
        exemplars = bucket_exemplars(child) if om else None
        acc = 0.0
        for i, le in enumerate(les):
            acc += counts[i]
            if exemplars is not None and exemplars[i]:
                out.append(f"{head}{le}{tail}{go_float(acc)}{exemplar_text(exemplars[i])}\n")
            else:
                out.append(f"{head}{le}{tail}{go_float(acc)}\n")
        braced = _braced(pairs)
        out.append(f"{count}{braced} {go_float(acc)}\n")
        if with_sum:
            out.append(f"{total}{braced} {go_float(sum_of(child))}\n")
        if created_name is not None:
            late.append(f"{created_name}{braced} {go_float(created_of(child))}\n")
