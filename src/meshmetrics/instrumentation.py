"""``instrument()`` and :class:`MeshMetrics`: attach metrics (and tracing) to a Flask app or
Blueprint through Flask's public API, and undo it.

Attaching wraps ``app.wsgi_app`` (:mod:`.middleware`, which also answers the metrics
endpoint there, before Flask routes a request: :mod:`.endpoint`), connects Flask's
request signals for that app, wraps ``app.run`` on the instance (threaded, the metrics
port opened at start) and, for a Blueprint not registered yet, uses ``Blueprint.record``.
An instrumentation lives as long as its app (or Blueprint): the process-wide lists
hold it weakly, so an app factory's apps are garbage-collected with their
instrumentation, which then lets go of its export thread (shared by every
instrumentation with the same tracing backend; the last one stops it).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from functools import wraps
from typing import Any, Unpack, cast

from flask import Blueprint, Flask, current_app
from flask.blueprints import BlueprintSetupState
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_flask_exporter import PrometheusMetrics

from . import runner
from .config import ConfigError, InstrumentOptions, MeshConfig, _reject_unknown, resolve_config
from .endpoint import MetricsEndpoint
from .errors import InstrumentationConflictError
from .exposition import MetricsServer, ServedRegistry, exposition_app, served_registry
from .metrics import RequestMetrics
from .middleware import AppObserver, RequestCore
from .multiproc import MultiprocessDirError, multiprocess_dir
from .names import EXTENSION_KEY, log
from .paths import check_exclusions
from .serving import several_processes
from .tracing.client import TracingSession
from .tracing.server import RequestTracing
from .typing import GatedView, MetricsAuth, MetricsView

_lock = threading.Lock()
_live: weakref.WeakSet[Instrumentation] = weakref.WeakSet()
_by_blueprint: weakref.WeakKeyDictionary[Blueprint, weakref.ReferenceType[Instrumentation]] = (
    weakref.WeakKeyDictionary()
)


class Instrumentation:
    """What :func:`instrument` attached to one app or Blueprint.

    Attributes:
        config: the resolved, immutable :class:`~meshmetrics.config.MeshConfig`.
        registry: the registry holding this instrumentation's series (one per
            instrumentation, so apps in one process never collide).
        served: what the metrics endpoint serves: ``registry`` plus prometheus_client's
            default registry (one process), or every worker's files (gunicorn).
        endpoint: the metrics endpoint (:class:`~meshmetrics.endpoint.MetricsEndpoint`),
            answered before Flask routes a request, on the app's port or ``metrics_port``.
        metrics: a prometheus-flask-exporter ``PrometheusMetrics`` on that registry,
            for its decorators (``counter``, ``histogram``, ``gauge``, ``summary``,
            ``info``, ``do_not_track``, ``exclude_all_metrics``).
        request_metrics: the request metric families.
        tracing: the Flask-OpenTracing-compatible server tracing (``.tracer``,
            ``.get_span()``, ``.trace()``), or ``None`` when tracing is ``off``.
    """

    def __init__(self, target: Flask | Blueprint, config: MeshConfig) -> None:
        self._target = target
        self.config = config
        self._multiprocess_dir = multiprocess_dir()
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_metrics = RequestMetrics(config, self.registry)
        self.metrics = PrometheusMetrics(
            app=None,
            path=None,
            export_defaults=False,
            registry=self.registry,
            defaults_prefix=config.prefix or "flask",
            buckets=config.buckets,
        )
        self.tracing: RequestTracing | None = None
        if config.tracing != "off":
            from .tracing.backends import server_tracing  # the exporter's extra, checked here

            self.tracing = server_tracing(config, self.registry)
            weakref.finalize(self, _stop_processor, self.tracing)
        self.served: ServedRegistry = served_registry(
            self.registry, self._multiprocess_dir, created=config.created_series
        )
        self.endpoint = MetricsEndpoint(
            exposition_app(self.served), config.metrics_path, _protector(config)
        )
        self.endpoint.port_app = _first_app_of(self)
        self.metrics_server: MetricsServer | None = None
        if config.metrics_port is not None:
            self.metrics_server = MetricsServer(
                self.endpoint.serve, config.metrics_host, config.metrics_port
            )
        self._core = RequestCore(
            self.request_metrics,
            self.tracing,
            frozenset((*config.excluded_paths, config.metrics_path)),
            config.path_prefixes,
        )
        self._apps: list[tuple[Flask, AppObserver]] = []
        self._runs: list[tuple[Flask, Callable[..., None]]] = []
        self._active = True

    # -- what users call ---------------------------------------------------------------

    def start_metrics_server(self, retry_every: float | None = None) -> bool:
        """Serve the metrics on ``metrics_port`` from this process (idempotent)."""
        if self.metrics_server is None:
            return False
        return self.metrics_server.start(retry_every)

    def session(self) -> TracingSession:
        """A ``requests.Session`` whose calls carry the trace and Istio's headers."""
        return TracingSession(self.tracing)

    @property
    def apps(self) -> tuple[Flask, ...]:
        """The apps this instrumentation is attached to (a Blueprint's: once registered)."""
        return tuple(app for app, _ in self._apps)

    @property
    def app(self) -> Flask:
        """The (first) attached app; raises if the Blueprint is not registered yet."""
        if not self._apps:
            raise RuntimeError(
                f"meshmetrics: Blueprint {self._target.name!r} is not registered on an app yet"
            )
        return self._apps[0][0]

    @property
    def _multiprocess(self) -> bool:
        """Whether metrics are summed over worker processes (``PROMETHEUS_MULTIPROC_DIR``)."""
        return self._multiprocess_dir is not None

    @property
    def registries(self) -> tuple[CollectorRegistry, ...]:
        """The registries whose families this service exports (for the manifests)."""
        return (self.registry,) if self._multiprocess else (self.registry, REGISTRY)

    def run(self, *args: Any, **options: Any) -> None:
        """Serve the app like ``app.run()``, refusing ``processes>1`` (see :mod:`.runner`)."""
        runner.run(self.app, *args, **options)

    # -- attaching ------------------------------------------------------------------

    def _attach(self, app: Flask, blueprint_name: str | None) -> None:
        for attached, observer in self._apps:
            if attached is app:
                if blueprint_name is not None:
                    observer.extend_scope(blueprint_name)
                return
        owner = app.extensions.get(EXTENSION_KEY)
        if owner is not None and owner is not self:
            raise InstrumentationConflictError(
                f"meshmetrics: app {app.name!r} already has an instrumentation serving "
                f"{owner.config.metrics_path} (service {owner.config.service!r}); "
                "instrument either the app or one Blueprint of it, not both"
            )
        endpoint = None if self.metrics_server is not None else self.endpoint
        existing = _rule_at(app, self.config.metrics_path) if endpoint is not None else None
        if existing is not None:
            raise InstrumentationConflictError(
                f"meshmetrics: {self.config.metrics_path} is already routed to endpoint "
                f"{existing!r} on app {app.name!r} (another exporter?), but meshmetrics answers it "
                "before Flask routes a request, so that view would never run; remove the "
                "route, or pass metrics_path=... or metrics_port=..."
            )
        scope = None if blueprint_name is None else frozenset({blueprint_name})
        observer = AppObserver(app, app.wsgi_app, self._core, scope, self._first_request, endpoint)
        app.wsgi_app = observer  # type: ignore[method-assign]
        app.extensions[EXTENSION_KEY] = self
        self._apps.append((app, observer))
        self._wrap_run(app)
        runner.warn_if_reloader(self.config.metrics_path)
        if self.metrics_server is not None and runner.serving_process_at_import():
            self.metrics_server.start()

    def _wrap_run(self, app: Flask) -> None:
        """``app.run`` on this app instance: threaded, one process, the metrics port opened
        as the server starts (not at the first request).  ``uninstrument()`` removes it."""
        if "run" in vars(app):  # someone else's wrapper (or a second Blueprint's): keep it
            return
        inst, target = weakref.ref(self), weakref.ref(app)

        @wraps(type(app).run)
        def run(
            host: str | None = None,
            port: int | None = None,
            debug: bool | None = None,
            load_dotenv: bool = True,
            **options: Any,
        ) -> None:
            served = target()
            assert served is not None  # this function lives in the app's own __dict__
            options = runner.threaded_options(options)
            owner = inst()
            server = owner.metrics_server if owner is not None and owner._active else None
            if server is not None and runner.serves_here(served, debug, load_dotenv, options):
                server.start()
            type(served).run(served, host, port, debug, load_dotenv, **options)

        app.run = run  # type: ignore[method-assign]
        self._runs.append((app, run))

    def _first_request(self, environ: dict[str, Any]) -> None:
        """Once per process, at its first request: start the metrics port (where start-up
        could not be observed), name a route the endpoint hides, check the server."""
        if self.metrics_server is not None and not self.metrics_server.running:
            self.metrics_server.start()
        check_exclusions(self.config, self._apps)
        if self.metrics_server is None:
            for app in self.apps:
                routed = _rule_at(app, self.config.metrics_path)
                if routed is not None:
                    log.warning(
                        "meshmetrics: %s is answered by meshmetrics before Flask routes a "
                        "request; the view %r routed there on app %r never runs (pass "
                        "metrics_path=... to serve the metrics elsewhere)",
                        self.config.metrics_path,
                        routed,
                        app.name,
                    )
        if self._multiprocess:
            return
        if several_processes(environ):
            log.warning(
                "meshmetrics: this WSGI server runs several processes but %s is not set: each "
                "process counts alone and every scrape sees one of them; use "
                "`gunicorn -c python:meshmetrics.gunicorn`",
                "PROMETHEUS_MULTIPROC_DIR",
            )
        elif environ.get("wsgi.multithread") is False and environ.get("SERVER_SOFTWARE"):
            log.warning(
                "meshmetrics: this WSGI server handles one request at a time: a slow request "
                "delays every other one and Prometheus' scrape; serve with threads "
                "(app.run's default, or gunicorn's gthread workers)"
            )

    def _on_register(self, state: BlueprintSetupState) -> None:
        if self._active:
            name = f"{state.name_prefix}.{state.name}".lstrip(".")
            self._attach(cast(Flask, state.app), name)

    # -- detaching ------------------------------------------------------------------

    def uninstrument(self) -> None:
        """Stop measuring and tracing; leave no thread or socket behind.

        The metrics endpoint answers 404 afterwards; ``app.wsgi_app`` gets its previous
        value back (or, when another middleware wrapped it since, passes through), and
        ``app.run`` Flask's own.
        Flask has no public way to remove a ``before_request``/``after_request``
        function: the two meshmetrics installed stay, and return at once for a
        request no instrumentation serves (a later ``instrument()`` reuses them).
        """
        for app, observer in self._apps:
            observer.detach()
            if app.wsgi_app is observer:
                app.wsgi_app = observer.wsgi_app  # type: ignore[method-assign, assignment]
            if app.extensions.get(EXTENSION_KEY) is self:
                del app.extensions[EXTENSION_KEY]
        self._apps.clear()
        for app, run in self._runs:
            if vars(app).get("run") is run:
                del app.run
        self._runs.clear()
        self._active = False
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if self.tracing is not None:
            self.tracing.shutdown()
        with _lock:
            _live.discard(self)
            if isinstance(self._target, Blueprint):
                ref = _by_blueprint.get(self._target)
                if ref is not None and ref() is self:
                    del _by_blueprint[self._target]


