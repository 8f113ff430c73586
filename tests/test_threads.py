"""Serving: app.run() is Flask's own (never replaced); meshmetrics checks the server at the
first request and Instrumentation.run() refuses forking servers."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from meshmetrics import instrument


def test_single_threaded_server_is_named_at_the_first_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Flask("one")
    app.add_url_rule("/", "index", lambda: "ok")
    instrument(app)
    single = {"wsgi.multiprocess": False, "wsgi.multithread": False, "SERVER_SOFTWARE": "x"}
    with caplog.at_level(logging.WARNING, logger="meshmetrics"):
        app.test_client().get("/", environ_overrides=single)
        app.test_client().get("/", environ_overrides=single)
    assert caplog.text.count("handles one request at a time") == 1


def test_several_processes_without_multiproc_dir_are_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Flask("procs")
    app.add_url_rule("/", "index", lambda: "ok")
    instrument(app)
    forking = {"wsgi.multiprocess": True, "wsgi.multithread": False, "SERVER_SOFTWARE": "x"}
    with caplog.at_level(logging.WARNING, logger="meshmetrics"):
        app.test_client().get("/", environ_overrides=forking)
        app.test_client().get("/", environ_overrides=forking)
    assert [r.getMessage().count("PROMETHEUS_MULTIPROC_DIR") for r in caplog.records] == [1]


def test_app_run_is_wrapped_on_the_instance_refuses_processes_and_is_restored() -> None:
    app = Flask("procs")
    inst = instrument(app)
    assert "run" in vars(app)  # the instance's own, not Flask's class
    for run in (inst.run, app.run):
        with pytest.raises(
            ValueError, match=r"processes=2.*gunicorn -w 4 -c python:meshmetrics.gunicorn"
        ):
            run(processes=2)
    inst.uninstrument()
    assert "run" not in vars(app)


def test_run_passes_threaded_true_to_flask(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[dict[str, object]] = []
    monkeypatch.setattr(Flask, "run", lambda self, *a, **kw: seen.append(kw))
    app = Flask("passes")
    inst = instrument(app)
    with caplog.at_level(logging.WARNING, logger="meshmetrics"):
        inst.run(port=1234, threaded=False)
        app.run(port=1234, threaded=False)
    assert seen == [{"threaded": True}] * 2  # app.run's own arguments go by position
    assert caplog.text.count("overridden with threaded=True") == 2  # once per call
