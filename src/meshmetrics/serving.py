"""What this process can know about the server it runs in: does it share its traffic with
other processes (each of which, without ``PROMETHEUS_MULTIPROC_DIR``, counts alone)?

``wsgi.multiprocess`` is the server's claim.  A WSGI server that names itself
(``SERVER_SOFTWARE``: gunicorn, werkzeug, waitress, …, or uWSGI's ``uwsgi.version``) sets
it from its own process model, and is believed.  An ASGI-to-WSGI adapter (a2wsgi,
uvicorn's ``WSGIMiddleware``) names no server and always claims several processes, whatever
the ASGI server runs: its claim holds only with evidence this process has, a fork after
meshmetrics was imported (a preloading server forked this worker) or a parent that
started it through :mod:`multiprocessing` (uvicorn's or hypercorn's ``--workers``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

_forked = False


def _after_fork_in_child() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def forked() -> bool:
    """Whether this process was forked from one that had imported meshmetrics."""
    return _forked


def started_by_multiprocessing() -> bool:
    """Whether :mod:`multiprocessing` started this process (spawned or forked workers)."""
    import multiprocessing.process  # loaded already in such a process

    return multiprocessing.process.parent_process() is not None


def server_named(environ: Mapping[str, Any]) -> bool:
    """Whether a WSGI server built ``environ`` and names itself."""
    return bool(environ.get("SERVER_SOFTWARE")) or "uwsgi.version" in environ


def several_processes(environ: Mapping[str, Any]) -> bool:
    """Whether this process is one of several serving the app (from the first request's
    ``environ``): the server claims it, and either names itself or this process has
    evidence of it."""
    if not environ.get("wsgi.multiprocess"):
        return False
    return server_named(environ) or forked() or started_by_multiprocessing()
