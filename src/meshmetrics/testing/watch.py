"""meshmetrics' invariants, checked against what each request's client saw.

A :class:`Watch` instruments Flask apps (or reuses their instrumentation), serves them
through :meth:`Watch.call`, which records outside meshmetrics the status each client
received and the exceptions Flask signalled (``got_request_exception``), and
:meth:`Watch.check` compares that with the app's registry since the previous check:

- ``in_progress``: every in-progress gauge is back to 0;
- ``counter_histogram``: the request counter equals the histogram's count per series;
- ``path_label``: every ``path`` label is a route template of the app or ``<unmatched>``;
- ``statuses``: the (method, status) pairs counted are the ones the clients saw;
- ``exceptions``: the exception classes counted are the ones Flask signalled (or, when
  none was, the one that escaped the app);
- ``last_byte``: a body whose length the headers do not give is still in progress when
  its first chunk is sent (meshmetrics times it to its last byte);
- ``scrape``: Prometheus' GET of the metrics path, through the app, answers 200 with the
  request metrics (the app's own gates, such as a rate limit or a login wall, let it by);
- ``log``: nothing logged at WARNING or above by the ``meshmetrics`` logger;
- ``instrument``: ``instrument()`` accepted the app.

Used by the pytest plugin :mod:`meshmetrics.testing.invariants`, and directly::

    watch = Watch()
    client = werkzeug.test.Client(watch.wsgi(app))
    client.get("/")
    assert watch.check() == []
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, got_request_exception, request, request_started
from prometheus_client import CollectorRegistry
from werkzeug.test import EnvironBuilder, run_wsgi_app

from ..instrumentation import MeshMetrics, instrument
from ..metrics import CLIENT_CLOSED, UNMATCHED, method_label

#: Where the watch keeps, in a request's WSGI environ, what Flask told it.
SIGNALLED_KEY = "meshmetrics.testing.signalled"
RULE_KEY = "meshmetrics.testing.rule"
#: Chunks read from a body nobody finished reading before it is closed (as a server
#: writes a response whole to a client that reads it later); beyond, the client left.
DRAIN_LIMIT = 10_000

StartResponse = Callable[..., Any]
WSGICall = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class Violation:
    """One invariant that did not hold for one app."""

    invariant: str
    app: str
    detail: str


class Seen:
    """What the client of one request saw."""

    __slots__ = ("environ", "error", "method", "status", "streamed")

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.method = method_label(str(environ.get("REQUEST_METHOD", "")))
        self.status = 0
        self.error: BaseException | None = None
        #: a body whose length the headers do not say: produced while it is sent
        self.streamed = False

    def started(self, status: str, headers: list[tuple[str, str]]) -> None:
        """The status line and headers, as the client receives them."""
        self.status = int(status[:3])
        self.streamed = (
            self.environ.get("REQUEST_METHOD") != "HEAD"
            and self.status >= 200
            and self.status not in (204, 304)
            and not any(name.lower() == "content-length" for name, _ in headers)
        )

    def exception(self) -> str | None:
        """The class meshmetrics should count: the first Flask signalled, else the
        one that escaped the app (or its body)."""
        signalled: list[str] = self.environ.get(SIGNALLED_KEY) or []
        if signalled:
            return signalled[0]
        return type(self.error).__name__ if self.error is not None else None


@dataclass
class Snapshot:
    """The request series of one registry."""

    requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    histogram: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    exceptions: Counter[str] = field(default_factory=Counter)
    in_progress: dict[tuple[str, str], float] = field(default_factory=dict)


def snapshot(registry: CollectorRegistry, prefix: str) -> Snapshot:
    """Read the request families of ``registry`` (metric prefix ``prefix``)."""
    names = {
        f"{prefix}http_request_total": "requests",
        f"{prefix}http_request_duration_seconds_count": "histogram",
        f"{prefix}http_request_exceptions_total": "exceptions",
        f"{prefix}http_requests_in_progress": "in_progress",
    }
    shot = Snapshot()
    for family in registry.collect():
        for sample in family.samples:
            kind = names.get(sample.name)
            labels = sample.labels
            if kind == "requests":
                shot.requests[_series(labels)] += int(sample.value)
            elif kind == "histogram":
                shot.histogram[_series(labels)] += int(sample.value)
            elif kind == "exceptions":
                shot.exceptions[labels["exception"]] += int(sample.value)
            elif kind == "in_progress":
                shot.in_progress[(labels["method"], labels["path"])] = sample.value
    return shot


def _series(labels: dict[str, str]) -> tuple[str, str, str]:
    return (labels["method"], labels["path"], labels["status"])


def _positive(counter: Counter[Any]) -> Counter[Any]:
    return Counter({key: n for key, n in counter.items() if n})


class Probe:
    """One instrumented app: its registry, and what its clients saw since the last check.

    Holds the app weakly: an app a test dropped is still checked once, from what was
    recorded while it lived."""

    def __init__(
        self,
        app: Flask,
        registry: CollectorRegistry,
        prefix: str,
        excluded: frozenset[str],
        metrics_path: str | None = None,
    ) -> None:
        self.name = app.name
        self._app = weakref.ref(app)
        self.registry = registry
        self.prefix = prefix
        self.excluded = excluded
        #: scraped through the app after each check (``None``: served on another port)
        self.metrics_path = metrics_path
        self.routes: set[str] = set()
        self.requests = 0
        self._lock = threading.Lock()
        self._statuses: Counter[tuple[str, str]] = Counter()
        self._exceptions: Counter[str] = Counter()
        self._last = Snapshot()
        self.note_routes()

    @property
    def alive(self) -> bool:
        return self._app() is not None

    def note_routes(self) -> None:
        """Remember the app's route templates (a test may add or drop rules later)."""
        app = self._app()
        if app is not None:
            rules = {rule.rule for rule in app.url_map.iter_rules()}
            with self._lock:
                self.routes |= rules

    def record(self, seen: Seen) -> None:
        """A request whose client has its whole answer (or left)."""
        rule = seen.environ.get(RULE_KEY)
        if rule is not None and rule in self.excluded:
            return
        self.note_routes()
        exception = seen.exception()
        with self._lock:
            self.requests += 1
            self._statuses[(seen.method, str(seen.status or 500))] += 1
            if exception is not None:
                self._exceptions[exception] += 1

    def not_in_progress(self, seen: Seen) -> Violation | None:
        """A ``last_byte`` violation if ``seen``'s route has no request in progress."""
        rule = seen.environ.get(RULE_KEY)
        if rule is None or rule in self.excluded:
            return None
        labels = {"method": seen.method, "path": rule}
        value = self.registry.get_sample_value(f"{self.prefix}http_requests_in_progress", labels)
        if value:
            return None
        return self._violation(
            "last_byte",
            f"{seen.method} {rule}: the request is no longer in progress while its streamed "
            "body is being sent (timed before its last byte)",
        )

    def scrape(self) -> Violation | None:
        """A ``scrape`` violation unless Prometheus' GET of the metrics path, through the
        app as a server calls it, answers 200."""
        app = self._app()
        if app is None or self.metrics_path is None:
            return None
        environ = EnvironBuilder(
            path=self.metrics_path,
            headers=[("Accept", "text/plain;version=0.0.4"), ("User-Agent", "Prometheus/3.0")],
            environ_base={"REMOTE_ADDR": "10.0.0.9"},
        ).get_environ()
        try:
            body, status, _ = run_wsgi_app(app.wsgi_app, environ, buffered=True)
        except Exception as exc:
            return self._violation("scrape", f"GET {self.metrics_path} raised {exc!r}")
        if not status.startswith("200"):
            return self._violation("scrape", f"GET {self.metrics_path} answered {status}")
        if b"http_request" not in b"".join(body):
            return self._violation("scrape", f"GET {self.metrics_path}: no request metrics")
        return None

    def check(self, scrape: bool = True) -> list[Violation]:
        """Every invariant over what happened since the previous check (and a scrape)."""
        self.note_routes()
        now = snapshot(self.registry, self.prefix)
        with self._lock:
            last, self._last = self._last, now
            statuses, self._statuses = self._statuses, Counter()
            exceptions, self._exceptions = self._exceptions, Counter()
            routes = set(self.routes)
        found: list[Violation] = []
        changed = {k for k in now.requests.keys() | now.histogram.keys() if _moved(now, last, k)}
        for key in sorted(changed):
            if now.requests[key] != now.histogram[key]:
                found.append(
                    self._violation(
                        "counter_histogram",
                        f"{key}: counter {now.requests[key]} "
                        f"!= histogram count {now.histogram[key]}",
                    )
                )
        gauges = {g for g, v in now.in_progress.items() if v != last.in_progress.get(g, 0)}
        paths = {path for _, path, _ in changed} | {path for _, path in gauges}
        for path in sorted(paths - routes - {UNMATCHED}):
            found.append(self._violation("path_label", f"path={path!r} is no route of the app"))
        for gauge in sorted(gauges):
            value = now.in_progress[gauge]
            if value != 0:
                found.append(self._violation("in_progress", f"{gauge}: {value:g} after the test"))
        counted = _by_method_status(now.requests - last.requests)
        if counted != _positive(statuses):
            found.append(
                self._violation(
                    "statuses", f"counted {_show(counted)}, clients saw {_show(statuses)}"
                )
            )
        counted_exc = _positive(now.exceptions - last.exceptions)
        if counted_exc != _positive(exceptions):
            found.append(
                self._violation(
                    "exceptions",
                    f"counted {_show(counted_exc)}, Flask signalled {_show(exceptions)}",
                )
            )
        if scrape:
            scraped = self.scrape()
            if scraped is not None:
                found.insert(0, scraped)
            # a scrape the app did not route to the metrics endpoint is one of its requests
            # (counted, say, as a 404): part of the next comparison's starting point
            with self._lock:
                self._last = snapshot(self.registry, self.prefix)
        return found

    def _violation(self, invariant: str, detail: str) -> Violation:
        return Violation(invariant, self.name, detail)


