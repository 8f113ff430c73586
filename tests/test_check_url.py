"""`meshmetrics check URL`: credentials stay with the origin the caller named, a page of
any size is checked within --timeout and in bounded memory, info metrics judged by their
series count."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, Response, redirect, request
from prometheus_client.parser import text_fd_to_metric_families

from helpers import (
    RawHTTPServer,
    canned,
    run_cli,
    trickle,
)
from meshmetrics import instrument
from meshmetrics._http import BodyTooLargeError, DeadlineExceededError, fetch
from meshmetrics.diagnose.exposition import check_url
from meshmetrics.diagnose.findings import Severity
from meshmetrics.diagnose.rates import scrape
from meshmetrics.diagnose.scrape import PART_BREAK, in_parts, origin

TOKEN = "Authorization: Bearer s3cret"


def recording_target(seen: list[str | None]) -> Flask:
    """An instrumented app recording the Authorization header of every request."""
    app = Flask("target")
    instrument(app, service="target")
    inner = app.wsgi_app

    def recorded(environ: dict[str, Any], start_response: Any) -> Any:
        seen.append(environ.get("HTTP_AUTHORIZATION"))
        return inner(environ, start_response)

    app.wsgi_app = recorded  # type: ignore[method-assign]  # outermost: sees /metrics too
    return app


def redirecting(to: str) -> Flask:
    app = Flask("redirector")

    @app.route("/metrics")
    def metrics() -> Response:
        return redirect(to, 302)  # type: ignore[return-value]

    return app


# -- 1: the caller's headers never reach another origin -----------------------------------


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"], ids=["other-host", "other-port"])
def test_a_redirect_to_another_origin_gets_none_of_the_headers(
    serve: Callable[[Flask], str], host: str
) -> None:
    seen: list[str | None] = []
    target = serve(recording_target(seen)).replace("127.0.0.1", host) + "/metrics"
    start = serve(redirecting(target))
    result = run_cli("check", start, "--header", TOKEN)
    assert seen, result.stdout  # both requests (text, then OpenMetrics) reached the target
    assert set(seen) == {None}
    assert (
        f"WARN  {start}/metrics: redirected: 302 to {target} (another origin: the --header "
        "values were not sent there)" in result.stdout
    )


def test_a_redirect_within_the_origin_keeps_the_headers(serve: Callable[[Flask], str]) -> None:
    seen: list[str | None] = []
    app = recording_target(seen)
    app.add_url_rule("/old", "old", lambda: redirect("/metrics", 301))
    base = serve(app)
    result = run_cli("check", f"{base}/old", "--header", TOKEN)
    assert result.returncode == 0, result.stdout
    assert seen == ["Bearer s3cret"] * 4  # /old and /metrics, for the text then OpenMetrics
    assert f"INFO  {base}/old: redirected: 301 to {base}/metrics" in result.stdout


def test_origins_compare_scheme_host_and_port() -> None:
    assert origin("http://Example.com/metrics") == origin("http://example.com:80/x")
    assert origin("https://example.com/") == ("https", "example.com", 443)
    assert origin("http://example.com/") != origin("https://example.com/")
    assert origin("http://example.com:8080/") != origin("http://example.com/")
    assert origin("http://127.0.0.1/") != origin("http://localhost/")


# -- 13: a page of any size, within --timeout and bounded memory --------------------------


def page(series: int) -> bytes:
    head = "# HELP big_total Requests.\n# TYPE big_total counter\n"
    rows = (f'big_total{{path="/users/{i}"}} 1.0\n' for i in range(series))
    return (head + "".join(rows)).encode()


def test_a_family_is_parsed_in_bounded_parts_and_counted_whole() -> None:
    lines = page(25_000).decode().splitlines(keepends=True)
    parts = [
        f for f in text_fd_to_metric_families(in_parts(iter(lines), 1_000)) if f.name != PART_BREAK
    ]  # type: ignore[arg-type]
    assert {f.name for f in parts} == {"big"}
    assert max(len(f.samples) for f in parts) == 1_000
    assert sum(len(f.samples) for f in parts) == 25_000
    assert {f.documentation for f in parts} == {"Requests."}
    assert {f.type for f in parts} == {"counter"}


def test_a_large_page_is_judged_whole_from_its_parts() -> None:
    server = RawHTTPServer(canned("200 OK", page(25_000), Content_Type="text/plain; version=0.0.4"))
    try:
        lines = [f.line() for f in check_url(server.url, max_series=20_000)]
    finally:
        server.close()
    assert any("25000 series in 1 families" in line for line in lines), lines
    assert any("big has 25000 series (> 20000)" in line for line in lines), lines
    assert any("big{path} holds raw paths ('/users/0', 25000 in all)" in line for line in lines)


def test_the_timeout_covers_the_parsing_of_a_page_that_arrived_at_once() -> None:
    body = page(200_000)  # ~7 MB: read in well under a second, parsed in several
    server = RawHTTPServer(canned("200 OK", body, Content_Type="text/plain; version=0.0.4"))
    try:
        findings = check_url(server.url, timeout=0.5)
    finally:
        server.close()
    assert [f.severity for f in findings] == [Severity.ERROR]
    assert "no complete answer within 0.5 s" in findings[0].message


# -- issue 20, 3: info metrics are judged by series count -----------------------------------


def test_a_git_sha_version_in_the_info_metric_is_no_warning(serve: Callable[[Flask], str]) -> None:
    app = Flask("sha")
    instrument(app, service="sha", version="3f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39")
    app.add_url_rule("/", "index", lambda: "ok")
    app.test_client().get("/")
    result = run_cli("check", serve(app))
    assert result.returncode == 0, result.stdout
    assert "holds ids" not in result.stdout
    assert "WARN" not in result.stdout


def test_an_info_metric_with_many_series_still_warns() -> None:
    rows = "".join(f'x_build_info{{commit="{i:040x}"}} 1.0\n' for i in range(150))
    body = f"# HELP x_build_info Build.\n# TYPE x_build_info gauge\n{rows}".encode()
    server = RawHTTPServer(canned("200 OK", body, Content_Type="text/plain; version=0.0.4"))
    try:
        lines = [f.line() for f in check_url(server.url)]
    finally:
        server.close()
    assert any("x_build_info{commit} has 150 values (> 100)" in line for line in lines), lines
    assert not any("holds ids" in line for line in lines)


def test_the_openmetrics_pass_skips_a_family_it_would_hold_whole(
    serve: Callable[[Flask], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from meshmetrics.diagnose import exposition

    monkeypatch.setattr(exposition, "OPENMETRICS_FAMILY_LIMIT", 1_000)
    asked: list[str] = []
    app = Flask("both_formats")

    @app.route("/metrics")
    def metrics() -> Response:
        asked.append(request.headers.get("Accept", ""))
        if "openmetrics" in asked[-1]:
            return Response(b"# EOF\n", content_type="application/openmetrics-text")
        return Response(page(1_001), content_type="text/plain; version=0.0.4")

    lines = [f.line() for f in check_url(serve(app))]
    assert any("OpenMetrics answer not parsed: big has 1001 series" in line for line in lines)
    assert len(asked) == 1
    monkeypatch.setattr(exposition, "OPENMETRICS_FAMILY_LIMIT", 1_001)
    lines = [f.line() for f in check_url(serve(app))]
    assert any("OpenMetrics parses too: 0 families" in line for line in lines), lines


def test_fetch_bounds_size_and_time() -> None:
    big = RawHTTPServer(canned("200 OK", b"x" * 200_000))
    slow = RawHTTPServer(trickle(seconds=30, every=0.05))
    try:
        with pytest.raises(BodyTooLargeError):
            fetch(big.url, max_bytes=100_000)
        assert len(fetch(big.url).body) == 200_000
        with pytest.raises(DeadlineExceededError):
            fetch(slow.url, timeout=0.5)
    finally:
        big.close()
        slow.close()


def test_check_and_top_end_within_their_timeout_against_a_trickle() -> None:
    server = RawHTTPServer(trickle(seconds=30, every=0.05))
    try:
        started = time.monotonic()
        findings = check_url(server.url, timeout=1.0)
        assert findings[0].severity == "ERROR"
        assert "within 1 s" in findings[0].message
        with pytest.raises(TimeoutError):
            scrape(server.url, timeout=1.0)
        assert time.monotonic() - started < 5.0
    finally:
        server.close()


def test_check_refuses_a_body_past_its_limit() -> None:
    server = RawHTTPServer(canned("200 OK", b"# x\n" * 100_000, Content_Type="text/plain"))
    try:
        findings = check_url(server.url, max_bytes=100_000)
        assert findings[0].severity == "ERROR"
        assert "more than 100000" in findings[0].message
        assert run_cli("check", server.url, "--max-bytes", "100000").returncode == 1
    finally:
        server.close()


def test_invalid_utf8_label_values_are_an_error() -> None:
    body = b'flask_http_request_total{path="/caf\xe9"} 1\n'
    server = RawHTTPServer(canned("200 OK", body, Content_Type="text/plain; version=0.0.4"))
    try:
        findings = check_url(server.url)
        assert [f.severity for f in findings] == ["OK", "ERROR"]
        assert "not valid UTF-8 at byte 35" in findings[1].message
        with pytest.raises(ValueError, match="UTF-8"):
            scrape(server.url)
    finally:
        server.close()
