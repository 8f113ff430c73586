"""Labels of requests no route matched (issue 25 item 2), in-process: the ``path_prefixes``
option over its whole accepted input, a WSGI layer's prefix, exclusion by label, and the
warning for ``excluded_paths`` entries that exclude nothing; and the upgrade predicate
(item 1) over the ``Connection`` header's token lists."""

from __future__ import annotations

import logging
import string
from typing import Any

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from helpers import value
from meshmetrics import ConfigError, instrument
from meshmetrics.config import resolve_config
from meshmetrics.paths import prefix_label
from meshmetrics.upgrade import asks_upgrade, upgraded

# -- the option ------------------------------------------------------------------------------

_SAFE = string.ascii_letters + string.digits + "-._~/!$&'()*+;:@%"
prefixes = st.text(_SAFE, min_size=1, max_size=20).map(lambda t: "/" + t)
labels = st.text(_SAFE + "<>", max_size=20).map(lambda t: "/" + t)
tables = st.dictionaries(prefixes.filter(lambda p: p != "/"), labels, max_size=6)


def resolved(value_: Any, env: bool = False) -> tuple[tuple[str, str], ...]:
    if env:
        config = resolve_config(
            {}, default_service="svc", environ={"MESHMETRICS_PATH_PREFIXES": value_}
        )
    else:
        config = resolve_config({"path_prefixes": value_}, default_service="svc")
    return config.path_prefixes


def longest_first(table: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(table.items(), key=lambda pair: (-len(pair[0]), pair[0])))


@given(tables)
def test_a_mapping_and_its_text_form_resolve_alike(table: dict[str, str]) -> None:
    text = ",".join(f"{prefix}={label}" for prefix, label in table.items())
    assert resolved(table) == resolved(text, env=True) == longest_first(table)


@given(st.lists(prefixes.filter(lambda p: p != "/"), unique=True, max_size=6))
def test_a_prefix_alone_is_its_own_label(listed: list[str]) -> None:
    expected = longest_first({prefix: prefix for prefix in listed})
    assert resolved(listed) == resolved(",".join(listed), env=True) == expected


@given(tables)
def test_resolved_values_resolve_to_themselves(table: dict[str, str]) -> None:
    config = resolve_config({"path_prefixes": table}, default_service="svc")
    assert config.replace(path_prefixes=config.path_prefixes).path_prefixes == longest_first(table)


@given(
    prefixes,
    st.sampled_from([" ", "?", "#", "<", ">", ",", "=", "\t"]),
    st.booleans(),
)
def test_a_bad_prefix_is_a_config_error(prefix: str, bad: str, in_label: bool) -> None:
    table = {prefix: prefix + bad} if in_label and bad not in "<>" else {prefix + bad: "/x"}
    with pytest.raises(ConfigError) as caught:
        resolved(table)
    assert caught.value.option == "path_prefixes"


@pytest.mark.parametrize(
    "bad",
    [{"/": "/root"}, {"socket.io/": "/s"}, {"/a/": "a"}, {"/a/": "<unmatched>"}, ["/a/", "/a/"], 7],
)
def test_rules_beyond_the_alphabet(bad: Any) -> None:
    with pytest.raises(ConfigError, match="path_prefixes"):
        resolved(bad)


# -- the upgrade predicate ---------------------------------------------------------------------

tokens = st.lists(st.sampled_from(["keep-alive", "Upgrade", "upgrade", "close", "TE"]), max_size=4)


@given(tokens, st.sampled_from(["", "websocket", "WebSocket", "h2c"]), st.sampled_from([",", ", "]))
def test_asks_upgrade_reads_the_connection_tokens(
    listed: list[str], protocol: str, separator: str
) -> None:
    environ = {"HTTP_CONNECTION": separator.join(listed), "HTTP_UPGRADE": protocol}
    assert asks_upgrade(environ) == (
        bool(protocol) and "upgrade" in [token.lower() for token in listed]
    )


UPGRADE = {"HTTP_CONNECTION": "Upgrade", "HTTP_UPGRADE": "websocket"}


@pytest.mark.parametrize(
    ("environ", "status", "raised", "websocket_route", "expected"),
    [
        ({}, 101, None, False, True),  # start_response("101 ...") is enough
        (UPGRADE, 0, StopIteration(), True, True),  # gunicorn
        (UPGRADE, 0, ConnectionError(), False, True),  # werkzeug + python-engineio
        (UPGRADE, 0, None, False, True),  # no start_response at all
        (UPGRADE, 200, None, True, True),  # Flask-Sock under werkzeug
        (UPGRADE, 200, None, False, False),  # a plain route answered the upgrade request
        (UPGRADE, 400, None, True, False),  # refused
        (UPGRADE, 0, ValueError(), True, False),  # a real error
        ({}, 0, StopIteration(), True, False),  # no upgrade asked: an error
        ({}, 200, None, True, False),
    ],
)
def test_upgraded(
    environ: dict[str, str],
    status: int,
    raised: BaseException | None,
    websocket_route: bool,
    expected: bool,
) -> None:
    assert upgraded(environ, status, raised, websocket_route) is expected


