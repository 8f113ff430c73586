"""Test support, a deliberate public module as ``flask.testing`` and ``click.testing`` are.

- :class:`InMemorySpanExporter` and :func:`capture_spans`: span assertions in-process,
  synchronously (no backend, no waiting out a timeout), in every tracing mode
  (:class:`OTelSpanCapture` under ``tracing="otel"``); the exporter also serves as the
  ``span_exporter`` option, behind the real batch processor.
- :class:`JaegerAgent`, :class:`OTLPCollector`: real receivers on 127.0.0.1 that decode
  what a tracer sends over UDP (Jaeger's agent protocol) or OTLP/HTTP (needs the
  ``jaeger``/``otlp`` extras).
- :class:`LocalPrometheus`: Debian's ``prometheus`` on 127.0.0.1 scraping given targets
  (needs the ``manifests`` extra for YAML).
- :mod:`meshmetrics.testing.invariants`: a pytest plugin (``pytest -p
  meshmetrics.testing.invariants``) that instruments every Flask app a test suite builds
  and checks meshmetrics' invariants after each test (:class:`.watch.Watch`, usable alone).

Nothing here is imported by ``import meshmetrics``.
"""

from __future__ import annotations

from typing import Any

from .memory import InMemorySpanExporter, OTelSpanCapture, SpanCapture, capture_spans

__all__ = [
    "InMemorySpanExporter",
    "JaegerAgent",
    "LocalPrometheus",
    "OTLPCollector",
    "OTelSpanCapture",
    "Span",
    "SpanCapture",
    "capture_spans",
]

_LAZY = {
    "JaegerAgent": ".receivers",
    "OTLPCollector": ".receivers",
    "Span": ".receivers",
    "LocalPrometheus": ".prometheus",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module, __name__), name)
