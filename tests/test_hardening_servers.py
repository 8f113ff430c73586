"""Hardening regressions that need real servers and filesystems (issue 15, items 1, 3, 9,
11, 13): gunicorn masters and workers, app.run, a size-limited or read-only tmpfs."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from helpers import PYTHON, TESTS, Server, gunicorn_argv, serve_in_thread, value
from meshmetrics.testing.receivers import OTLPCollector

pytestmark = pytest.mark.slow


def hit_all(base: str, path: str, count: int) -> set[int]:
    def hit(_: int) -> int:
        with requests.Session() as s:  # a new connection each time: any worker may answer
            return s.get(f"{base}{path}", timeout=10).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return set(pool.map(hit, range(count)))


# -- 1: metrics_port taken ---------------------------------------------------------------


def test_taken_metrics_port_does_not_crash_gunicorn_workers(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    squatter = socket.create_server(("127.0.0.1", 0))
    port = squatter.getsockname()[1]
    try:
        env = {
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
            "MESHMETRICS_METRICS_PORT": str(port),
            "MESHMETRICS_METRICS_HOST": "127.0.0.1",
        }
        server = start_server(gunicorn_argv("apps.service:app", 2), env=env)
        assert hit_all(server.base, "/api/v1/items/1", 50) == {200}
        time.sleep(3)  # a crash loop boots ~10 workers a second
        _, err = server.stop()
        assert err.count("Booting worker") == 2, err[-2000:]
        assert "in use" in err
    finally:
        squatter.close()


def test_taken_metrics_port_under_werkzeug_leaves_the_app_answering() -> None:
    from flask import Flask

    from meshmetrics import instrument

    squatter = socket.create_server(("127.0.0.1", 0))
    app = Flask("svc")
    inst = instrument(app, metrics_port=squatter.getsockname()[1], metrics_host="127.0.0.1")
    app.add_url_rule("/ok", "ok", lambda: "ok")
    base, stop = serve_in_thread(app)
    try:
        assert requests.get(f"{base}/ok", timeout=5).status_code == 200
        assert inst.start_metrics_server() is False
        assert requests.get(f"{base}/ok", timeout=5).status_code == 200
    finally:
        stop()
        inst.uninstrument()
        squatter.close()


# -- 3: a full or read-only multiprocess directory ----------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Mount size-limited tmpfs directories (root only; skipped where mounting is refused)."""
    mounted: list[Path] = []

    def mount(size: str, *options: str) -> Path:
        target = tmp_path / f"mnt{len(mounted)}"
        target.mkdir()
        opts = ",".join((f"size={size}", *options))
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(target)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()})")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], check=False)


