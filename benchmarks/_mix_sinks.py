"""Span sinks for ``bench_mix.py``: real receivers (``meshmetrics.testing.receivers``: a
Jaeger agent over UDP, OTLP/HTTP, OTLP/gRPC and Zipkin collectors) that decode every span
and count it, keeping none.

They run in a process of their own (``SinkProcess``), outside the measured one: decoding
is the receiver's work, not the instrumentation's.  Every measured run gets a fresh
receiver, so its count is that run's alone.  ``LocalSinks`` is the same in this process
(the unit test, and the sink process itself).

    python benchmarks/_mix_sinks.py     # serve: "open KIND" -> endpoint,
                                        # "count ENDPOINT EXPECTED SECONDS" -> spans received
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

KINDS = ("jaeger", "otlp-http", "otlp-grpc", "zipkin")


class _Counted(list[Any]):
    """A receiver's span list that counts what it is given and keeps nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def append(self, item: Any) -> None:
        self.count += 1

    def extend(self, items: Any) -> None:
        self.count += len(items)

    def __len__(self) -> int:
        return self.count


class LocalSinks:
    """Receivers in this process, one per ``open``."""

    def __init__(self) -> None:
        self._receivers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def open(self, kind: str) -> str:
        from meshmetrics.testing import receivers

        made: Any = {
            "jaeger": receivers.JaegerAgent,
            "otlp-http": receivers.OTLPCollector,
            "otlp-grpc": receivers.OTLPGrpcCollector,
            "zipkin": receivers.ZipkinCollector,
        }[kind]()
        made.spans = _Counted()
        with self._lock:
            self._receivers[made.endpoint] = made
        return str(made.endpoint)

    def count(self, endpoint: str, expected: int = 0, seconds: float = 0.0) -> int:
        """Spans received at ``endpoint``, once ``expected`` arrived or ``seconds`` passed;
        the receiver is closed then."""
        with self._lock:
            receiver = self._receivers.pop(endpoint)
        deadline = time.monotonic() + seconds
        while len(receiver.spans) < expected and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1 if expected == 0 else 0.0)  # a late span of a run expecting none
        count = len(receiver.spans)
        receiver.close()
        return count

    def close(self) -> None:
        with self._lock:
            for receiver in self._receivers.values():
                receiver.close()
            self._receivers.clear()


class SinkProcess:
    """``LocalSinks`` in a child process, asked over its standard input and output."""

    def __init__(self) -> None:
        self._child = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lock = threading.Lock()

    def _ask(self, line: str) -> str:
        assert self._child.stdin is not None
        assert self._child.stdout is not None
        with self._lock:
            self._child.stdin.write(line + "\n")
            self._child.stdin.flush()
            answer = self._child.stdout.readline().strip()
        if not answer or answer.startswith("error"):
            raise RuntimeError(f"span sink: {line!r} -> {answer or 'exited'}")
        return answer

    def open(self, kind: str) -> str:
        return self._ask(f"open {kind}")

    def count(self, endpoint: str, expected: int = 0, seconds: float = 0.0) -> int:
        return int(self._ask(f"count {endpoint} {expected} {seconds}"))

    def close(self) -> None:
        if self._child.stdin is not None:
            self._child.stdin.close()
        self._child.wait(30)


def serve() -> None:
    """The sink process: one command a line, one answer a line."""
    sinks = LocalSinks()

    def answer(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        command, *args = line.split()
        try:
            if command == "open":
                answer(sinks.open(args[0]))
            elif command == "count":
                answer(str(sinks.count(args[0], int(args[1]), float(args[2]))))
            else:
                answer(f"error: unknown command {command}")
        except Exception as exc:
            answer(f"error: {exc!r}")
    sinks.close()


if __name__ == "__main__":
    serve()
