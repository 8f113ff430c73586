"""Bodies whose length is not known in advance, each produced in ~0.5 s while it is sent,
and a real file (gunicorn sends it with ``sendfile()``): the body-timing tests."""

from __future__ import annotations

import io
import os
import tempfile
import time
from collections.abc import Iterator

from flask import Flask, Response, send_file

from meshmetrics import instrument

#: seconds each body takes to produce, spread over its chunks
BODY_SECONDS = 0.5
CHUNKS = 5
#: the real file sent by /file (64 KiB)
FILE = os.path.join(tempfile.gettempdir(), f"meshmetrics-bodies-{os.getpid()}.bin")


def slow_row(i: int) -> bytes:
    time.sleep(BODY_SECONDS / CHUNKS)
    return f"{i},row\n".encode()


class Rows:
    """An iterable class (not a generator): a CSV export written as a class."""

    def __iter__(self) -> Iterator[bytes]:
        return map(slow_row, range(CHUNKS))


class SlowFile(io.RawIOBase):
    """A file-like object without a file descriptor, read slowly (no sendfile possible)."""

    def __init__(self) -> None:
        self._left = CHUNKS

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._left:
            return 0
        self._left -= 1
        data = slow_row(self._left)
        buffer[: len(data)] = data
        return len(data)


def create_app() -> Flask:
    app = Flask("bodies")
    instrument(app, service="bodies")

    @app.get("/map")
    def mapped() -> Response:
        return Response(map(slow_row, range(CHUNKS)), mimetype="text/csv")

    @app.get("/iterable")
    def iterable() -> Response:
        return Response(Rows(), mimetype="text/csv")

    @app.get("/slowfile")
    def slowfile() -> Response:
        return send_file(SlowFile(), mimetype="text/csv", download_name="rows.csv")

    @app.get("/file")
    def real_file() -> Response:
        if not os.path.exists(FILE):
            with open(FILE, "wb") as f:
                f.write(b"x" * 65536)
        return send_file(FILE, mimetype="application/octet-stream")

    return app


app = create_app()