def fill(directory: Path) -> None:
    with open(directory / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


@pytest.mark.parametrize("problem", ["full", "read-only"])
def test_unusable_multiprocess_dir_stops_gunicorn_with_one_line(
    tmpfs: Callable[..., Path], problem: str
) -> None:
    if problem == "full":
        directory = tmpfs("512k")
        fill(directory)
    else:
        directory = tmpfs("512k", "ro")
    env = {**os.environ, "PYTHONPATH": str(TESTS), "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    proc = subprocess.run(
        gunicorn_argv("apps.service:app", 2),
        env=env,
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert proc.returncode != -signal.SIGBUS
    assert f"PROMETHEUS_MULTIPROC_DIR='{directory}' cannot hold the metrics files" in proc.stderr
    assert "Booting worker" not in proc.stderr
    assert "Traceback" not in proc.stderr


_FILL_LATER = """
import os, sys
from flask import Flask
from meshmetrics import instrument

app = Flask("svc")
instrument(app, service="svc")
for n in range(300):
    app.add_url_rule(f"/r{n}/<x>", f"r{n}", lambda x: "ok")
with open(os.path.join(sys.argv[1], "filler"), "wb") as f:
    try:
        while True:
            f.write(bytes(65536)); f.flush()
    except OSError:
        pass
client = app.test_client()
codes = {client.get(f"/r{n}/1").status_code for n in range(300)}
print("codes", sorted(codes))
"""


def test_directory_filling_up_later_fails_no_request_and_kills_nothing(
    tmpfs: Callable[..., Path],
) -> None:
    directory = tmpfs("2m")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    proc = subprocess.run(
        [PYTHON, "-c", _FILL_LATER, str(directory)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]  # not -SIGBUS
    assert "codes [200]" in proc.stdout
    assert proc.stderr.count("a request could not be recorded") == 1
    assert "No space left on device" in proc.stderr


def test_instrument_names_an_unusable_directory(
    tmpfs: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask import Flask

    from meshmetrics import instrument
    from meshmetrics.multiproc import MultiprocessDirError

    directory = tmpfs("512k", "ro")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    with pytest.raises(MultiprocessDirError, match="cannot hold the metrics files"):
        instrument(Flask("svc"))


# -- 9: a second master on the same directory ---------------------------------------------


def test_second_master_on_the_same_directory_keeps_the_first_ones_counts(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    first = start_server(gunicorn_argv("apps.service:app", 2), env=env)
    assert hit_all(first.base, "/api/v1/items/1", 301) == {200}
    metric = ("flask_http_request_total", {"path": "/api/v1/items/<item_id>"})

    def count(base: str) -> float:
        return value(requests.get(f"{base}/metrics", timeout=10).text, metric[0], **metric[1])

    assert count(first.base) == 301
    second = start_server(gunicorn_argv("apps.service:app", 2), env=env)
    assert hit_all(second.base, "/api/v1/items/1", 1) == {200}
    assert count(first.base) == 302  # one directory: both masters' workers are summed
    assert count(second.base) == 302


# -- 13: recycled workers (--max-requests) -------------------------------------------------


def test_recycled_workers_files_are_folded_and_counts_stay_exact(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    argv = [*gunicorn_argv("apps.service:app", 2), "--max-requests", "20"]
    server = start_server(argv, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    total = 600
    assert hit_all(server.base, "/api/v1/items/1", total) == {200}
    time.sleep(1)  # the last recycled worker's exit reaches the master
    text = requests.get(f"{server.base}/metrics", timeout=10).text
    metric = {"path": "/api/v1/items/<item_id>"}
    assert value(text, "flask_http_request_total", **metric) == total
    assert value(text, "flask_http_request_duration_seconds_count", **metric) == total
    _, err = server.stop()
    recycled = err.count("Autorestarting worker")
    assert recycled >= 20, err[-2000:]
    files = sorted(p.name for p in tmp_path.glob("*.db"))
    pids = {name.rsplit("_", 1)[1] for name in files}
    # the workers alive at the end (gone now, not folded: the master was stopped) and
    # one set of archives, instead of a set of files per recycled worker
    assert len(pids) <= 4, files
    assert any(name.startswith("counter_archive-") for name in files)


# -- 11: SIGTERM under app.run --------------------------------------------------------------

_APP_RUN = """
import sys
from flask import Flask
from meshmetrics import instrument

app = Flask("svc")
instrument(app, service="svc", tracing="otlp", trace_endpoint=sys.argv[1])
app.add_url_rule("/ok", "ok", lambda: "ok")
app.run(host="127.0.0.1", port=0)
"""


def test_sigterm_under_app_run_delivers_queued_spans() -> None:
    collector = OTLPCollector()
    server = Server([PYTHON, "-c", _APP_RUN, collector.endpoint])
    try:
        with requests.Session() as s:
            for _ in range(50):
                assert s.get(f"{server.base}/ok", timeout=5).status_code == 200
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.proc.wait(timeout=15) == -signal.SIGTERM  # still dies of SIGTERM
        spans = collector.wait_for(51, timeout=5)  # 50, and the helper's probe of "/"
        assert sum(s.tags.get("http.route") == "/ok" for s in spans) == 50
    finally:
        server.stop()
        collector.close()
