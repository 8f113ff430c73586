"""The server span's cheap paths give what the general ones gave.

An unsampled request's span (``const:0``) reads its ids only when asked, and then the
ones the inbound headers name; the sizes the server span counts as it sets its tags are
the ones :func:`~meshmetrics.tracing.spans._enforce_limits` computes; the query
redaction is ``redact_url``'s.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshmetrics.config import DEFAULT_SENSITIVE_QUERY_PARAMS
from meshmetrics.config.redaction import redact_url
from meshmetrics.config.sampling import ConstSampler
from meshmetrics.tracing.propagation import _HEX16_32, _hex_id
from meshmetrics.tracing.semconv import redact_query
from meshmetrics.tracing.server import SPAN_KEY, ServerTracing
from meshmetrics.tracing.spans import DeferredSpan, MeshSpan, MeshTracer, _enforce_limits

B3 = {
    "HTTP_X_B3_TRACEID": "463ac35c9f6413ad48485a3953bb6124",
    "HTTP_X_B3_SPANID": "a2fb4a1d1a96d312",
    "HTTP_X_B3_SAMPLED": "0",
}


class _Request:
    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.method = environ["REQUEST_METHOD"]
        self.url_rule = None


class _Kept:
    def __init__(self) -> None:
        self.spans: list[MeshSpan] = []

    def on_end(self, span: MeshSpan) -> None:
        self.spans.append(span)


def _environ(**extra: str) -> dict[str, Any]:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "wsgi.url_scheme": "http", **extra}


def test_an_unsampled_span_reads_the_inbound_ids_only_when_asked() -> None:
    tracing = ServerTracing(MeshTracer(ConstSampler(False), None))
    environ = _environ(**B3)
    tracing.start(_Request(environ), "/x", 0.0)
    span = environ[SPAN_KEY]
    assert isinstance(span, DeferredSpan)
    assert span._context is None
    assert tracing.exemplar(environ) is None
    assert span._context is None  # the metrics' exemplar question read nothing
    headers = span.context.headers()
    assert headers["x-b3-traceid"] == B3["HTTP_X_B3_TRACEID"]
    assert headers["x-b3-parentspanid"] == B3["HTTP_X_B3_SPANID"]
    assert headers["x-b3-sampled"] == "0"
    assert span.context is span.context  # read once
    child = tracing.tracer.start_span("child", child_of=span)
    assert child.context.parent_id == span.context.span_id
    assert not child.context.sampled
    tracing.finish(environ, 200, None)
    assert SPAN_KEY not in environ


@settings(max_examples=200, deadline=None)
@given(
    path=st.text(max_size=5000),
    query=st.text(max_size=300),
    agent=st.text(max_size=5000),
    request_id=st.text(max_size=60),
    host=st.sampled_from(["", "shop:8080", "[::1]:9", "h" * 5000]),
    status=st.sampled_from([200, 404, 302]),
)
def test_the_counted_size_is_the_checked_one(
    path: str, query: str, agent: str, request_id: str, host: str, status: int
) -> None:
    kept = _Kept()
    tracing = ServerTracing(MeshTracer(ConstSampler(True), kept))
    environ = _environ(
        PATH_INFO=path,
        QUERY_STRING=query,
        HTTP_USER_AGENT=agent,
        HTTP_X_REQUEST_ID=request_id,
        HTTP_HOST=host,
        SERVER_NAME="srv",
        SERVER_PORT="80",
        REMOTE_ADDR="10.0.0.1",
    )
    tracing.start(_Request(environ), "/x", 0.0)
    tracing.finish(environ, status, None)
    (span,) = kept.spans
    counted = span.size
    tags = dict(span.tags)
    assert _enforce_limits(span) == counted
    assert span.tags == tags  # nothing left to cut
    assert all(len(v) <= 4096 for v in tags.values() if isinstance(v, str))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["token", "Token", " api_key", "page", "to%6Ben", "a+b", "x"]),
            st.sampled_from(["", "=", "=v", "=a=b"]),
        ),
        max_size=5,
    ),
    st.sampled_from(["", "#frag", "#a=b&token=c"]),
)
def test_query_redaction_is_redact_urls(pairs: list[tuple[str, str]], tail: str) -> None:
    query = "&".join(k + v for k, v in pairs) + tail
    for sensitive in (DEFAULT_SENSITIVE_QUERY_PARAMS, frozenset()):
        assert redact_query(query, sensitive) == redact_url(f"?{query}", sensitive)[1:]


_REGEX_16_32 = re.compile(r"(?:[0-9a-f]{16}|[0-9a-f]{32})\Z")


def _regex_hex_id(value: str) -> int | None:
    """The id check as it was, with a regex."""
    value = value.strip().lower()
    return (int(value, 16) or None) if _REGEX_16_32.match(value) else None


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="0123456789abcdefABCDEFxX_+- \t٢g", min_size=14, max_size=34),
        st.integers(0, 2**128 - 1).map(lambda n: f"{n:032x}"),
        st.integers(0, 2**64 - 1).map(lambda n: f" {n:016X}"),
    )
)
def test_ids_are_checked_as_the_regex_did(value: str) -> None:
    assert _hex_id(value, _HEX16_32) == _regex_hex_id(value)
