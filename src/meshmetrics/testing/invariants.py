"""A pytest plugin: every Flask app a test suite builds is instrumented and checked.

``python -m pytest -p meshmetrics.testing.invariants [--meshmetrics-report=FILE]`` runs
any test suite (a Flask extension's own, yours) with each app it creates instrumented
by meshmetrics, and checks after each test the invariants of
:mod:`meshmetrics.testing.watch` against what the test's clients saw.

For the session only, ``Flask.__init__`` and ``Flask.__call__`` are wrapped: a plain
``Flask`` is instrumented as its ``__init__`` returns (as ``app = Flask(...);
instrument(app)`` does); an instance of a subclass (APIFlask, a suite's own) at its first
request, because its own ``__init__`` is still running after Flask's.  An app already
instrumented keeps its instrumentation.

With ``--meshmetrics-report=FILE`` the violations go to a JSON file and the tests'
outcomes are the suite's own (so its pass/fail set compares with a run without the
plugin); without it, or with ``--meshmetrics-strict``, a test with a violation fails at
teardown.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from .checks import Violation
from .watch import Watch

_watch = Watch()
_originals: dict[str, Callable[..., Any]] = {}
_violations: list[dict[str, str]] = []
_tests = 0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("meshmetrics", "meshmetrics invariants")
    group.addoption(
        "--meshmetrics-report",
        metavar="FILE",
        help="write the invariant violations as JSON to FILE instead of failing tests",
    )
    group.addoption(
        "--meshmetrics-strict",
        action="store_true",
        help="fail a test at teardown when an invariant does not hold (default without a report)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests() -> None:
    """Before the suite's conftest files import anything that builds an app."""
    install()


def pytest_configure(config: pytest.Config) -> None:
    install()


def pytest_unconfigure(config: pytest.Config) -> None:
    uninstall()


def install() -> None:
    """Wrap ``Flask.__init__`` and ``Flask.__call__`` (until :func:`uninstall`)."""
    if _originals:
        return
    init, call = Flask.__init__, Flask.__call__
    _originals.update(init=init, call=call)

    def watched_init(self: Flask, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self) is Flask:
            _watch.attach(self)

    def watched_call(self: Flask, environ: dict[str, Any], start_response: Any) -> Any:
        return _watch.call(self, environ, start_response, lambda e, s: call(self, e, s))

    Flask.__init__ = watched_init  # type: ignore[method-assign]
    Flask.__call__ = watched_call  # type: ignore[method-assign]
    _watch.start()


def uninstall() -> None:
    if not _originals:
        return
    Flask.__init__ = _originals.pop("init")  # type: ignore[method-assign]
    Flask.__call__ = _originals.pop("call")  # type: ignore[method-assign]
    _watch.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """After the test's own teardown: its fixtures are gone, its bodies closed."""
    yield
    global _tests
    _tests += 1
    found = _watch.check()
    if not found:
        return
    _violations.extend(_entry(item.nodeid, v) for v in found)
    config = item.config
    if config.getoption("meshmetrics_strict") or not config.getoption("meshmetrics_report"):
        lines = "\n".join(f"{v.invariant} [{v.app}]: {v.detail}" for v in found)
        pytest.fail(f"meshmetrics invariants:\n{lines}", pytrace=False)


def _entry(test: str, violation: Violation) -> dict[str, str]:
    return {
        "test": test,
        "invariant": violation.invariant,
        "app": violation.app,
        "detail": violation.detail,
    }


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A last check of every app still alive (a request served outside any test), then
    the report."""
    _violations.extend(_entry("<session end>", v) for v in _watch.check(everything=True))
    path = session.config.getoption("meshmetrics_report")
    if not path:
        return
    # an xdist worker of this session (not an outer session's variable, inherited by a
    # suite run in a subprocess of one of its workers)
    worker = getattr(session.config, "workerinput", {}).get("workerid")
    target = Path(f"{path}.{worker}" if worker else path)
    report = {
        "tests_checked": _tests,
        "apps": _watch.apps,
        "requests": _watch.requests,
        "violations": _violations,
    }
    target.write_text(json.dumps(report, indent=2) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_line(
        f"meshmetrics invariants: {_tests} tests, {_watch.apps} apps, "
        f"{_watch.requests} requests probed, {len(_violations)} violations"
    )
