"""Test helpers: metric parsing, real servers in subprocesses or threads, the examples.

Imported by the tests (``from helpers import …``); ``conftest.py`` holds only fixtures."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import requests
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from meshmetrics.cli import run
from meshmetrics.testing import capture_spans
from meshmetrics.testing.receivers import Span

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


def settled(probe: Callable[[], Any], want: Any, timeout: float = 30.0) -> Any:
    """``probe()`` until it answers ``want`` or ``timeout`` passed; its last answer.

    For what a server records after the client already has every byte (a request is
    counted when the server closes its body, a span exported on the next batch): the
    figure must arrive, exactly, but a busy machine decides when."""
    deadline = time.monotonic() + timeout
    got = probe()
    while got != want and time.monotonic() < deadline:
        time.sleep(0.05)
        got = probe()
    return got


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


#: How werkzeug ("Running on …") and gunicorn ("Listening at: …") report the address.
_LISTENING = re.compile(r"http://127\.0\.0\.1:(\d+)")


class Server:
    """A server process told to bind port 0 on 127.0.0.1; the port it got is read from
    what it reports (no free-port race).  Its output is read as it comes (a full pipe
    never blocks it) and returned by :meth:`stop`; it is stopped with its children."""

    def __init__(
        self, argv: list[str], env: dict[str, str] | None = None, probe: bool = True
    ) -> None:
        """``probe=False``: no request is sent (the server is up once it said so)."""
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
        self._output: dict[str, list[str]] = {"out": [], "err": []}
        self._readers = [
            threading.Thread(target=self._read, args=(pipe, name), daemon=True)
            for pipe, name in ((self.proc.stdout, "out"), (self.proc.stderr, "err"))
        ]
        for reader in self._readers:
            reader.start()
        try:
            self.port = self._reported_port()
            self.base = f"http://127.0.0.1:{self.port}"
            if probe:
                wait_http(self.base + "/", proc=self.proc)
        except BaseException:
            self.stop()
            raise

    def _read(self, pipe: Any, name: str) -> None:
        for line in pipe:
            self._output[name].append(line)

    def _reported_port(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in [*self._output["err"], *self._output["out"]]:
                match = _LISTENING.search(line)
                if match is not None:
                    return int(match.group(1))
            if self.proc.poll() is not None:
                time.sleep(0.1)  # let the readers take the last lines
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.output()}")
            time.sleep(0.02)
        raise TimeoutError(f"no listening address reported within {timeout}s: {self.output()}")

    def output(self) -> tuple[str, str]:
        return "".join(self._output["out"]), "".join(self._output["err"])

    def stop(self) -> tuple[str, str]:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        for reader in self._readers:
            reader.join(5)
        return self.output()


PYTHON = sys.executable


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """meshmetrics' command line in-process, through ``click.testing.CliRunner`` (its
    ``isolation()``), with exactly what ``python -m meshmetrics ARGS`` runs
    (:func:`meshmetrics.cli.run`), from ``cwd`` (default: tests/)."""
    previous, path = os.getcwd(), list(sys.path)
    os.chdir(cwd or TESTS)
    try:
        with CliRunner().isolation() as (out, err, _):
            try:
                code = run(list(args))
            except SystemExit as exc:  # a command's sys.exit(1)
                code = exc.code if isinstance(exc.code, int) else 1
            stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    finally:
        os.chdir(previous)
        # `--app some/app.py` imports it as module "app": each example is a program of its
        # own, so forget it (and the folder flask put on sys.path) as a new process would
        sys.path[:] = path
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", "")).startswith(str(ROOT / "examples")):
                del sys.modules[name]
    return subprocess.CompletedProcess(list(args), code, stdout, stderr)


def serve_in_thread(app: object) -> tuple[str, Callable[[], None]]:
    """Serve a WSGI app with werkzeug's threaded server on 127.0.0.1; returns (base, stop)."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)  # type: ignore[arg-type]
    # a short poll interval: shutdown() returns within 50 ms, not the default 0.5 s
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        thread.join(5)

    return f"http://127.0.0.1:{server.server_port}", stop


def gunicorn_argv(app: str, workers: int = 2) -> list[str]:
    """A real gunicorn with meshmetrics' config module, on a free port of 127.0.0.1."""
    return [
        PYTHON,
        "-m",
        "gunicorn",
        "-w",
        str(workers),
        "-c",
        "python:meshmetrics.gunicorn",
        "-b",
        "127.0.0.1:0",
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


#: A tracing backend for span-semantics tests: capture_spans() replaces its exporter.
IN_MEMORY = {"tracing": "otlp", "trace_endpoint": "http://127.0.0.1:9/v1/traces"}


def captured_spans(instrumentation: Any) -> Callable[[], list[Span]]:
    """From now on ``instrumentation``'s spans are kept in memory, synchronously; the
    returned function lists them (in the receivers' decoded form) at once."""
    exporter = capture_spans(instrumentation)
    service = instrumentation.config.service

    def spans() -> list[Span]:
        return [
            Span(
                service,
                s.context.trace_id,
                s.context.span_id,
                s.context.parent_id or 0,
                s.operation_name,
                dict(s.tags),
                [dict(fields) for _, fields in s.logs],
                s.start_time,
            )
            for s in exporter.spans
        ]

    return spans


class RawHTTPServer:
    """A loopback TCP peer that answers every connection with ``answer(conn)``.

    For the peers no framework plays: one that trickles its answer a byte at a time,
    one that redirects a POST, one that sends bytes no UTF-8 decoder accepts.
    """

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self._answer = answer
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                _read_request(conn)
                self._answer(conn)
            except OSError:
                pass

    def close(self) -> None:
        self._closed.set()
        self._listener.close()


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length:\s*(\d+)", head)
    wanted = int(length.group(1)) if length else 0
    while len(body) < wanted:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head


def trickle(seconds: float, every: float = 0.1) -> Callable[[socket.socket], None]:
    """An answer that sends a byte every ``every`` seconds for ``seconds``: never whole."""

    def answer(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            conn.sendall(b"X")
            time.sleep(every)

    return answer


def canned(status: str, body: bytes = b"", **headers: str) -> Callable[[socket.socket], None]:
    """An answer with a fixed status line, headers and body."""

    def answer(conn: socket.socket) -> None:
        lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    return answer
