"""Issue 21, the exporters and their endpoint options under attack: credentials in an
endpoint (item 2), a collector that says "retry now" (item 4), partial success and big
answers (item 5), endpoints that made the parser raise (item 14), and every endpoint
and header option fuzzed through the option table (item 17).  Over real HTTP on
127.0.0.1; bounds are counts, never timings.
"""

from __future__ import annotations

import logging
import string
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshmetrics import instrument
from meshmetrics.config import ConfigError, HttpEndpoint, resolve_config
from meshmetrics.testing.receivers import OTLPCollector, ZipkinCollector
from meshmetrics.tracing.processor import BatchSpanProcessor, SpanCounters
from meshmetrics.tracing.retry import Backoff, retry_after
from meshmetrics.tracing.sampling import ConstSampler
from meshmetrics.tracing.spans import MeshTracer

SECRET = "pa55w0rdXYZ"


def _spans(count: int) -> list[Any]:
    tracer = MeshTracer(ConstSampler(True), None)
    spans = []
    for i in range(count):
        span = tracer.start_span(f"op{i}")
        span.finish()
        spans.append(span)
    return spans


def _processor(url: str, timeout: float = 3.0, **options: Any) -> tuple[Any, SpanCounters]:
    from meshmetrics.tracing.exporters import HttpSender, OTLPHTTPExporter

    sender = HttpSender(HttpEndpoint(url), timeout=timeout, **options)
    counters = SpanCounters(None)
    return BatchSpanProcessor(OTLPHTTPExporter("svc", sender, {}), counters, interval=60), counters


def _export(url: str, spans: int = 1, **options: Any) -> SpanCounters:
    processor, counters = _processor(url, **options)
    try:
        for span in _spans(spans):
            processor.on_end(span)
        processor.flush(30)
    finally:
        processor.shutdown()
    return counters


def _value(counter: Any) -> float:
    return float(counter._value.get())


# -- item 2: no credentials in an endpoint, none in a log line -----------------------------


@pytest.mark.parametrize(
    ("variables", "source"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://user:{SECRET}@collector:4318"}, None),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"https://u:{SECRET}@c/v1/traces"}, None),
        (
            {
                "OTEL_TRACES_EXPORTER": "zipkin",
                "OTEL_EXPORTER_ZIPKIN_ENDPOINT": f"http://{SECRET}@z:9411",
            },
            None,
        ),
        (
            {
                "MESHMETRICS_TRACING": "otlp",
                "MESHMETRICS_TRACE_ENDPOINT": f"http://a:{SECRET}@c:4318",
            },
            None,
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://user:{SECRET}@collector:4317",
            },
            None,
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"u:{SECRET}@c:4317",
            },
            None,
        ),
    ],
)
def test_user_info_in_any_endpoint_is_refused_without_showing_it(
    variables: dict[str, str], source: str | None
) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config({}, default_service="svc", environ=variables)
    message = str(info.value)
    assert info.value.option == "trace_endpoint"
    assert info.value.source in variables
    assert SECRET not in message
    assert SECRET not in repr(info.value.value)
    assert "\n" not in message
    if "@c:4317" not in str(variables):  # a host:port target says the target's form
        assert "OTEL_EXPORTER_OTLP_HEADERS" in message


def test_user_info_is_refused_as_an_argument_and_as_an_endpoint_object() -> None:
    for given_endpoint in (
        f"http://u:{SECRET}@c:4318/v1/traces",
        HttpEndpoint(f"http://u:{SECRET}@c:4318"),
    ):
        with pytest.raises(ConfigError) as info:
            instrument(Flask("svc"), tracing="otlp", trace_endpoint=given_endpoint)
        assert SECRET not in str(info.value)
        assert "OTEL_EXPORTER_OTLP_HEADERS" in str(info.value)


def test_a_bad_header_names_the_key_never_the_value() -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{SECRET}%0A",
    }
    with pytest.raises(ConfigError) as info:
        resolve_config({}, default_service="svc", environ=environ)
    assert info.value.option == "trace_headers"
    assert "Authorization=REDACTED" in str(info.value)
    assert SECRET not in str(info.value)


def test_the_configs_repr_shows_no_header_value() -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{SECRET}",
    }
    config = resolve_config({}, default_service="svc", environ=environ)
    assert config.trace_headers == (("Authorization", f"Bearer {SECRET}"),)
    assert SECRET not in repr(config)


def test_export_failures_log_no_credential(
    collector: OTLPCollector, caplog: pytest.LogCaptureFixture
) -> None:
    """An endpoint built in code (the configuration refuses it) still logs none: a 401,
    and a refused connection, with a secret in the user-info and the query string."""
    collector.default_answer = (401, {})
    url = collector.endpoint.replace("http://", f"http://user:{SECRET}@") + f"?api_key={SECRET}"
    caplog.set_level(logging.WARNING, "meshmetrics")
    headers = (("Authorization", f"Bearer {SECRET}"),)
    counters = _export(url, headers=headers)
    assert _value(counters.export_error) == 1
    assert collector.requests[0][1]["Authorization"] == f"Bearer {SECRET}"  # sent, as a header
    refused = f"http://user:{SECRET}@127.0.0.1:9/v1/traces?token={SECRET}"
    assert _value(_export(refused, headers=headers).export_error) == 1
    assert "answered 401" in caplog.text
    assert "Connection" in caplog.text or "refused" in caplog.text.lower()
    assert SECRET not in caplog.text


