"""Issue 11: every request a real app serves is counted as the server sent it."""

from __future__ import annotations

import gc
import socket
import threading
import time
import weakref

import pytest
import requests
from flask import Blueprint, Flask, Response, abort, stream_with_context
from prometheus_client import REGISTRY, Counter

from helpers import serve_in_thread, value
from meshmetrics import CLIENT_CLOSED, instrument
from meshmetrics.instrumentation import instrumentations
from meshmetrics.manifests.model import model_from_registry
from meshmetrics.testing import capture_spans


def scrape(app: Flask) -> str:
    return app.test_client().get("/metrics").get_data(as_text=True)


def streaming_app() -> Flask:
    app = Flask("stream")

    @app.get("/stream")
    def stream() -> Response:
        def chunks():  # type: ignore[no-untyped-def]
            for _ in range(3):
                yield b"x" * 100
                time.sleep(0.1)

        return Response(stream_with_context(chunks()))

    @app.get("/endless")
    def endless() -> Response:
        def chunks():  # type: ignore[no-untyped-def]
            while True:
                yield b"y" * 65536
                time.sleep(0.01)

        return Response(chunks())

    instrument(app)
    return app


def test_stream_is_timed_until_its_last_byte_over_a_real_socket() -> None:
    app = streaming_app()
    base, stop = serve_in_thread(app)
    try:
        assert len(requests.get(f"{base}/stream", timeout=10).content) == 300
        text = requests.get(f"{base}/metrics", timeout=10).text
    finally:
        stop()
    seconds = value(text, "flask_http_request_duration_seconds_sum", path="/stream")
    assert seconds >= 0.3
    assert value(text, "flask_http_request_total", path="/stream", status="200") == 1


