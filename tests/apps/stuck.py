"""An app with a request that never ends by itself: its process is killed in the middle
(``/hang`` writes the pid to ``$STUCK_PID_FILE``, then waits)."""

from __future__ import annotations

import os
import threading

from flask import Flask

from meshmetrics import instrument

app = Flask("stuck")
instrument(app, service="stuck")
_never = threading.Event()


@app.route("/ok")
def ok() -> str:
    return "ok"


@app.route("/hang")
def hang() -> str:
    with open(os.environ["STUCK_PID_FILE"], "w") as f:
        f.write(str(os.getpid()))
    _never.wait(120)  # the test kills this process long before
    return "late"