def _stop_processor(tracing: RequestTracing) -> None:
    """When an instrumentation is garbage-collected: its export thread drains and ends
    (the OpenTelemetry backend has none: the SDK's processors are the application's)."""
    processor = getattr(tracing.tracer, "processor", None)
    stop = getattr(processor, "stop", None)
    if stop is not None:
        stop()


def _protected(view: MetricsView, config: MeshConfig) -> GatedView:
    """``view`` under ``metrics_auth``: a decorator that fails or returns no view is a
    :class:`ConfigError` naming the option, here rather than on the first scrape."""
    decorator = config.metrics_auth
    if decorator is None:
        return view
    rule = "a decorator: a callable taking a view function and returning a view function"
    try:
        protected = decorator(view)
    except Exception as exc:
        raise ConfigError(
            "metrics_auth",
            decorator,
            config.source_of("metrics_auth"),
            f"{rule} (applying it raised {type(exc).__name__}: {exc})",
        ) from None
    if not callable(protected):
        raise ConfigError(
            "metrics_auth",
            decorator,
            config.source_of("metrics_auth"),
            f"{rule} (it returned {type(protected).__name__})",
        )
    return protected


def _protector(config: MeshConfig) -> MetricsAuth | None:
    """How ``metrics_auth`` is applied to the endpoint's view (None: no decorator)."""
    if config.metrics_auth is None:
        return None
    return lambda view: _protected(view, config)


