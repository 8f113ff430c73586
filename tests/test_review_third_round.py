"""Issue 21, attacked again: the inputs and peers the fixes of the third round were not
tested with (a redirect chain that leaves the named origin and comes back, credentials in
a ``Location``, a body cut short of its ``Content-Length``, a YAML alias bomb)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, redirect
from hypothesis import HealthCheck, given, settings

from helpers import RawHTTPServer, run_cli
from meshmetrics import instrument
from meshmetrics._http import IncompleteBodyError, fetch
from meshmetrics.diagnose.exposition import check_url
from meshmetrics.diagnose.findings import Severity
from test_export_hardening import endpoints

TOKEN = "Bearer s3cret"


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


# -- items 12, 13: an answer cut short of its Content-Length is no page ------------------

PAGE = b"# TYPE a_total counter\na_total 1\n# TYPE b_total counter\nb_total 2\n"


def cut_short(missing: int) -> Callable[[socket.socket], None]:
    """A 200 that declares ``missing`` more bytes than it sends, then closes: a crashed
    app, a proxy's idle timeout.  http.client's ``read(amt)`` returns what came."""

    def answer(conn: socket.socket) -> None:
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
            f"Content-Length: {len(PAGE) + missing}\r\nConnection: close\r\n\r\n"
        )
        conn.sendall(head.encode() + PAGE)

    return answer


def test_a_page_cut_short_of_its_content_length_is_an_error_not_a_page() -> None:
    server = RawHTTPServer(cut_short(5000))
    try:
        findings = check_url(server.url + "/metrics", timeout=5)
        with pytest.raises(IncompleteBodyError, match=f"after {len(PAGE)} of {len(PAGE) + 5000}"):
            fetch(server.url + "/metrics", timeout=5)
        kept = fetch(server.url, timeout=5, truncate=True, max_bytes=1 << 20)
    finally:
        server.close()
    assert [f.severity for f in findings] == [Severity.ERROR], [f.line() for f in findings]
    assert f"after {len(PAGE)} of {len(PAGE) + 5000} bytes" in findings[0].message
    assert "Prometheus fails such a scrape" in findings[0].fix
    # the exporter's read of a collector's answer: the status stands, the body is not whole
    assert (kept.status, kept.body, kept.truncated) == (200, PAGE, True)


# -- item 12: YAML that expands past what Kubernetes' parser accepts ----------------------


def alias_bomb(levels: int) -> str:
    """Billion laughs: each level a list of nine aliases of the one before (9**levels)."""
    rows = ['    l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    rows += [f"    l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return (
        "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: x\n"
        "  labels:\n" + "\n".join(rows) + f"\nspec:\n  endpoints: *l{levels - 1}\n"
    )


@pytest.mark.parametrize("levels", [6, 9])
def test_a_yaml_alias_bomb_is_one_unreadable_input(tmp_path: Path, levels: int) -> None:
    """9**9 nodes from 1 kB: check ran for hours; go-yaml (kubectl, the API server)
    refuses it as "excessive aliasing"."""
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(levels))
    result = run_cli("check", str(path))
    assert result.returncode == 3, result.stdout[:500]
    assert "excessive aliasing" in result.stdout
    assert "0 error(s), 0 warning(s), 1 input(s) not checked" in result.stdout


def test_ordinary_anchors_and_aliases_are_read(tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  labels: &l {app: s}\n"
        "spec:\n  selector: *l\n  ports: [{name: http, port: 80}]\n"
    )
    result = run_cli("check", str(path))
    assert "not checked" not in result.stdout, result.stdout[:500]


def test_a_yaml_anchor_that_contains_itself_is_one_unreadable_input(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text(
        "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\n"
        "spec: &s\n  endpoints: [*s]\n"
    )
    result = run_cli("check", str(path))
    assert result.returncode == 3, result.stdout[:500]
    assert "contains itself" in result.stdout


# -- item 14: an IPv6 zone id as RFC 6874 writes it in a URL ------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://[fe80::1%25lo]:4318/v1/traces", "fe80::1%lo"),
        ("https://[fe80::1%25lo]/", "fe80::1%lo"),
        ("http://[::1]:4318/", "::1"),
        ("http://collector:4318/", "collector"),
    ],
)
def test_an_ipv6_zone_id_is_connected_to_as_the_resolver_reads_it(url: str, host: str) -> None:
    """``[fe80::1%25lo]`` (the ``%`` percent-encoded, as RFC 6874 requires) was accepted
    by the options and then passed as ``fe80::1%25lo`` to getaddrinfo, which knows no
    interface ``25lo``: every export failed."""
    from urllib.parse import urlsplit

    from meshmetrics._http import _connection

    connection = _connection(urlsplit(url), 1.0, None)
    assert connection.host == host
    if "%" in host:  # numeric: resolved without any network
        assert socket.getaddrinfo(connection.host, 1, type=socket.SOCK_STREAM)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://[::1]/metrics", ("::1", 80)),
        ("https://[2001:db8::1]/v1/traces", ("2001:db8::1", 443)),
        ("http://[::1]:9090/", ("::1", 9090)),
        ("http://127.0.0.1/", ("127.0.0.1", 80)),
        ("https://collector/", ("collector", 443)),
    ],
)
def test_an_ipv6_literal_without_a_port_is_its_scheme_default(
    url: str, address: tuple[str, int]
) -> None:
    """http.client splits a host it is given without a port at its last ':': ``[::1]``
    went to host ``::`` port 1, ``[2001:db8::1]`` to ``2001:db8:`` port 1 (the check of
    such a URL, every export to such an endpoint)."""
    from urllib.parse import urlsplit

    from meshmetrics._http import _connection

    connection = _connection(urlsplit(url), 1.0, None)
    assert (connection.host, connection.port) == address


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(endpoint=endpoints())
def test_an_accepted_endpoint_is_connected_to_where_it_says(endpoint: str) -> None:
    """The option fuzzing of item 17 asked only "a value or one line"; this asks of every
    accepted endpoint that the exporter connects to the host and port it names (the
    scheme's default port when none is given): the oracle that finds ``[::1]``."""
    from urllib.parse import urlsplit

    from meshmetrics._http import _connection
    from meshmetrics.config import ConfigError, HttpEndpoint, resolve_config

    try:
        config = resolve_config(
            {"tracing": "otlp", "trace_endpoint": endpoint}, default_service="s", environ={}
        )
    except ConfigError:
        return
    assert isinstance(config.trace_endpoint, HttpEndpoint)
    parts = urlsplit(config.trace_endpoint.url)
    connection = _connection(parts, 1.0, None)
    default = {"http": 80, "https": 443}[parts.scheme]
    assert (connection.host, connection.port) == (parts.hostname, parts.port or default)


@pytest.mark.parametrize(
    "header",
    [
        "Authorization: Bearer sëcret-token",  # non-ASCII
        "Authorization: Bearer secret-token\r",  # pasted from a CRLF file
        "Bearer secret-token",  # the value alone, no name
        ": secret-token",
    ],
)
def test_a_refused_header_is_named_without_its_value(header: str) -> None:
    """item 2, "never log a credential anywhere": the refusal echoed the whole header."""
    result = run_cli("check", "http://127.0.0.1:1/metrics", "--header", header)
    assert result.returncode == 2
    assert "secret-token" not in result.stdout + result.stderr, result.stderr
    assert "--header" in result.stderr


def test_a_finding_shows_a_bounded_part_of_a_huge_value(tmp_path: Path) -> None:
    """A field of the wrong type holding 1 MB (a dashboard's JSON, a pasted blob) was
    echoed whole by the schema's message: a finding line of 1,000,075 characters."""
    path = tmp_path / "big.yaml"
    path.write_text(
        "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\n"
        "spec:\n  selector: {matchLabels: {app: x}}\n  endpoints: " + "a" * 1_000_000 + "\n"
    )
    result = run_cli("check", str(path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) < 2_000, [line[:200] for line in lines]
    assert any(
        "spec.endpoints: 'aaa" in line
        and "more characters" in line
        and line.endswith("is not of type 'array'")
        for line in lines
    ), [line[:200] for line in lines]


@pytest.mark.parametrize(
    ("url", "said"),
    [("http://bob:pw123@127.0.0.1:1/", "Authorization: Basic"), ("http://[::1", "not a URL")],
)
def test_top_refuses_what_check_refuses(url: str, said: str) -> None:
    """``top`` printed ``http://bob:pw123@…`` in its table and took ``http://[::1`` for a
    service that is DOWN (ValueError)."""
    pytest.importorskip("rich")
    result = run_cli("top", "--once", "--interval", "0.2", url)
    assert result.returncode == 2, result.stdout
    assert "pw123" not in result.stdout + result.stderr
    assert said in result.stderr


def test_a_prometheus_url_with_credentials_is_refused_without_showing_them(
    tmp_path: Path,
) -> None:
    """``--prometheus http://u:pw@host``: the password printed in the UNKNOWN finding, and
    never sent (a Prometheus behind basic auth answered 401)."""
    path = tmp_path / "svc.yaml"
    path.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {}\n")
    result = run_cli("check", str(path), "--prometheus", "http://u:pw999@127.0.0.1:1")
    assert result.returncode == 2, result.stdout
    assert "pw999" not in result.stdout + result.stderr
    assert "--prometheus" in result.stderr


def test_a_prometheus_url_that_does_not_parse_is_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {}\n")
    result = run_cli("check", str(path), "--prometheus", "http://[::1")
    assert result.returncode == 1, result.stdout + result.stderr  # no monitor: an error
    assert "Traceback" not in result.stdout + result.stderr
    assert "UNKNOWN http://[::1: cannot read the Prometheus API" in result.stdout


# -- item 13: a page of one huge line ------------------------------------------------------


def _seconds_to_read(body: bytes) -> float:
    from meshmetrics.diagnose.scrape import Deadline, lines

    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    start = time.perf_counter()
    assert sum(len(line) for line in lines(iter(chunks), Deadline(600))) == len(body)
    return time.perf_counter() - start


def test_one_huge_line_is_read_in_linear_time() -> None:
    """16 MB on one line took 3.8 s to split into lines (60 MB: 62 s), the same bytes in
    lines of 1 kB 0.1 s: the held part of the line was copied at every 64 kB chunk.
    Compared in one run (the shortest of three each), so a busy machine slows both."""
    size = 16 << 20
    one_line = b"# HELP big " + b"a" * size + b"\n"
    many_lines = (b"# HELP big " + b"a" * 1013 + b"\n") * (size // 1024)
    one = min(_seconds_to_read(one_line) for _ in range(3))
    many = min(_seconds_to_read(many_lines) for _ in range(3))
    assert one < 5 * many + 0.05, (one, many)


@pytest.mark.parametrize(
    ("target", "url"),
    [
        ("http://h:1?token=abc", "http://h:1/metrics?token=abc"),
        ("http://h:1/?token=abc", "http://h:1/metrics?token=abc"),
        ("http://h:1#top", "http://h:1/metrics"),
        ("http://h:1/", "http://h:1/metrics"),
        ("http://h:1", "http://h:1/metrics"),
        ("http://h:1/custom?x=1", "http://h:1/custom?x=1"),
    ],
)
def test_a_base_url_with_a_query_gets_the_path_before_it(target: str, url: str) -> None:
    """``check http://host/?token=…`` asked for ``/?token=…/metrics``: the app's root."""
    from meshmetrics.diagnose.scrape import metrics_url

    assert metrics_url(target) == url
