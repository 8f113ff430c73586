"""Test helpers: metric parsing, real servers in subprocesses or threads, the examples.

Imported by the tests (``from helpers import …``); ``conftest.py`` holds only fixtures."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import requests
from prometheus_client.parser import text_string_to_metric_families

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition as {(name, labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    total = 0.0
    for (sample, sample_labels), v in samples(text).items():
        if sample == name and set(labels.items()) <= set(sample_labels):
            total += v
    return total


def series_count(text: str) -> int:
    return len(samples(text))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
            )
        try:
            requests.get(url, timeout=5)
            return
        except requests.RequestException:  # refused, or not answering yet on a busy machine
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class Server:
    """A server process on 127.0.0.1, stopped (with its children) at teardown."""

    def __init__(self, argv: list[str], port: int, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        full_env = {**os.environ, "PYTHONPATH": str(TESTS), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            argv,
            env=full_env,
            cwd=TESTS,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            wait_http(self.base + "/", proc=self.proc)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> tuple[str, str]:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
        try:
            out, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            out, err = self.proc.communicate()
        return out, err


PYTHON = sys.executable


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m meshmetrics ARGS`` in a subprocess (tests/ on the import path)."""
    return subprocess.run(
        [PYTHON, "-m", "meshmetrics", *args],
        cwd=cwd or TESTS,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )


def serve_in_thread(app: object) -> tuple[str, Callable[[], None]]:
    """Serve a WSGI app with werkzeug's threaded server on 127.0.0.1; returns (base, stop)."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        thread.join(5)

    return f"http://127.0.0.1:{server.server_port}", stop


def gunicorn_argv(port: int, app: str, workers: int = 2) -> list[str]:
    """A real gunicorn with meshmetrics' config module, on 127.0.0.1."""
    return [
        PYTHON,
        "-m",
        "gunicorn",
        "-w",
        str(workers),
        "-c",
        "python:meshmetrics.gunicorn",
        "-b",
        f"127.0.0.1:{port}",
        app,
    ]


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>/app.py`` as a module of its own."""
    path = ROOT / "examples" / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
