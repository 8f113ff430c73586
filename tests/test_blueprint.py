"""Blueprints: before or after registration, only their routes, /metrics at the root."""

from __future__ import annotations

import pytest
from flask import Blueprint, Flask

from helpers import value
from meshmetrics import InstrumentationConflictError, instrument


def make(register_first: bool) -> tuple[Flask, Blueprint]:
    app = Flask("db-app")
    bp = Blueprint("datastore", __name__, url_prefix="/api/v1/datastore")

    @bp.route("/read")
    def read() -> dict[str, int]:
        return {"Count": 0}

    @bp.route("/health")
    def health() -> str:
        return "ok"

    @app.route("/outside")
    def outside() -> str:
        return "not measured"

    if register_first:
        app.register_blueprint(bp)
    return app, bp


@pytest.mark.parametrize("register_first", [True, False], ids=["after-register", "before-register"])
def test_only_blueprint_routes_measured_metrics_at_root(register_first: bool) -> None:
    app, bp = make(register_first)
    # exclusion is exact: a Blueprint's probe is listed with its prefix
    inst = instrument(bp, app=app, service="cmpt756db", excluded_paths=["/api/v1/datastore/health"])
    if not register_first:
        assert inst.apps == ()
        app.register_blueprint(bp)
    assert inst.apps == (app,)
    assert inst.app is app
    client = app.test_client()
    client.get("/api/v1/datastore/read")
    client.get("/api/v1/datastore/read")
    client.get("/api/v1/datastore/health")
    client.get("/outside")
    client.get("/nothing-here")
    assert client.get("/api/v1/datastore/metrics").status_code == 404
    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "flask_http_request_total", path="/api/v1/datastore/read") == 2
    assert value(text, "flask_http_request_total") == 2
    assert value(text, "flask_service_info", service="cmpt756db") == 1
    assert app.extensions["meshmetrics"] is inst


def test_blueprint_on_two_apps_and_nested() -> None:
    parent = Blueprint("api", __name__, url_prefix="/api")
    child = Blueprint("v1", __name__, url_prefix="/v1")

    @child.route("/ping")
    def ping() -> str:
        return "pong"

    parent.register_blueprint(child)
    inst = instrument(parent, service="api")
    apps = [Flask("one"), Flask("two")]
    for app in apps:
        app.register_blueprint(parent)
        app.test_client().get("/api/v1/ping")
    assert inst.apps == tuple(apps)
    text = apps[1].test_client().get("/metrics").get_data(as_text=True)
    assert value(text, "flask_http_request_total", path="/api/v1/ping") == 2  # shared registry


def test_blueprint_registered_under_another_name() -> None:
    app, bp = make(register_first=False)
    app.register_blueprint(bp, name="store", url_prefix="/v2")
    inst = instrument(bp, app=app, service="cmpt756db")
    app.test_client().get("/v2/read")
    assert inst.apps == (app,)
    assert (
        value(app.test_client().get("/metrics").get_data(as_text=True), "flask_http_request_total")
        == 1
    )


def test_app_and_blueprint_both_instrumented_is_an_error() -> None:
    app, bp = make(register_first=True)
    instrument(app)
    with pytest.raises(InstrumentationConflictError, match="already has an instrumentation"):
        instrument(bp, app=app)


def test_registered_blueprint_without_its_app_is_a_clear_error() -> None:
    _app, bp = make(register_first=True)
    with pytest.raises(RuntimeError, match=r"instrument\(bp, app=app\)"):
        instrument(bp)
    other = Flask("other")
    with pytest.raises(RuntimeError, match="not on app 'other'"):
        instrument(bp, app=other)


def test_uninstrument_blueprint_stops_future_registrations() -> None:
    app, bp = make(register_first=False)
    inst = instrument(bp)
    inst.uninstrument()
    app.register_blueprint(bp)
    assert inst.apps == ()
    assert app.test_client().get("/metrics").status_code == 404


def test_unregistered_blueprint_has_no_app_yet() -> None:
    _, bp = make(register_first=False)
    with pytest.raises(RuntimeError, match="not registered on an app yet"):
        _ = instrument(bp).app
