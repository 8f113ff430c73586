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
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Flask, got_request_exception, request, request_started

from ..instrumentation import MeshMetrics, instrument
from ..metrics import CLIENT_CLOSED
from ..names import log
from ..typing import StartResponse
from ..typing import WSGIApplication as WSGICall
from .checks import RULE_KEY, SIGNALLED_KEY, Probe, Seen, Violation

#: Chunks read from a body nobody finished reading before it is closed (as a server
#: writes a response whole to a client that reads it later); beyond, the client left.
DRAIN_LIMIT = 10_000


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
        self._logger = log
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
