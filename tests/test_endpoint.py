"""The metrics endpoint is answered at the WSGI boundary, before Flask routes a request:
the app's own gates (rate limits, login walls) never see Prometheus, no url_map rule
exists for ``flask routes`` or an API document, and ``metrics_auth`` is the one gate,
run with the app's context (issue 20 item 1)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

import pytest
import requests
from flask import Blueprint, Flask, abort, current_app, g, request
from flask.cli import routes_command
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import Forbidden

from helpers import Server, free_port, gunicorn_argv, serve_in_thread, value
from meshmetrics import instrument

from apps.gated import create_app as gated_app


def scrape_ok(base: str, times: int) -> list[int]:
    return [requests.get(f"{base}/metrics", timeout=10).status_code for _ in range(times)]


def test_no_route_and_no_api_document_lists_the_endpoint() -> None:
    from flask_restx import Api, Resource

    app = Flask("restx")
    api = Api(app, doc=False)

    @api.route("/items")
    class Items(Resource):  # type: ignore[misc]
        def get(self) -> dict[str, str]:
            return {"ok": "yes"}

    instrument(app)
    client = app.test_client()
    assert "/metrics" not in {rule.rule for rule in app.url_map.iter_rules()}
    routes = app.test_cli_runner().invoke(routes_command).output  # `flask routes`
    assert "/items" in routes
    assert "metrics" not in routes
    assert set(client.get("/swagger.json").get_json()["paths"]) == {"/items"}
    assert client.get("/metrics").status_code == 200


def test_apiflask_spec_has_only_the_apps_operations() -> None:
    from apiflask import APIFlask

    app = APIFlask("shop")

    @app.get("/pets")
    def pets() -> dict[str, str]:
        return {"name": "rex"}

    instrument(app)
    spec = app.test_client().get("/openapi.json").get_json()
    assert set(spec["paths"]) == {"/pets"}
    assert app.test_client().get("/metrics").status_code == 200


def test_scrapes_pass_an_app_wide_rate_limit_and_a_login_wall_werkzeug() -> None:
    base, stop = serve_in_thread(gated_app())
    try:
        assert scrape_ok(base, 5) == [200] * 5  # "2 per hour" would answer 429 from the 3rd
        logins = [requests.get(f"{base}/login", timeout=10).status_code for _ in range(3)]
        assert logins == [200, 200, 429]  # the limit works, and scrapes took none of it
        wall = requests.get(f"{base}/orders", timeout=10, allow_redirects=False)
        assert (wall.status_code, wall.headers["Location"]) == (302, "/login")
        text = requests.get(f"{base}/metrics", timeout=10).text
    finally:
        stop()
    assert value(text, "flask_http_request_total", path="/login", status="429") == 1
    assert value(text, "flask_http_request_total", path="/orders", status="302") == 1
    assert 'path="/metrics"' not in text


@pytest.mark.slow
def test_scrapes_pass_an_app_wide_rate_limit_and_a_login_wall_gunicorn(
    start_server: Callable[..., Server],
) -> None:
    server = start_server(gunicorn_argv("apps.gated:app", 1))  # one worker: one limiter
    assert scrape_ok(server.base, 5) == [200] * 5
    wall = requests.get(f"{server.base}/orders", timeout=10, allow_redirects=False)
    assert (wall.status_code, wall.headers["Location"]) == (302, "/login")
    text = requests.get(f"{server.base}/metrics", timeout=10).text
    assert value(text, "flask_http_request_total", path="/orders", status="302") == 1


def test_blueprint_endpoint_at_the_app_root_past_the_apps_gate() -> None:
    app = Flask("bp")
    bp = Blueprint("api", __name__, url_prefix="/api")
    bp.add_url_rule("/items", "items", lambda: "items")
    app.before_request(lambda: abort(503))  # maintenance mode
    app.register_blueprint(bp)
    instrument(bp, app=app)
    client = app.test_client()
    assert client.get("/api/items").status_code == 503
    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "flask_http_request_total", path="/api/items", status="503") == 1


def token_in_config(view: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator that needs the app's context: its config, request, g, abort()."""

    @wraps(view)
    def guarded() -> Any:
        sent = request.headers.get("Authorization", "")
        g.checked = True
        if sent == "raise":
            raise RuntimeError("broken auth backend")
        if sent == "forbidden":
            raise Forbidden()
        if sent == "teapot":
            return "tea", 418, {"X-Auth": "tea"}
        if sent != f"Bearer {current_app.config['METRICS_TOKEN']}":
            abort(401)
        return view()

    return guarded