# -- item 4: Retry-After lengthens the back-off, never replaces it with zero ----------------


@pytest.mark.parametrize(
    "retry_after_value", ["0", "Wed, 21 Oct 2015 07:28:00 GMT", "-5", "soon", ""]
)
def test_retry_after_zero_or_past_cannot_make_a_post_storm(
    collector: OTLPCollector, retry_after_value: str
) -> None:
    """A collector that always answers 503 with a hint of no wait: within a 3 s budget the
    back-off (0.5 s, 1 s, 2 s) allows 3 POSTs; it was thousands (6,534 in 10 s)."""
    collector.default_answer = (503, {"Retry-After": retry_after_value})
    counters = _export(collector.endpoint, timeout=3.0)
    assert _value(counters.export_error) == 1
    assert 1 <= len(collector.requests) <= 4


def test_retry_after_may_lengthen_the_wait(collector: OTLPCollector) -> None:
    """A long Retry-After past the budget: one POST, no retry (the hint is honoured)."""
    collector.default_answer = (429, {"Retry-After": "60"})
    counters = _export(collector.endpoint, timeout=3.0)
    assert _value(counters.export_error) == 1
    assert len(collector.requests) == 1


@given(hints=st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)), max_size=12))
def test_a_hint_never_shortens_the_backoff(hints: list[float | None]) -> None:
    backoff = Backoff()
    for attempt, hint in enumerate(hints):
        wait = backoff.wait(hint)
        assert wait >= 0.5 * 2**attempt
        if hint is not None:
            assert wait >= hint


@given(st.text(max_size=60))
def test_retry_after_parses_any_text_or_says_none(text: str) -> None:
    seconds = retry_after(text)
    assert seconds is None or seconds >= 0


# -- item 5: count what the collector accepted ---------------------------------------------


def _partial_success(rejected: int, message: str) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    response = ExportTraceServiceResponse()
    response.partial_success.rejected_spans = rejected
    response.partial_success.error_message = message
    return response.SerializeToString()


def test_partial_success_counts_rejected_spans_as_dropped_once_logged_never_retried(
    collector: OTLPCollector, caplog: pytest.LogCaptureFixture
) -> None:
    type_ = {"Content-Type": "application/x-protobuf"}
    collector.default_answer = (200, type_, _partial_success(2, "2 spans had bad attributes"))
    caplog.set_level(logging.WARNING, "meshmetrics")
    processor, counters = _processor(collector.endpoint)
    try:
        for _ in range(2):  # two batches of 5
            for span in _spans(5):
                processor.on_end(span)
            processor.flush(30)
    finally:
        processor.shutdown()
    assert len(collector.requests) == 2  # not retried
    assert _value(counters.exported) == 6
    assert _value(counters.rejected) == 4
    assert _value(counters.export_error) == 0
    assert caplog.text.count("2 spans had bad attributes") == 1


def test_partial_success_with_a_warning_only_rejects_nothing(collector: OTLPCollector) -> None:
    collector.default_answer = (200, {}, _partial_success(0, "deprecated attribute"))
    counters = _export(collector.endpoint, spans=3)
    assert (_value(counters.exported), _value(counters.rejected)) == (3, 0)


def test_a_collector_cannot_reject_more_spans_than_were_sent(collector: OTLPCollector) -> None:
    collector.default_answer = (200, {}, _partial_success(1_000_000, "everything"))
    counters = _export(collector.endpoint, spans=3)
    assert (_value(counters.exported), _value(counters.rejected)) == (0, 3)


@pytest.mark.parametrize("size", [2 * 1024 * 1024, 1024 * 1024 + 1])
def test_a_big_2xx_answer_is_a_success(collector: OTLPCollector, size: int) -> None:
    collector.default_answer = (200, {"Content-Type": "application/x-protobuf"}, b"\x00" * size)
    counters = _export(collector.endpoint, spans=3)
    assert (_value(counters.exported), _value(counters.export_error)) == (3, 0)


def test_a_2xx_answer_that_is_not_a_response_message_is_a_success(
    zipkin: ZipkinCollector, collector: OTLPCollector
) -> None:
    collector.default_answer = (200, {}, b"\xff\xff\xff not protobuf")
    counters = _export(collector.endpoint, spans=2)
    assert (_value(counters.exported), _value(counters.rejected)) == (2, 0)


# -- item 14: an endpoint the parser could not split is a ConfigError naming the option ------


