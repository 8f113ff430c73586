"""The metrics endpoint: content negotiation, gzip, and multiprocess aggregation."""

from __future__ import annotations

import gzip
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from prometheus_client import CollectorRegistry, values
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.multiprocess import MultiProcessCollector
from werkzeug.serving import BaseWSGIServer, make_server

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger("meshmetrics")


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


class MetricsServer:
    """The metrics view alone, on a port of its own, served from a daemon thread.

    One per process; under gunicorn every worker tries to bind and the others keep
    retrying, so a worker that dies hands the port to another (in multiprocess mode
    every worker serves the same aggregate).
    """

    def __init__(self, view: Callable[[], Response], path: str, host: str, port: int) -> None:
        self._app = Flask("meshmetrics-metrics")
        self._app.add_url_rule(path, "meshmetrics_metrics", view, methods=["GET"])
        self._host, self.port = host, port
        self._server: BaseWSGIServer | None = None
        self._pid = 0
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._server is not None and self._pid == os.getpid()

    def start(self, retry_every: float | None = None) -> bool:
        """Bind and serve; False when the port is taken (retrying in the background if asked)."""
        with self._lock:
            if self.running:
                return True
            try:
                self._bind()
            except OSError as exc:
                if retry_every is None:
                    log.warning("meshmetrics: cannot serve metrics on port %d: %s", self.port, exc)
                else:
                    threading.Thread(target=self._retry, args=(retry_every,), daemon=True).start()
                return False
        threading.Thread(target=self._serve, name="meshmetrics-metrics-port", daemon=True).start()
        return True

    def _bind(self) -> None:
        self._server = make_server(self._host, self.port, self._app, threaded=True)
        self._pid = os.getpid()

    def _serve(self) -> None:
        server = self._server
        if server is not None:
            server.serve_forever()

    def _retry(self, every: float) -> None:
        while True:
            time.sleep(every)
            with self._lock:
                if self.running:
                    return
                try:
                    self._bind()
                except OSError:
                    continue
            self._serve()
            return

    def stop(self) -> None:
        with self._lock:
            if self.running and self._server is not None:
                self._server.shutdown()
                self._server.server_close()
            self._server = None
