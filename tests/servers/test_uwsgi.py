"""uWSGI, a server that tells meshmetrics nothing when a worker dies (issue 25 items 4, 6).

uWSGI kills workers itself (``harakiri``, ``reload-on-rss``), the kernel kills them when
out of memory: no hook runs.  The scrape must not report their in-progress requests."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from helpers import Server, samples, value

pytestmark = [pytest.mark.slow, pytest.mark.servers]

UWSGI = str(Path(sys.executable).parent / "uwsgi")
_BOUND = re.compile(r"TCP address 127\.0\.0\.1:(\d+)")


class UwsgiServer(Server):
    """uWSGI on port 0 of 127.0.0.1; it reports the port it got in its own words."""

    def _reported_port(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self._output["err"] + self._output["out"]:
                if match := _BOUND.search(line):
                    return int(match.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(f"uwsgi exited with {self.proc.returncode}: {self.output()}")
            time.sleep(0.05)
        raise TimeoutError(f"uwsgi reported no port within {timeout}s: {self.output()}")


def uwsgi_argv(module: str, *, lazy_apps: bool, processes: int = 2) -> list[str]:
    """The options docs/servers' uWSGI section gives, on port 0 of 127.0.0.1."""
    argv = [UWSGI, "--master", "--processes", str(processes), "--threads", "2"]
    argv += ["--enable-threads", "--die-on-term", "--need-app", "--module", module]
    argv += ["--http-socket", "127.0.0.1:0", "--disable-logging"]
    return [*argv, "--lazy-apps"] if lazy_apps else argv


@pytest.fixture
def uwsgi(tmp_path: Path) -> Callable[..., UwsgiServer]:
    servers: list[UwsgiServer] = []

    def start(module: str, *, lazy_apps: bool) -> UwsgiServer:
        metrics = tmp_path / "multiproc"
        metrics.mkdir(exist_ok=True)
        env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics), "STUCK_PID_FILE": str(tmp_path / "pid")}
        server = UwsgiServer(uwsgi_argv(module, lazy_apps=lazy_apps), env)
        servers.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in servers:
        server.stop()


def _metrics(server: Server) -> str:
    response = requests.get(f"{server.base}/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


@pytest.mark.parametrize("lazy_apps", [False, True], ids=["forked-app", "lazy-apps"])
def test_a_worker_killed_mid_request_leaves_no_request_in_progress(
    uwsgi: Callable[..., UwsgiServer], tmp_path: Path, lazy_apps: bool
) -> None:
    server = uwsgi("apps.stuck:app", lazy_apps=lazy_apps)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert set(
            pool.map(lambda _: requests.get(f"{server.base}/ok", timeout=10).status_code, range(40))
        ) == {200}
    stuck = threading.Thread(target=_request_until_killed, args=(f"{server.base}/hang",))
    stuck.start()
    pid_file = tmp_path / "pid"
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the request never reached the app"
        time.sleep(0.05)
    assert value(_metrics(server), "flask_http_requests_in_progress", path="/hang") == 1
    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # what harakiri or the OOM killer do
    stuck.join(30)
    for _ in range(6):  # whichever worker answers, killed one gone or respawned
        text = _metrics(server)
        assert value(text, "flask_http_requests_in_progress") == 0
        # any worker serves the sum over all workers (not only the master)
        assert value(text, "flask_http_request_total", path="/ok") == 40


def _request_until_killed(url: str) -> None:
    with contextlib.suppress(requests.RequestException):  # the worker died: reset
        requests.get(url, timeout=60)


@pytest.mark.parametrize("lazy_apps", [False, True], ids=["forked-app", "lazy-apps"])
def test_process_metrics_one_set_per_worker_never_the_master(
    uwsgi: Callable[..., UwsgiServer], lazy_apps: bool
) -> None:
    """Issue 25 item 6: without ``--lazy-apps`` the master loads the app (and writes
    files); it is still not listed."""
    server = uwsgi("apps.stuck:app", lazy_apps=lazy_apps)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: requests.get(f"{server.base}/ok", timeout=10), range(40)))
    master = server.proc.pid
    workers = {str(pid) for pid in _children(master)}
    listed = {
        dict(labels)["pid"]
        for (name, labels) in samples(_metrics(server))
        if name == "process_resident_memory_bytes"
    }
    assert str(master) not in listed
    assert listed
    assert listed <= workers


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.add(int(entry.name))
    return found
