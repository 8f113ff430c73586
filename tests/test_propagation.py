"""Header formats: what Envoy/Istio send is understood; hostile input never fails a request."""

from __future__ import annotations

import re
import socket

import pytest
from flask import Flask, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import (
    IN_MEMORY,
    captured_spans,
    serve_in_thread,
)
from meshmetrics import forward_headers, instrument
from meshmetrics.tracing.propagation import (
    TraceContext,
    b3_headers,
    extract,
    forwarded,
    traceparent,
)

TRACE = "463ac35c9f6413ad48485a3953bb6124"
SPAN = "a2fb4a1d1a96d312"


def env(**headers: str) -> dict[str, str]:
    return {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {
                "x-b3-traceid": TRACE,
                "x-b3-spanid": SPAN,
                "x-b3-parentspanid": "0020000000000001",
                "x-b3-sampled": "1",
            },
            TraceContext(int(TRACE, 16), int(SPAN, 16), 0x20000000000001, True),
        ),
        (
            {"x-b3-traceid": TRACE.upper(), "x-b3-spanid": SPAN, "x-b3-sampled": "true"},
            TraceContext(int(TRACE, 16), int(SPAN, 16), None, True),
        ),
        (
            {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "0", "x-b3-flags": "1"},
            TraceContext(int(TRACE, 16), int(SPAN, 16), None, True, True),
        ),
        (
            {"b3": f"{TRACE}-{SPAN}-d"},
            TraceContext(int(TRACE, 16), int(SPAN, 16), None, True, True),
        ),
        ({"b3": f"{TRACE}-{SPAN}"}, TraceContext(int(TRACE, 16), int(SPAN, 16), None, None)),
        ({"b3": "1"}, TraceContext(None, None, None, True)),
        (
            {"traceparent": f"00-{TRACE}-{SPAN}-01", "tracestate": "congo=t61rcWkgMzE"},
            TraceContext(int(TRACE, 16), int(SPAN, 16), None, True),
        ),
        (
            {"traceparent": f"01-{TRACE}-{SPAN}-01-future-stuff"},
            TraceContext(int(TRACE, 16), int(SPAN, 16), None, True),
        ),
        (
            {"x-b3-traceid": "zz", "x-b3-spanid": SPAN, "traceparent": f"00-{TRACE}-{SPAN}-00"},
            TraceContext(int(TRACE, 16), int(SPAN, 16), None, False),
        ),
    ],
)
def test_extract(headers: dict[str, str], expected: TraceContext) -> None:
    assert extract(env(**headers)) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {"x-b3-traceid": "0" * 32, "x-b3-spanid": SPAN},
        {"x-b3-traceid": TRACE[:20], "x-b3-spanid": SPAN},
        {"b3": f"{TRACE}-{SPAN}-x"},
        {"b3": f"{TRACE}-{SPAN}-1-bad"},
        {"traceparent": f"ff-{TRACE}-{SPAN}-01"},
        {"traceparent": f"00-{'0' * 32}-{SPAN}-01"},
        {"traceparent": f"00-{TRACE}-{SPAN}-01-extra"},
        {},
    ],
)
def test_invalid_context_is_ignored(headers: dict[str, str]) -> None:
    assert extract(env(**headers)) is None


def test_emitted_headers() -> None:
    headers = b3_headers(int(TRACE, 16), int(SPAN, 16), 1, True)
    assert headers == {
        "x-b3-traceid": TRACE,
        "x-b3-spanid": SPAN,
        "x-b3-sampled": "1",
        "x-b3-parentspanid": "0000000000000001",
        "b3": f"{TRACE}-{SPAN}-1-0000000000000001",
    }
    assert b3_headers(5, 6, None, False)["x-b3-traceid"] == "0000000000000005"  # 64-bit stays 64
    assert traceparent(int(TRACE, 16), int(SPAN, 16), False) == f"00-{TRACE}-{SPAN}-00"


def test_forwarded_headers_are_the_istio_list() -> None:
    inbound = env(
        **{
            "x-request-id": "abc",
            "x-ot-span-context": "ot",
            "x-cloud-trace-context": "gc/1;o=1",
            "grpc-trace-bin": "AAA=",
            "x-datadog-trace-id": "1",
            "sw8": "1-x",
            "tracestate": "a=b",
            "authorization": "Bearer secret",
            "cookie": "session=1",
            "x-b3-traceid": TRACE,
        }
    )
    assert forwarded(inbound) == {
        "x-request-id": "abc",
        "x-ot-span-context": "ot",
        "x-cloud-trace-context": "gc/1;o=1",
        "grpc-trace-bin": "AAA=",
        "x-datadog-trace-id": "1",
        "sw8": "1-x",
        "tracestate": "a=b",
    }
    assert forwarded(env(**{"x-request-id": "a\x01b"})) == {}  # not passed on when malformed


