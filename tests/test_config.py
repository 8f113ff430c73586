"""Option resolution (explicit > environment > default) and validation."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmetrics import (
    HostPort,
    HttpEndpoint,
    ProbabilisticSampler,
    RateLimitingSampler,
    instrument,
)
from meshmetrics.config import (
    DEFAULT_BUCKETS,
    ConfigError,
    MeshConfig,
    resolve_config,
)
from meshmetrics.formats import is_dns1035_label, is_dns1123_label, is_label_value, is_port_name


def resolve(env: dict[str, str] | None = None, **explicit: object) -> MeshConfig:
    return resolve_config(explicit, default_service="my_App.v2", environ=env or {})


def test_defaults() -> None:
    config = resolve()
    assert config.service == "my-app-v2"  # derived from the app name, made a DNS label
    assert config.namespace == "default"
    assert config.metrics_path == "/metrics"
    assert config.port_name == "http"
    assert config.prefix == "flask"
    assert config.buckets == DEFAULT_BUCKETS
    assert "/health" in config.excluded_paths
    assert "/readiness" in config.excluded_paths
    assert config.metrics_auth is None


def test_explicit_beats_env_beats_default() -> None:
    env = {"MESHMETRICS_NAMESPACE": "from-env", "MESHMETRICS_SERVICE": "env-svc"}
    assert resolve(env).namespace == "from-env"
    assert resolve(env, namespace="explicit").namespace == "explicit"
    assert resolve(env, service=None).service == "env-svc"  # None means "not given"


def test_env_parsing() -> None:
    env = {
        "MESHMETRICS_BUCKETS": "0.1, 0.5,2",
        "MESHMETRICS_EXCLUDED_PATHS": "/ping,/status",
        "MESHMETRICS_PREFIX": "",
        "MESHMETRICS_METRICS_AUTH": "functools:lru_cache",
        "MESHMETRICS_PORT_NAME": "http-metrics",
    }
    config = resolve(env)
    assert config.buckets == (0.1, 0.5, 2.0)
    assert config.excluded_paths == ("/ping", "/status")
    assert config.prefix == ""
    assert config.metric_prefix == ""
    assert config.port_name == "http-metrics"
    import functools

    assert config.metrics_auth is functools.lru_cache


def test_config_is_immutable_and_hashable() -> None:
    config = resolve(buckets=[0.1, 1])
    assert config.buckets == (0.1, 1)
    with pytest.raises(AttributeError):
        config.service = "other"  # type: ignore[misc]
    assert hash(config) == hash(resolve(buckets=(0.1, 1)))


@pytest.mark.parametrize(
    ("option", "bad", "rule"),
    [
        ("service", "Cmpt756_DB", "DNS-1035"),
        ("service", "1db", "DNS-1035"),
        ("service", "a" * 64, "DNS-1035"),
        ("namespace", "C756ns", "DNS-1123"),
        ("namespace", "ns-", "DNS-1123"),
        ("port_name", "http-metrics-port", "IANA service name"),  # 17 > 15 characters
        ("port_name", "8080", "at least one letter"),
        ("port_name", "web--ui", "no '--'"),
        ("metrics_path", "metrics", "starting with '/'"),
        ("metrics_path", "/metrics?x=1", "'?'"),
        ("prefix", "my-app", "metric name prefix"),
        ("buckets", [1, 0.5], "strictly increasing"),
        ("buckets", [], "non-empty"),
        ("buckets", [0.1, float("inf")], "finite"),
        ("excluded_paths", ["health"], "starting with '/'"),
        ("excluded_paths", 42, "list of URL paths"),
        ("metrics_auth", "not callable", "decorator"),
        ("version", "", "non-empty"),
    ],
)
def test_bad_values_name_option_value_and_rule(option: str, bad: object, rule: str) -> None:
    with pytest.raises(ValueError, match="meshmetrics: invalid") as info:
        resolve(**{option: bad})
    message = str(info.value)
    assert option in message
    assert repr(bad) in message
    assert rule in message
    assert "(from argument)" in message


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(
        ValueError,
        match=r"from MESHMETRICS_BUCKETS\): must be a non-empty, strictly increasing list",
    ):
        resolve({"MESHMETRICS_BUCKETS": "fast,slow"})
    with pytest.raises(ValueError, match="MESHMETRICS_PORT_NAME"):
        resolve({"MESHMETRICS_PORT_NAME": "Not_A_Port_Name"})
    with pytest.raises(ValueError, match=r"No module named .no_such_module_xyz"):
        resolve({"MESHMETRICS_METRICS_AUTH": "no_such_module_xyz:auth"})


def test_underivable_default_service_asks_for_the_option() -> None:
    with pytest.raises(ValueError, match="pass service=") as info:
        resolve_config({}, default_service="123", environ={})
    assert "'123'" in str(info.value)
    with pytest.raises(ValueError, match="pass service="):
        resolve_config({}, default_service="___", environ={})


def test_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"unknown option.*servce.*known options: service"):
        resolve(servce="x")


def test_direct_construction_validates() -> None:
    with pytest.raises(ValueError, match="invalid namespace"):
        MeshConfig(service="ok", namespace="Bad")


def test_tracing_defaults_follow_the_other_clients_env_vars() -> None:
    assert resolve().tracing == "off"
    jaeger = resolve(
        {
            "JAEGER_AGENT_HOST": "jaeger-agent.istio-system",
            "JAEGER_AGENT_PORT": "6832",
            "JAEGER_SAMPLER_TYPE": "probabilistic",
            "JAEGER_SAMPLER_PARAM": "0.25",
        }
    )
    assert (jaeger.tracing, jaeger.trace_endpoint, jaeger.sampler) == (
        "jaeger",
        HostPort("jaeger-agent.istio-system", 6832),
        ProbabilisticSampler(0.25),
    )
    otlp = resolve(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.5",
        }
    )
    assert (otlp.tracing, otlp.trace_endpoint, otlp.sampler) == (
        "otlp",
        HttpEndpoint("http://collector:4318/v1/traces"),
        ProbabilisticSampler(0.5),
    )
    explicit = resolve(
        {"JAEGER_AGENT_HOST": "agent", "MESHMETRICS_SAMPLER": "ratelimiting:2"}, tracing="off"
    )
    assert (explicit.tracing, explicit.sampler) == ("off", RateLimitingSampler(2))
    assert resolve(tracing="jaeger").trace_endpoint == HostPort("localhost", 6831)


@pytest.mark.parametrize(
    ("option", "bad", "rule"),
    [
        ("tracing", "datadog", "one of otlp, zipkin, jaeger, otel, off"),
        ("sampler", "const:0.5", "type:param"),
        ("sampler", "probabilistic:2", "type:param"),
        ("sampler", "remote", "type:param"),
        ("span_queue_size", 0, "from 1 to 1000000"),
    ],
)
def test_bad_tracing_values(option: str, bad: object, rule: str) -> None:
    with pytest.raises(ValueError, match="invalid " + option) as info:
        resolve(**{option: bad})
    assert rule in str(info.value)
    with pytest.raises(ValueError, match="from OTEL_TRACES_SAMPLER"):
        resolve(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_SAMPLER": "jaeger_remote"}
        )


def _not_a_decorator(view: Any) -> None:
    return None


def _raising_decorator(view: Any) -> Any:
    raise TypeError("expected a token name")


@pytest.mark.parametrize(
    ("auth", "says"),
    [
        (_not_a_decorator, "it returned NoneType"),
        (_raising_decorator, "applying it raised TypeError: expected a token name"),
        (42, "a decorator"),
        ("os.path:sep", "a decorator"),
    ],
)
def test_metrics_auth_that_is_not_a_decorator_is_a_config_error(auth: Any, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        instrument(Flask("svc"), metrics_auth=auth)
    assert info.value.option == "metrics_auth"
    assert says in str(info.value)


def test_metrics_auth_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MESHMETRICS_METRICS_AUTH", "test_config:_not_a_decorator")
    with pytest.raises(ConfigError) as info:
        instrument(Flask("svc"))
    assert info.value.source == "MESHMETRICS_METRICS_AUTH"


def test_metrics_path_with_a_converter_never_reaches_a_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MESHMETRICS_METRICS_PATH", "/<x>")
    with pytest.raises(ConfigError) as info:
        instrument(Flask("svc"))
    assert (info.value.option, info.value.source) == ("metrics_path", "MESHMETRICS_METRICS_PATH")


def test_configuration_errors_end_at_the_users_line() -> None:
    import traceback

    with pytest.raises(ConfigError) as info:
        instrument(Flask("svc"), buckets="not numbers")  # the user's line
    frames = traceback.extract_tb(info.value.__traceback__)
    inside = [f for f in frames if "/meshmetrics/" in f.filename]
    assert len(inside) == 1
    assert inside[0].name == "instrument"
    assert frames[0].filename == __file__
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


_NAME_TEXT = st.text(alphabet="abcxyzABC019-_.: \n\u00e9", max_size=70) | st.sampled_from(
    ["a", "a" * 63, "a" * 64, "1abc", "abc-", "-abc", "a.b", "A", ""]
)


@settings(max_examples=300, deadline=None)
@given(option=st.sampled_from(["service", "namespace", "port_name", "release"]), value=_NAME_TEXT)
def test_kubernetes_names_are_accepted_by_the_rules_in_formats_alone(
    option: str, value: str
) -> None:
    """An option naming a Kubernetes object or label is accepted exactly when the one rule
    in ``meshmetrics.formats`` accepts it (the manifests validate with the same rules)."""
    rule = {
        "service": is_dns1035_label,
        "namespace": is_dns1123_label,
        "port_name": is_port_name,
        "release": is_label_value,
    }[option]
    changes = {"service": "svc", option: value}
    if rule(value):
        assert getattr(MeshConfig(**changes), option) == value  # type: ignore[arg-type]
    else:
        with pytest.raises(ConfigError) as info:
            MeshConfig(**changes)  # type: ignore[arg-type]
        assert info.value.option == option
