"""Real werkzeug reloader: /metrics answers in the serving child and counts requests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from helpers import PYTHON, Server, value

pytestmark = pytest.mark.slow

WARNING = "meshmetrics: running under the werkzeug reloader"


def exercise(server: Server, prefix: str = "/api/v1/items") -> str:
    for item in ("a", "b", "c"):
        assert requests.get(f"{server.base}{prefix}/{item}", timeout=10).status_code == 200
    response = requests.get(f"{server.base}/metrics", timeout=10)
    assert response.status_code == 200, "the reloader removed /metrics"
    return response.text


@pytest.mark.parametrize("mode", ["debug", "blueprint-debug"])
def test_app_run_debug_keeps_metrics(start_server: Callable[..., Server], mode: str) -> None:
    server = start_server([PYTHON, "apps/service.py", "0", mode])
    text = exercise(server)
    assert value(text, "flask_http_request_total", path="/api/v1/items/<item_id>") == 3
    _, err = server.stop()
    assert err.count(WARNING) == 1, err
    assert "WARNING" in err or "meshmetrics" in err


def test_flask_cli_run_debug_keeps_metrics(start_server: Callable[..., Server]) -> None:
    argv = [PYTHON, "-m", "flask", "--app", "apps.service", "run", "--debug", "--port", "0"]
    server = start_server(argv)
    text = exercise(server)
    assert value(text, "flask_http_request_total", status="200") == 3
    _, err = server.stop()
    assert err.count(WARNING) == 1, err
