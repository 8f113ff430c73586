"""The servers matrix's app (tests/servers): fast, slow, failing and streamed routes, a
Blueprint and a WebSocket route (Flask-Sock), instrumented from the environment
(``MESHMETRICS_TRACING``/``_TRACE_ENDPOINT`` send its spans to a receiver).  ``asgi`` is
the same app behind a2wsgi, for uvicorn."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from a2wsgi import WSGIMiddleware
from flask import Blueprint, Flask, Response
from flask_sock import Sock

from meshmetrics import instrument

app = Flask("matrix")
instrument(app, service="matrix")
sock = Sock(app)
items = Blueprint("items", __name__, url_prefix="/bp/items")


@app.route("/fast")
def fast() -> str:
    return "fast"


@app.route("/slow")
def slow() -> str:
    time.sleep(0.2)
    return "slow"


@app.route("/fail")
def fail() -> str:
    raise RuntimeError("failing on purpose")


@app.route("/stream")
def stream() -> Response:
    def chunks() -> Iterator[str]:
        for index in range(5):
            time.sleep(0.01)
            yield f"chunk {index}\n"

    return Response(chunks(), mimetype="text/plain")


@app.route("/pid")
def pid() -> str:
    return str(os.getpid())


@items.route("/<item_id>")
def item(item_id: str) -> dict[str, str]:
    return {"id": item_id}


@sock.route("/ws")
def ws(connection: object) -> None:
    """Echoes until ``bye``."""
    while True:
        data = connection.receive()  # type: ignore[attr-defined]
        if data == "bye":
            return
        connection.send(data)  # type: ignore[attr-defined]


app.register_blueprint(items)
asgi = WSGIMiddleware(app)  # type: ignore[arg-type]
