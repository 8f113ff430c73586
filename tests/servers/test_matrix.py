"""The servers matrix (issue 25 item 7): the same app (tests/apps/matrix.py) under every
server users deploy Flask on, each cell a test: ``test_<check>[<server>]``.

Per server, once: a scraper reads ``/metrics`` every 50 ms on a new connection while eight
threads send a fixed plan of requests (fast, slow, failing, streamed, a Blueprint's route,
404s, the worker's pid) and four WebSocket sessions run; servers that recycle workers do so
during the run (``--max-requests``).  Spans go to a Zipkin receiver; the server is stopped
with SIGTERM (which flushes queued spans) before they are counted.

Run it all with ``python -m pytest -m servers tests/servers`` (the ``servers`` extra brings
uWSGI); docs/servers.md has the table of the last run.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from simple_websocket import Client, ConnectionClosed
from simple_websocket import ConnectionError as HandshakeRefused

from helpers import PYTHON, Server, value
from meshmetrics.testing.receivers import ZipkinCollector

pytestmark = pytest.mark.servers

#: (path, requests, status the client must get, path label)
PLAN: tuple[tuple[str, int, int, str], ...] = (
    ("/fast", 60, 200, "/fast"),
    ("/slow", 8, 200, "/slow"),
    ("/fail", 10, 500, "/fail"),
    ("/stream", 10, 200, "/stream"),
    ("/bp/items/7", 30, 200, "/bp/items/<item_id>"),
    ("/missing", 10, 404, "<unmatched>"),
    ("/pid", 30, 200, "/pid"),
)
WEBSOCKET_SESSIONS = 4
RECYCLE_AFTER = 25  # requests per worker before a recycling server replaces it


class UWSGIServer(Server):
    """uWSGI reports its auto-assigned port in words of its own, and is stopped as
    Kubernetes stops a container: SIGTERM to PID 1, its master (``--die-on-term``), which
    stops the workers (docs/servers.md: a SIGTERM to the whole group is not the same)."""

    def stop(self) -> tuple[str, str]:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
        return super().stop()  # the group, if anything outlived its master

    def _reported_port(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        pattern = re.compile(r"TCP address 127\.0\.0\.1:(\d+)")
        while time.monotonic() < deadline:
            for line in [*self._output["err"], *self._output["out"]]:
                match = pattern.search(line)
                if match is not None:
                    return int(match.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(f"uwsgi exited with {self.proc.returncode}: {self.output()}")
            time.sleep(0.02)
        raise TimeoutError(f"no address reported within {timeout}s: {self.output()}")


@dataclass(frozen=True)
class Setup:
    """A server as users run it."""

    name: str
    argv: list[str]
    #: PROMETHEUS_MULTIPROC_DIR set by the test (gunicorn's config module sets its own)
    multiproc_dir: bool = False
    recycles: bool = False
    #: what a WebSocket handshake gets: ``101`` (the server hands simple-websocket its
    #: socket), ``app`` (it does not: Flask-Sock's route fails, a 500 the client gets and
    #: meshmetrics counts), ``server`` (the server refuses it before the app: not counted)
    websocket: Literal["101", "app", "server"] = "101"
    server_class: type[Server] = Server


def _gunicorn(worker: str, *extra: str) -> list[str]:
    return [
        PYTHON,
        "-m",
        "gunicorn",
        "-c",
        "python:meshmetrics.gunicorn",
        "-k",
        worker,
        "-w",
        "2",
        "--max-requests",
        str(RECYCLE_AFTER),
        "--max-requests-jitter",
        "5",
        *extra,
        "-b",
        "127.0.0.1:0",
        "apps.matrix:app",
    ]


def _uwsgi() -> list[str]:
    binary = shutil.which("uwsgi") or str(Path(PYTHON).parent / "uwsgi")
    return [
        binary,
        "--http-socket",
        "127.0.0.1:0",
        "--master",
        "--processes",
        "2",
        "--enable-threads",
        "--lazy-apps",
        "--die-on-term",
        "--max-requests",
        str(RECYCLE_AFTER),
        "--min-worker-lifetime",  # default 60 s: no worker would be recycled in the run
        "1",
        "--module",
        "apps.matrix:app",
    ]


SETUPS: dict[str, Setup] = {
    s.name: s
    for s in (
        Setup("gunicorn-sync", _gunicorn("sync"), recycles=True),
        Setup("gunicorn-gthread", _gunicorn("gthread", "--threads", "4"), recycles=True),
        Setup("gunicorn-gevent", _gunicorn("gevent"), recycles=True),
        Setup(
            "uwsgi",
            _uwsgi(),
            multiproc_dir=True,
            recycles=True,
            websocket="app",
            server_class=UWSGIServer,
        ),
        Setup(
            "waitress",
            [PYTHON, "-m", "waitress", "--listen=127.0.0.1:0", "--threads=8", "apps.matrix:app"],
            websocket="app",
        ),
        Setup(
            "uvicorn-a2wsgi",
            [PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "0", "apps.matrix:asgi"],
            websocket="server",
        ),
    )
}


@dataclass
class Run:
    """What one server's run observed."""

    setup: Setup
    client: Counter[tuple[str, int]] = field(default_factory=Counter)
    websocket_statuses: list[int] = field(default_factory=list)
    scrapes: Counter[str] = field(default_factory=Counter)
    pids: set[str] = field(default_factory=set)
    #: /pid requests sent after the plan, until a recycled worker answered
    probes: int = 0
    final: str = ""
    spans: int = 0
    output: str = ""


