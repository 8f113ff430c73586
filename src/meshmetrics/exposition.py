"""What ``/metrics`` serves, through prometheus_client's own WSGI exposition.

One process: this instrumentation's registry plus prometheus_client's default
registry (the app's own ``Counter(...)`` declared the usual way, and the process,
platform and GC collectors, once).  Several gunicorn workers
(``PROMETHEUS_MULTIPROC_DIR``): every worker's files, summed, plus each live
worker's process metrics with a ``pid`` label.
"""

from __future__ import annotations

import gzip
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as om_generate_latest
from prometheus_client.registry import Collector
from werkzeug.serving import BaseWSGIServer, make_server

from . import render
from ._compat import collectors, direct_kind, family_name, has_target_info, uses_set_function
from .multiproc import MULTIPROC_ENV, LockedMultiProcessCollector, WorkerProcessCollector
from .names import log
from .render import UNDERSCORES, UnsupportedError
from .typing import WSGIApplication as WSGIApp

_WITH_CREATED = frozenset({"counter", "histogram", "summary", "gaugehistogram"})


class ServedRegistry:
    """Several collectors served as one; a family already served is not served twice;
    ``*_created`` samples only when ``created`` (see ``MeshConfig.created_series``)."""

    def __init__(self, *sources: Collector, created: bool = True) -> None:
        self._sources = sources
        self._created = created

    @property
    def created(self) -> bool:
        """``*_created`` samples are served."""
        return self._created

    def collect(self) -> Iterator[Metric]:
        seen: set[str] = set()
        for source in self._sources:
            for metric in source.collect():
                if metric.name in seen:
                    continue
                seen.add(metric.name)
                if not self._created and metric.type in _WITH_CREATED:
                    metric = _without_created(metric)
                yield metric

    def families(self) -> Iterator[Any]:
        """What :meth:`collect` yields, for :mod:`meshmetrics.render`: prometheus_client's
        own Counter, Gauge, Histogram and Summary objects of a registry as they are (the
        renderer reads their children), every other family as a ``Metric``."""
        seen: set[str] = set()
        for source in self._sources:
            for family in _families_of(source):
                name = family.name if isinstance(family, Metric) else family_name(family)
                if name in seen:
                    continue
                seen.add(name)
                if (
                    isinstance(family, Metric)
                    and not self._created
                    and family.type in _WITH_CREATED
                ):
                    family = _without_created(family)
                yield family

    def restricted_registry(self, names: Iterable[str]) -> _Restricted:
        """Only the samples named (Prometheus' ``name[]`` query parameter)."""
        return _Restricted(self, frozenset(names))


def _families_of(source: Collector) -> Iterator[Any]:
    if not isinstance(source, CollectorRegistry) or has_target_info(source):
        yield from source.collect()
        return
    for collector in collectors(source):  # as CollectorRegistry.collect() goes through them
        if direct_kind(collector) is None:
            yield from collector.collect()
        else:
            yield collector


def _without_created(metric: Metric) -> Metric:
    created = metric.name + "_created"
    samples = [s for s in metric.samples if s.name != created]
    if len(samples) == len(metric.samples):
        return metric
    copy = Metric(metric.name, metric.documentation, metric.type, metric.unit)
    copy.samples = samples
    return copy


class _Restricted:
    def __init__(self, source: ServedRegistry, names: frozenset[str]) -> None:
        self._source, self._names = source, names

    def collect(self) -> Iterator[Metric]:
        for metric in self._source.collect():
            samples = [s for s in metric.samples if s.name in self._names]
            if samples:
                restricted = Metric(metric.name, metric.documentation, metric.type, metric.unit)
                restricted.samples = samples
                yield restricted


class ProcessLocalGauges:
    """Under gunicorn, names (once, at ERROR) each Gauge given ``set_function()``:
    prometheus_client keeps its value in the worker's memory, never in the shared files,
    so ``/metrics`` shows the file's 0 instead.  Yields no metrics."""

    def __init__(self, *registries: CollectorRegistry) -> None:
        self._registries = registries
        self._named: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        for registry in self._registries:
            for metric in collectors(registry):
                if uses_set_function(metric) and family_name(metric) not in self._named:
                    self._named.add(family_name(metric))
                    log.error(
                        "meshmetrics: gauge %s uses set_function(), whose value prometheus_client "
                        "cannot share between gunicorn workers (%s): /metrics shows 0 for it. "
                        "Call .set() in each worker with multiprocess_mode='max'/'livesum'/'all', "
                        "or compute it in a custom collector.",
                        family_name(metric),
                        MULTIPROC_ENV,
                    )
        return iter(())


