"""The matrix app under uWSGI with an ``uwsgi.atexit`` hook of the app's own, set before
meshmetrics chains its flush to it: each process that runs it leaves a file named after
its pid in ``$EXIT_MARKS``."""

from __future__ import annotations

import os
from pathlib import Path

import uwsgi  # type: ignore[import-not-found]  # only inside uWSGI


def _mark() -> None:
    (Path(os.environ["EXIT_MARKS"]) / str(os.getpid())).touch()


uwsgi.atexit = _mark

from apps.matrix import app  # noqa: E402  (instruments: after the hook above)

__all__ = ["app"]
