"""The names several layers of meshmetrics share, spelled once.

The request path writes them and the tracer, the manifests or ``check`` read them back:
the ``app.extensions`` keys, the WSGI environ keys meshmetrics sets, the exemplar label
naming a trace, the span counters' metric names, and the logger every module writes to.
A leaf: it imports nothing of meshmetrics, so every layer may import it (the
architecture test pins that, and that no other module spells these literals).
"""

from __future__ import annotations

import logging

#: The logger every module of meshmetrics writes to (its messages start "meshmetrics: ").
LOGGER_NAME = "meshmetrics"
log = logging.getLogger(LOGGER_NAME)

#: ``app.extensions`` key of the app's :class:`~meshmetrics.Instrumentation`.
EXTENSION_KEY = "meshmetrics"
#: ``app.extensions`` key marking an app whose request hooks meshmetrics installed.
HOOKS_KEY = "meshmetrics.hooks"

#: WSGI environ key of the request's measuring state (the request path's core).
REQUEST_STATE_KEY = "meshmetrics.request"
#: WSGI environ key of the request's server span (meshmetrics' own tracer).
SPAN_KEY = "meshmetrics.span"
#: WSGI environ keys of the request's OpenTelemetry span, and of its attached context.
OTEL_SPAN_KEY = "meshmetrics.otel.span"
OTEL_TOKEN_KEY = "meshmetrics.otel.token"

#: The exemplar label carrying a sampled request's trace id (Grafana links it to traces).
TRACE_ID_LABEL = "trace_id"

#: The start of the span counters' family names.
SPAN_COUNTERS_PREFIX = "meshmetrics_spans"
#: Spans the trace backend confirmed receiving.
SPANS_EXPORTED = "meshmetrics_spans_exported_total"
#: Spans sent over UDP to a Jaeger agent (nothing confirms them).
SPANS_SENT = "meshmetrics_spans_sent_total"
#: Spans lost before reaching the trace backend, by ``reason``.
SPANS_DROPPED = "meshmetrics_spans_dropped_total"