def _first_app_of(inst: Instrumentation) -> Callable[[], Flask | None]:
    """The app whose context ``metrics_auth`` sees on the metrics port: the decorator is the
    app's code and reads the app's config and extensions, as on the app's own port."""
    ref = weakref.ref(inst)

    def first_app() -> Flask | None:
        target = ref()
        return target._apps[0][0] if target is not None and target._apps else None

    return first_app


def instrumentations() -> list[Instrumentation]:
    """Every live instrumentation of this process."""
    with _lock:
        return list(_live)


def _rule_at(app: Flask, path: str) -> str | None:
    for rule in app.url_map.iter_rules():
        if rule.rule == path:
            return str(rule.endpoint)
    return None


def instrument(
    target: Flask | Blueprint,
    *,
    app: Flask | None = None,
    **options: Unpack[InstrumentOptions],
) -> Instrumentation:
    """Instrument a Flask app or Blueprint with Prometheus metrics (and tracing).

    Every option may also come from ``app.config["MESHMETRICS_<OPTION>"]`` or the
    environment variable ``MESHMETRICS_<OPTION>``: explicit arguments win over
    ``app.config``, which wins over the environment, which wins over defaults (see
    :class:`~meshmetrics.config.MeshConfig`).  A bad value raises
    :class:`~meshmetrics.config.ConfigError` here, never on a request.

    For a Blueprint every request routed to it is measured (whichever part of the app
    answered) and the metrics endpoint is served at the app root.  Instrument it
    before ``register_blueprint``, or pass the app it is already registered on
    (``instrument(bp, app=app)``).

    Instrumenting the same target again with the same resolved options returns the
    existing :class:`Instrumentation`; with different options it raises
    :class:`~meshmetrics.errors.InstrumentationConflictError` (call
    :meth:`Instrumentation.uninstrument` first).
    """
    try:
        return _instrument(target, app, options)
    except (ConfigError, MultiprocessDirError) as exc:
        # the traceback ends at the user's instrument() line: the frames inside
        # meshmetrics say nothing the message does not, and pushed it off the screen
        raise exc.with_traceback(None) from None


