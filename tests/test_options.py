"""Options converted once into typed values; ConfigError at instrument(); the extension
pattern and app.config; extras checked at configuration time."""

from __future__ import annotations

import socket
import sys

import pytest
from click.testing import CliRunner
from flask import Flask

from meshmetrics import (
    ConfigError,
    ConstSampler,
    HostPort,
    HttpEndpoint,
    MeshMetrics,
    MissingExtraError,
    ProbabilisticSampler,
    RateLimitingSampler,
    instrument,
)
from meshmetrics.cli import main
from meshmetrics.testing.receivers import OTLPCollector


@pytest.mark.parametrize(
    ("tracing", "endpoint"),
    [
        ("jaeger", "agent:abc"),
        ("jaeger", "10.0.0.7"),
        ("jaeger", "127.0.0.1:99999"),
        ("jaeger", "http://agent:6831"),
        ("jaeger", "[::1:6831"),
        ("otlp", "ftp://collector/v1/traces"),
        ("otlp", "http://collector:notaport/v1/traces"),
        ("otlp", "http://collector:0/v1/traces"),
        ("otlp", "file:///tmp/spans"),
        ("otlp", "collector:4318"),
    ],
)
def test_bad_endpoints_fail_at_instrument_naming_the_option(tracing: str, endpoint: str) -> None:
    app = Flask("svc")
    with pytest.raises(ConfigError) as info:
        instrument(app, tracing=tracing, trace_endpoint=endpoint)  # type: ignore[arg-type]
    error = info.value
    assert (error.option, error.value, error.source) == ("trace_endpoint", endpoint, "argument")
    assert error.rule
    assert "meshmetrics" not in app.extensions


def test_endpoints_become_typed_values() -> None:
    jaeger = instrument(Flask("a"), tracing="jaeger", trace_endpoint="[::1]:6831").config
    assert jaeger.trace_endpoint == HostPort("::1", 6831)
    assert str(jaeger.trace_endpoint) == "[::1]:6831"
    otlp = instrument(Flask("b"), tracing="otlp", trace_endpoint="http://127.0.0.1:4318").config
    assert otlp.trace_endpoint == HttpEndpoint("http://127.0.0.1:4318")


@pytest.mark.parametrize(
    ("given", "sampler"),
    [
        ("const:1", ConstSampler(True)),
        ("const:0", ConstSampler(False)),
        ("probabilistic:0.1", ProbabilisticSampler(0.1)),
        ("ratelimiting:5", RateLimitingSampler(5)),
        (ProbabilisticSampler(0.5), ProbabilisticSampler(0.5)),
    ],
)
def test_samplers_are_objects(given: object, sampler: object) -> None:
    config = instrument(Flask("s"), sampler=given).config  # type: ignore[arg-type]
    assert config.sampler == sampler


def test_samplers_decide() -> None:
    assert ConstSampler(True).sample(1)
    assert not ConstSampler(False).sample(1)
    half = ProbabilisticSampler(0.5)
    decisions = [half.sample(i << 58) for i in range(64)]
    assert decisions.count(True) == 32
    limited = RateLimitingSampler(2)
    assert [limited.sample(0) for _ in range(4)] == [True, True, False, False]
    with pytest.raises(ConfigError, match="sampler"):
        instrument(Flask("t"), sampler="sometimes:1")  # type: ignore[arg-type]


def test_precedence_explicit_app_config_environment_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MESHMETRICS_NAMESPACE", "from-env")
    monkeypatch.setenv("MESHMETRICS_VERSION", "env-version")
    app = Flask("svc")
    app.config["MESHMETRICS_NAMESPACE"] = "from-app-config"
    config = instrument(app, service="explicit").config
    assert (config.service, config.namespace, config.version) == (
        "explicit",
        "from-app-config",
        "env-version",
    )
    assert config.source_of("namespace") == "app.config['MESHMETRICS_NAMESPACE']"
    bad = Flask("svc2")
    bad.config["MESHMETRICS_BUCKETS"] = "1,0.5"
    with pytest.raises(ConfigError) as info:
        instrument(bad)
    assert info.value.source == "app.config['MESHMETRICS_BUCKETS']"


def test_extension_pattern_for_app_factories() -> None:
    mesh = MeshMetrics(namespace="shop")

    def create_app(name: str) -> Flask:
        app = Flask(name)
        app.add_url_rule("/", "index", lambda: "ok")
        mesh.init_app(app)
        return app

    first, second = create_app("orders"), create_app("billing")
    assert MeshMetrics.instrumentation(first).config.service == "orders"
    assert MeshMetrics.instrumentation(second).config.namespace == "shop"
    first.test_client().get("/")
    assert b"flask_http_request_total" in first.test_client().get("/metrics").data
    with pytest.raises(TypeError, match="unknown option"):
        MeshMetrics(colour="blue")  # type: ignore[call-arg]


def test_missing_tracing_extra_fails_at_instrument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.proto.collector.trace.v1", None)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    with pytest.raises(MissingExtraError) as info:
        instrument(Flask("svc"))
    assert info.value.extra == "otlp"
    assert info.value.source == "OTEL_EXPORTER_OTLP_ENDPOINT"
    assert "pip install 'meshmetrics[otlp]'" in str(info.value)


def test_cli_command_without_its_extra_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    monkeypatch.delitem(sys.modules, "meshmetrics.cli.manifests", raising=False)
    monkeypatch.delitem(sys.modules, "meshmetrics.manifests", raising=False)
    monkeypatch.delitem(sys.modules, "meshmetrics.manifests.objects", raising=False)
    runner = CliRunner()
    listing = runner.invoke(main, ["--help"])
    assert listing.exit_code == 0
    assert "manifests" in listing.output
    result = runner.invoke(main, ["manifests", "--service", "x"])
    assert result.exit_code == 2
    assert "pip install 'meshmetrics[manifests]'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_metrics_path_with_a_converter_is_refused() -> None:
    with pytest.raises(ConfigError, match="metrics_path"):
        instrument(Flask("m"), metrics_path="/<x>")


def test_ipv6_jaeger_agent_and_bare_otlp_url_really_receive_spans(
    collector: OTLPCollector,
) -> None:
    try:
        agent = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        agent.bind(("::1", 0))
    except OSError as exc:  # a machine without IPv6 loopback
        pytest.skip(f"no IPv6 loopback here: {exc}")
    agent.settimeout(10)
    with agent:
        app = Flask("six")
        app.add_url_rule("/", "index", lambda: "ok")
        port = agent.getsockname()[1]
        inst = instrument(app, tracing="jaeger", trace_endpoint=f"[::1]:{port}")
        app.test_client().get("/")
        inst.tracing.tracer.close()  # type: ignore[union-attr]
        assert len(agent.recv(65536)) > 0
    bare_url = collector.endpoint.removesuffix("/v1/traces")  # http://127.0.0.1:PORT
    otlp_app = Flask("bare")
    otlp_app.add_url_rule("/", "index", lambda: "ok")
    otlp = instrument(otlp_app, tracing="otlp", trace_endpoint=bare_url)
    otlp_app.test_client().get("/")
    otlp.tracing.tracer.close()  # type: ignore[union-attr]
    assert [s.service for s in collector.wait_for(1)] == ["bare"]