def _scraper(base: str, run: Run, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with requests.Session() as session:
                response = session.get(f"{base}/metrics", timeout=10)
            if response.status_code == 200:
                list(text_string_to_metric_families(response.text))  # parses whole
                run.scrapes["ok"] += 1
            else:
                run.scrapes[f"status {response.status_code}"] += 1
        except Exception as exc:  # any failure is a cell's finding, not the test's crash
            run.scrapes[type(exc).__name__] += 1
        time.sleep(0.05)


def _hit(base: str, path: str) -> tuple[str, int, str]:
    with requests.Session() as session:  # a new connection: any worker may answer
        response = session.get(f"{base}{path}", timeout=30)
        return path, response.status_code, response.text


def _websocket(base: str) -> int:
    """One echo session; the status the handshake got (101, or the refusal's)."""
    try:
        ws = Client.connect(base.replace("http://", "ws://") + "/ws")
    except HandshakeRefused as refused:
        return int(refused.status_code or 0)
    ws.send("hello")
    assert ws.receive(timeout=10) == "hello"
    ws.send("bye")
    with pytest.raises(ConnectionClosed):
        ws.receive(timeout=10)
    return 101


def _expected_total(run: Run) -> int:
    """Requests the app must count: the plan, the readiness GET /, and the WebSocket
    handshakes that reach the app."""
    sessions = 0 if run.setup.websocket == "server" else WEBSOCKET_SESSIONS
    return sum(count for _, count, _, _ in PLAN) + 1 + sessions + run.probes


def _until_recycled(base: str, run: Run) -> None:
    """Keep asking ``/pid`` until a worker that replaced a recycled one answers (bounded:
    20 s).  The plan alone can end before a server notices a worker's request budget is
    spent: gevent's worker looks once a second, and the plan takes about that long."""
    deadline = time.monotonic() + 20
    while len(run.pids) <= 2 and time.monotonic() < deadline:
        _, status, text = _hit(base, "/pid")
        run.probes += 1
        run.client[("/pid", status)] += 1
        if status == 200:
            run.pids.add(text)
        time.sleep(0.05)


def _settled(base: str, expected: int) -> str:
    """The exposition once every request is counted (a session or a stream ends on the
    server a moment after its client saw the end), or the last one after 20 s."""
    deadline = time.monotonic() + 20
    while True:
        text = requests.get(f"{base}/metrics", timeout=10).text
        if value(text, "flask_http_request_total") >= expected or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def drive(setup: Setup, tmp: Path) -> Run:
    run = Run(setup)
    zipkin = ZipkinCollector()
    env = {"MESHMETRICS_TRACING": "zipkin", "MESHMETRICS_TRACE_ENDPOINT": zipkin.endpoint}
    if setup.multiproc_dir:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp)
    server = setup.server_class(setup.argv, env)
    stop = threading.Event()
    try:
        # Server's readiness check sent one GET / (a 404): it is part of what is counted
        run.client[("/", 404)] += 1
        scraper = threading.Thread(target=_scraper, args=(server.base, run, stop), daemon=True)
        scraper.start()
        paths = [path for path, count, _, _ in PLAN for _ in range(count)]
        random.Random(25).shuffle(paths)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            sessions = pool.submit(
                lambda: [_websocket(server.base) for _ in range(WEBSOCKET_SESSIONS)]
            )
            for path, status, text in pool.map(lambda p: _hit(server.base, p), paths):
                run.client[(path, status)] += 1
                if path == "/pid" and status == 200:
                    run.pids.add(text)
            run.websocket_statuses = sessions.result()
        if setup.recycles:
            _until_recycled(server.base, run)
        stop.set()
        scraper.join(15)
        run.final = _settled(server.base, _expected_total(run))
    finally:
        stop.set()
        out, err = server.stop()
        run.output = out + err
        run.spans = len(zipkin.wait_for(_expected_total(run), timeout=15))
        zipkin.close()
    return run