def _moved(now: Snapshot, last: Snapshot, key: tuple[str, str, str]) -> bool:
    return (now.requests[key], now.histogram[key]) != (last.requests[key], last.histogram[key])


def _by_method_status(delta: Counter[tuple[str, str, str]]) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for (method, _, status), n in delta.items():
        out[(method, status)] += n
    return _positive(out)


def _show(counter: Counter[Any]) -> str:
    return "{" + ", ".join(f"{key}: {n}" for key, n in sorted(counter.items())) + "}"


class WatchedBody:
    """A response body as the client receives it: the request is recorded when the body
    is read whole, fails, or is closed (a body closed unread is first read, up to
    :data:`DRAIN_LIMIT` chunks, as a server writes it to a client that reads later)."""

    def __init__(self, body: Iterable[bytes], watch: Watch, probe: Probe, seen: Seen) -> None:
        self._body = body
        self._watch = watch
        self._probe = probe
        self._seen = seen
        self._iterator: Iterator[bytes] | None = None
        self._finished = False

    def __iter__(self) -> Iterator[bytes]:
        if self._iterator is None:
            self._iterator = iter(self._body)
        # next() rather than ``yield from``: a client dropping this iterator unread must
        # not close the app's body (a server always reads or closes it; close() does)
        first = True
        while True:
            try:
                chunk = next(self._iterator)
            except StopIteration:
                break
            except BaseException as exc:
                self._seen.error = exc
                self._finish()
                raise
            if first and self._seen.streamed:
                self._watch._sending(self._probe, self._seen)
            first = False
            yield chunk
        self._finish()

    def close(self) -> None:
        try:
            if not self._finished:
                self._drain()
        finally:
            try:
                close = getattr(self._body, "close", None)
                if close is not None:
                    close()
            finally:
                self._finish()

    def _drain(self) -> None:
        if self._iterator is None:
            self._iterator = iter(self._body)
        try:
            for _ in range(DRAIN_LIMIT):
                next(self._iterator)
        except StopIteration:
            return
        except Exception as exc:
            self._seen.error = exc
            return
        self._seen.status = CLIENT_CLOSED

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._watch._finished(self, self._probe, self._seen)


