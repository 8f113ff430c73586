"""RED metrics: names compatible with prometheus-flask-exporter, route-template labels."""

from __future__ import annotations

import pytest
from flask import Flask, abort

from helpers import value
from meshmetrics import UNMATCHED, instrument


@pytest.fixture
def app() -> Flask:
    app = Flask("users")

    @app.route("/api/v1/user/<user_id>", methods=["GET", "PUT"])
    def user(user_id: str) -> dict[str, str]:
        if user_id == "missing":
            abort(404)
        if user_id == "boom":
            raise KeyError(user_id)
        return {"id": user_id}

    @app.route("/health")
    def health() -> str:
        return "ok"

    return app


def scrape(app: Flask) -> str:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_path_label_is_the_route_template(app: Flask) -> None:
    instrument(app)
    client = app.test_client()
    for user_id in ("1", "2", "3"):
        assert client.get(f"/api/v1/user/{user_id}").status_code == 200
    client.put("/api/v1/user/1")
    text = scrape(app)
    labels = {"method": "GET", "path": "/api/v1/user/<user_id>", "status": "200"}
    assert value(text, "flask_http_request_total", **labels) == 3
    assert value(text, "flask_http_request_duration_seconds_count", **labels) == 3
    assert value(text, "flask_http_request_duration_seconds_bucket", le="+Inf", **labels) == 3
    assert value(text, "flask_http_request_total", method="PUT") == 1
    assert "/api/v1/user/1" not in text


def test_status_of_handled_errors_and_unmatched_routes(app: Flask) -> None:
    instrument(app)
    client = app.test_client()
    client.get("/api/v1/user/missing")
    client.get("/wp-login.php")
    client.get("/.env")
    client.delete("/api/v1/user/1")  # 405: counted on the route whose method it missed
    text = scrape(app)
    assert value(text, "flask_http_request_total", path="/api/v1/user/<user_id>", status="404") == 1
    assert value(text, "flask_http_request_total", path=UNMATCHED, status="404") == 2
    assert value(text, "flask_http_request_total", path="/api/v1/user/<user_id>", status="405") == 1
    assert "wp-login" not in text
    assert value(text, "flask_http_request_exceptions_total") == 0  # handled, not exceptions


@pytest.mark.parametrize("propagate", [False, True])
def test_unhandled_exception_counted_once_with_class(app: Flask, propagate: bool) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = propagate  # True is what debug/testing mode does
    instrument(app)
    client = app.test_client()
    if propagate:
        with pytest.raises(KeyError):
            client.get("/api/v1/user/boom")
    else:
        assert client.get("/api/v1/user/boom").status_code == 500
    text = scrape(app)
    route = "/api/v1/user/<user_id>"
    assert value(text, "flask_http_request_total", path=route, status="500") == 1
    assert value(text, "flask_http_request_exceptions_total", path=route, exception="KeyError") == 1
    assert value(text, "flask_http_requests_in_progress") == 0


def test_non_standard_methods_share_one_label(app: Flask) -> None:
    instrument(app)
    client = app.test_client()
    for method in ("PROPFIND", "FOO", "BREW"):
        client.open("/api/v1/user/1", method=method)
    text = scrape(app)
    assert value(text, "flask_http_request_total", method="other") == 3
    assert "PROPFIND" not in text
    assert "BREW" not in text


def test_excluded_paths_and_metrics_endpoint_not_measured(app: Flask) -> None:
    instrument(app)
    client = app.test_client()
    client.get("/health")
    client.get("/metrics")
    text = scrape(app)
    assert value(text, "flask_http_request_total") == 0
    assert 'path="/health"' not in text
    assert 'path="/metrics"' not in text


def test_in_progress_gauge_counts_running_requests() -> None:
    app = Flask("gauge")
    seen: list[float] = []

    @app.route("/work")
    def work() -> str:
        text = app.test_client().get("/metrics").get_data(as_text=True)
        seen.append(value(text, "flask_http_requests_in_progress", path="/work"))
        return "done"

    instrument(app)
    app.test_client().get("/work")
    assert seen == [1.0]
    assert value(scrape(app), "flask_http_requests_in_progress", path="/work") == 0


