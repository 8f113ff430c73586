"""Several apps in one process, idempotence, and symmetric uninstrument."""

from __future__ import annotations

import pytest
from flask import Flask

from helpers import value
from meshmetrics import InstrumentationConflictError, instrument


def make_app(name: str) -> Flask:
    app = Flask(name)

    @app.route("/hello")
    def hello() -> str:
        return name

    return app


def scrape(app: Flask) -> str:
    return app.test_client().get("/metrics").get_data(as_text=True)


def test_two_apps_have_separate_registries() -> None:
    a, b = make_app("alpha"), make_app("beta")
    inst_a, inst_b = instrument(a), instrument(b)
    assert inst_a.registry is not inst_b.registry
    a.test_client().get("/hello")
    b.test_client().get("/hello")
    b.test_client().get("/hello")
    assert value(scrape(a), "flask_http_request_total") == 1
    assert value(scrape(b), "flask_http_request_total") == 2
    assert value(scrape(a), "flask_service_info", service="alpha") == 1
    assert value(scrape(a), "flask_service_info", service="beta") == 0


def test_app_factory_called_per_test_does_not_collide() -> None:
    for _ in range(3):
        app = make_app("factory")
        instrument(app)
        app.test_client().get("/hello")
        assert value(scrape(app), "flask_http_request_total") == 1


def test_instrumenting_twice_returns_the_same_or_raises() -> None:
    app = make_app("twice")
    first = instrument(app, namespace="shop")
    assert instrument(app, namespace="shop") is first
    with pytest.raises(
        InstrumentationConflictError, match="already instrumented with different options"
    ):
        instrument(app, namespace="other")
    app.test_client().get("/hello")
    assert value(scrape(app), "flask_http_request_total") == 1  # hooks registered once


def test_existing_metrics_route_is_reported() -> None:
    app = make_app("clash")
    app.add_url_rule("/metrics", "legacy_metrics", lambda: "legacy")
    with pytest.raises(
        InstrumentationConflictError, match="already routed to endpoint 'legacy_metrics'"
    ):
        instrument(app)
    assert "meshmetrics" not in app.extensions
    instrument(app, metrics_path="/meshmetrics")  # the way out the message names


def test_uninstrument_is_symmetric_and_idempotent() -> None:
    app = make_app("undo")
    inst = instrument(app)
    app.test_client().get("/hello")
    inst.uninstrument()
    inst.uninstrument()
    assert "meshmetrics" not in app.extensions
    assert "run" not in app.__dict__
    assert app.test_client().get("/metrics").status_code == 404
    assert app.test_client().get("/hello").status_code == 200
    assert value(_text(inst), "flask_http_request_total") == 1  # nothing counted after undo
    again = instrument(app, namespace="other")
    assert again is not inst
    app.test_client().get("/hello")
    assert value(scrape(app), "flask_http_request_total") == 1


def _text(inst: object) -> str:
    from prometheus_client import generate_latest

    return generate_latest(inst.registry).decode()  # type: ignore[attr-defined]


def test_rejects_other_targets() -> None:
    with pytest.raises(TypeError, match="Flask app or Blueprint, not str"):
        instrument("app")  # type: ignore[arg-type]
