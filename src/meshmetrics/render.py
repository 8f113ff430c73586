"""The exposition formats, as prometheus_client writes them, with series names cached.

prometheus_client formats every sample's name and labels (sorting, escaping, joining)
on every scrape; that is most of a scrape's time, and for a service's request metrics it
never changes: a label set, once created, is the same string for the life of the process.
:class:`Renderer` writes the same bytes as ``prometheus_client.generate_latest`` (text
0.0.4) and ``prometheus_client.openmetrics.exposition.generate_latest`` (OpenMetrics
1.0.0) with the default ``underscores`` escaping, caching each series' formatted name;
value, timestamp and exemplar are formatted at each scrape.  Anything else (another
escaping scheme or version, native histograms) is rendered by prometheus_client itself.
``tests/test_render.py`` compares both outputs byte for byte over every metric type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import exposition as text_format
from prometheus_client import utils as _utils
from prometheus_client.openmetrics import exposition as om_format

float_to_go: Any = _utils.floatToGoString  # prometheus_client's value formatting (untyped)
compose_exemplar: Any = om_format._compose_exemplar_string
om_reference: Any = om_format.generate_latest

UNDERSCORES = om_format.UNDERSCORES
_ALLOW_UTF8 = om_format.ALLOWUTF8
#: Cached series names beyond which the cache starts over (bounded memory).
MAX_CACHED = 200_000
_TEXT_TYPES = {
    "info": "gauge",
    "stateset": "gauge",
    "gaugehistogram": "histogram",
    "unknown": "untyped",
}
_OM_TRAILERS = ("_created", "_gsum", "_gcount")


class UnsupportedError(Exception):
    """Something only prometheus_client's own renderer writes (native histograms)."""


def _text_doc(documentation: str) -> str:
    return documentation.replace("\\", r"\\").replace("\n", r"\n")


def _label_pairs(labels: dict[str, str], escape_value: Any) -> str:
    return ",".join(
        f'{om_format.escape_label_name(k, UNDERSCORES)}="{escape_value(v)}"'
        for k, v in sorted(labels.items())
    )


def _text_value(v: str) -> str:
    return om_format._escape(v, _ALLOW_UTF8, False)  # type: ignore[arg-type]


def _om_value(v: str) -> str:
    return om_format._escape(v, _ALLOW_UTF8, om_format._is_legacy_labelname_rune)


def _text_name(name: str) -> str:
    return om_format.escape_metric_name(name, UNDERSCORES)


def _om_name(name: str) -> str:
    return om_format._escape(name, UNDERSCORES, om_format._is_legacy_labelname_rune)


class _SeriesNames:
    """One format's formatted series names (``name{labels}``), cached by name and labels."""

    def __init__(self, escape_name: Callable[[str], str], escape_value: Callable[[str], str]):
        self._escape_name = escape_name
        self._escape_value = escape_value
        self._cache: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

    def __call__(self, name: str, labels: dict[str, str]) -> str:
        key = (name, tuple(labels.items()))
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            pairs = _label_pairs(labels, self._escape_value) if labels else ""
            escaped = self._escape_name(name)
            found = self._cache[key] = f"{escaped}{{{pairs}}}" if pairs else escaped
        return found


class Renderer:
    """Renders collectors in the text or OpenMetrics format; one per served registry."""

    def __init__(self) -> None:
        self._text_names = _SeriesNames(_text_name, _text_value)
        self._om_names = _SeriesNames(_om_name, _om_value)

    def text(self, metrics: Iterable[Any]) -> bytes:
        """prometheus_client's text format 0.0.4, with ``underscores`` escaping."""
        output: list[str] = []
        names = self._text_names
        for metric in metrics:
            mname, mtype = metric.name, metric.type
            if mtype == "counter":
                mname += "_total"
            elif mtype == "info":
                mname += "_info"
            mtype = _TEXT_TYPES.get(mtype, mtype)
            escaped = om_format.escape_metric_name(mname, UNDERSCORES)
            doc = _text_doc(metric.documentation)
            output.append(f"# HELP {escaped} {doc}\n# TYPE {escaped} {mtype}\n")
            trailers: dict[str, list[str]] = {}
            for s in metric.samples:
                if s.native_histogram:
                    raise UnsupportedError("native histogram")
                line = f"{names(s.name, s.labels)} {float_to_go(s.value)}"
                if s.timestamp is not None:
                    line += f" {int(float(s.timestamp) * 1000):d}"
                line += "\n"
                for suffix in _OM_TRAILERS:
                    if s.name == metric.name + suffix:
                        trailers.setdefault(suffix, []).append(line)
                        break
                else:
                    output.append(line)
            for suffix, lines in sorted(trailers.items()):
                trailer = om_format.escape_metric_name(metric.name + suffix, UNDERSCORES)
                output.append(f"# HELP {trailer} {doc}\n# TYPE {trailer} gauge\n")
                output.extend(lines)
        return "".join(output).encode("utf-8")

    def openmetrics(self, metrics: Iterable[Any]) -> bytes:
        """prometheus_client's OpenMetrics 1.0.0, with ``underscores`` escaping."""
        output: list[str] = []
        names = self._om_names
        for metric in metrics:
            escaped = om_format.escape_metric_name(metric.name, UNDERSCORES)
            doc = om_format._escape(
                metric.documentation, _ALLOW_UTF8, om_format._is_legacy_labelname_rune
            )
            output.append(f"# HELP {escaped} {doc}\n# TYPE {escaped} {metric.type}\n")
            if metric.unit:
                output.append(f"# UNIT {escaped} {metric.unit}\n")
            for s in metric.samples:
                if s.native_histogram:
                    raise UnsupportedError("native histogram")
                line = names(s.name, s.labels)
                value = float_to_go(s.value) if s.value is not None else ""
                line += f" {value}"
                if s.timestamp is not None:
                    line += f" {s.timestamp}"
                if s.exemplar:
                    line += compose_exemplar(metric, s, s.exemplar)
                output.append(line + "\n")
        output.append("# EOF\n")
        return "".join(output).encode("utf-8")


def reference_text(registry: Any) -> bytes:
    """prometheus_client's own text rendering (the oracle of the tests)."""
    rendered: bytes = text_format.generate_latest(registry)
    return rendered


def reference_openmetrics(registry: Any) -> bytes:
    """prometheus_client's own OpenMetrics rendering (the oracle of the tests)."""
    rendered: bytes = om_reference(registry)
    return rendered
