"""Helpers shared by the stress and soak scripts: a gunicorn under test and a load loop."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def metric(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


class Gunicorn:
    """``gunicorn -c python:meshmetrics.gunicorn loadapp:app`` on 127.0.0.1."""

    def __init__(self, workers: int, env: dict[str, str], threads: int = 4) -> None:
        self.workers = workers
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.mkdtemp(prefix="meshmetrics-stress-")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                str(workers),
                "--threads",
                str(threads),
                "-c",
                "python:meshmetrics.gunicorn",
                "-b",
                f"127.0.0.1:{self.port}",
                "loadapp:app",
            ],
            cwd=HERE,
            env={
                **os.environ,
                "PYTHONPATH": str(HERE),
                "PROMETHEUS_MULTIPROC_DIR": self._dir,
                **env,
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.base}/pid", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError("gunicorn did not start")

    def worker_pids(self, timeout: float = 15.0) -> set[int]:
        """The workers' pids, once all of them have been forked."""
        deadline = time.monotonic() + timeout
        while True:
            out = subprocess.run(
                ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
            )
            pids = {int(p) for p in out.stdout.split()}
            if len(pids) >= self.workers or time.monotonic() > deadline:
                return pids
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@dataclass
class LoadResult:
    sent: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")


def load(
    base: str, requests_total: int, clients: int = 4, seconds: float | None = None
) -> LoadResult:
    """GET user routes from ``clients`` keep-alive sessions: a count, or until ``seconds``."""
    deadline = time.monotonic() + seconds if seconds else None
    per_client = requests_total // clients

    def client(index: int) -> LoadResult:
        result = LoadResult()
        with requests.Session() as session:
            i = 0
            while (deadline is None and i < per_client) or (
                deadline is not None and time.monotonic() < deadline
            ):
                started = time.perf_counter()
                try:
                    ok = (
                        session.get(f"{base}/api/v1/user/{index}-{i}", timeout=10).status_code
                        == 200
                    )
                except requests.RequestException:
                    ok = False
                result.latencies.append(time.perf_counter() - started)
                result.sent += 1
                result.failed += not ok
                i += 1
        return result

    total = LoadResult()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for part in pool.map(client, range(clients)):
            total.sent += part.sent
            total.failed += part.failed
            total.latencies += part.latencies
    return total
