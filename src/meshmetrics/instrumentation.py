"""``instrument()``: attach metrics to a Flask app or Blueprint, and undo it."""

from __future__ import annotations

import functools
import gc
import threading
import weakref
from collections.abc import Iterator
from typing import Any, cast

from flask import Blueprint, Flask, Response
from flask.blueprints import BlueprintSetupState
from prometheus_client import CollectorRegistry
from prometheus_flask_exporter import PrometheusMetrics

from . import runner
from .client import TracingSession
from .config import MeshConfig, resolve_config
from .exporters import (
    BatchSpanProcessor,
    Exporter,
    JaegerUDPExporter,
    OTLPHTTPExporter,
    SpanCounters,
)
from .exposition import MetricsServer, metrics_view, multiprocess_dir
from .metrics import RequestMetrics, current_request
from .tracing import MeshTracer, Sampler, ServerTracing

EXTENSION_KEY = "meshmetrics"
METRICS_ENDPOINT = "meshmetrics_metrics"

_lock = threading.Lock()
_by_target: weakref.WeakKeyDictionary[Flask | Blueprint, Instrumentation] = (
    weakref.WeakKeyDictionary()
)


class Instrumentation:
    """What :func:`instrument` attached to one app or Blueprint.

    Attributes:
        config: the resolved, immutable :class:`~meshmetrics.config.MeshConfig`.
        registry: the registry holding this instrumentation's series (one per
            instrumentation, so apps in one process never collide).
        metrics: a prometheus-flask-exporter ``PrometheusMetrics`` on that registry,
            for its decorators (``counter``, ``histogram``, ``gauge``, ``summary``,
            ``info``, ``do_not_track``, ``exclude_all_metrics``).
        request_metrics: the request metric families and their hooks.
        tracing: the Flask-OpenTracing-compatible server tracing (``.tracer``,
            ``.get_span()``, ``.trace()``), or ``None`` when tracing is ``off``.
    """

    def __init__(self, target: Flask | Blueprint, config: MeshConfig) -> None:
        self.target = target
        self.config = config
        self.multiprocess = multiprocess_dir() is not None
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_metrics = RequestMetrics(config, self.registry, multiprocess=self.multiprocess)
        self.metrics = PrometheusMetrics(
            app=None,
            path=None,
            export_defaults=False,
            registry=self.registry,
            defaults_prefix=config.prefix or "flask",
            buckets=config.buckets,
        )
        self.tracing: ServerTracing | None = None
        if config.tracing != "off":
            counters = SpanCounters(self.registry)
            self.tracing = ServerTracing(functools.partial(_make_tracer, config, counters))
            self.request_metrics.exemplar = self.tracing.exemplar
        view = metrics_view(self.registry, self.multiprocess)
        if config.metrics_auth is not None:
            view = functools.wraps(view)(config.metrics_auth(view))
        self._view = view
        self.metrics_server: MetricsServer | None = None
        if config.metrics_port is not None:
            self.metrics_server = MetricsServer(
                view, config.metrics_path, config.metrics_host, config.metrics_port
            )
        excluded = ExcludedRoutes((*config.excluded_paths, config.metrics_path))
        self.hooks = RequestHooks(self.tracing, self.request_metrics, excluded)
        self._apps: list[Flask] = []
        self._active = True

    def start_metrics_server(self, retry_every: float | None = None) -> bool:
        """Serve the metrics on ``metrics_port`` from this process (idempotent)."""
        if self.metrics_server is None:
            return False
        return self.metrics_server.start(retry_every)

    def _ensure_metrics_server(self) -> None:
        server = self.metrics_server
        if server is not None and not server.running:
            server.start()

    def session(self) -> TracingSession:
        """A ``requests.Session`` whose calls carry the trace and Istio's headers."""
        return TracingSession(self.tracing)

    @property
    def apps(self) -> tuple[Flask, ...]:
        """The apps this instrumentation is attached to (a Blueprint's: once registered)."""
        return tuple(self._apps)

    @property
    def app(self) -> Flask:
        """The (single) attached app; raises if the Blueprint is not registered yet."""
        if not self._apps:
            raise RuntimeError(
                f"meshmetrics: Blueprint {self.target.name!r} is not registered on an app yet"
            )
        return self._apps[0]

    def run(self, *args: Any, **options: Any) -> None:
        """Serve the app like ``app.run()``, always threaded (see :mod:`meshmetrics.runner`)."""
        runner.run(self.app, *args, **options)

    # -- attaching ------------------------------------------------------------------

    def _attach(self, app: Flask, blueprint_name: str | None) -> None:
        if app in self._apps:
            return
        owner = app.extensions.get(EXTENSION_KEY)
        if owner is not None and owner is not self:
            raise RuntimeError(
                f"meshmetrics: app {app.name!r} already has an instrumentation serving "
                f"{owner.config.metrics_path} (service {owner.config.service!r}); "
                "instrument either the app or one Blueprint of it, not both"
            )
        existing = _rule_at(app, self.config.metrics_path)
        if existing is not None and existing != METRICS_ENDPOINT:
            raise RuntimeError(
                f"meshmetrics: {self.config.metrics_path} is already routed to endpoint "
                f"{existing!r} on app {app.name!r} (another exporter?); remove it or pass "
                "metrics_path=..."
            )
        # Inserted first, so an app's own hooks cannot skip them.
        for funcs, hook in self.hooks.registrations(app):
            funcs.setdefault(blueprint_name, []).insert(0, hook)
        if self.metrics_server is not None:
            # metrics on their own port: started by app.run(), gunicorn's worker hook, or
            # failing those the first request
            app.before_request_funcs.setdefault(None, []).insert(0, self._ensure_metrics_server)
        elif existing is None:
            app.add_url_rule(
                self.config.metrics_path, METRICS_ENDPOINT, self._view, methods=["GET"]
            )
        else:
            app.view_functions[METRICS_ENDPOINT] = self._view
        app.extensions[EXTENSION_KEY] = self
        app.run = functools.partial(runner.run, app)  # type: ignore[method-assign]
        self._apps.append(app)
        runner.warn_if_reloader(self.config.metrics_path)

    def _on_register(self, state: BlueprintSetupState) -> None:
        if self._active:
            self._attach(cast(Flask, state.app), state.name)

    # -- detaching ------------------------------------------------------------------

    def uninstrument(self) -> None:
        """Remove hooks, the metrics view and the ``app.run`` override; idempotent."""
        for app in self._apps:
            for funcs, hook in self.hooks.registrations(app):
                for registered in funcs.values():
                    while hook in registered:
                        registered.remove(hook)
            app.view_functions[METRICS_ENDPOINT] = _not_found
            for registered in app.before_request_funcs.values():
                while self._ensure_metrics_server in registered:
                    registered.remove(self._ensure_metrics_server)
            if app.extensions.get(EXTENSION_KEY) is self:
                del app.extensions[EXTENSION_KEY]
            app.__dict__.pop("run", None)
        self._apps.clear()
        self._active = False
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if isinstance(self.target, Blueprint):
            deferred = self.target.deferred_functions
            while self._on_register in deferred:
                deferred.remove(self._on_register)
        with _lock:
            if _by_target.get(self.target) is self:
                del _by_target[self.target]


