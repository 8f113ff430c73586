"""The request-metric checks of :class:`~meshmetrics.testing.watch.Watch`: a snapshot of an
app's request families, and the invariants a :class:`Probe` checks between two snapshots
against what the clients saw (what each invariant means: :mod:`.watch`)."""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from prometheus_client import CollectorRegistry
from werkzeug.test import EnvironBuilder, run_wsgi_app

from ..metrics import UNMATCHED, method_label

#: Where the watch keeps, in a request's WSGI environ, what Flask told it.
SIGNALLED_KEY = "meshmetrics.testing.signalled"
RULE_KEY = "meshmetrics.testing.rule"


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
