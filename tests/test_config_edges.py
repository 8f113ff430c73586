"""Issue 21 items 9 and 14, attacked again (the review of the third round): bracketed
hosts that are no IPv6 address, SLO windows too short for a page that means an incident,
and the signal path of a base endpoint with a query or a fragment."""

from __future__ import annotations

import pytest

from meshmetrics.config import BURN_RATE_ALERTS, ConfigError, MeshConfig, resolve_config
from meshmetrics.manifests.slo import burn_factor


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://[::1]]:4318",  # a stray ']': urlsplit reads host ::1 and ignores it
        "http://[collector]:4318",  # brackets hold an IPv6 address, nothing else
        "http://[v1.x]:4318",  # an IPvFuture literal: http.client resolves 'v1.x' by DNS
        "http://[fe80::1%25]:4318",  # a zone id that is empty
    ],
)
def test_a_malformed_bracketed_host_is_a_config_error(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="trace_endpoint"):
        resolve_config(
            {"tracing": "otlp", "trace_endpoint": endpoint}, default_service="s", environ={}
        )


@pytest.mark.parametrize("window", ["1h", "12h", "1d", "2d"])
def test_no_page_fires_while_the_budget_lasts(window: str) -> None:
    """An SLO window shorter than ~50 h gives page pairs whose burn-rate factor is below 1:
    at ``availability:99.9:1h`` the page fires when 1 h spends 2 % of the 1 h budget, i.e.
    while 98 % of it stays unspent (a page on a service that meets its SLO).  Refuse such
    a window with a message, as objectives whose alerts cannot fire are refused."""
    try:
        config = MeshConfig(service="s", slo=f"availability:99.9:{window}")
    except ConfigError:
        return  # refused: what this test asks
    (objective,) = config.slo
    name, _, pairs = BURN_RATE_ALERTS[0]
    factors = [burn_factor(objective, long, share) for long, _, share in pairs]
    assert max(factors) >= 1, f"{name} pairs at {factors} of the allowed burn rate"


@pytest.mark.parametrize("base", ["http://h:4318?x=1", "http://h:4318/?x=1", "http://h:4318#f"])
def test_the_signal_path_goes_before_a_base_endpoints_query(base: str) -> None:
    """``OTEL_EXPORTER_OTLP_ENDPOINT=http://h:4318?x=1`` became ``http://h:4318?x=1/v1/traces``
    (a POST to ``/`` with the query ``x=1/v1/traces``); ``#f`` a POST to ``/``.  The spec
    appends ``v1/traces`` to the base URL's path: put it there, or refuse the base."""
    from urllib.parse import urlsplit

    try:
        config = resolve_config(
            {"tracing": "otlp"}, default_service="s", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": base}
        )
    except ConfigError:
        return  # refused: what this test also accepts
    assert config.trace_endpoint is not None
    assert urlsplit(str(getattr(config.trace_endpoint, "url", ""))).path.endswith("/v1/traces")