def _make_tracer(config: MeshConfig, counters: SpanCounters) -> MeshTracer:
    """The tracer of one instrumentation, built in the serving process on first use."""
    exporter: Exporter
    tags = {"namespace": config.namespace, "version": config.version}
    if config.tracing == "jaeger":
        host, _, port = config.trace_endpoint.rpartition(":")
        exporter = JaegerUDPExporter(config.service, host or "localhost", int(port or 6831), tags)
    else:
        resource = {"service.namespace": config.namespace, "service.version": config.version}
        exporter = OTLPHTTPExporter(config.service, config.trace_endpoint, resource)
    processor = BatchSpanProcessor(exporter, counters, queue_size=config.span_queue_size)
    return MeshTracer(Sampler.parse(config.sampler), processor)


class ExcludedRoutes:
    """Routes neither measured nor traced (probes, the metrics endpoint), decided once each.

    A route is excluded when its template equals an entry or ends with it after a ``/``.
    """

    def __init__(self, entries: tuple[str, ...]) -> None:
        self._entries = entries
        self._decided: dict[str, bool] = {}

    def __call__(self, req: Any) -> bool:
        rule = req.url_rule
        if rule is None:  # unmatched requests are measured, under one label
            return False
        excluded = self._decided.get(rule.rule)
        if excluded is None:
            excluded = self._decided[rule.rule] = any(
                rule.rule == entry or rule.rule.endswith(entry) for entry in self._entries
            )
        return excluded


