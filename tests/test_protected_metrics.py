"""Protected metrics over real HTTP: an auth decorator, and a separate metrics port."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, request

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


def config_token_required(view: Any) -> Any:
    """An auth decorator in the common style: the token lives in the app's config."""
    from functools import wraps

    from flask import current_app

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        expected = f"Bearer {current_app.config.get('METRICS_TOKEN')}"
        if request.headers.get("Authorization") != expected:
            return "unauthorized\n", 401
        return view(*args, **kwargs)

    return guarded


def test_metrics_port_auth_sees_the_apps_config_and_serves_no_static_files(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "secret.txt").write_text("do not serve me")
    monkeypatch.chdir(tmp_path)  # Flask's static folder is relative to the app's root
    port = free_port()
    app = Flask("svc", root_path=str(tmp_path))
    app.config["METRICS_TOKEN"] = "real-token"
    inst = instrument(
        app,
        service="svc",
        metrics_port=port,
        metrics_host="127.0.0.1",
        metrics_auth=config_token_required,
    )
    assert inst.start_metrics_server() is True
    metrics = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{metrics}/metrics")
        real = {"Authorization": "Bearer real-token"}
        assert requests.get(f"{metrics}/metrics", headers=real, timeout=5).status_code == 200
        none = {"Authorization": "Bearer None"}
        assert requests.get(f"{metrics}/metrics", headers=none, timeout=5).status_code == 401
        for path in ("/static/secret.txt", "/secret.txt"):
            answer = requests.get(f"{metrics}{path}", headers=real, timeout=5)
            assert answer.status_code == 404
            assert "do not serve me" not in answer.text
    finally:
        inst.uninstrument()


def test_metrics_port_binds_loopback_unless_in_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    laptop = instrument(Flask("laptop"), metrics_port=free_port())
    assert laptop.config.metrics_host == "127.0.0.1"
    assert laptop.config.source_of("metrics_host") == "default"
    try:
        assert laptop.start_metrics_server() is True
        server = laptop.metrics_server
        assert server is not None
        assert server._server is not None
        assert server._server.server_address[0] == "127.0.0.1"
    finally:
        laptop.uninstrument()
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    pod = instrument(Flask("pod"), metrics_port=free_port())
    assert pod.config.metrics_host == "0.0.0.0"
    assert "Kubernetes pod" in pod.config.source_of("metrics_host")
    pod.uninstrument()
    explicit = instrument(Flask("explicit"), metrics_port=free_port(), metrics_host="::1")
    assert explicit.config.metrics_host == "::1"
    explicit.uninstrument()
