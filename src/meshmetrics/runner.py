"""How an instrumented app is served by ``app.run()``: always threaded, one process.

A single-threaded development server serialises every request behind a slow
one (scrapes included), and ``processes=N`` forks N copies whose counters never
meet.  Under the werkzeug reloader the serving process is the reloader's child:
``/metrics`` stays on there (prometheus-flask-exporter alone would drop it) and
meshmetrics says so once.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask

log = logging.getLogger("meshmetrics")

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


def run(app: Flask, *args: Any, **options: Any) -> None:
    """``Flask.run`` for an instrumented app: forces ``threaded=True``, refuses processes>1."""
    processes = options.get("processes", 1) or 1
    if processes > 1:
        raise ValueError(
            f"meshmetrics: app.run(processes={processes}) forks processes whose metrics "
            "never meet; run several processes with gunicorn instead: "
            "gunicorn -w 4 -c python:meshmetrics.gunicorn 'module:app'"
        )
    if options.get("threaded") is False:
        log.warning(
            "meshmetrics: app.run(threaded=False) overridden with threaded=True so a slow "
            "request cannot block the others or the Prometheus scrape"
        )
    options["threaded"] = True
    debug = options.get("debug", args[2] if len(args) > 2 else None)
    reloader = options.get("use_reloader", bool(debug if debug is not None else app.debug))
    if not reloader or running_under_reloader():  # this process serves (not a reloader parent)
        inst = app.extensions.get("meshmetrics")
        if inst is not None and inst.metrics_server is not None:
            inst.start_metrics_server()
    Flask.run(app, *args, **options)