class RequestHooks:
    """The three Flask hooks of one instrumentation: each fetches the request once and
    hands it to tracing and metrics, in the order that lets metrics see the span."""

    def __init__(
        self, tracing: ServerTracing | None, metrics: RequestMetrics, excluded: ExcludedRoutes
    ) -> None:
        self._tracing = tracing
        self._metrics = metrics
        self._excluded = excluded

    def before_request(self) -> None:
        req = current_request()
        if self._excluded(req):
            return  # nothing started, so the other hooks find nothing to finish
        if self._tracing is not None:
            self._tracing.on_start(req)
        self._metrics.on_start(req)

    def after_request(self, response: Response) -> Response:
        req = current_request()
        if self._tracing is not None:
            self._tracing.on_response(req, response)
        self._metrics.on_response(req, response)
        return response

    def teardown_request(self, exc: BaseException | None) -> None:
        req = current_request()
        if exc is not None and self._excluded(req):
            return  # an excluded route's exception is not counted either
        self._metrics.on_teardown(req, exc)  # may still read the span for its exemplar
        if self._tracing is not None:
            self._tracing.on_teardown(req, exc)

    def registrations(self, app: Flask) -> list[tuple[dict[Any, list[Any]], Any]]:
        """Each hook with the app's registry of that kind of hook."""
        return [
            (app.before_request_funcs, self.before_request),
            (app.after_request_funcs, self.after_request),
            (app.teardown_request_funcs, self.teardown_request),
        ]


def instrumentations() -> list[Instrumentation]:
    """Every live instrumentation of this process."""
    with _lock:
        return list(_by_target.values())


def _not_found() -> tuple[str, int]:
    return "Not Found\n", 404


def _rule_at(app: Flask, path: str) -> str | None:
    for rule in app.url_map.iter_rules():
        if rule.rule == path:
            return str(rule.endpoint)
    return None


def _apps_holding(blueprint: Blueprint) -> Iterator[tuple[Flask, str]]:
    """Apps a Blueprint is already registered on, with the name it was registered as.

    A Blueprint keeps no reference to its apps; ``app.blueprints`` refers to it, so
    the garbage collector's referrer graph finds them (``blueprints`` dict ->
    the app's ``__dict__`` -> the app).
    """
    for holder in gc.get_referrers(blueprint):
        if not isinstance(holder, dict):
            continue
        for attrs in gc.get_referrers(holder):
            owners = (
                [attrs]
                if isinstance(attrs, Flask)
                else (gc.get_referrers(attrs) if isinstance(attrs, dict) else [])
            )
            for owner in owners:
                if isinstance(owner, Flask) and owner.blueprints is holder:
                    for name, registered in holder.items():
                        if registered is blueprint:
                            yield owner, name


def instrument(target: Flask | Blueprint, **options: Any) -> Instrumentation:
    """Instrument a Flask app or Blueprint with Prometheus metrics.

    Every option may also come from ``MESHMETRICS_<OPTION>``; explicit arguments
    win over the environment, which wins over defaults (see
    :class:`~meshmetrics.config.MeshConfig` for the options).

    For a Blueprint only its routes are measured and the metrics endpoint is
    served at the app root; it works before or after ``register_blueprint``.

    Instrumenting the same target again with the same resolved options returns
    the existing :class:`Instrumentation`; with different options it raises
    ``RuntimeError`` (call :meth:`Instrumentation.uninstrument` first).
    """
    if not isinstance(target, Flask | Blueprint):
        raise TypeError(
            f"meshmetrics: instrument() takes a Flask app or Blueprint, not {type(target).__name__}"
        )
    config = resolve_config(options, default_service=target.name)
    with _lock:
        existing = _by_target.get(target)
        if existing is not None:
            if existing.config == config and existing.config.metrics_auth is config.metrics_auth:
                return existing
            raise RuntimeError(
                f"meshmetrics: {target.name!r} is already instrumented with different "
                "options; call .uninstrument() on the existing Instrumentation first"
            )
        inst = Instrumentation(target, config)
        _by_target[target] = inst
    try:
        if isinstance(target, Flask):
            inst._attach(target, None)
        else:
            for app, name in list(_apps_holding(target)):
                inst._attach(app, name)
            # Blueprint.record() refuses once registered; later registrations still
            # run every deferred function, so append to the list it reads.
            target.deferred_functions.append(inst._on_register)
    except BaseException:
        inst.uninstrument()
        raise
    return inst