@pytest.mark.parametrize(
    "variables",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://[::1"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1]:99999"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1]:x"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://[not-an-ip]:4318"},
        {"OTEL_TRACES_EXPORTER": "zipkin", "OTEL_EXPORTER_ZIPKIN_ENDPOINT": "http://[::1"},
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1"},
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "[::1"},
        {"JAEGER_AGENT_HOST": "[::1", "JAEGER_AGENT_PORT": "6831"},
        {"MESHMETRICS_TRACING": "otlp", "MESHMETRICS_TRACE_ENDPOINT": "http://host\n:4318"},
    ],
)
def test_unparseable_endpoints_are_config_errors(variables: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config({}, default_service="svc", environ=variables)
    assert info.value.option == "trace_endpoint"
    assert "\n" not in str(info.value)


# -- item 17: every endpoint and header option, fuzzed through the option table -------------

#: The environment variables meshmetrics reads for tracing endpoints, headers and transport.
ENDPOINT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_INSECURE",
    "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
    "JAEGER_AGENT_HOST",
    "JAEGER_AGENT_PORT",
    "MESHMETRICS_TRACING",
    "MESHMETRICS_TRACE_ENDPOINT",
    "MESHMETRICS_TRACE_HEADERS",
    "MESHMETRICS_TRACE_PROTOCOL",
)
URLISH = st.text(alphabet=string.printable + "[]@:/%é\u2028\x00", max_size=40)
SCHEMES = st.sampled_from(["http://", "https://", "", "ftp://", "http:/"])
HOSTS = st.sampled_from(
    ["collector", "127.0.0.1", "[::1]", "[::1", "a..b", "", "ex ample", "é.com"]
)
PORTS = st.sampled_from(["", ":4318", ":4317", ":0", ":65536", ":x", ":9411"])


@st.composite
def endpoints(draw: st.DrawFn) -> str:
    """URLs of every shape, some with user-info holding the secret."""
    if draw(st.booleans()):
        return draw(URLISH)
    userinfo = draw(st.sampled_from(["", f"u:{SECRET}@", f"{SECRET}@", f"u:{SECRET}/x@"]))
    path = draw(st.sampled_from(["", "/", "/v1/traces", f"?api_key={SECRET}", "#f"]))
    return draw(SCHEMES) + userinfo + draw(HOSTS) + draw(PORTS) + path


@st.composite
def headers(draw: st.DrawFn) -> str:
    """key=value lists of every shape, some values holding the secret."""
    if draw(st.booleans()):
        return draw(URLISH)
    keys = st.sampled_from(["Authorization", "api-key", "X!y", "grpc-x", "", " k ", "a b"])
    values = st.sampled_from([f"Bearer%20{SECRET}", f"{SECRET}\x01", f"{SECRET}%0A", SECRET, "%"])
    pairs = draw(st.lists(st.tuples(keys, values), max_size=3))
    return ",".join(f"{k}={v}" for k, v in pairs)


def _variable_values(name: str) -> st.SearchStrategy[str]:
    if name.endswith("ENDPOINT") or name == "JAEGER_AGENT_HOST":
        return endpoints()
    if name.endswith("HEADERS"):
        return headers()
    if name.endswith("PROTOCOL"):
        return st.sampled_from(["grpc", "http/protobuf", "http/json", "GRPC ", ""]) | URLISH
    if name in ("OTEL_TRACES_EXPORTER", "MESHMETRICS_TRACING"):
        return st.sampled_from(["otlp", "zipkin", "jaeger", "none", "off"]) | URLISH
    return URLISH


ENVIRONMENTS = st.fixed_dictionaries(
    {},
    optional={name: st.deferred(lambda n=name: _variable_values(n)) for name in ENDPOINT_VARIABLES},
)


def _resolves_or_names_the_option(explicit: dict[str, Any], environ: dict[str, str]) -> None:
    error: ConfigError | None = None
    try:
        config = resolve_config(explicit, default_service="svc", environ=environ)
    except ConfigError as exc:
        error = exc
    if error is not None:
        message = str(error)
        assert message.startswith("meshmetrics: ")
        assert "\n" not in message
        assert "\r" not in message
        assert error.option in message
        assert SECRET not in message, message
        return
    endpoint = config.trace_endpoint
    if isinstance(endpoint, HttpEndpoint):  # an accepted URL holds no credential
        assert "@" not in endpoint.url.split("?")[0]
        assert config.trace_protocol in ("http/protobuf", "grpc")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(environ=ENVIRONMENTS)
def test_any_endpoint_environment_gives_a_config_or_one_line_naming_the_option(
    environ: dict[str, str],
) -> None:
    _resolves_or_names_the_option({}, environ)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tracing=st.sampled_from(["otlp", "zipkin", "jaeger"]),
    protocol=st.sampled_from(["http/protobuf", "grpc"]),
    insecure=st.booleans(),
    endpoint=endpoints(),
    header_text=headers(),
    attributes=URLISH,
)
def test_any_endpoint_and_header_argument_gives_a_config_or_one_line(
    tracing: str, protocol: str, insecure: bool, endpoint: str, header_text: str, attributes: str
) -> None:
    explicit = {
        "tracing": tracing,
        "trace_protocol": protocol,
        "trace_insecure": insecure,
        "trace_endpoint": endpoint,
        "trace_headers": header_text,
        "resource_attributes": attributes,
    }
    _resolves_or_names_the_option(explicit, {})
