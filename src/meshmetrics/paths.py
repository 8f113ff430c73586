"""The ``path`` label of requests no route matched: declared path prefixes, Socket.IO.

A WSGI layer inside ``app.wsgi_app`` may answer a whole path prefix itself (Engine.IO,
under Flask-SocketIO and python-socketio, answers ``/socket.io/``): Flask never routes
those requests, and without a prefix they would share ``<unmatched>`` with bots' 404s.
``path_prefixes`` gives such a prefix a label of its own (and ``excluded_paths`` may list
that label); an Engine.IO layer's endpoint is declared by default.

Flask-SocketIO wraps ``app.wsgi_app`` in its middleware when ``SocketIO(app)`` runs:
instrumented before, meshmetrics would sit inside it and never see Socket.IO's requests.
When the app's first request reaches the instrumentation, an Engine.IO layer found around
it swaps places with it (both keep Flask's ``wsgi_app`` attribute for the app they wrap).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from flask import Flask

from .config import DEFAULT_EXCLUDED_PATHS, MeshConfig
from .names import log


def prefix_label(prefixes: Iterable[tuple[str, str]], path: str) -> str | None:
    """The label of the first (longest) prefix ``path`` starts with, or ``None``."""
    for prefix, label in prefixes:
        if path.startswith(prefix):
            return label
    return None


def engineio_path(layer: Any) -> str | None:
    """The endpoint of ``layer`` when it is an Engine.IO WSGI layer (``engineio.WSGIApp``,
    which python-socketio's and Flask-SocketIO's middlewares are), else ``None``.  Engine.IO
    is never imported here: an app using it has imported it."""
    engineio = sys.modules.get("engineio")
    cls = getattr(engineio, "WSGIApp", None)
    if not isinstance(cls, type) or not isinstance(layer, cls):
        return None
    path = getattr(layer, "engineio_path", None)
    return path if isinstance(path, str) and path.startswith("/") else None


def move_outside_engineio(app: Flask, observer: Any) -> str | None:
    """When an Engine.IO layer wraps ``observer`` directly (``SocketIO(app)`` after
    ``instrument(app)``), swap them so that the observer sees Socket.IO's requests too;
    returns the Engine.IO endpoint it found inside or around the observer."""
    outer: Any = app.wsgi_app
    path = engineio_path(outer)
    wrapped: Any = getattr(outer, "wsgi_app", None)
    if path is not None and wrapped is observer:
        outer.wsgi_app = observer.wsgi_app
        observer.wsgi_app = outer
        app.wsgi_app = observer  # type: ignore[method-assign]
        return path
    return engineio_path(observer.wsgi_app)


def check_exclusions(config: MeshConfig, apps: Iterable[tuple[Flask, Any]]) -> None:
    """At a process' first request (the routes are declared): one WARNING naming the
    ``excluded_paths`` entries given (not the probe defaults) that exclude nothing."""
    given = [path for path in config.excluded_paths if path not in DEFAULT_EXCLUDED_PATHS]
    if given:
        pairs = list(apps)
        labels = [label for _, observer in pairs for _, label in observer.prefixes]
        flask_apps = [app for app, _ in pairs]
        warn_unknown_exclusions(unknown_exclusions(given, flask_apps, labels), flask_apps)


def unknown_exclusions(
    excluded: Iterable[str], apps: Iterable[Flask], labels: Iterable[str]
) -> list[str]:
    """The entries of ``excluded`` that are neither a route template of ``apps`` nor one
    of the prefix ``labels``: they exclude nothing."""
    known = set(labels)
    for app in apps:
        known.update(rule.rule for rule in app.url_map.iter_rules())
    return [entry for entry in excluded if entry not in known]


def warn_unknown_exclusions(entries: list[str], apps: Iterable[Flask]) -> None:
    """One WARNING naming the ``excluded_paths`` entries that exclude nothing."""
    if entries:
        log.warning(
            "meshmetrics: excluded_paths %s match no route template of app %s and no "
            "declared path prefix, so they exclude nothing: list a route as declared "
            "(with a Blueprint's url_prefix), or name a prefix that is not a Flask "
            "route with path_prefixes={'/prefix/': '/prefix/'} and exclude its label",
            ", ".join(repr(entry) for entry in entries),
            ", ".join(repr(app.name) for app in apps),
        )
