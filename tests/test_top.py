"""`meshmetrics top`: the numbers agree with the requests sent; targets may come and go."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from flask import Flask, abort

from helpers import free_port, run_cli, serve_in_thread
from meshmetrics import instrument
from meshmetrics.diagnose.rates import Top, snapshot


def service(name: str) -> Flask:
    app = Flask(name)
    instrument(app, service=name)

    @app.route("/ok/<n>")
    def ok(n: str) -> str:
        return n

    @app.route("/fail")
    def fail() -> str:
        abort(500)

    @app.route("/slow")
    def slow() -> str:
        time.sleep(0.2)
        return "slow"

    return app


def test_snapshot_numbers_match_the_requests_sent() -> None:
    s1_base, stop_s1 = serve_in_thread(service("cmpt756s1"))
    db_base, stop_db = serve_in_thread(service("cmpt756db"))
    try:

        def traffic() -> None:
            with requests.Session() as session:
                for i in range(30):
                    session.get(f"{s1_base}/ok/{i}", timeout=5)
                for _ in range(10):
                    session.get(f"{s1_base}/fail", timeout=5)
                for i in range(5):
                    session.get(f"{db_base}/ok/{i}", timeout=5)
                for _ in range(4):
                    session.get(f"{db_base}/slow", timeout=5)

        started = time.monotonic()
        table, down = snapshot([s1_base, db_base], interval=2.5, during=traffic)
        seconds = time.monotonic() - started
    finally:
        stop_s1()
        stop_db()
    assert down == {}
    rows = {(r.service, r.route): r for r in table}
    ok, failing = rows[("cmpt756s1", "/ok/<n>")], rows[("cmpt756s1", "/fail")]
    slow = rows[("cmpt756db", "/slow")]
    # rates: requests / the interval between the two scrapes (>= 2.5 s, <= the whole call)
    assert 30 / seconds <= ok.rate <= 30 / 2.5
    assert 10 / seconds <= failing.rate <= 10 / 2.5
    assert ok.error_ratio == 0
    assert failing.error_ratio == 1
    assert 0.1 <= slow.p50 <= 0.25  # 200 ms requests fall in the (0.1, 0.25] bucket
    assert table[0].route == "/ok/<n>"  # busiest first
    assert all(r.in_flight == 0 for r in table)


def test_a_target_going_away_and_coming_back() -> None:
    app = service("flaky")
    port = free_port()
    from werkzeug.serving import make_server

    def serve() -> tuple[object, threading.Thread]:
        server = make_server("127.0.0.1", port, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        return server, thread

    server, _ = serve()
    top = Top([f"http://127.0.0.1:{port}"])
    top.poll()
    requests.get(f"http://127.0.0.1:{port}/ok/1", timeout=5)
    assert [r.route for r in top.poll()] == ["/ok/<n>"]
    server.shutdown()  # type: ignore[attr-defined]
    server.server_close()  # type: ignore[attr-defined]
    assert top.poll() == []
    assert top.down == {f"http://127.0.0.1:{port}": "ConnectionRefusedError"}
    server, _ = serve()
    top.poll()
    requests.get(f"http://127.0.0.1:{port}/ok/2", timeout=5)
    rows = top.poll()
    assert top.down == {}
    assert [r.route for r in rows] == ["/ok/<n>"]
    server.shutdown()  # type: ignore[attr-defined]
    server.server_close()  # type: ignore[attr-defined]


@pytest.mark.slow
def test_top_once_command_under_load() -> None:
    base, stop = serve_in_thread(service("loaded"))
    done = threading.Event()

    def load() -> None:
        with requests.Session() as session:
            while not done.is_set():
                session.get(f"{base}/ok/1", timeout=5)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        result = run_cli("top", "--once", "--interval", "1", base, "http://127.0.0.1:1")
    finally:
        done.set()
        thread.join(5)
        stop()
    assert result.returncode == 0, result.stderr
    assert "loaded" in result.stdout
    assert "/ok/<n>" in result.stdout
    assert "DOWN (ConnectionRefusedError)" in result.stdout
    assert run_cli("top", "not-a-url").returncode == 2


def test_ctrl_c_during_the_first_scrape_exits_cleanly() -> None:
    """Issue 21 item 16: once top says it is watching, a Ctrl-C ends it with exit 0, also
    while the first scrape is still waiting on a target that accepted and never answers
    (it was outside the handler: exit 130 and "Aborted")."""
    import os
    import select
    import signal
    import socket
    import subprocess
    import sys

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the backlog; nothing is ever answered
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshmetrics", "top", "--interval", "30", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        ready, _, _ = select.select([proc.stderr], [], [], 120)  # a bound, not a timing
        line = proc.stderr.readline() if ready else ""
        assert "Ctrl-C stops" in line, line  # printed once the interrupt is handled
        proc.send_signal(signal.SIGINT)  # the first scrape waits up to 5 s on the target
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "Aborted" not in err
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        silent.close()
