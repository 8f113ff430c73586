"""An app behind its own gates: an app-wide rate limit (Flask-Limiter's quick start) and a
login wall; the metrics endpoint must answer Prometheus past both."""

from __future__ import annotations

from flask import Flask, redirect, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.wrappers import Response

from meshmetrics import instrument


def create_app() -> Flask:
    app = Flask("gated")
    Limiter(get_remote_address, app=app, default_limits=["2 per hour"], storage_uri="memory://")

    @app.before_request
    def login_wall() -> Response | None:
        if request.path != "/login" and "session" not in request.cookies:
            return redirect("/login")
        return None

    @app.get("/login")
    def login() -> str:
        return "log in"

    @app.get("/orders")
    def orders() -> str:
        return "orders"

    instrument(app, service="gated")
    return app


app = create_app()