@pytest.fixture(scope="module", params=sorted(SETUPS))
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    setup = SETUPS[request.param]
    return drive(setup, tmp_path_factory.mktemp(setup.name))


# -- the cells ----------------------------------------------------------------------------------


def test_client_got_what_the_plan_says(run: Run) -> None:
    expected = Counter({(path, status): count for path, count, status, _ in PLAN})
    expected[("/", 404)] += 1
    expected[("/pid", 200)] += run.probes
    assert run.client == expected


def test_counts_exact_per_route_and_status(run: Run) -> None:
    text = run.final
    for _, count, status, label in PLAN:
        # the readiness GET /, and the /pid probes until a recycled worker answered
        extra = 1 if label == "<unmatched>" else run.probes if label == "/pid" else 0
        assert value(text, "flask_http_request_total", path=label, status=str(status)) == (
            count + extra
        ), label
        assert value(text, "flask_http_request_duration_seconds_count", path=label) == (
            count + extra
        ), label
    failed = value(text, "flask_http_request_exceptions_total", path="/fail", status="500")
    assert failed == 10


def test_websocket_sessions_counted_as_the_client_saw_them(run: Run) -> None:
    statuses = Counter(run.websocket_statuses)
    text = run.final
    if run.setup.websocket == "server":  # refused before the app: nothing to count
        assert 101 not in statuses
        assert value(text, "flask_http_request_total", path="/ws") == 0
        return
    expected = 101 if run.setup.websocket == "101" else 500
    assert statuses == Counter({expected: WEBSOCKET_SESSIONS})
    total = value(text, "flask_http_request_total", path="/ws", status=str(expected))
    assert total == WEBSOCKET_SESSIONS
    assert value(text, "flask_http_request_total", path="/ws") == WEBSOCKET_SESSIONS
    raised = value(text, "flask_http_request_exceptions_total", path="/ws")
    assert raised == (0 if expected == 101 else WEBSOCKET_SESSIONS)


def test_in_progress_back_to_zero(run: Run) -> None:
    gauges = {
        labels: v
        for family in text_string_to_metric_families(run.final)
        for name, labels, v, *_ in family.samples
        if name.endswith("http_requests_in_progress")
        for labels in [tuple(sorted(labels.items()))]
    }
    # none at all only where every process that served a request was recycled since: the
    # live gauges of dead processes are dropped (the family has no file left to come from)
    assert gauges or run.setup.recycles
    assert {labels: v for labels, v in gauges.items() if v != 0} == {}


def test_scrapes_never_fail_under_load_and_recycling(run: Run) -> None:
    assert run.scrapes["ok"] >= 5
    assert dict(run.scrapes) == {"ok": run.scrapes["ok"]}
    if run.setup.recycles:  # more worker pids than workers: recycling happened
        assert len(run.pids) > 2, run.pids


def test_every_span_delivered(run: Run) -> None:
    counted = value(run.final, "flask_http_request_total")
    assert counted == _expected_total(run)
    assert run.spans == counted


def test_no_server_error_logged(run: Run) -> None:
    """The server logs no error of its own (the app's /fail traceback is Flask's)."""
    pattern = (
        r"MonkeyPatchWarning|\[ERROR\]|\[CRITICAL\]|WORKER TIMEOUT|meshmetrics: .*(error|fail)"
    )
    assert [line for line in run.output.splitlines() if re.search(pattern, line)] == []
