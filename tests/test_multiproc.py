"""gunicorn with several workers: the app's own /metrics aggregates every worker."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from helpers import Server, gunicorn_argv, value

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("workers", [2, 4])
def test_summed_count_is_exact_across_workers(
    start_server: Callable[..., Server], tmp_path: Path, workers: int
) -> None:
    argv = gunicorn_argv("apps.service:app", workers)
    # A file left by an earlier run would be summed in (here: would break parsing);
    # the master must empty the directory before the workers start.
    (tmp_path / "counter_999999.db").write_bytes(b"stale")
    server = start_server(argv, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert not (tmp_path / "counter_999999.db").exists()
    total = 400

    def hit(i: int) -> str:
        with requests.Session() as s:  # a new connection each time: any worker may answer
            response = s.get(f"{server.base}/api/v1/items/pid", timeout=10)
            assert response.status_code == 200
            return response.text

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        pids = set(pool.map(hit, range(total)))
    assert len(pids) >= 2, "all requests went to one worker: aggregation not exercised"
    scrapes = [requests.get(f"{server.base}/metrics", timeout=10).text for _ in range(6)]
    for text in scrapes:
        assert value(text, "flask_http_request_total", path="/api/v1/items/pid") == total
        assert (
            value(text, "flask_http_request_duration_seconds_count", path="/api/v1/items/pid")
            == total
        )
        assert value(text, "flask_http_requests_in_progress") == 0
        assert value(text, "flask_service_info", service="items") == 1
    server.stop()


@pytest.mark.parametrize("workers", [2, 4])
def test_killed_worker_loses_no_counted_request(
    start_server: Callable[..., Server], tmp_path: Path, workers: int
) -> None:
    """5,000 requests; a worker is SIGKILLed half-way and respawned; the sum stays exact."""
    import os
    import signal
    import time

    argv = gunicorn_argv("apps.service:app", workers)
    server = start_server(argv, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    url = f"{server.base}/api/v1/items/pid"

    def hit(_: int) -> str:
        with requests.Session() as s:
            response = s.get(url, timeout=10)
            assert response.status_code == 200
            return response.text

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        first = list(pool.map(hit, range(2_500)))
    victim = max(set(first), key=first.count)  # the busiest worker, idle now
    os.kill(int(victim), signal.SIGKILL)
    probes, deadline = 0, time.monotonic() + 30
    while time.monotonic() < deadline:  # until the master has respawned a worker
        live = {hit(0) for _ in range(10)}
        probes += 10
        if victim not in live and len(os.listdir(tmp_path)) > 0:
            break
        time.sleep(0.2)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        second = list(pool.map(hit, range(2_500)))
    assert victim not in second
    counted = 5_000 + probes
    for _ in range(6):  # whichever worker answers the scrape
        text = requests.get(f"{server.base}/metrics", timeout=10).text
        assert value(text, "flask_http_request_total", path="/api/v1/items/pid") == counted
        assert (
            value(text, "flask_http_request_duration_seconds_count", path="/api/v1/items/pid")
            == counted
        )
        assert value(text, "flask_http_requests_in_progress") == 0
    server.stop()


def test_multiproc_dir_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from flask import Flask

    from meshmetrics import instrument

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    with pytest.raises(RuntimeError, match="is not a directory"):
        instrument(Flask("mp"))


@pytest.mark.slow
@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_info_gauge_and_per_worker_process_metrics(
    start_server: Callable[..., Server], tmp_path: Path, preload: bool
) -> None:
    argv = gunicorn_argv("apps.service:app", 2)
    if preload:
        argv.insert(-1, "--preload")
    server = start_server(argv, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        pids = set(
            pool.map(
                lambda _: requests.get(f"{server.base}/api/v1/items/pid", timeout=10).text,
                range(40),
            )
        )
    text = requests.get(f"{server.base}/metrics", timeout=10).text
    assert value(text, "flask_service_info", service="items") == 1
    memory = {
        labels["pid"]
        for (name, labels) in ((n, dict(lab)) for (n, lab) in __import__("helpers").samples(text))
        if name == "process_resident_memory_bytes"
    }
    assert pids <= memory  # every worker that served has its own process series


def test_set_function_gauge_under_workers_is_named_not_lost_silently(tmp_path: Path) -> None:
    import subprocess

    from helpers import PYTHON

    code = (
        "from flask import Flask\n"
        "from prometheus_client import Gauge\n"
        "from meshmetrics import instrument\n"
        "app = Flask('q')\n"
        "inst = instrument(app)\n"
        "Gauge('queue_depth', 'Jobs waiting', registry=inst.registry).set_function(lambda: 3)\n"
        "client = app.test_client()\n"
        "for _ in range(2):\n"
        "    assert b'queue_depth{pid=' in client.get('/metrics').data\n"
    )
    result = subprocess.run(
        [PYTHON, "-c", code],
        env={**__import__("os").environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("gauge queue_depth uses set_function()") == 1
