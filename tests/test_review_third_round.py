"""Issue 21, attacked again: the inputs and peers the fixes of the third round were not
tested with (a redirect chain that leaves the named origin and comes back, credentials in
a ``Location``, a body cut short of its ``Content-Length``, a YAML alias bomb)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, Response, redirect

from helpers import run_cli, serve_in_thread
from meshmetrics import instrument
from meshmetrics.diagnose.exposition import check_url
from meshmetrics.diagnose.findings import Severity

TOKEN = "Bearer s3cret"


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], str]]:
    stops: list[Callable[[], None]] = []

    def start(app: Flask) -> str:
        base, stop = serve_in_thread(app)
        stops.append(stop)
        return base

    yield start
    for stop in stops:
        stop()


def recording_target(seen: list[tuple[str, str | None]]) -> Flask:
    """An instrumented app recording (path, Authorization) of every request."""
    app = Flask("target")
    instrument(app, service="target")
    inner = app.wsgi_app

    def recorded(environ: dict[str, Any], start_response: Any) -> Any:
        seen.append((environ["PATH_INFO"], environ.get("HTTP_AUTHORIZATION")))
        return inner(environ, start_response)

    app.wsgi_app = recorded  # type: ignore[method-assign]
    return app


def redirecting(to: str, status: int = 302) -> Flask:
    app = Flask("redirector")

    @app.route("/metrics")
    def metrics() -> Response:
        return redirect(to, status)  # type: ignore[return-value]

    return app


# -- item 1: the caller's headers never reach a host they did not name --------------------


@pytest.mark.parametrize("status", [302, 307, 308])
def test_headers_stay_dropped_after_the_chain_left_the_origin_and_came_back(
    serve: Callable[[Flask], str], status: int
) -> None:
    """named → another origin → back to the named one: the path on the named host was
    chosen by a host the caller did not name, so the headers stay behind (requests,
    WHATWG fetch and Go since CVE-2024-45336 keep them stripped once stripped)."""
    seen: list[tuple[str, str | None]] = []
    hops: list[str] = []
    target = recording_target(seen)
    target.add_url_rule("/start", "start", lambda: redirect(hops[0], status))
    base = serve(target)
    hops.append(serve(redirecting(base + "/metrics", status)).replace("127.0.0.1", "localhost"))
    hops[0] += "/metrics"
    findings = check_url(base + "/start", headers={"Authorization": TOKEN})
    assert [path for path, _ in seen] == ["/start", "/metrics"] * 2, seen  # text, OpenMetrics
    assert [path for path, auth in seen if auth is not None] == ["/start", "/start"], seen
    lines = [f.line() for f in findings]
    assert any(
        f"{status} to {base}/metrics (after another origin: the --header values were not "
        "sent there)" in line
        for line in lines
    ), lines


def test_credentials_in_a_location_are_never_shown(serve: Callable[[Flask], str]) -> None:
    """A ``Location`` holding ``user:password@`` is followed (the user-info is never sent),
    and the finding that names it shows no password."""
    seen: list[tuple[str, str | None]] = []
    target = serve(recording_target(seen))
    to = target.replace("http://", "http://admin:hunter2@") + "/metrics"
    start = serve(redirecting(to))
    lines = [f.line() for f in check_url(start + "/metrics", headers={"Authorization": TOKEN})]
    assert seen, lines
    assert not any("hunter2" in line for line in lines), lines
    assert any("302 to http://REDACTED:REDACTED@127.0.0.1" in line for line in lines), lines


def test_a_url_with_credentials_is_refused_without_showing_them(
    serve: Callable[[Flask], str],
) -> None:
    """``http://user:pw@host/metrics``: http.client sends no user-info, so the check would
    say 401 or check a page anonymously, and print the password on every line."""
    seen: list[tuple[str, str | None]] = []
    target = serve(recording_target(seen)).replace("http://", "http://bob:pw123@")
    result = run_cli("check", target + "/metrics")
    assert result.returncode == 2, result.stdout
    assert "pw123" not in result.stdout + result.stderr
    assert "--header 'Authorization: Basic" in result.stderr
    assert seen == []
    findings = check_url(target + "/metrics")
    assert [f.severity for f in findings] == [Severity.ERROR]
    assert "pw123" not in findings[0].line()


@pytest.mark.parametrize(
    "url", ["http://[::1", "https://[v1.x/", "http://h:99999/", "http://h:x/", "http:///metrics"]
)
def test_a_url_that_does_not_parse_is_one_line(url: str) -> None:
    result = run_cli("check", url)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    findings = check_url(url)
    assert [f.severity for f in findings] == [Severity.ERROR]
