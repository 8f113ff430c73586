"""An app with a WebSocket route (Flask-Sock) and Socket.IO (Flask-SocketIO, threading
mode, short ping interval so long-polls end quickly), served by real servers in the tests.

``REALTIME_ORDER=before`` instruments before ``SocketIO(app)`` (default: after);
``MESHMETRICS_*`` variables configure the instrumentation as usual."""

from __future__ import annotations

import os

from flask import Flask
from flask_sock import Sock
from flask_socketio import SocketIO, emit

from meshmetrics import instrument

app = Flask("realtime")
if os.environ.get("REALTIME_ORDER") == "before":
    instrument(app)
socketio = SocketIO(app, async_mode="threading", ping_interval=1, ping_timeout=5)
if os.environ.get("REALTIME_ORDER") != "before":
    instrument(app)
sock = Sock(app)


@app.route("/")
def index() -> str:
    return "ok"


@sock.route("/echo")
def echo(ws: object) -> None:
    """Echoes every message until ``bye``, then the session ends cleanly."""
    while True:
        data = ws.receive()  # type: ignore[attr-defined]
        if data == "bye":
            return
        ws.send(data)  # type: ignore[attr-defined]


@socketio.on("ping_me")
def ping_me(data: str) -> None:
    emit("pong_you", data)
