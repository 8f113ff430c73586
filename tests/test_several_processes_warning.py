"""The "several processes without PROMETHEUS_MULTIPROC_DIR" warning is decided from what
the process can know (issue 25 item 5): not under one uvicorn process behind a2wsgi (which
always claims ``wsgi.multiprocess``), still under gunicorn without the config module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from helpers import PYTHON, Server
from meshmetrics import serving

WARNING = "runs several processes but PROMETHEUS_MULTIPROC_DIR is not set"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"wsgi.multiprocess": False, "SERVER_SOFTWARE": "gunicorn/23"}, False),
        ({"wsgi.multiprocess": True, "SERVER_SOFTWARE": "gunicorn/23"}, True),
        ({"wsgi.multiprocess": True, "uwsgi.version": b"2.0.31"}, True),
        ({"wsgi.multiprocess": True, "asgi.scope": {}}, False),  # a2wsgi, one process
        ({"wsgi.multiprocess": True}, False),  # uvicorn's WSGIMiddleware, one process
    ],
)
def test_the_servers_claim_needs_a_named_server_or_evidence(
    environ: dict[str, Any], expected: bool
) -> None:
    assert serving.several_processes(environ) is expected


def test_a_fork_is_evidence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serving, "_forked", True)
    assert serving.several_processes({"wsgi.multiprocess": True, "asgi.scope": {}})
    assert not serving.several_processes({"wsgi.multiprocess": False, "asgi.scope": {}})


def uvicorn(*options: str) -> list[str]:
    return [PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "0", *options]


def warned(server: Server, requests_: int = 6) -> bool:
    for _ in range(requests_):
        with requests.Session() as session:  # new connections: any worker may answer
            assert session.get(f"{server.base}/api/v1/items/1", timeout=10).status_code == 200
    out, err = server.stop()
    return WARNING in out + err


@pytest.mark.slow
def test_one_uvicorn_process_behind_a2wsgi_is_not_warned(
    start_server: Callable[..., Server],
) -> None:
    assert not warned(start_server(uvicorn("apps.adapted:asgi")))


@pytest.mark.slow
def test_uvicorn_workers_behind_a2wsgi_are_warned(start_server: Callable[..., Server]) -> None:
    assert warned(start_server(uvicorn("--workers", "2", "apps.adapted:asgi")), 12)


@pytest.mark.slow
def test_gunicorn_workers_without_the_config_module_are_warned(
    start_server: Callable[..., Server],
) -> None:
    argv = [PYTHON, "-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:0", "apps.service:app"]
    assert warned(start_server(argv), 12)
