"""meshmetrics.testing.watch and its pytest plugin: the invariants hold on a correct app,
and each one is reported when it is broken."""

from __future__ import annotations

import json
import logging
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, abort, stream_with_context
from werkzeug.test import Client

from helpers import PYTHON
from meshmetrics import MeshMetrics
from meshmetrics.testing.checks import Violation
from meshmetrics.testing.watch import Watch


@pytest.fixture
def watch() -> Iterator[Watch]:
    w = Watch()
    yield w
    w.stop()


def make_app() -> Flask:
    app = Flask("shop")

    @app.route("/item/<int:n>", methods=["GET", "POST"])
    def item(n: int) -> Any:
        if n == 0:
            abort(404)
        if n == 1:
            raise ValueError("boom")
        return {"n": n}

    @app.route("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[bytes]:
            yield from (b"a", b"b", b"c")

        return Response(stream_with_context(chunks()))

    @app.route("/health")
    def health() -> str:
        return "ok"

    return app


def invariants(found: list[Violation]) -> set[str]:
    return {v.invariant for v in found}


def test_a_correct_app_breaks_no_invariant(watch: Watch) -> None:
    app = make_app()
    client = Client(watch.wsgi(app))
    assert client.get("/item/3").status_code == 200
    assert client.get("/item/0").status_code == 404
    assert client.get("/nowhere").status_code == 404
    assert client.delete("/item/3").status_code == 405
    assert client.open("/item/3", method="BREW").status_code == 405
    assert client.get("/item/1").status_code == 500
    assert client.get("/stream").get_data() == b"abc"
    client.get("/stream", buffered=False)  # never read: closed by the check, read whole
    assert client.get("/health").status_code == 200  # excluded: neither side counts it
    app.testing = True
    with pytest.raises(ValueError, match="boom"):
        client.get("/item/1")
    assert watch.check() == []
    assert watch.requests == 10
    assert watch.apps == 1


def test_the_watch_reuses_an_existing_instrumentation(watch: Watch) -> None:
    app = make_app()
    inst = MeshMetrics(prefix="shop").init_app(app)
    client = Client(watch.wsgi(app))
    client.get("/item/3")
    assert watch.check() == []
    assert (
        inst.registry.get_sample_value(
            "shop_http_request_total", {"method": "GET", "path": "/item/<int:n>", "status": "200"}
        )
        == 1
    )


def test_a_status_rewritten_outside_meshmetrics_is_reported(watch: Watch) -> None:
    app = make_app()
    watch.attach(app)
    inner = app.wsgi_app

    def maintenance(environ: dict[str, Any], start_response: Any) -> Any:
        return inner(environ, lambda status, headers, *exc: start_response("503 X", headers, *exc))

    app.wsgi_app = maintenance  # type: ignore[method-assign]
    Client(watch.wsgi(app)).get("/item/3")
    found = watch.check()
    assert invariants(found) == {"statuses", "scrape"}
    assert found[0].detail == "GET /metrics answered 503 X"
    assert found[1].detail == "counted {('GET', '200'): 1}, clients saw {('GET', '503'): 1}"
    assert watch.check() == []  # reported once, then compared from there


def test_each_broken_invariant_is_named(watch: Watch) -> None:
    app = make_app()
    watch.attach(app)
    metrics = MeshMetrics.instrumentation(app).request_metrics
    Client(watch.wsgi(app)).get("/item/3")
    metrics.in_progress.labels("GET", "/item/<int:n>").inc()
    metrics.requests.labels("GET", "/item/<int:n>", "200").inc()
    metrics.duration.labels("GET", "/raw/path/42", "200").observe(0.1)
    metrics.exceptions.labels("GET", "/item/<int:n>", "500", "KeyError").inc()
    logging.getLogger("meshmetrics").warning("meshmetrics: something odd")
    found = watch.check()
    assert invariants(found) == {
        "in_progress",
        "counter_histogram",
        "path_label",
        "statuses",
        "exceptions",
        "log",
    }
    by_name = {v.invariant: v.detail for v in found if v.invariant != "counter_histogram"}
    assert by_name["path_label"] == "path='/raw/path/42' is no route of the app"
    assert by_name["exceptions"] == "counted {KeyError: 1}, Flask signalled {}"
    assert by_name["log"] == "WARNING meshmetrics: meshmetrics: something odd"
    assert watch.check() == []


def test_a_streamed_body_finished_before_it_is_sent_is_reported(watch: Watch) -> None:
    app = make_app()
    watch.attach(app)
    observed = app.wsgi_app

    def buffering(environ: dict[str, Any], start_response: Any) -> Any:
        body = observed(environ, start_response)
        chunks = list(body)  # meshmetrics sees the body read whole before the client gets it
        getattr(body, "close", lambda: None)()
        return iter(chunks)

    app.wsgi_app = buffering  # type: ignore[method-assign]
    assert Client(watch.wsgi(app)).get("/stream").get_data() == b"abc"
    found = watch.check()
    assert [(v.invariant, v.detail) for v in found] == [
        (
            "last_byte",
            "GET /stream: the request is no longer in progress while its streamed body is "
            "being sent (timed before its last byte)",
        )
    ]
    assert Client(watch.wsgi(app)).get("/item/3").status_code == 200  # a sized body is not
    assert watch.check() == []


def test_a_metrics_path_the_app_does_not_let_prometheus_scrape_is_reported(
    watch: Watch,
) -> None:
    app = make_app()
    watch.attach(app)
    observed = app.wsgi_app

    def gate(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/metrics":  # a gate in front of everything meshmetrics does
            start_response("429 Too Many Requests", [("Content-Length", "0")])
            return [b""]
        return observed(environ, start_response)

    def mount(environ: dict[str, Any], start_response: Any) -> Any:
        environ["PATH_INFO"] = "/app" + environ["PATH_INFO"]  # the app's own 404
        return observed(environ, start_response)

    app.wsgi_app = gate  # type: ignore[method-assign]
    assert Client(watch.wsgi(app)).get("/item/3").status_code == 200
    found = watch.check()
    assert [(v.invariant, v.detail) for v in found] == [
        ("scrape", "GET /metrics answered 429 Too Many Requests")
    ]
    app.wsgi_app = mount  # type: ignore[method-assign]
    assert Client(watch.wsgi(app)).get("/item/3").status_code == 404
    found = watch.check()  # the scrape's own 404 is counted, and is no client's request
    assert [(v.invariant, v.detail) for v in found] == [
        ("scrape", "GET /metrics answered 404 NOT FOUND")
    ]
    assert Client(watch.wsgi(app)).get("/item/3").status_code == 404
    assert len(watch.check()) == 1
    app.wsgi_app = observed  # type: ignore[method-assign]
    assert Client(watch.wsgi(app)).get("/item/3").status_code == 200
    assert watch.check() == []


def test_an_app_instrument_refuses_is_reported(watch: Watch) -> None:
    app = Flask("taken")
    app.add_url_rule("/metrics", "mine", lambda: "mine")
    assert watch.attach(app) is None
    assert Client(watch.wsgi(app)).get("/metrics").get_data() == b"mine"
    found = watch.check()
    assert invariants(found) == {"instrument"}
    assert "already routed to endpoint 'mine'" in found[0].detail


SUITE = """
from flask import Flask
import pytest

class Apiish(Flask):
    def __init__(self, name):
        super().__init__(name)
        self.add_url_rule("/spec", "spec", lambda: "spec")   # after Flask's __init__

@pytest.fixture
def app():
    app = Flask("plain")
    app.add_url_rule("/ok", "ok", lambda: "ok")
    return app

def test_plain(app):
    assert app.test_client().get("/ok").status_code == 200
    assert app.test_client().get("/missing").status_code == 404

def test_subclass():
    assert Apiish("sub").test_client().get("/spec").data == b"spec"

def test_outer_rewrite(app):
    inner = app.wsgi_app
    app.wsgi_app = lambda e, s: inner(e, lambda st, h, *x: s("503 X", h, *x))
    assert app.test_client().get("/ok").status_code == 503
"""


def run_suite(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(SUITE))
    return subprocess.run(
        [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-o",
         "addopts=", "-p", "meshmetrics.testing.invariants", *options, "test_suite.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_plugin_reports_without_changing_outcomes(tmp_path: Path) -> None:
    done = run_suite(tmp_path, "--meshmetrics-report=report.json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["tests_checked"] == 3
    assert report["apps"] == 3
    assert report["requests"] == 4
    assert report["violations"] == [
        {
            "test": "test_suite.py::test_outer_rewrite",
            "invariant": "scrape",
            "app": "plain",
            "detail": "GET /metrics answered 503 X",
        },
        {
            "test": "test_suite.py::test_outer_rewrite",
            "invariant": "statuses",
            "app": "plain",
            "detail": "counted {('GET', '200'): 1}, clients saw {('GET', '503'): 1}",
        },
    ]


def test_the_plugin_fails_the_test_without_a_report(tmp_path: Path) -> None:
    done = run_suite(tmp_path)
    assert done.returncode == 1
    assert "3 passed, 1 error" in done.stdout
    assert (
        "ERROR test_suite.py::test_outer_rewrite - Failed: meshmetrics invariants:" in done.stdout
    )
    assert "meshmetrics invariants: 3 tests, 3 apps, 4 requests probed, 2 violations" in done.stdout