# -- in an app ---------------------------------------------------------------------------------


def legacy_app(**options: Any) -> Flask:
    """An app whose WSGI layer answers ``/legacy/…`` itself (Flask never routes those)."""
    app = Flask("legacy")

    @app.route("/ok")
    def ok() -> str:
        return "ok"

    inner = app.wsgi_app

    def layer(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"].startswith("/legacy/"):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"legacy"]
        return inner(environ, start_response)

    app.wsgi_app = layer  # type: ignore[method-assign]
    instrument(app, **options)
    return app


def test_a_wsgi_layers_prefix_gets_its_label() -> None:
    client = legacy_app(path_prefixes={"/legacy/": "/legacy/"}).test_client()
    for path in ("/legacy/a", "/legacy/b/c", "/ok", "/nowhere"):
        client.get(path)
    text = client.get("/metrics").text
    assert value(text, "flask_http_request_total", path="/legacy/", status="200") == 2
    assert value(text, "flask_http_request_total", path="/ok") == 1
    assert value(text, "flask_http_request_total", path="<unmatched>", status="404") == 1


def test_an_unmatched_request_under_a_prefix_gets_its_label_too() -> None:
    app = Flask("prefixed")
    app.add_url_rule("/static-v1/known", "known", lambda: "known")
    instrument(app, path_prefixes=["/static-v1/"])
    client = app.test_client()
    client.get("/static-v1/known")
    client.get("/static-v1/missing")
    text = client.get("/metrics").text
    assert value(text, "flask_http_request_total", path="/static-v1/known") == 1
    assert value(text, "flask_http_request_total", path="/static-v1/", status="404") == 1
    assert value(text, "flask_http_request_total", path="<unmatched>") == 0


def test_a_prefix_label_can_be_excluded() -> None:
    app = legacy_app(path_prefixes={"/legacy/": "/old"}, excluded_paths=["/old"])
    client = app.test_client()
    client.get("/legacy/a")
    client.get("/ok")
    text = client.get("/metrics").text
    assert value(text, "flask_http_request_total", path="/old") == 0
    assert value(text, "flask_http_request_total", path="<unmatched>") == 0
    assert value(text, "flask_http_request_total", path="/ok") == 1


def test_excluded_paths_that_exclude_nothing_are_named_at_the_first_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Flask("warned")
    app.add_url_rule("/items/<item_id>", "item", lambda item_id: item_id)
    app.add_url_rule("/status", "status", lambda: "up")
    excluded = ["/socket.io/", "/status", "/health", "/items/1"]
    instrument(app, excluded_paths=excluded)
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="meshmetrics"):
        client.get("/items/1")
        client.get("/items/2")
    warnings = [r.getMessage() for r in caplog.records if "exclude nothing" in r.getMessage()]
    assert len(warnings) == 1
    assert "'/socket.io/', '/items/1'" in warnings[0]
    assert "'/health'" not in warnings[0]  # the probe defaults are not the user's


def test_declared_exclusions_are_not_named(caplog: pytest.LogCaptureFixture) -> None:
    app = legacy_app(path_prefixes={"/legacy/": "/old"}, excluded_paths=["/old", "/ok"])
    with caplog.at_level(logging.WARNING, logger="meshmetrics"):
        app.test_client().get("/ok")
    assert [r for r in caplog.records if "exclude nothing" in r.getMessage()] == []


def test_a_101_through_start_response_counts_as_101_without_latency() -> None:
    """A server or layer that sends the 101 through WSGI (no library involved)."""
    app = Flask("raw")
    inner = app.wsgi_app

    def layer(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/raw/":
            start_response("101 Switching Protocols", [("Upgrade", "websocket")])
            return []
        return inner(environ, start_response)

    app.wsgi_app = layer  # type: ignore[method-assign]
    instrument(app, path_prefixes=["/raw/"])
    client = app.test_client()
    client.get("/raw/", headers={"Connection": "Upgrade", "Upgrade": "websocket"})
    text = client.get("/metrics").text
    assert value(text, "flask_http_request_total", path="/raw/", status="101") == 1
    assert value(text, "flask_http_request_duration_seconds_count", path="/raw/") == 0
    assert value(text, "flask_http_request_exceptions_total") == 0


@given(tables, st.text(_SAFE, max_size=30).map(lambda t: "/" + t))
def test_the_longest_matching_prefix_names_a_path(table: dict[str, str], path: str) -> None:
    config = resolve_config({"path_prefixes": table}, default_service="svc")
    matching = [prefix for prefix in table if path.startswith(prefix)]
    expected = table[max(matching, key=len)] if matching else None
    assert prefix_label(config.path_prefixes, path) == expected