def _instrument(
    target: Flask | Blueprint, app: Flask | None, options: InstrumentOptions
) -> Instrumentation:
    if not isinstance(target, Flask | Blueprint):
        raise TypeError(
            f"meshmetrics: instrument() takes a Flask app or Blueprint, not {type(target).__name__}"
        )
    if isinstance(target, Flask) and app is not None and app is not target:
        raise TypeError("meshmetrics: app= is for a Blueprint; pass the app itself as target")
    config_app = target if isinstance(target, Flask) else app
    config = resolve_config(
        options,
        default_service=target.name,
        app_config=config_app.config if config_app is not None else None,
    )
    existing = _existing(target)
    if existing is not None:
        if existing.config.same_as(config):
            return existing
        raise InstrumentationConflictError(
            f"meshmetrics: {target.name!r} is already instrumented with different "
            "options; call .uninstrument() on the existing Instrumentation first"
        )
    inst = Instrumentation(target, config)
    try:
        if isinstance(target, Flask):
            inst._attach(target, None)
        else:
            _attach_blueprint(inst, target, app)
    except BaseException:
        inst.uninstrument()
        raise
    with _lock:
        _live.add(inst)
        if isinstance(target, Blueprint):
            _by_blueprint[target] = weakref.ref(inst)
    return inst


def _existing(target: Flask | Blueprint) -> Instrumentation | None:
    if isinstance(target, Flask):
        inst = target.extensions.get(EXTENSION_KEY)
        return inst if isinstance(inst, Instrumentation) and inst._target is target else None
    with _lock:
        ref = _by_blueprint.get(target)
    return ref() if ref is not None else None


def _attach_blueprint(inst: Instrumentation, blueprint: Blueprint, app: Flask | None) -> None:
    try:
        blueprint.record(inst._on_register)
        registered = False
    except AssertionError:  # Flask refuses record() once the Blueprint is registered
        registered = True
    if app is not None:
        names = [name for name, bp in app.blueprints.items() if bp is blueprint]
        if registered and not names:
            raise RuntimeError(
                f"meshmetrics: Blueprint {blueprint.name!r} is registered, but not on app "
                f"{app.name!r}; pass the app it is registered on"
            )
        for name in names:
            inst._attach(app, name)
    elif registered:
        raise RuntimeError(
            f"meshmetrics: Blueprint {blueprint.name!r} is already registered on an app, "
            "which a Blueprint does not know: call instrument(bp, app=app), or instrument "
            "it before register_blueprint()"
        )


class MeshMetrics:
    """The Flask extension pattern, for app factories::

        mesh = MeshMetrics(namespace="shop")      # module level, no app yet

        def create_app():
            app = Flask(__name__)
            mesh.init_app(app)                    # reads app.config["MESHMETRICS_*"] too
            return app

    Options are checked by name here and converted by :meth:`init_app` (explicit >
    ``app.config`` > environment > default), once per app.
    """

    def __init__(self, app: Flask | None = None, **options: Unpack[InstrumentOptions]) -> None:
        _reject_unknown(options)
        self._options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> Instrumentation:
        """Instrument ``app`` with this extension's options."""
        return instrument(app, **self._options)

    @staticmethod
    def instrumentation(app: Flask | None = None) -> Instrumentation:
        """The instrumentation of ``app`` (default: the current app)."""
        target: Flask = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        inst = target.extensions.get(EXTENSION_KEY)
        if not isinstance(inst, Instrumentation):
            raise RuntimeError(f"meshmetrics: app {target.name!r} is not instrumented")
        return inst