class _LogRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Watch:
    """Instrument apps, record what their clients see, check the invariants."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._probes: weakref.WeakKeyDictionary[Flask, Probe | None] = weakref.WeakKeyDictionary()
        #: probes created or asked a request since the last check
        self._touched: dict[int, Probe] = {}
        self._open: set[WatchedBody] = set()
        self._pending: list[Violation] = []
        self._logs = _LogRecords()
        self._logger = logging.getLogger("meshmetrics")
        self._level = self._logger.level
        self.apps = 0
        self.requests = 0
        self.started = False

    # -- lifetime ------------------------------------------------------------------------

    def start(self) -> None:
        """Listen to Flask's signals and meshmetrics' logger."""
        if self.started:
            return
        self.started = True
        request_started.connect(_note_rule)
        got_request_exception.connect(_note_exception)
        self._logger.addHandler(self._logs)
        if self._logger.getEffectiveLevel() > logging.WARNING:
            self._logger.setLevel(logging.WARNING)

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        request_started.disconnect(_note_rule)
        got_request_exception.disconnect(_note_exception)
        self._logger.removeHandler(self._logs)
        self._logger.setLevel(self._level)

    # -- apps ----------------------------------------------------------------------------

    def attach(self, app: Flask) -> Probe | None:
        """Instrument ``app`` (or take its instrumentation) and watch it, once."""
        self.start()
        with self._lock:
            if app in self._probes:
                return self._probes[app]
        probe: Probe | None = None
        try:
            try:
                inst = MeshMetrics.instrumentation(app)
            except RuntimeError:
                inst = instrument(app)
            excluded = frozenset((*inst.config.excluded_paths, inst.config.metrics_path))
            served_here = inst.config.metrics_port is None
            metrics_path = inst.config.metrics_path if served_here else None
            probe = Probe(app, inst.registry, inst.config.metric_prefix, excluded, metrics_path)
        except Exception as exc:
            self._pending.append(Violation("instrument", app.name, f"instrument() raised {exc!r}"))
        with self._lock:
            self._probes[app] = probe
            if probe is not None:
                self._touched[id(probe)] = probe
                self.apps += 1
        return probe

    def watching(self, app: Flask) -> bool:
        return app in self._probes

    # -- requests ------------------------------------------------------------------------

    def call(
        self,
        app: Flask,
        environ: dict[str, Any],
        start_response: StartResponse,
        wsgi: WSGICall,
    ) -> Iterable[bytes]:
        """Serve one request with ``wsgi`` (the app's), recording what its client sees."""
        probe = self.attach(app)
        if probe is None:
            return wsgi(environ, start_response)
        seen = Seen(environ)
        with self._lock:
            self._touched[id(probe)] = probe

        def recording_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            seen.started(status, headers)
            return start_response(status, headers, exc_info)

        try:
            body = wsgi(environ, recording_start_response)
        except BaseException as exc:
            seen.status, seen.error = 500, exc  # what a server sends for it
            self._record(probe, seen)
            raise
        watched = WatchedBody(body, self, probe, seen)
        with self._lock:
            self._open.add(watched)
        return watched

    def wsgi(self, app: Flask) -> WSGICall:
        """``app`` as a WSGI callable whose requests this watch records."""
        self.attach(app)

        def watched_app(environ: dict[str, Any], start_response: StartResponse) -> Any:
            return self.call(app, environ, start_response, app.wsgi_app)

        return watched_app

    def _sending(self, probe: Probe, seen: Seen) -> None:
        """A streamed body's first chunk is out: meshmetrics times it to its last byte,
        so the request must still be in progress."""
        problem = probe.not_in_progress(seen)
        if problem is not None:
            with self._lock:
                self._pending.append(problem)

    def _finished(self, body: WatchedBody, probe: Probe, seen: Seen) -> None:
        with self._lock:
            self._open.discard(body)
        self._record(probe, seen)

    def _record(self, probe: Probe, seen: Seen) -> None:
        probe.record(seen)
        with self._lock:
            self.requests += 1

    # -- checks --------------------------------------------------------------------------

    def check(self, everything: bool = False) -> list[Violation]:
        """Close what clients left open, then check every app with news since last time
        (``everything``: every app still alive too, as at the end of a session)."""
        with self._lock:
            left_open = list(self._open)
        for body in left_open:
            try:
                body.close()
            except Exception as exc:
                self._pending.append(
                    Violation("body", body._probe.name, f"closing the body raised {exc!r}")
                )
        found, self._pending = self._pending, []
        with self._lock:
            touched = list(self._touched.values())
            self._touched = {}
            others = []
            if everything:
                known = {id(p) for p in touched}
                others = [p for p in self._probes.values() if p is not None and id(p) not in known]
        for probe in touched:
            found.extend(probe.check())
        for probe in others:  # untouched since their last check: scraped then already
            found.extend(probe.check(scrape=False))
        records, self._logs.records = self._logs.records, []
        found.extend(
            Violation("log", "", f"{r.levelname} {r.name}: {r.getMessage()}") for r in records
        )
        return found


def _note_rule(sender: Flask, **_: Any) -> None:
    """``request_started``: the route Flask matched, independent of meshmetrics."""
    rule = request.url_rule
    request.environ[RULE_KEY] = rule.rule if rule is not None else None


def _note_exception(sender: Flask, exception: BaseException, **_: Any) -> None:
    """``got_request_exception``: every exception Flask (or an extension) signalled."""
    request.environ.setdefault(SIGNALLED_KEY, []).append(type(exception).__name__)
