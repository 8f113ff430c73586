"""How an instrumented app is served (``app.run()``, ``Instrumentation.run()``, ``flask run``):
threaded, one process, and which process serves.

A single-threaded development server serialises every request behind a slow
one (scrapes included), and ``processes=N`` forks N copies whose counters never
meet.  Under the werkzeug reloader the serving process is the reloader's child:
``/metrics`` stays on there (prometheus-flask-exporter alone would drop it) and
meshmetrics says so once.
"""

from __future__ import annotations

import os
from typing import Any

import click
from flask import Flask
from flask.cli import load_dotenv as load_dotenv_files
from flask.cli import run_command
from flask.helpers import get_debug_flag, get_load_dotenv

from .names import log

_reloader_warned = False


def running_under_reloader() -> bool:
    """True in the process the werkzeug reloader started to serve requests."""
    return os.environ.get("WERKZEUG_RUN_MAIN") == "true"


def warn_if_reloader(metrics_path: str) -> None:
    """Log, once per process, that the reloader's serving child keeps ``metrics_path``."""
    global _reloader_warned
    if _reloader_warned or not running_under_reloader():
        return
    _reloader_warned = True
    log.warning(
        "meshmetrics: running under the werkzeug reloader (debug mode); %s stays enabled "
        "in this serving process (pid %d) and its counters restart at zero after each "
        "code reload. prometheus-flask-exporter alone would have removed it (DEBUG_METRICS).",
        metrics_path,
        os.getpid(),
    )


def threaded_options(options: dict[str, Any]) -> dict[str, Any]:
    """``app.run``'s options for an instrumented app: ``threaded=True`` forced (said once,
    at WARNING, when the caller asked otherwise), ``processes>1`` refused."""
    processes = options.get("processes", 1) or 1
    if processes > 1:
        raise ValueError(
            f"meshmetrics: app.run(processes={processes}) forks processes whose metrics "
            "never meet; run several processes with gunicorn instead: "
            "gunicorn -w 4 -c python:meshmetrics.gunicorn 'module:app'"
        )
    if options.get("threaded", True) is not True:
        log.warning(
            "meshmetrics: app.run(threaded=%r) overridden with threaded=True so a slow "
            "request cannot block the others or the Prometheus scrape",
            options["threaded"],
        )
    return {**options, "threaded": True}


def serves_here(app: Flask, debug: bool | None, load_dotenv: bool, options: dict[str, Any]) -> bool:
    """Whether ``app.run(debug=debug, load_dotenv=load_dotenv, **options)`` serves requests
    from this process, as Flask decides it: not under ``flask run`` (Flask ignores the
    call there), nor in the reloader's watching parent (its child serves)."""
    if os.environ.get("FLASK_RUN_FROM_CLI") == "true":
        return False
    if running_under_reloader():
        return True
    if "use_reloader" in options:
        return not options["use_reloader"]
    if debug is not None:
        return not debug
    if get_load_dotenv(load_dotenv):
        load_dotenv_files()  # what Flask.run does next; it never overrides a set variable
    if "FLASK_DEBUG" in os.environ:
        return not get_debug_flag()
    return not app.debug


def serving_process_at_import() -> bool:
    """True while the app is instrumented in the process that will serve it, where that is
    observable: the werkzeug reloader's serving child, or ``flask run`` without the
    reloader (the command loads the app, then serves from the same process)."""
    if running_under_reloader():
        return True
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.command is not run_command:
        return False
    reload = ctx.params.get("reload")
    return not (get_debug_flag() if reload is None else reload)


def run(app: Flask, *args: Any, **options: Any) -> None:
    """``app.run`` for an instrumented app: forces ``threaded=True``, refuses processes>1
    (``app.run`` itself does the same once the app is instrumented)."""
    app.run(*args, **threaded_options(options))
