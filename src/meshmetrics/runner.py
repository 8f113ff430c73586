"""How an instrumented app is served by ``Instrumentation.run()``: threaded, one process.

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
    """``app.run`` for an instrumented app: forces ``threaded=True``, refuses processes>1.

    Plain ``app.run()`` works too (Flask's default is threaded); meshmetrics warns at
    the first request when a server runs one thread or several processes.
    """
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
    app.run(*args, **options)
