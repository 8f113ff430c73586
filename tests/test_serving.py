"""How an instrumented app is served, through real servers: ``app.run(threaded=False)``
really serves threaded; the metrics port answers before any application request under
``app.run``, ``flask run`` and ``Instrumentation.run()``; nothing of an instrumentation acts
after ``uninstrument()``; one span-export thread per backend configuration (issue 20
item 3, issue 21 item 6)."""

from __future__ import annotations

import concurrent.futures
import gc
import socket
import threading
import time

import pytest
import requests
from flask import Flask

from helpers import PYTHON, Server, free_port, value, wait_http
from meshmetrics import instrument
from meshmetrics.exposition import RETRY_THREAD

SLEEP = "/api/v1/items/sleep?s=1"


def timed(base: str, concurrent: bool) -> float:
    started = time.monotonic()
    if concurrent:
        with concurrent_pool() as pool:
            codes = list(pool.map(lambda _: get(base + SLEEP), range(4)))
    else:
        codes = [get(base + SLEEP) for _ in range(4)]
    assert codes == [200] * 4
    return time.monotonic() - started


def concurrent_pool() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(4)


def get(url: str) -> int:
    with requests.Session() as session:  # a connection each
        return session.get(url, timeout=30).status_code


@pytest.mark.slow
def test_app_run_threaded_false_still_serves_requests_together() -> None:
    server = Server([PYTHON, "apps/service.py", "0", "nothreads"])
    try:
        sequential = timed(server.base, concurrent=False)
        together = timed(server.base, concurrent=True)
    finally:
        _, err = server.stop()
    assert together < sequential / 2, (together, sequential)  # ~1 s against ~4 s
    assert err.count("overridden with threaded=True") == 1


def metrics_port_answers_before_any_request(argv: list[str], env: dict[str, str]) -> None:
    metrics_port = free_port()
    server = Server(argv, env={**env, "MESHMETRICS_METRICS_PORT": str(metrics_port)}, probe=False)
    try:
        wait_http(f"http://127.0.0.1:{metrics_port}/metrics", timeout=20, proc=server.proc)
        text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert "flask_service_info" in text
        assert value(text, "flask_http_request_total") == 0  # no application request yet
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["", "meshmetrics-run"])
def test_metrics_port_opens_at_start_under_app_run(mode: str) -> None:
    metrics_port_answers_before_any_request([PYTHON, "apps/service.py", "0", mode], {})


@pytest.mark.slow
def test_metrics_port_opens_at_start_under_flask_run() -> None:
    argv = [PYTHON, "-m", "flask", "--app", "apps.service", "run", "--port", "0"]
    metrics_port_answers_before_any_request(argv, {})


def test_no_metrics_port_retry_after_uninstrument() -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    inst = instrument(Flask("retry"), metrics_port=port)
    try:
        assert inst.start_metrics_server(retry_every=0.05) is False  # taken: retrying
        inst.uninstrument()
    finally:
        taken.close()  # the port is free now; an instrumentation still acting would take it
    retries = [t for t in threading.enumerate() if t.name == RETRY_THREAD]
    for thread in retries:
        thread.join(10)
    assert not any(t.is_alive() for t in retries)
    assert inst.start_metrics_server() is False
    with socket.create_server(("127.0.0.1", port)):  # nobody took it
        pass


def export_threads() -> int:
    return sum(t.name == "meshmetrics-span-export" for t in threading.enumerate())


def test_an_app_factory_shares_one_export_thread_and_leaves_none() -> None:
    tracing = {"tracing": "otlp", "trace_endpoint": "http://127.0.0.1:9/v1/traces"}

    def create_app() -> Flask:
        app = Flask("factory")
        app.add_url_rule("/", "index", lambda: "ok")
        instrument(app, **tracing)  # type: ignore[arg-type]
        return app

    before = export_threads()  # another test's, still ending
    alive = []
    for i in range(50):
        app = create_app()
        app.test_client().get("/")  # a span: the export thread starts
        alive.append(export_threads())
        if i % 10 == 9:
            inst = app.extensions["meshmetrics"]
            inst.uninstrument()
        del app
    assert max(alive) <= before + 1
    gc.collect()
    deadline = time.monotonic() + 10
    while export_threads() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert export_threads() <= before
