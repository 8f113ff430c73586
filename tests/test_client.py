"""Outgoing calls: one trace across two services, x-request-id downstream, headers for any client."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from flask import Flask, request

from helpers import IN_MEMORY, captured_spans, serve_in_thread
from meshmetrics import forward_headers, instrument
from meshmetrics.testing.receivers import JaegerAgent

ENVOY = {
    "x-request-id": "5b1f1a0e-7b0c-9b0e-a1b2-c3d4e5f60718",
    "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
    "x-b3-spanid": "e457b5a2e4d86bd1",
    "x-b3-parentspanid": "05e3ac9a4f6e3b90",
    "x-b3-sampled": "1",
    "x-ot-span-context": "envoy-ot",
    "tracestate": "vendor=opaque",
}


def two_services(
    endpoint: str | None, **tracing: Any
) -> tuple[Flask, Flask, Any, list[dict[str, str]]]:
    options: dict[str, Any] = tracing or {"tracing": "jaeger" if endpoint else "off"}
    if endpoint:
        options["trace_endpoint"] = endpoint
    seen: list[dict[str, str]] = []
    db = Flask("db")
    instrument(db, service="cmpt756db", **options)

    @db.route("/read")
    def read() -> dict[str, str]:
        seen.append({k.lower(): v for k, v in request.headers.items()})
        return {"Count": "0"}

    s1 = Flask("s1")
    s1_inst = instrument(s1, service="cmpt756s1", **options)
    s1.config["session"] = s1_inst.session()
    return s1, db, s1_inst, seen


def test_one_trace_across_two_services(agent: JaegerAgent) -> None:
    s1, db, _, seen = two_services(agent.endpoint)
    db_base, stop_db = serve_in_thread(db)
    try:

        @s1.route("/user/<uid>")
        def user(uid: str) -> Any:
            return (
                s1.config["session"].get(f"{db_base}/read", params={"uid": uid}, timeout=5).json()
            )

        assert s1.test_client().get("/user/1", headers=ENVOY).status_code == 200
        spans = {s.service + ":" + s.operation: s for s in agent.wait_for(3)}
    finally:
        stop_db()
    server, client, downstream = (
        spans["cmpt756s1:user"],
        spans["cmpt756s1:HTTP GET"],
        spans["cmpt756db:read"],
    )
    trace = int(ENVOY["x-b3-traceid"], 16)
    assert {server.trace_id, client.trace_id, downstream.trace_id} == {trace}
    assert server.parent_id == int(ENVOY["x-b3-spanid"], 16)  # Envoy's inbound span
    assert client.parent_id == server.span_id
    assert downstream.parent_id == client.span_id
    assert client.tags["span.kind"] == "client"
    assert client.tags["http.response.status_code"] == 200
    assert client.tags["url.full"].endswith("/read")
    assert client.tags["http.request.method"] == "GET"
    assert downstream.tags["guid:x-request-id"] == ENVOY["x-request-id"]
    (headers,) = seen
    assert headers["x-request-id"] == ENVOY["x-request-id"]
    assert headers["x-ot-span-context"] == "envoy-ot"
    assert headers["tracestate"] == "vendor=opaque"
    assert headers["x-b3-spanid"] == f"{client.span_id:016x}"  # from the client span, not copied
    assert headers["traceparent"] == f"00-{trace:032x}-{client.span_id:016x}-01"


def test_tracing_off_forwards_inbound_headers_verbatim() -> None:
    s1, db, s1_inst, seen = two_services(None)
    assert s1_inst.tracing is None
    db_base, stop_db = serve_in_thread(db)
    try:

        @s1.route("/user/<uid>")
        def user(uid: str) -> Any:
            return s1.config["session"].get(f"{db_base}/read", timeout=5).json()

        s1.test_client().get("/user/1", headers=ENVOY)
    finally:
        stop_db()
    (headers,) = seen
    for name in (
        "x-request-id",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
    ):
        assert headers[name] == ENVOY[name]


def test_caller_headers_win_but_not_over_trace_headers() -> None:
    s1, db, _, seen = two_services(None, **IN_MEMORY)
    db_base, stop_db = serve_in_thread(db)
    try:

        @s1.route("/call")
        def call() -> Any:
            own = {
                "x-request-id": "mine",
                "x-b3-traceid": "ffffffffffffffff",
                "Accept": "application/json",
            }
            return s1.config["session"].get(f"{db_base}/read", headers=own, timeout=5).json()

        s1.test_client().get("/call", headers=ENVOY)
    finally:
        stop_db()
    (headers,) = seen
    assert headers["x-request-id"] == "mine"
    assert headers["accept"] == "application/json"
    assert headers["x-b3-traceid"] == ENVOY["x-b3-traceid"]


def test_forward_headers_inside_and_outside_a_request() -> None:
    app = Flask("fw")
    inst = instrument(app, **IN_MEMORY)
    finished = captured_spans(inst)
    captured: dict[str, str] = {}

    @app.route("/x")
    def x() -> str:
        captured.update(forward_headers())
        return "ok"

    app.test_client().get("/x", headers=ENVOY)
    assert captured["x-request-id"] == ENVOY["x-request-id"]
    assert captured["x-b3-traceid"] == ENVOY["x-b3-traceid"]
    assert captured["x-b3-parentspanid"] == ENVOY["x-b3-spanid"]  # our server span's parent
    (server,) = finished()
    assert captured["x-b3-spanid"] == f"{server.span_id:016x}"
    outside = forward_headers(inst.tracing)
    assert outside["x-b3-traceid"] != ENVOY["x-b3-traceid"]
    assert len(outside["x-b3-traceid"]) == 32
    assert "x-request-id" not in outside
    with app.app_context():
        assert "x-b3-traceid" in forward_headers()  # found through current_app
    assert forward_headers() == {}  # no app, no tracing: nothing to add


def test_session_marks_failed_calls() -> None:
    app = Flask("fails")
    inst = instrument(app, **IN_MEMORY)
    finished = captured_spans(inst)
    session = inst.session()
    with pytest.raises(requests.ConnectionError):
        session.get("http://127.0.0.1:9/unreachable", timeout=2)
    (span,) = finished()
    assert span.operation == "HTTP GET"
    assert span.tags["error"] is True
    assert span.parent_id == 0  # outside a request: a new trace
