"""Traffic that is not one request and one response, through real servers (issue 25,
items 1 and 2): WebSocket sessions (Flask-Sock, Flask-SocketIO's threading mode) under
werkzeug and gunicorn count as the ``101`` the client saw, and Socket.IO long-polling gets
the ``/socket.io/`` label (or is excluded, or named) whichever order the app instruments in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import requests
import socketio
from simple_websocket import Client, ConnectionClosed

from helpers import PYTHON, Server, samples, value

pytestmark = pytest.mark.slow


def flask_run() -> list[str]:
    """The realtime app under werkzeug's threaded server (``flask run``)."""
    return [PYTHON, "-m", "flask", "--app", "apps.realtime", "run", "-h", "127.0.0.1", "-p", "0"]


def gunicorn_gthread(config_module: bool = False) -> list[str]:
    argv = [PYTHON, "-m", "gunicorn", "-w", "1", "-k", "gthread", "--threads", "8"]
    if config_module:
        argv += ["-c", "python:meshmetrics.gunicorn"]
    return [*argv, "-b", "127.0.0.1:0", "apps.realtime:app"]


SERVERS = {"werkzeug": flask_run, "gunicorn-gthread": gunicorn_gthread}


def metrics(base: str) -> str:
    return requests.get(f"{base}/metrics", timeout=10).text


def echo_sessions(base: str, count: int) -> None:
    """``count`` WebSocket sessions: two echoed messages each, then a clean end; every
    other session is closed by the client instead of the server."""
    for index in range(count):
        ws = Client.connect(base.replace("http://", "ws://") + "/echo")
        for message in ("one", "two"):
            ws.send(message)
            assert ws.receive(timeout=10) == message
        if index % 2:
            ws.close()
        else:
            ws.send("bye")
            with pytest.raises(ConnectionClosed):
                ws.receive(timeout=10)


def settled(base: str, name: str, expected: float, **labels: str) -> str:
    """The exposition once ``name{labels}`` reached ``expected`` (a session ends on the
    server a moment after the client saw it close), or the last one after 20 s."""
    deadline = time.monotonic() + 20
    while True:
        text = metrics(base)
        if value(text, name, **labels) >= expected or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


# -- item 1: WebSocket sessions ------------------------------------------------------------


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_websocket_sessions_count_as_101_without_exception(
    start_server: Callable[..., Server], server: str
) -> None:
    running = start_server(SERVERS[server]())
    echo_sessions(running.base, 4)
    text = settled(running.base, "flask_http_request_total", 4, path="/echo")
    assert value(text, "flask_http_request_total", path="/echo", status="101") == 4
    assert value(text, "flask_http_request_total", path="/echo") == 4
    assert value(text, "flask_http_request_exceptions_total") == 0
    # a session is not a latency: no histogram series for it, the route's gauge back to 0
    assert value(text, "flask_http_request_duration_seconds_count", path="/echo") == 0
    assert not [key for key in samples(text) if ("path", "/echo") in key[1] and "_bucket" in key[0]]
    assert value(text, "flask_http_requests_in_progress", path="/echo") == 0
    assert value(text, "flask_http_request_total", path="/", status="200") == 1


def test_a_session_in_progress_is_in_the_gauge(start_server: Callable[..., Server]) -> None:
    running = start_server(gunicorn_gthread())
    ws = Client.connect(running.base.replace("http://", "ws://") + "/echo")
    ws.send("open")
    assert ws.receive(timeout=10) == "open"
    assert value(metrics(running.base), "flask_http_requests_in_progress", path="/echo") == 1
    ws.send("bye")
    text = settled(running.base, "flask_http_request_total", 1, path="/echo")
    assert value(text, "flask_http_requests_in_progress", path="/echo") == 0
    assert value(text, "flask_http_request_total", path="/echo", status="101") == 1


def test_socketio_websocket_transport_counts_as_101(start_server: Callable[..., Server]) -> None:
    """python-engineio raises ConnectionError out of the WSGI call under werkzeug."""
    running = start_server(flask_run())
    client = socketio.Client()
    answered = threading.Event()
    client.on("pong_you", lambda _: answered.set())
    client.connect(running.base, transports=["websocket"], wait_timeout=10)
    client.emit("ping_me", "x")
    assert answered.wait(10)
    client.disconnect()
    text = settled(running.base, "flask_http_request_total", 1, path="/socket.io/", status="101")
    assert value(text, "flask_http_request_total", path="/socket.io/", status="101") == 1
    assert value(text, "flask_http_request_total", status="500") == 0
    assert value(text, "flask_http_request_exceptions_total") == 0


# -- item 2: Socket.IO long-polling ---------------------------------------------------------


def long_poll(base: str) -> int:
    """A Socket.IO client on the polling transport: three events answered, long-polls
    across two ping intervals, then a disconnect; returns how many HTTP responses the
    client received."""
    session = requests.Session()
    responses: list[int] = []
    session.hooks["response"].append(lambda response, *_, **__: responses.append(1))
    client = socketio.Client(http_session=session)
    answered = threading.Event()
    client.on("pong_you", lambda _: answered.set())
    client.connect(base, transports=["polling"], wait_timeout=10)
    for _ in range(3):
        answered.clear()
        client.emit("ping_me", "x")
        assert answered.wait(10)
    time.sleep(2.5)  # the server's ping interval is 1 s: polls end with a PING
    client.disconnect()
    client.wait()
    return len(responses)


@pytest.mark.parametrize(
    ("server", "order"),
    [("werkzeug", "before"), ("werkzeug", "after"), ("gunicorn-gthread", "before")],
)
def test_socketio_long_polls_get_their_label_in_either_order(
    start_server: Callable[..., Server], server: str, order: str
) -> None:
    # the server is ready when GET / answers: like a readiness probe, that first request
    # reaching the app's routes is when an instrumentation inside Flask-SocketIO's
    # middleware moves outside it
    running = start_server(SERVERS[server](), env={"REALTIME_ORDER": order})
    responses = long_poll(running.base)
    text = settled(running.base, "flask_http_request_total", responses, path="/socket.io/")
    assert value(text, "flask_http_request_total", path="/socket.io/") == responses
    assert value(text, "flask_http_request_total", path="<unmatched>") == 0
    assert value(text, "flask_http_request_total", path="/", status="200") == 1


def test_socketio_excluded_by_its_label(start_server: Callable[..., Server]) -> None:
    env = {"REALTIME_ORDER": "before", "MESHMETRICS_EXCLUDED_PATHS": "/socket.io/"}
    running = start_server(flask_run(), env=env)
    assert long_poll(running.base) > 3
    time.sleep(1.5)  # the last poll, if still open, ends within a ping interval
    text = metrics(running.base)
    assert value(text, "flask_http_request_total", path="/socket.io/") == 0
    assert value(text, "flask_http_request_total", path="<unmatched>") == 0
    assert value(text, "flask_http_request_total", path="/", status="200") == 1
    _, err = running.stop()
    assert "exclude nothing" not in err


def test_socketio_named_by_path_prefixes(start_server: Callable[..., Server]) -> None:
    env = {"MESHMETRICS_PATH_PREFIXES": "/socket.io/=/realtime"}
    running = start_server(gunicorn_gthread(), env=env)
    responses = long_poll(running.base)
    text = settled(running.base, "flask_http_request_total", responses, path="/realtime")
    assert value(text, "flask_http_request_total", path="/realtime") == responses
    assert value(text, "flask_http_request_total", path="/socket.io/") == 0