def test_client_leaving_a_stream_is_client_closed_not_an_exception() -> None:
    app = streaming_app()
    base, stop = serve_in_thread(app)
    port = int(base.rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"200 OK" in sock.recv(4096)
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline:
            text = requests.get(f"{base}/metrics", timeout=10).text
            if value(text, "flask_http_request_total", path="/endless"):
                break
            time.sleep(0.05)
    finally:
        stop()
    assert value(text, "flask_http_request_total", path="/endless", status=str(CLIENT_CLOSED)) == 1
    assert value(text, "flask_http_request_exceptions_total") == 0
    assert value(text, "flask_http_requests_in_progress", path="/endless") == 0


def test_blueprint_counts_requests_answered_by_app_hooks() -> None:
    app = Flask("auth")
    bp = Blueprint("api", __name__, url_prefix="/api")
    bp.add_url_rule("/items", "items", lambda: "ok", methods=["GET"])
    app.register_blueprint(bp)
    app.add_url_rule("/public", "public", lambda: "ok")

    @app.before_request
    def require_token() -> None:
        from flask import request

        if request.headers.get("X-Token") == "crash":
            raise RuntimeError("auth backend down")
        if request.path.startswith("/api") and request.headers.get("X-Token") != "t":
            abort(401)

    instrument(bp, app=app)
    client = app.test_client()
    client.get("/api/items")
    client.get("/api/items", headers={"X-Token": "t"})
    client.post("/api/items", headers={"X-Token": "t"})  # 405 on its route
    client.get("/public")
    client.get("/api/items", headers={"X-Token": "crash"})  # an app hook raised: 500
    client.get("/public", headers={"X-Token": "crash"})  # not the Blueprint's
    text = scrape(app)
    assert value(text, "flask_http_request_total", path="/api/items", status="401") == 1
    labels = {"path": "/api/items", "status": "500", "exception": "RuntimeError"}
    assert value(text, "flask_http_request_exceptions_total", **labels) == 1
    assert value(text, "flask_http_request_exceptions_total") == 1
    assert value(text, "flask_http_request_total", path="/api/items", status="200") == 1
    assert value(text, "flask_http_request_total", path="/api/items", status="405") == 1
    assert value(text, "flask_http_request_total", path="/public") == 0


def test_teardown_failure_is_a_500_and_its_span_is_kept() -> None:
    app = Flask("teardown")
    app.add_url_rule("/", "index", lambda: "ok")

    @app.teardown_request
    def broken(_: BaseException | None) -> None:
        raise RuntimeError("teardown failed")

    inst = instrument(app, tracing="otlp")
    spans = capture_spans(inst)
    with pytest.raises(RuntimeError):
        app.test_client().get("/")
    app.teardown_request_funcs.clear()  # let the scrape itself succeed
    text = scrape(app)
    assert value(text, "flask_http_request_total", path="/", status="500") == 1
    assert value(text, "flask_http_request_exceptions_total", exception="RuntimeError") == 1
    assert [s.tags["http.response.status_code"] for s in spans.spans] == [500]


def test_exceptions_counted_once_with_the_status_served() -> None:
    app = Flask("errors")

    @app.get("/boom")
    def boom() -> str:
        raise KeyError("x")

    @app.errorhandler(500)
    def unavailable(_: Exception) -> tuple[str, int]:
        return "try later", 503

    instrument(app)
    assert app.test_client().get("/boom").status_code == 503
    with app.test_request_context("/boom"):
        got_it = False
        try:
            boom()
        except KeyError:
            got_it = True
        assert got_it
    text = scrape(app)
    assert (
        value(text, "flask_http_request_exceptions_total", status="503", exception="KeyError") == 1
    )
    assert value(text, "flask_http_request_exceptions_total") == 1


def test_framework_handled_exceptions_are_counted() -> None:
    from flask_restx import Api, Resource

    app = Flask("restx")
    api = Api(app)

    @api.route("/orders/<int:order_id>")
    class Order(Resource):  # type: ignore[misc]
        def get(self, order_id: int) -> dict[str, int]:
            raise ValueError("broken order")

    instrument(app)
    assert app.test_client().get("/orders/7").status_code == 500
    text = scrape(app)
    labels = {"path": "/orders/<int:order_id>", "status": "500", "exception": "ValueError"}
    assert value(text, "flask_http_request_exceptions_total", **labels) == 1
    assert value(text, "flask_http_request_total", path="/orders/<int:order_id>") == 1


def test_only_the_exact_metrics_path_is_excluded() -> None:
    app = Flask("models")
    app.add_url_rule("/models/<name>/metrics", "model_metrics", lambda name: name)
    instrument(app)
    app.test_client().get("/models/a/metrics")
    text = scrape(app)
    assert value(text, "flask_http_request_total", path="/models/<name>/metrics") == 1
    assert value(text, "flask_http_request_total", path="/metrics") == 0


def test_default_registry_metrics_are_served_once_and_get_panels() -> None:
    orders = Counter("mm_test_orders_placed_total", "Orders placed", ["kind"])
    try:
        app = Flask("shop")
        inst = instrument(app)
        orders.labels("book").inc()
        text = scrape(app)
        assert 'mm_test_orders_placed_total{kind="book"} 1.0' in text
        assert text.count("# TYPE process_cpu_seconds_total") == 1
        assert text.count("# TYPE python_info") == 1
        model = model_from_registry(inst.config, inst.registries, inst.request_metrics)
        assert "mm_test_orders_placed" in {f.name for f in model.custom_metrics}
    finally:
        REGISTRY.unregister(orders)


def test_instrumented_apps_are_freed_with_their_export_threads() -> None:
    def export_threads() -> int:
        return sum(t.name == "meshmetrics-span-export" for t in threading.enumerate())

    before = export_threads()
    refs = []
    for i in range(100):
        app = Flask(f"app{i}")
        app.add_url_rule("/", "index", lambda: "ok")
        inst = instrument(app, tracing="otlp", trace_endpoint="http://127.0.0.1:9/v1/traces")
        app.test_client().get("/")  # starts the export thread
        refs.append(weakref.ref(app))
        del app, inst
    gc.collect()
    assert sum(r() is not None for r in refs) == 0
    deadline = time.monotonic() + 10
    while export_threads() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert export_threads() <= before
    names = {f"app{i}" for i in range(100)}
    assert [i for i in instrumentations() if i.config.service in names] == []


def test_uninstrument_leaves_nothing_behind() -> None:
    app = Flask("undo")
    original = app.wsgi_app
    app.add_url_rule("/", "index", lambda: "ok")
    inst = instrument(app, tracing="otlp", trace_endpoint="http://127.0.0.1:9/v1/traces")
    app.test_client().get("/")
    thread = inst.tracing.tracer.processor.thread  # type: ignore[union-attr]
    inst.uninstrument()
    assert app.wsgi_app == original
    assert thread is None or not thread.is_alive()
    assert app.test_client().get("/metrics").status_code == 404
    assert inst not in instrumentations()
    assert instrument(app).app is app  # instrumentable again
