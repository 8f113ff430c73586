"""Tracing in real processes: forked gunicorn workers report spans, exit flushes the queue."""

from __future__ import annotations

import concurrent.futures
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from helpers import PYTHON, TESTS, Server, gunicorn_argv
from meshmetrics.testing.receivers import JaegerAgent

pytestmark = pytest.mark.slow


def test_forked_gunicorn_workers_report_spans(
    start_server: Callable[..., Server], agent: JaegerAgent, tmp_path: Path
) -> None:
    argv = gunicorn_argv("apps.service:app", 2)
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "MESHMETRICS_TRACING": "jaeger",
        "MESHMETRICS_TRACE_ENDPOINT": agent.endpoint,
    }
    server = start_server(argv, env=env)

    requests_sent = 200  # enough that a busy machine still spreads them over both workers

    def hit(_: int) -> str:
        with requests.Session() as session:  # a new connection: any worker may answer
            return session.get(f"{server.base}/api/v1/items/pid", timeout=10).text

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        pids = set(pool.map(hit, range(requests_sent)))
    assert len(pids) >= 2, "one worker served everything: forking not exercised"
    # Stopped first: each worker exports what it queued before it exits, so every span
    # has been sent once stop() returns, however long a busy machine kept the export
    # threads from their 0.5 s tick (waiting a fixed time for them lost 1 of 200 there).
    _, err = server.stop()
    assert err.count("Worker exiting") >= 2, err[-2000:]
    spans = [s for s in agent.wait_for(requests_sent) if s.operation == "items.pid"]
    assert len(spans) == requests_sent
    assert len({s.span_id for s in spans}) == requests_sent, "a worker repeated its parent's ids"
    assert len({s.trace_id for s in spans}) == requests_sent


def test_spans_are_flushed_at_interpreter_exit(agent: JaegerAgent) -> None:
    code = (
        "from flask import Flask\n"
        "from meshmetrics import instrument\n"
        "app = Flask('exiting')\n"
        f"instrument(app, tracing='jaeger', trace_endpoint='{agent.endpoint}')\n"
        "@app.route('/')\n"
        "def index():\n"
        "    return 'ok'\n"
        "client = app.test_client()\n"
        "for _ in range(25):\n"
        "    client.get('/')\n"
        # exits at once: the export thread's 0.5 s tick has not come yet
    )
    subprocess.run([PYTHON, "-c", code], cwd=TESTS, check=True, timeout=60)
    assert len(agent.wait_for(25, timeout=5)) == 25