_HEADER_NAMES = st.sampled_from(
    [
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
        "b3",
        "traceparent",
        "tracestate",
        "uber-trace-id",
        "x-request-id",
        "x-ot-span-context",
        "x-datadog-trace-id",
        "sw8",
        "accept",
    ]
)
_HEX = st.text("0123456789abcdefABCDEF-", max_size=70)
_ANY = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=300)
_HEADER_VALUES = st.one_of(_HEX, _ANY, st.just("0" * 32), st.just(f"{TRACE}-{SPAN}-1"))
_VALID = re.compile(r"[\x20-\x7e]*\Z")
_APP = Flask("hostile")
_INST = instrument(_APP, tracing="jaeger", trace_endpoint="127.0.0.1:9")
_SEEN: list[dict[str, str]] = []


@_APP.route("/echo")
def _echo() -> str:
    _SEEN.append(forward_headers())
    return "ok"


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_HEADER_NAMES, _HEADER_VALUES, max_size=8))
def test_hostile_headers_never_fail_a_request(headers: dict[str, str]) -> None:
    _SEEN.clear()
    response = _APP.test_client().get("/echo", headers=headers)
    assert response.status_code == 200
    (out,) = _SEEN
    assert all(_VALID.match(k) and _VALID.match(v) for k, v in out.items())
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]", out["traceparent"])
    assert re.fullmatch(r"[0-9a-f]{16}|[0-9a-f]{32}", out["x-b3-traceid"])
    metrics = _APP.test_client().get("/metrics", headers={"Accept": headers.get("accept", "*/*")})
    assert metrics.status_code == 200


def test_oversized_and_non_utf8_headers() -> None:
    _SEEN.clear()
    huge = "x" * 16_000
    response = _APP.test_client().get(
        "/echo",
        headers={
            "x-request-id": huge,
            "b3": huge,
            "traceparent": huge,
            "x-b3-traceid": "\xff\xfe" * 16,
            "x-datadog-trace-id": "caf\xe9",
        },
    )
    assert response.status_code == 200
    (out,) = _SEEN
    assert "x-request-id" not in out  # too long to forward
    assert "x-datadog-trace-id" not in out  # not ASCII
    assert all(len(v) < 200 for v in out.values())


def raw_request(port: int, head: bytes) -> bytes:
    """Send ``head`` as written (obsolete folding included) and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_folded_inbound_header_is_forwarded_trimmed_over_real_sockets() -> None:
    seen: dict[str, str] = {}
    downstream = Flask("downstream")

    @downstream.route("/echo")
    def echo() -> str:
        seen.update(request.headers)
        return "ok"

    down_base, stop_down = serve_in_thread(downstream)
    app = Flask("front")
    inst = instrument(app, service="front")

    @app.route("/call")
    def call() -> str:
        return inst.session().get(f"{down_base}/echo", timeout=5).text

    base, stop = serve_in_thread(app)
    port = int(base.rsplit(":", 1)[1])
    try:
        answer = raw_request(
            port,
            b"GET /call HTTP/1.1\r\nHost: x\r\nX-Request-Id:\r\n   folded-id\r\n"
            b"Connection: close\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert seen["X-Request-Id"] == "folded-id"
    finally:
        stop()
        stop_down()


def test_forwarded_values_are_trimmed_and_empty_ones_dropped() -> None:
    environ = {"HTTP_X_REQUEST_ID": "   abc\t", "HTTP_TRACESTATE": "   ", "HTTP_BAGGAGE": "k=v"}
    assert forwarded(environ) == {"x-request-id": "abc", "baggage": "k=v"}


def test_arbitrary_x_datadog_headers_are_not_relayed() -> None:
    environ = {
        "HTTP_X_DATADOG_TRACE_ID": "1",
        "HTTP_X_DATADOG_PARENT_ID": "2",
        "HTTP_X_DATADOG_SAMPLING_PRIORITY": "1",
        "HTTP_X_DATADOG_API_KEY": "attacker-chosen",
        "HTTP_X_DATADOG_ANYTHING": "x",
    }
    assert set(forwarded(environ)) == {
        "x-datadog-trace-id",
        "x-datadog-parent-id",
        "x-datadog-sampling-priority",
    }


@pytest.mark.parametrize(
    "inbound",
    [{"b3": f"{TRACE}-{SPAN}-d"}, {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-flags": "1"}],
)
def test_b3_debug_flag_is_forwarded_as_debug(inbound: dict[str, str]) -> None:
    app = Flask("svc")
    inst = instrument(app, service="svc", sampler="probabilistic:0", **IN_MEMORY)
    captured_spans(inst)
    sent: dict[str, str] = {}

    @app.route("/call")
    def call() -> str:
        from meshmetrics.tracing.client import forward_headers

        sent.update(forward_headers())
        return "ok"

    app.test_client().get("/call", headers=inbound)
    assert sent["x-b3-flags"] == "1"
    assert "x-b3-sampled" not in sent
    assert sent["b3"].split("-")[2] == "d"
    assert sent["traceparent"].endswith("-01")
