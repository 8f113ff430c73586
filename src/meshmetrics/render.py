"""The exposition formats, as prometheus_client writes them, without its per-line work.

:func:`text` writes the same bytes as ``prometheus_client.generate_latest`` (text 0.0.4)
and :func:`openmetrics` as ``prometheus_client.openmetrics.exposition.generate_latest``
(OpenMetrics 1.0.0), with the default ``underscores`` escaping.  The families they are
given are ``Metric`` objects (a custom collector's, the process collector's, the
multiprocess merge's), written sample by sample as prometheus_client does, or
prometheus_client's own Counter, Gauge, Histogram and Summary objects, written from
their children by :mod:`meshmetrics.render_objects` (labels formatted once per label set,
not once per line; no ``Sample`` built).  Nothing is cached between scrapes but escaped
metric and label names (a bounded memo): a scrape leaves memory as it found it.
Anything else (another escaping scheme or version, native histograms) is rendered by
prometheus_client itself.  ``tests/test_render.py`` compares both outputs byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import exposition as text_format
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as om_format

from ._compat import compose_exemplar, direct_kind, documentation, family_name, family_type
from ._compat import family_unit as unit_of
from .render_objects import (
    escape_value,
    go_float,
    label_name,
    om_sample_name,
    sample_lines,
    text_sample_name,
)

UNDERSCORES = om_format.UNDERSCORES
_TEXT_TYPES = {
    "info": "gauge",
    "stateset": "gauge",
    "gaugehistogram": "histogram",
    "unknown": "untyped",
}
_TEXT_SUFFIXES = {"counter": "_total", "info": "_info"}
_OM_TRAILERS = ("_created", "_gsum", "_gcount")


class UnsupportedError(Exception):
    """Something only prometheus_client's own renderer writes (native histograms)."""


def _text_doc(doc: str) -> str:
    return doc.replace("\\", r"\\").replace("\n", r"\n")


def _text_header(name: str, kind: str, doc: str) -> str:
    escaped = text_sample_name(name + _TEXT_SUFFIXES.get(kind, ""))
    return f"# HELP {escaped} {_text_doc(doc)}\n# TYPE {escaped} {_TEXT_TYPES.get(kind, kind)}\n"


def _om_header(name: str, kind: str, doc: str, unit: str) -> str:
    escaped = text_sample_name(name)
    header = f"# HELP {escaped} {escape_value(doc)}\n# TYPE {escaped} {kind}\n"
    return header + f"# UNIT {escaped} {unit}\n" if unit else header


def _pairs(labels: dict[str, str]) -> str:
    return ",".join(f'{label_name(k)}="{escape_value(v)}"' for k, v in sorted(labels.items()))


def text(families: Iterable[Any], *, created: bool = True) -> bytes:
    """prometheus_client's text format 0.0.4, with ``underscores`` escaping; ``created``:
    the ``*_created`` series of prometheus_client's own metric objects are written."""
    out: list[str] = []
    for family in families:
        if isinstance(family, Metric):
            _metric_text(family, out)
            continue
        kind, name = direct_kind(family) or "", family_name(family)
        doc = documentation(family)
        out.append(_text_header(name, kind, doc))
        trailers: list[str] = []
        sample_lines(family, kind, om=False, created=created, out=out, late=trailers)
        if trailers:
            out.append(_text_header(f"{name}_created", "gauge", doc))
            out.extend(trailers)
    return "".join(out).encode("utf-8")


def _metric_text(metric: Metric, out: list[str]) -> None:
    out.append(_text_header(metric.name, metric.type, metric.documentation))
    trailers: dict[str, list[str]] = {}
    for s in metric.samples:
        if s.native_histogram:
            raise UnsupportedError("native histogram")
        braced = f"{{{_pairs(s.labels)}}}" if s.labels else ""
        line = f"{text_sample_name(s.name)}{braced} {go_float(s.value)}"
        if s.timestamp is not None:
            line += f" {int(float(s.timestamp) * 1000):d}"
        line += "\n"
        for suffix in _OM_TRAILERS:
            if s.name == metric.name + suffix:
                trailers.setdefault(suffix, []).append(line)
                break
        else:
            out.append(line)
    for suffix, lines in sorted(trailers.items()):
        out.append(_text_header(metric.name + suffix, "gauge", metric.documentation))
        out.extend(lines)


def openmetrics(families: Iterable[Any], *, created: bool = True) -> bytes:
    """prometheus_client's OpenMetrics 1.0.0, with ``underscores`` escaping."""
    out: list[str] = []
    for family in families:
        if isinstance(family, Metric):
            _metric_openmetrics(family, out)
            continue
        kind = direct_kind(family) or ""
        name, doc = family_name(family), documentation(family)
        out.append(_om_header(name, family_type(family) or kind, doc, unit_of(family)))
        sample_lines(family, kind, om=True, created=created, out=out, late=out)
    out.append("# EOF\n")
    return "".join(out).encode("utf-8")


def _metric_openmetrics(metric: Metric, out: list[str]) -> None:
    out.append(_om_header(metric.name, metric.type, metric.documentation, metric.unit))
    for s in metric.samples:
        if s.native_histogram:
            raise UnsupportedError("native histogram")
        braced = f"{{{_pairs(s.labels)}}}" if s.labels else ""
        value = go_float(s.value) if s.value is not None else ""
        line = f"{om_sample_name(s.name)}{braced} {value}"
        if s.timestamp is not None:
            line += f" {s.timestamp}"
        if s.exemplar:
            line += compose_exemplar(metric, s, s.exemplar)
        out.append(line + "\n")


def reference_text(registry: Any) -> bytes:
    """prometheus_client's own text rendering (the oracle of the tests)."""
    rendered: bytes = text_format.generate_latest(registry)
    return rendered


def reference_openmetrics(registry: Any) -> bytes:
    """prometheus_client's own OpenMetrics rendering (the oracle of the tests)."""
    rendered: bytes = _om_reference(registry)
    return rendered


_om_reference: Any = om_format.generate_latest  # untyped in prometheus_client
