"""Every body whose length is not known in advance is timed to its last byte, through real
servers: ``map()``, an iterable class, ``send_file`` of a file-like object; the request
stays in progress while its body is sent; gunicorn's ``wsgi.file_wrapper`` is handed back
as it is, so it still uses ``sendfile()`` (issue 20 item 2)."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask import Flask, send_file

from helpers import Server, gunicorn_argv, serve_in_thread, settled, value
from meshmetrics import instrument

from apps.bodies import BODY_SECONDS, create_app

PATHS = ("/map", "/iterable", "/slowfile")


def timed_bodies(base: str) -> str:
    """Each slow body fetched while another connection scrapes mid-body."""
    for path in PATHS:
        started = threading.Event()
        mid_body: list[float] = []

        def fetch(path: str = path, started: threading.Event = started) -> None:
            with requests.get(f"{base}{path}", timeout=10, stream=True) as response:
                chunks = response.iter_content(chunk_size=None)
                next(chunks)  # the first chunk is out: the body is being produced
                started.set()
                list(chunks)

        thread = threading.Thread(target=fetch)
        thread.start()
        assert started.wait(10)
        text = requests.get(f"{base}/metrics", timeout=10).text
        mid_body.append(value(text, "flask_http_requests_in_progress", path=path))
        thread.join(10)
        assert mid_body == [1], path
    return requests.get(f"{base}/metrics", timeout=10).text


def assert_timed_to_last_byte(text: str) -> None:
    for path in PATHS:
        assert value(text, "flask_http_request_total", path=path, status="200") == 1, path
        seconds = value(text, "flask_http_request_duration_seconds_sum", path=path)
        assert seconds >= BODY_SECONDS * 0.8, (path, seconds)  # 4 of its 5 sleeps at least
        assert value(text, "flask_http_requests_in_progress", path=path) == 0, path


def test_bodies_timed_to_their_last_byte_werkzeug() -> None:
    base, stop = serve_in_thread(create_app())
    try:
        text = timed_bodies(base)
    finally:
        stop()
    assert_timed_to_last_byte(text)


@pytest.mark.slow
def test_bodies_timed_to_their_last_byte_gunicorn(start_server: Callable[..., Server]) -> None:
    server = start_server(gunicorn_argv("apps.bodies:app", 1))
    text = timed_bodies(server.base)
    assert_timed_to_last_byte(text)
    sent = requests.get(f"{server.base}/file", timeout=10)  # a real file: sendfile()
    assert (sent.status_code, len(sent.content)) == (200, 65536)

    # Counted when gunicorn closes the file wrapper, after its last byte left: a client
    # holding every byte may scrape first on a busy machine (it failed so at 8 workers).
    def file_counts() -> tuple[float, float]:
        text = requests.get(f"{server.base}/metrics", timeout=10).text
        return (
            value(text, "flask_http_request_total", path="/file", status="200"),
            value(text, "flask_http_requests_in_progress", path="/file"),
        )

    assert settled(file_counts, (1, 0)) == (1, 0)


def file_app() -> Flask:
    app = Flask("files")
    app.add_url_rule("/f", "f", lambda: send_file(io.BytesIO(b"abc"), mimetype="text/plain"))
    instrument(app)
    return app


def gunicorn_file_request(app: Flask) -> Any:
    """The body ``app`` hands gunicorn for a ``send_file`` (its ``wsgi.file_wrapper``)."""
    from gunicorn.http.wsgi import FileWrapper

    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/f",
        "SERVER_NAME": "x",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.file_wrapper": FileWrapper,
    }
    return app.wsgi_app(environ, lambda status, headers, exc=None: None)


def test_the_servers_file_wrapper_is_handed_back_with_its_close_observed() -> None:
    from gunicorn.http.wsgi import FileWrapper

    app = file_app()
    body = gunicorn_file_request(app)
    assert isinstance(body, FileWrapper)  # gunicorn's isinstance() check: sendfile() kept
    scrape = app.test_client().get("/metrics").get_data(as_text=True)
    assert value(scrape, "flask_http_requests_in_progress", path="/f") == 1
    assert b"".join(body) == b"abc"
    body.close()
    scrape = app.test_client().get("/metrics").get_data(as_text=True)
    assert value(scrape, "flask_http_requests_in_progress", path="/f") == 0
    assert value(scrape, "flask_http_request_total", path="/f", status="200") == 1


def test_plain_and_error_bodies_complete_when_the_app_returns() -> None:
    app = Flask("plain")
    app.add_url_rule("/ok", "ok", lambda: "ok")
    instrument(app)
    client = app.test_client()
    client.get("/ok")  # bodies never read: complete all the same
    client.get("/missing")
    client.post("/ok")
    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "flask_http_request_total") == 3
    assert value(text, "flask_http_requests_in_progress") == 0


def test_a_client_leaving_a_sent_file_is_client_closed() -> None:
    app = file_app()
    body = gunicorn_file_request(app)

    def send() -> None:
        try:
            raise BrokenPipeError("client went away during sendfile()")
        finally:  # as gunicorn closes the body while the error propagates
            body.close()

    with pytest.raises(BrokenPipeError):
        send()
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert value(text, "flask_http_request_total", path="/f", status="499") == 1
    assert value(text, "flask_http_request_exceptions_total") == 0
