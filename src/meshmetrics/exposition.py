"""The metrics endpoint: content negotiation, gzip, and multiprocess aggregation."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from typing import Any

from flask import Response, request
from prometheus_client import CollectorRegistry, values
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The multiprocess directory, or ``None`` when metrics live in this process only.

    prometheus_client picks its value store when it is first imported; when the
    variable was set after that (a common trap) the store is switched here, before
    meshmetrics creates its metrics.
    """
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return None
    if not os.path.isdir(path):
        raise RuntimeError(
            f"meshmetrics: {MULTIPROC_ENV}={path!r} is not a directory; create it (empty) "
            "before the workers start, or use `gunicorn -c python:meshmetrics.gunicorn`"
        )
    if values.ValueClass.__name__ != "MmapedValue":
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return path


def metrics_view(registry: CollectorRegistry, multiprocess: bool) -> Callable[[], Response]:
    """A Flask view serving ``registry`` (or every worker's metrics when multiprocess)."""

    def meshmetrics_metrics() -> Response:
        source: Any = registry
        if multiprocess:
            source = CollectorRegistry()
            MultiProcessCollector(source)  # type: ignore[no-untyped-call]
        names = request.args.getlist("name[]")
        if names:
            source = source.restricted_registry(names)
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(source)
        response = Response(body, content_type=content_type)
        if gzip_accepted(request.headers.get("Accept-Encoding", "")):
            response.set_data(gzip.compress(body))
            response.headers["Content-Encoding"] = "gzip"
        response.headers["Cache-Control"] = "no-store"
        return response

    return meshmetrics_metrics
