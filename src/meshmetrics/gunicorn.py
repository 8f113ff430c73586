"""gunicorn configuration for several workers sharing one ``/metrics``.

Use it as the config module (add your own settings on the command line)::

    gunicorn -w 4 -c python:meshmetrics.gunicorn 'app:app'

or import its hooks from your own ``gunicorn.conf.py``::

    from meshmetrics.gunicorn import child_exit, on_starting, post_worker_init  # noqa: F401

It points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory unless it is set
already, removes the files of processes that are gone when the master starts
(stale files from a previous run would be summed in; files of live processes stay:
the master's own under ``--preload``, another master's sharing the directory), and
tells prometheus_client when a worker
exits so its live gauges (in-progress requests) drop out.  Counters and
histograms of a dead worker stay in the sums: nothing counted is lost.

gunicorn loads this module into the master, whose imports every worker inherits:
it imports no Flask, requests or urllib3 (the app and meshmetrics' request path load
in the workers), so gevent and eventlet workers patch the standard library before
anything holds a reference to ``ssl`` or to unpatched locks.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from prometheus_client import multiprocess

from .multiproc import (
    MULTIPROC_ENV,
    MultiprocessDirError,
    archive_owner,
    check_multiprocess_dir,
    files_by_pid,
    fold_worker,
    is_alive,
    live_pids,
    multiprocess_dir,
)

if not os.environ.get(MULTIPROC_ENV):
    os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="meshmetrics-multiproc-")
Path(os.environ[MULTIPROC_ENV]).mkdir(parents=True, exist_ok=True)
with contextlib.suppress(MultiprocessDirError):  # on_starting names it, in one line
    multiprocess_dir()  # switch prometheus_client's value store if it was imported first

# Threads inside each worker, so one slow request does not block a scrape.
worker_class = "gthread"
threads = 4


def on_starting(server: Any) -> None:
    """Check the directory, then remove the files of processes that are gone (a previous
    run's workers, and archives of a master that is gone) before any worker starts."""
    directory = os.environ[MULTIPROC_ENV]
    try:
        check_multiprocess_dir(directory)
    except MultiprocessDirError as exc:
        server.log.error("%s", exc)  # one line, before any worker boots
        sys.exit(1)
    live = set(live_pids(directory))
    for pid, paths in files_by_pid(directory).items():
        for path in paths:
            owner = archive_owner(path) if pid is None else pid
            if owner is not None and owner not in live and not is_alive(owner):
                path.unlink(missing_ok=True)


def post_worker_init(worker: Any) -> None:
    """Serve ``metrics_port`` from one worker; the others stand by to take it over."""
    from .instrumentation import instrumentations

    for inst in instrumentations():
        inst.start_metrics_server(retry_every=2.0)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges, and fold its other files into the master's
    archives (so files of recycled workers, ``--max-requests``, do not pile up)."""
    directory = os.environ[MULTIPROC_ENV]
    multiprocess.mark_process_dead(worker.pid, directory)  # type: ignore[no-untyped-call]
    try:
        fold_worker(directory, worker.pid, os.getpid())
    except OSError as exc:  # full or read-only now: the files stay, nothing is lost
        server.log.error("meshmetrics: cannot fold worker %s's metrics files: %s", worker.pid, exc)
