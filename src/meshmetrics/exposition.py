"""What ``/metrics`` serves, through prometheus_client's own WSGI exposition.

One process: this instrumentation's registry plus prometheus_client's default
registry (the app's own ``Counter(...)`` declared the usual way, and the process,
platform and GC collectors, once).  Several gunicorn workers
(``PROMETHEUS_MULTIPROC_DIR``): every worker's files, summed, plus each live
worker's process metrics with a ``pid`` label.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as om_generate_latest
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from werkzeug.serving import BaseWSGIServer, make_server

from ._compat import collectors, family_name, use_mmap_values, uses_set_function
from .multiproc import LockedMultiProcessCollector
from .render import UNDERSCORES, Renderer, UnsupportedError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger("meshmetrics")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def multiprocess_dir() -> str | None:
    """The multiprocess directory, or ``None`` when metrics live in this process only.

    When the variable was set after prometheus_client was imported (a common trap),
    the value store is switched here, before meshmetrics creates its metrics.
    """
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return None
    if not os.path.isdir(path):
        raise MultiprocessDirError(
            f"meshmetrics: {MULTIPROC_ENV}={path!r} is not a directory; create it (empty) "
            "before the workers start, or use `gunicorn -c python:meshmetrics.gunicorn`"
        )
    check_multiprocess_dir(path)
    use_mmap_values()
    return path


#: Room a worker's value files need at least (prometheus_client maps 64 KiB per file,
#: a few files per worker); below it the directory is refused at start.
MIN_FREE_BYTES = 1024 * 1024


def check_multiprocess_dir(path: str) -> None:
    """Refuse, with one line naming it, a directory the value files cannot be written to.

    Read-only or full, prometheus_client would fail later: a traceback per worker, or
    SIGBUS (a mapped page that cannot be allocated) in a boot loop without a message.
    """
    probe = os.path.join(path, f".meshmetrics-probe-{os.getpid()}")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, MIN_FREE_BYTES)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise MultiprocessDirError(
            f"meshmetrics: {MULTIPROC_ENV}={path!r} cannot hold the metrics files "
            f"({exc.strerror or exc}): it needs to be writable with at least "
            f"{MIN_FREE_BYTES // 1024} KiB free per worker (an emptyDir's sizeLimit; "
            "medium: Memory counts against the pod's memory)"
        ) from None


class MultiprocessDirError(RuntimeError):
    """The multiprocess directory is missing, read-only or full."""


_WITH_CREATED = frozenset({"counter", "histogram", "summary", "gaugehistogram"})


class ServedRegistry:
    """Several collectors served as one; a family already served is not served twice;
    ``*_created`` samples only when ``created`` (see ``MeshConfig.created_series``)."""

    def __init__(self, *sources: Collector, created: bool = True) -> None:
        self._sources = sources
        self._created = created

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

    def restricted_registry(self, names: Iterable[str]) -> _Restricted:
        """Only the samples named (Prometheus' ``name[]`` query parameter)."""
        return _Restricted(self, frozenset(names))


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


_PID_FILE = re.compile(r"_(\d+)\.db\Z")


def files_by_pid(directory: str | Path) -> dict[int | None, list[Path]]:
    """The multiprocess directory's value files, by the pid that wrote them (``None``:
    a file whose name carries no pid)."""
    found: dict[int | None, list[Path]] = {}
    for path in Path(directory).glob("*.db"):
        match = _PID_FILE.search(path.name)
        found.setdefault(int(match.group(1)) if match else None, []).append(path)
    return found


def live_pids(directory: str | Path) -> list[int]:
    """The processes with files in the multiprocess directory that are still running."""
    return sorted(pid for pid in files_by_pid(directory) if pid is not None and is_alive(pid))


class WorkerProcessCollector:
    """``process_*`` metrics of every live process writing to the multiprocess directory,
    each with a ``pid`` label: a dead worker's series disappear with it."""

    def __init__(self, directory: str) -> None:
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for pid in live_pids(self._directory):
            collector = ProcessCollector(pid=_pid_of(pid), registry=None)
            for metric in collector.collect():
                family = families.get(metric.name)
                if family is None:
                    family = families[metric.name] = Metric(
                        metric.name, f"{metric.documentation} (per worker)", metric.type
                    )
                for sample in metric.samples:
                    labels = {**sample.labels, "pid": str(pid)}
                    family.add_sample(sample.name, labels, sample.value)
        yield from families.values()


def _pid_of(pid: int) -> Callable[[], int]:
    return lambda: pid


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    negotiation, gzip, ``name[]``, OPTIONS), the common formats through the cached
    :class:`~meshmetrics.render.Renderer` (the same bytes, a fraction of the time)."""
    fallback: WSGIApp = make_wsgi_app(registry)
    renderer = Renderer()

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
                output = renderer.openmetrics(registry.collect())
            elif func is generate_latest:
                output = renderer.text(registry.collect())
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