def test_info_and_process_metrics(app: Flask) -> None:
    instrument(app, service="cmpt756s1", namespace="cmpt756e4", version="1.2.3")
    text = scrape(app)
    assert (
        value(
            text, "flask_service_info", service="cmpt756s1", namespace="cmpt756e4", version="1.2.3"
        )
        == 1
    )
    assert value(text, "process_resident_memory_bytes") > 0
    assert value(text, "process_open_fds") > 0


def test_prefix_and_buckets_options(app: Flask) -> None:
    instrument(app, prefix="shop", buckets=[0.1, 1])
    app.test_client().get("/api/v1/user/1")
    text = scrape(app)
    assert value(text, "shop_http_request_total") == 1
    buckets = {
        dict(labels)["le"]
        for (name, labels) in __import__("helpers").samples(text)
        if name == "shop_http_request_duration_seconds_bucket"
    }
    assert buckets == {"0.1", "1.0", "+Inf"}
    assert "flask_http" not in text


def test_pfe_decorators_share_the_registry(app: Flask) -> None:
    inst = instrument(app)

    @app.route("/orders/<oid>")
    @inst.metrics.counter("orders_by_status", "Orders", labels={"status": lambda r: r.status_code})
    @inst.metrics.histogram("order_latency_seconds", "Order latency")
    def order(oid: str) -> str:
        return oid

    @app.route("/internal")
    @inst.metrics.do_not_track()
    def internal() -> str:
        return "x"

    inst.metrics.info("app_build_info", "Build", commit="abc123")
    client = app.test_client()
    client.get("/orders/1")
    client.get("/orders/2")
    client.get("/internal")
    text = scrape(app)
    assert value(text, "orders_by_status_total", status="200") == 2
    assert value(text, "order_latency_seconds_count") == 2
    assert value(text, "app_build_info", commit="abc123") == 1
    assert value(text, "flask_http_request_total", path="/orders/<oid>") == 2
    assert value(text, "flask_http_request_total", path="/internal") == 0


def test_openmetrics_gzip_and_name_filter(app: Flask) -> None:
    import gzip

    instrument(app)
    client = app.test_client()
    client.get("/api/v1/user/1")
    om = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert om.content_type.startswith("application/openmetrics-text")
    assert om.get_data(as_text=True).rstrip().endswith("# EOF")
    zipped = client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert b"flask_http_request_total" in gzip.decompress(zipped.get_data())
    only = client.get("/metrics?name[]=flask_service_info").get_data(as_text=True)
    assert "flask_service_info" in only
    assert "flask_http_request_total" not in only
    assert client.post("/metrics").status_code == 405


def test_custom_metrics_path_and_auth_decorator(app: Flask) -> None:
    from functools import wraps

    from flask import request

    def token_required(view):  # type: ignore[no-untyped-def]
        @wraps(view)
        def guarded():  # type: ignore[no-untyped-def]
            if request.headers.get("Authorization") != "Bearer s3cret":
                return "unauthorized\n", 401
            return view()

        return guarded

    instrument(app, metrics_path="/internal/metrics", metrics_auth=token_required)
    client = app.test_client()
    assert client.get("/metrics").status_code == 404
    assert client.get("/internal/metrics").status_code == 401
    ok = client.get("/internal/metrics", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert b"flask_service_info" in ok.get_data()


def test_excluded_route_is_neither_measured_nor_counted_when_it_fails() -> None:
    app = Flask("probe")

    @app.route("/readiness")
    def readiness() -> str:
        raise RuntimeError("not ready")

    instrument(app)
    assert app.test_client().get("/readiness").status_code == 500
    text = scrape(app)
    assert value(text, "flask_http_request_total") == 0
    assert value(text, "flask_http_request_exceptions_total") == 0
    assert "readiness" not in text
