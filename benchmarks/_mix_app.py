"""The benchmarked app and its request mix (``bench_mix.py``), shared by every variant.

Eight requests as a service behind Istio's Envoy sidecar receives them, in turn: GETs of
a templated route carrying Envoy's headers (B3 ids and sampling decision, request id,
attempt count, forwarded-for/proto, user agent, the client certificate of mTLS) and, on
some, a W3C ``traceparent`` naming the same trace; a GET with a query string carrying a
token; a POST with a JSON body the view reads; an unmatched path (404); a request the view
rejects with ``abort(400)``; a HEAD.  Each request's environ is a fresh copy of a prebuilt
one with a fresh body stream, as a server builds it, so the harness costs every variant
the same and cancels against bare Flask.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, abort, request, url_for
from werkzeug.routing import Rule

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: The mix's statuses, in its order (a HEAD answers 200 without a body).
MIX_STATUSES = ("200", "200", "201", "200", "404", "400", "200", "200")
#: The statuses of the unmatched-paths mix.
UNMATCHED_STATUSES = ("404",) * 8
#: Distinct trace/request ids: the environs repeat after this many rounds of the mix.
ROUNDS = 16
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1LTEwMDEiLCJleHAiOjE4OTM0NTYwMDB9.c2lnbmF0dXJl"
ORDER = json.dumps({"item": "sku-4711", "quantity": 2, "note": "gift wrap"}).encode()


def make_app(extra_routes: int = 0) -> Flask:
    """The service: four routes of the mix, plus ``extra_routes`` registered before them
    (as a large app registers its routes before it is instrumented)."""
    app = Flask("bench")
    app.url_rule_class = LazyBuilderRule
    for i in range(extra_routes):
        app.add_url_rule(f"/api/v2/r{i}/<item_id>", f"r{i}", _extra_view)
    app.url_rule_class = Rule

    @app.route("/api/v1/user/<user_id>", methods=["GET"])  # HEAD comes with GET
    def get_user(user_id: str) -> dict[str, str]:
        return {"user_id": user_id, "name": "Ada"}

    @app.route("/api/v1/items")
    def list_items() -> dict[str, Any]:
        page = int(request.args.get("page", "1"))
        return {"page": page, "items": ["a", "b", "c"]}

    @app.route("/api/v1/user/<user_id>/orders", methods=["POST"])
    def create_order(user_id: str) -> tuple[dict[str, Any], int]:
        order = request.get_json()
        return {"user_id": user_id, "item": order["item"], "quantity": order["quantity"]}, 201

    @app.route("/api/v1/user/<user_id>/orders/<order_id>")
    def get_order(user_id: str, order_id: str) -> dict[str, str]:
        if not order_id.isdigit():
            abort(400)
        return {"user_id": user_id, "order_id": order_id}

    return app


def _extra_view(item_id: str) -> str:
    return url_for(request.endpoint or "", item_id=item_id)


class LazyBuilderRule(Rule):
    """A rule whose URL builder (for ``url_for``) is compiled at its first use instead of
    when the rule is added.  Werkzeug compiles it with ``ast`` and ``compile()``, about a
    millisecond a rule: 10,000 routes would take minutes under valgrind,
    though the mix never builds their URLs.  Matching is unchanged."""

    def _compile_builder(self, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        def build(rule: Rule, *args: Any, **kwargs: Any) -> tuple[str, str]:
            builder = Rule._compile_builder(rule, append_unknown)
            return builder(rule, *args, **kwargs)

        return build


def _envoy_headers(round_: int, index: int, sampled: bool, traceparent: bool) -> dict[str, str]:
    trace_id = f"{0x5AF7183FB1D4CF5F + round_ * 8 + index:016x}{0x9A3E4C1B2D5F6071:016x}"
    span_id = f"{0x1D2C3B4A59687766 + round_ * 8 + index:016x}"
    headers = {
        "HTTP_X_REQUEST_ID": f"4d1c6a2e-7f3b-4e8a-9c0d-{round_ * 8 + index:012x}",
        "HTTP_X_B3_TRACEID": trace_id,
        "HTTP_X_B3_SPANID": span_id,
        "HTTP_X_B3_PARENTSPANID": f"{0x0E1F2A3B4C5D6E7F + index:016x}",
        "HTTP_X_B3_SAMPLED": "1" if sampled else "0",
        "HTTP_X_ENVOY_ATTEMPT_COUNT": "1",
        "HTTP_X_FORWARDED_FOR": "10.244.1.17",
        "HTTP_X_FORWARDED_PROTO": "http",
        "HTTP_X_FORWARDED_CLIENT_CERT": (
            "By=spiffe://cluster.local/ns/default/sa/user;Hash=5b1f3c2d9e8a7f60;"
            'Subject="";URI=spiffe://cluster.local/ns/default/sa/gateway'
        ),
        "HTTP_USER_AGENT": "python-requests/2.31.0",
        "HTTP_ACCEPT": "*/*",
        "HTTP_ACCEPT_ENCODING": "gzip, deflate",
    }
    if traceparent:
        headers["HTTP_TRACEPARENT"] = f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"
    return headers


#: (method, path, query string, body, with traceparent) of each request of the mix.
_MIX: tuple[tuple[str, str, str, bytes, bool], ...] = (
    ("GET", "/api/v1/user/u-1001", "", b"", False),
    ("GET", "/api/v1/items", f"token={TOKEN}&page=2", b"", False),
    ("POST", "/api/v1/user/u-1001/orders", "", ORDER, True),
    ("GET", "/api/v1/user/u-1002", "", b"", True),
    ("GET", "/api/v1/nowhere/42", "", b"", False),
    ("GET", "/api/v1/user/u-1003/orders/latest", "", b"", False),
    ("HEAD", "/api/v1/user/u-1004", "", b"", False),
    ("GET", "/api/v1/user/u-1005", "", b"", True),
)
_UNMATCHED: tuple[tuple[str, str, str, bytes, bool], ...] = tuple(
    ("GET", f"/api/v1/missing/{i}", "", b"", i % 3 == 0) for i in range(8)
)


def _environ(
    method: str, path: str, query: str, body: bytes, headers: dict[str, str]
) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "0.0.0.0",
        "SERVER_PORT": "30000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.6",
        "REMOTE_PORT": "48622",
        "HTTP_HOST": "user.default.svc.cluster.local:30000",
        **headers,
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    if body:
        environ["CONTENT_TYPE"] = "application/json"
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ


class Mix:
    """The prebuilt environs of a mix, and the driver that serves them through an app."""

    def __init__(self, unmatched: bool = False, sampled: bool = True) -> None:
        requests = _UNMATCHED if unmatched else _MIX
        self.expected = UNMATCHED_STATUSES if unmatched else MIX_STATUSES
        self.environs: list[tuple[dict[str, Any], bytes, str]] = [
            (
                _environ(method, path, query, body, _envoy_headers(r, i, sampled, parent)),
                body,
                self.expected[i],
            )
            for r in range(ROUNDS)
            for i, (method, path, query, body, parent) in enumerate(requests)
        ]
        self.status = ""
        #: Requests answered with another status than the mix expects.
        self.wrong: list[tuple[str, str, str]] = []

    def _start_response(self, status: str, headers: Any, exc_info: Any = None) -> None:
        self.status = status

    def drive(self, app: WsgiApp, n: int, start: int = 0) -> None:
        """Serve requests ``start`` to ``start + n`` of the (endless) mix through ``app``,
        reading each body to its end and closing it, as a WSGI server does."""
        environs = self.environs
        size = len(environs)
        start_response = self._start_response
        for i in range(start, start + n):
            template, body, expected = environs[i % size]
            environ = template.copy()
            environ["wsgi.input"] = io.BytesIO(body)
            result = app(environ, start_response)
            for _ in result:
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()
            if self.status[:3] != expected:
                self.wrong.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], self.status))
