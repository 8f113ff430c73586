"""gevent and eventlet workers: the config module leaves their patching undisturbed
(issue 25 item 3).  gunicorn loads ``meshmetrics.gunicorn`` into the master, and each
worker inherits what the master imported before the worker patches the standard library."""

from __future__ import annotations

import concurrent.futures
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from helpers import PYTHON, TESTS, Server, gunicorn_argv, value

pytestmark = pytest.mark.slow


def test_gevent_workers_patch_without_warning_and_count_exactly(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    argv = [*gunicorn_argv("apps.service:app", 2), "-k", "gevent"]
    server = start_server(argv, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})

    def hit(_: int) -> int:
        return requests.get(f"{server.base}/api/v1/items/1", timeout=10).status_code

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert set(pool.map(hit, range(100))) == {200}
    text = requests.get(f"{server.base}/metrics", timeout=10).text
    assert value(text, "flask_http_request_total", path="/api/v1/items/<item_id>") == 100
    _, err = server.stop()
    assert err.count("Booting worker") >= 2
    assert "MonkeyPatchWarning" not in err, err
    assert "Traceback" not in err, err


_EVENTLET = """
import meshmetrics.gunicorn  # what gunicorn's master loads (-c python:meshmetrics.gunicorn)
import eventlet

eventlet.monkey_patch()  # what the eventlet worker does first
import apps.service  # the app, loaded by the worker after patching

print("patched")
"""


def test_eventlet_patches_after_the_config_module_without_traceback() -> None:
    """gunicorn 27 removed its eventlet worker (deprecated in 26); older ones call
    ``eventlet.monkey_patch()`` when the worker starts, as here."""
    done = subprocess.run(
        [PYTHON, "-c", _EVENTLET], capture_output=True, text=True, cwd=TESTS, timeout=120
    )
    assert done.stdout.strip() == "patched", done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "not greened" not in done.stderr, done.stderr
