"""app.run() after instrument(): always threaded, one process."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable

import pytest
import requests
from flask import Flask

from meshmetrics import instrument

from conftest import PYTHON, Server, free_port, value


@pytest.mark.slow
def test_threaded_false_is_overridden_and_requests_overlap(
    start_server: Callable[..., Server],
) -> None:
    port = free_port()
    server = start_server([PYTHON, "apps/service.py", str(port), "nothreads"], port)
    url = f"{server.base}/api/v1/items/pair"
    # The view waits on a 2-party barrier: it answers 200 only if both requests are
    # inside it at the same time, which a single-threaded server can never do.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        statuses = [
            f.result().status_code
            for f in [pool.submit(requests.get, url, timeout=20) for _ in range(2)]
        ]
    assert statuses == [200, 200]
    text = requests.get(f"{server.base}/metrics", timeout=10).text
    assert value(text, "flask_http_request_total", path="/api/v1/items/pair", status="200") == 2
    _, err = server.stop()
    assert "app.run(threaded=False) overridden with threaded=True" in err


def test_processes_greater_than_one_is_refused() -> None:
    app = Flask("procs")
    inst = instrument(app)
    with pytest.raises(
        ValueError, match=r"processes=4.*gunicorn -w 4 -c python:meshmetrics.gunicorn"
    ):
        app.run(processes=4)
    with pytest.raises(ValueError, match="processes=2"):
        inst.run(processes=2)


def test_run_passes_threaded_true_to_flask(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}
    monkeypatch.setattr(Flask, "run", lambda self, *a, **kw: seen.update(kw))
    app = Flask("passes")
    instrument(app)
    app.run(port=1234, threaded=False)
    assert seen == {"port": 1234, "threaded": True}
