"""The instrumented app the stress and soak scripts load (configured by MESHMETRICS_* env)."""

from __future__ import annotations

import os

from flask import Flask

from meshmetrics import instrument

app = Flask("loadapp")
instrument(app, service="loadapp")


@app.route("/api/v1/user/<user_id>")
def user(user_id: str) -> dict[str, str]:
    return {"user_id": user_id}


@app.route("/pid")
def pid() -> str:
    return str(os.getpid())
