"""Spans queued in uWSGI workers are delivered however uWSGI ends them through ``exit()``
(issue 25 item 7; docs/servers.md): stopped with the master (``--die-on-term``; the master
sends each worker SIGINT), by a SIGINT to the whole process group (Ctrl-C), with
``--skip-atexit-teardown`` (no Python ``atexit``); and the app's own ``uwsgi.atexit``
still runs.

The collector holds every export until the stop signal is sent (within the exporter's
timeout), so every span is still queued or in flight in a worker when uWSGI starts
ending it."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests
from test_matrix import UWSGIServer, _uwsgi

from helpers import value
from meshmetrics.testing.receivers import ZipkinCollector

pytestmark = pytest.mark.servers

REQUESTS = 24
WORKERS = 2


class GatedCollector(ZipkinCollector):
    """A Zipkin collector that answers no export before ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        gate = self.gate
        handler: type[BaseHTTPRequestHandler] = self.server.RequestHandlerClass  # type: ignore[assignment]

        class Gated(handler):  # type: ignore[valid-type,misc]
            def do_POST(self) -> None:  # noqa: N802 (the handler API)
                gate.wait(60)
                super().do_POST()

        self.server.RequestHandlerClass = Gated


@pytest.fixture
def collector() -> Iterator[GatedCollector]:
    receiver = GatedCollector()
    yield receiver
    receiver.gate.set()
    receiver.close()


def argv(*options: str) -> list[str]:
    """The matrix's uWSGI, two workers, no recycling, ``exit_app`` as the app."""
    base = _uwsgi()
    base = base[: base.index("--max-requests")] + base[base.index("--module") :]
    base[-1] = "servers.exit_app:app"
    base[base.index("--processes") + 1] = str(WORKERS)
    return base[:-2] + list(options) + base[-2:]


def wait_for_workers(server: UWSGIServer, timeout: float = 60.0) -> None:
    """Until every worker loaded the app (``--lazy-apps``: each on its own, after the
    first answered); a worker still loading it has no spans and no exit hook yet."""
    deadline = time.monotonic() + timeout
    while sum("WSGI app 0" in line for line in "".join(server.output()).splitlines()) < WORKERS:
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)


def wait_until_idle(stats: Path, timeout: float = 30.0) -> None:
    """Until uWSGI's stats server reports every worker idle: a worker stopped while
    busy (even in the tail of a request its client has seen answered) skips its exit
    hooks (docs/servers.md), a loss no library can prevent."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(stats))
            data = b"".join(iter(lambda: client.recv(65536), b""))
        statuses = [worker["status"] for worker in json.loads(data)["workers"]]
        if statuses == ["idle"] * WORKERS:
            return
        assert time.monotonic() < deadline, statuses
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("options", "stop"),
    [
        # Kubernetes signals PID 1 only: the master, which sends each worker SIGINT
        pytest.param((), (signal.SIGTERM, "master"), id="die-on-term-master-sigterm"),
        # Ctrl-C, or an init that signals the whole group with SIGINT (docs/servers.md)
        pytest.param((), (signal.SIGINT, "group"), id="process-group-sigint"),
        pytest.param(("--skip-atexit-teardown",), (signal.SIGTERM, "master"), id="skip-teardown"),
    ],
)
def test_queued_spans_delivered_when_uwsgi_ends_its_workers(
    collector: GatedCollector,
    tmp_path: Path,
    options: tuple[str, ...],
    stop: tuple[signal.Signals, str],
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {
        "MESHMETRICS_TRACING": "zipkin",
        "MESHMETRICS_TRACE_ENDPOINT": collector.endpoint,
        "MESHMETRICS_TRACE_TIMEOUT": "300",  # a held export is in flight, not failed
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "EXIT_MARKS": str(marks),
    }
    stats = tmp_path / "stats.sock"
    server = UWSGIServer(argv(*options, "--stats", str(stats)), env)
    try:
        wait_for_workers(server)
        for _ in range(REQUESTS):
            with requests.Session() as session:  # a new connection: either worker
                assert session.get(f"{server.base}/fast", timeout=30).status_code == 200
        counted = value(
            requests.get(f"{server.base}/metrics", timeout=30).text, "flask_http_request_total"
        )
        assert counted >= REQUESTS + 1  # and the readiness probe's GET /
        wait_until_idle(stats)
        assert collector.spans == []  # all still queued or in flight in the workers
        signum, whom = stop
        if whom == "group":
            os.killpg(server.proc.pid, signum)
        else:
            os.kill(server.proc.pid, signum)
        collector.gate.set()
        server.proc.wait(timeout=60)
    finally:
        out, err = server.stop()
    assert len(collector.wait_for(int(counted), timeout=15)) == counted, out + err
    assert len(list(marks.iterdir())) == WORKERS  # the app's own uwsgi.atexit ran too