def served_registry(
    own: CollectorRegistry, multiprocess: str | None, created: bool = True
) -> ServedRegistry:
    """What the metrics endpoint of an instrumentation serves."""
    if multiprocess is not None:
        return ServedRegistry(
            LockedMultiProcessCollector(multiprocess),
            WorkerProcessCollector(multiprocess),
            ProcessLocalGauges(own, REGISTRY),
            created=created,
        )
    return ServedRegistry(own, REGISTRY, created=created)


def exposition_app(registry: ServedRegistry) -> WSGIApp:
    """The exposition of ``registry`` as prometheus_client's WSGI app serves it (content
    negotiation, gzip, ``name[]``, OPTIONS), the common formats through
    :mod:`~meshmetrics.render` (the same bytes, a fraction of the time)."""
    fallback: WSGIApp = make_wsgi_app(registry)
    created = registry.created

    def metrics_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if (
            environ.get("REQUEST_METHOD") != "GET"
            or environ.get("PATH_INFO") == "/favicon.ico"
            or "name[]" in parse_qs(environ.get("QUERY_STRING", ""))  # decoded, as Prometheus
        ):  # sends it (name%5B%5D=...): prometheus_client's app restricts the registry
            return fallback(environ, start_response)
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT") or "")
        func = getattr(encoder, "func", encoder)
        options = getattr(encoder, "keywords", {})
        try:
            if options.get("escaping", UNDERSCORES) != UNDERSCORES:
                output = encoder(registry)
            elif func is om_generate_latest and options.get("version", "1.0.0") == "1.0.0":
                output = render.openmetrics(registry.families(), created=created)
            elif func is generate_latest:
                output = render.text(registry.families(), created=created)
            else:
                output = encoder(registry)
        except UnsupportedError:
            output = encoder(registry)
        headers = [("Content-Type", content_type)]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING") or ""):
            output = gzip.compress(output)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [output]

    return metrics_app


#: The thread that waits for a taken ``metrics_port`` (another gunicorn worker's).
RETRY_THREAD = "meshmetrics-metrics-port-retry"


class MetricsServer:
    """The metrics endpoint alone, on a port of its own, served from a daemon thread.

    One per process; under gunicorn every worker tries to bind and the others keep
    retrying, so a worker that dies hands the port to another (in multiprocess mode
    every worker serves the same aggregate).  After :meth:`stop` nothing of it acts
    again: a retry still waiting for the port gives up.
    """

    def __init__(self, app: WSGIApp, host: str, port: int) -> None:
        self.app = app
        self._host, self.port = host, port
        self._server: BaseWSGIServer | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()

    @property
    def running(self) -> bool:
        return self._server is not None and self._pid == os.getpid()

    def start(self, retry_every: float | None = None) -> bool:
        """Bind and serve; False when the port is taken (retrying in the background if asked)."""
        with self._lock:
            if self.running:
                return True
            if self._closed.is_set():
                return False
            try:
                server = self._bind()
            except OSError as exc:
                if retry_every is None:
                    log.warning("meshmetrics: cannot serve metrics on port %d: %s", self.port, exc)
                else:
                    threading.Thread(
                        target=self._retry, args=(retry_every,), name=RETRY_THREAD, daemon=True
                    ).start()
                return False
            threading.Thread(
                target=server.serve_forever, name="meshmetrics-metrics-port", daemon=True
            ).start()  # started under the lock: stop()'s shutdown() waits for serve_forever
        log.info(
            "meshmetrics: metrics on http://%s:%d (%s)",
            self._host,
            self.port,
            "this machine only; metrics_host=0.0.0.0 exposes them"
            if self._host in ("127.0.0.1", "::1", "localhost")
            else "every interface of that address family",
        )
        return True

    def _bind(self) -> BaseWSGIServer:
        try:
            server = make_server(self._host, self.port, self.app, threaded=True)
        except SystemExit as exc:  # werkzeug exits the process when the port is taken
            raise OSError(f"port {self.port} on {self._host} is in use") from exc
        self._server, self._pid = server, os.getpid()
        return server

    def _retry(self, every: float) -> None:
        while not self._closed.wait(every):
            with self._lock:
                if self.running or self._closed.is_set():
                    return
                try:
                    server = self._bind()
                except OSError:
                    continue
            server.serve_forever()
            return

    def stop(self) -> None:
        """Close the port, and for good: a pending retry gives up, :meth:`start` refuses."""
        with self._lock:
            self._closed.set()
            if self.running and self._server is not None:
                self._server.shutdown()
                self._server.server_close()
            self._server = None
