"""Protected metrics over real HTTP: an auth decorator, and a separate metrics port."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from flask import Flask

from helpers import Server, free_port, gunicorn_argv, serve_in_thread, value, wait_http
from meshmetrics import instrument

from apps.protected import token_required

TOKEN = {"Authorization": "Bearer s3cret"}


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_TOKEN", "s3cret")


def make_app(**options: object) -> tuple[Flask, object]:
    app = Flask("shop")
    inst = instrument(app, service="shop", metrics_auth=token_required, **options)

    @app.route("/orders/<oid>")
    def order(oid: str) -> dict[str, str]:
        return {"order": oid}

    @app.route("/admin")
    def admin() -> str:
        return "secret admin page"

    return app, inst


def test_auth_decorator_over_http() -> None:
    app, _ = make_app()
    base, stop = serve_in_thread(app)
    try:
        assert requests.get(f"{base}/metrics", timeout=5).status_code == 401
        wrong = requests.get(f"{base}/metrics", headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401
        ok = requests.get(f"{base}/metrics", headers=TOKEN, timeout=5)
        assert ok.status_code == 200
        assert "flask_service_info" in ok.text
    finally:
        stop()


def test_separate_metrics_port_exposes_nothing_else() -> None:
    metrics_port = free_port()
    app, inst = make_app(metrics_port=metrics_port, metrics_host="127.0.0.1")
    base, stop = serve_in_thread(app)
    metrics = f"http://127.0.0.1:{metrics_port}"
    try:
        assert requests.get(f"{base}/orders/1", timeout=5).status_code == 200  # starts the port
        wait_http(f"{metrics}/metrics", timeout=10)
        assert requests.get(f"{base}/metrics", headers=TOKEN, timeout=5).status_code == 404
        assert requests.get(f"{metrics}/metrics", timeout=5).status_code == 401
        scraped = requests.get(f"{metrics}/metrics", headers=TOKEN, timeout=5)
        assert scraped.status_code == 200
        assert value(scraped.text, "flask_http_request_total", path="/orders/<oid>") == 1
        for path in ("/orders/1", "/admin", "/", "/static/x"):
            assert requests.get(f"{metrics}{path}", headers=TOKEN, timeout=5).status_code == 404
        assert inst.start_metrics_server() is True  # idempotent in this process
    finally:
        inst.uninstrument()
        stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{metrics}/metrics", timeout=2)


def test_bad_metrics_port_is_rejected() -> None:
    with pytest.raises(ValueError, match="invalid metrics_port 70000"):
        instrument(Flask("x"), metrics_port=70000)


@pytest.mark.slow
def test_gunicorn_workers_share_one_metrics_port(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    metrics_port = free_port()  # the app is configured with it: a number is needed
    argv = gunicorn_argv("apps.protected:app", 2)
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "MESHMETRICS_METRICS_PORT": str(metrics_port),
        "METRICS_TOKEN": "s3cret",
    }
    server = start_server(argv, env=env)
    metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    wait_http(metrics, timeout=15)  # served before any request: gunicorn's worker hook

    def hit(i: int) -> int:
        with requests.Session() as s:
            return s.get(f"{server.base}/orders/{i}", timeout=10).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert set(pool.map(hit, range(300))) == {200}
    text = requests.get(metrics, headers=TOKEN, timeout=5).text
    assert value(text, "flask_http_request_total", path="/orders/<oid>") == 300
    assert requests.get(metrics, timeout=5).status_code == 401
    assert requests.get(f"{server.base}/metrics", headers=TOKEN, timeout=5).status_code == 404
    server.stop()