@pytest.fixture
def guarded() -> Flask:
    app = Flask("guarded")
    app.config["METRICS_TOKEN"] = "s3cret"
    app.before_request(lambda: abort(503))  # never runs for a scrape
    app.register_error_handler(401, lambda e: ({"error": "who are you"}, 401))
    instrument(app, metrics_auth=token_in_config)
    return app


def test_metrics_auth_runs_in_the_apps_context(
    guarded: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    client = guarded.test_client()
    ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert ok.headers["Cache-Control"] == "no-store"
    assert b"flask_service_info" in ok.data
    denied = client.get("/metrics")  # abort(401) through the app's own 401 handler
    assert (denied.status_code, denied.get_json()) == (401, {"error": "who are you"})
    assert client.get("/metrics", headers={"Authorization": "forbidden"}).status_code == 403
    tea = client.get("/metrics", headers={"Authorization": "teapot"})
    assert (tea.status_code, tea.data, tea.headers["X-Auth"]) == (418, b"tea", "tea")
    with caplog.at_level(logging.ERROR, logger="meshmetrics"):
        broken = client.get("/metrics", headers={"Authorization": "raise"})
    assert broken.status_code == 500
    assert "broken auth backend" in caplog.text


def test_metrics_auth_over_the_metrics_port_sees_the_apps_context() -> None:
    app = Flask("port")
    app.config["METRICS_TOKEN"] = "s3cret"
    inst = instrument(app, metrics_auth=token_in_config, metrics_port=free_port())
    assert inst.metrics_server is not None
    client_app = inst.endpoint.serve
    from werkzeug.test import Client

    client = Client(client_app)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/other").status_code == 404
    assert app.test_client().get("/metrics").status_code == 404  # not on the app's port
    inst.uninstrument()


def test_methods_head_and_headers() -> None:
    app = Flask("methods")
    instrument(app)
    client = app.test_client()
    got = client.get("/metrics")
    head = client.head("/metrics")
    assert (head.status_code, head.data) == (200, b"")
    assert head.headers["Cache-Control"] == got.headers["Cache-Control"] == "no-store"
    assert int(head.headers["Content-Length"]) > 0
    assert int(got.headers["Content-Length"]) == len(got.data)
    post = client.post("/metrics")
    assert (post.status_code, post.headers["Allow"]) == (405, "GET, HEAD")
    assert client.options("/metrics").status_code == 200
    assert client.get("/metrics/").status_code == 404  # only the exact path


def test_a_route_added_after_instrument_is_named_once(caplog: pytest.LogCaptureFixture) -> None:
    app = Flask("late")
    instrument(app)
    app.add_url_rule("/metrics", "legacy", lambda: "legacy")
    with caplog.at_level(logging.WARNING, logger="meshmetrics"):
        assert app.test_client().get("/metrics").data.startswith(b"# HELP")
        app.test_client().get("/metrics")
    assert caplog.text.count("'legacy' routed there on app 'late' never runs") == 1


_PATHS = st.sampled_from(["/metrics", "/metrics/", "/Metrics", "/metricsx", "/", "/app"])
_METHODS = st.sampled_from(["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH", "BREW"])


@settings(max_examples=60, deadline=None)
@given(path=_PATHS, method=_METHODS)
def test_only_the_exact_path_is_the_endpoint_and_every_method_gets_an_answer(
    path: str, method: str
) -> None:
    app = Flask("any")
    app.add_url_rule("/app", "app_view", lambda: "app", methods=["GET", "POST"])
    app.before_request(lambda: "gate" if request.path != "/app" else None)
    instrument(app)
    response = app.test_client().open(path, method=method)
    if path != "/metrics":  # the app's own answer: its gate, its view, its 405
        assert response.status_code in (200, 405), (path, method)
        assert response.data in (b"gate", b"app", b"") or response.status_code == 405
    elif method in ("GET", "HEAD", "OPTIONS"):
        assert response.status_code == 200
        assert response.headers["Cache-Control" if method != "OPTIONS" else "Allow"]
    else:
        assert (response.status_code, response.headers["Allow"]) == (405, "GET, HEAD")


def test_a_host_matching_app_answers_scrapes_for_any_host() -> None:
    """Found by Flask-Admin's suite (docs/compatibility.md): with ``host_matching=True`` a
    route has a host, and the old ``/metrics`` route had none, so every scrape (at a pod IP
    too) was a 404.  The endpoint is not routed: any Host gets the metrics."""
    app = Flask("hosts", host_matching=True, static_host="static.example")
    app.add_url_rule("/", "index", lambda: "ok", host="app.example")
    instrument(app, service="hosts")
    client = app.test_client()
    for host in ("app.example", "10.1.2.3:8080", "static.example"):
        response = client.get("/metrics", headers={"Host": host})
        assert response.status_code == 200, host
        assert b"flask_http_request_total" in response.data
