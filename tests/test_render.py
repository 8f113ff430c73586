"""meshmetrics' cached renderer writes exactly what prometheus_client writes."""

from __future__ import annotations

import gc
import random
import string
import sys
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
)
from prometheus_client.core import GaugeHistogramMetricFamily
from prometheus_client.registry import Collector

from meshmetrics.render import Renderer, reference_openmetrics, reference_text

LABEL_TEXT = st.text(alphabet=string.printable + 'éü€\\"\n', max_size=12)


class _GaugeHistogram(Collector):
    def collect(self):  # type: ignore[no-untyped-def]
        family = GaugeHistogramMetricFamily("queue_age", "Ages", labels=["q"])
        family.add_metric(["a"], [("1.0", 4), ("+Inf", 5)], gsum_value=7)
        yield family


def registry_with(values: list[str]) -> CollectorRegistry:
    registry = CollectorRegistry()
    counter = Counter(
        "requests", 'Requests\\ with "quotes"\nand lines', ["path", "code"], registry=registry
    )
    histogram = Histogram(
        "latency_seconds", "Latency", ["path"], registry=registry, buckets=(0.1, 1)
    )
    gauge = Gauge("in_flight", "In flight", ["path"], registry=registry, unit="requests")
    summary = Summary("payload_bytes", "Payload", ["path"], registry=registry)
    Info("build", "Build", registry=registry).info({"version": "1.2", "commit": "abc"})
    Enum("state", "State", states=["up", "down"], registry=registry).state("down")
    Counter("plain", "No labels", registry=registry).inc(3)
    registry.register(_GaugeHistogram())
    for i, value in enumerate(values):
        counter.labels(value, str(200 + i)).inc(i + 0.5)
        histogram.labels(value).observe(0.05 * i, exemplar={"trace_id": f"{i:032x}"})
        gauge.labels(value).set(-i)
        summary.labels(value).observe(i * 10)
    return registry


@settings(max_examples=60, deadline=None)
@given(st.lists(LABEL_TEXT, min_size=0, max_size=6, unique=True))
def test_same_bytes_as_prometheus_client(values: list[str]) -> None:
    registry = registry_with(values)
    renderer = Renderer()
    for _ in range(2):  # the second time from the cache
        assert renderer.text(registry.collect()) == reference_text(registry)
        assert renderer.openmetrics(registry.collect()) == reference_openmetrics(registry)


def test_timestamps_and_special_values_render_the_same() -> None:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class Custom(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            g = GaugeMetricFamily("odd", "Odd values", labels=["k"])
            for k, v in (("nan", float("nan")), ("inf", float("inf")), ("ninf", float("-inf"))):
                g.add_metric([k], v, timestamp=1700000000.123)
            yield g
            c = CounterMetricFamily("weird:name", "Colon", labels=["x"], created=1.5)
            c.add_metric(["1"], 2, created=1.5)
            yield c

    registry = CollectorRegistry()
    registry.register(Custom())
    renderer = Renderer()
    assert renderer.text(registry.collect()) == reference_text(registry)
    assert renderer.openmetrics(registry.collect()) == reference_openmetrics(registry)


def test_the_cache_makes_a_scrape_cheaper() -> None:
    """Counted, not timed (issue 24 item 7): the function calls one scrape of 150 routes
    makes, cached renderer against prometheus_client's own (the same collect() calls in
    both).  The wall-clock figures are benchmarks/' (docs/performance.md)."""
    registry = registry_with([f"/route/{i}" for i in range(150)])
    renderer = Renderer()
    renderer.text(registry.collect())

    cached = calls(lambda: renderer.text(registry.collect()))
    reference = calls(lambda: reference_text(registry))
    print(f"calls per scrape: cached {cached}, prometheus_client {reference}")
    assert cached == calls(lambda: renderer.text(registry.collect()))  # deterministic
    assert cached < reference * 0.75


def calls(fn: Callable[[], object]) -> int:
    """Python and C function calls made by ``fn()`` (the garbage collector held off, so
    no finalizer or gc callback is counted)."""
    count = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    gc.disable()
    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
        gc.enable()
    return count


def test_random_label_churn_stays_correct() -> None:
    rng = random.Random(7)
    renderer = Renderer()
    registry = CollectorRegistry()
    counter = Counter("c", "C", ["a"], registry=registry)
    for _ in range(50):
        counter.labels("".join(rng.choices(string.ascii_letters, k=3))).inc()
        assert renderer.text(registry.collect()) == reference_text(registry)


def test_the_metrics_endpoint_serves_prometheus_clients_bytes_in_every_format() -> None:
    import gzip

    from flask import Flask
    from prometheus_client import make_wsgi_app

    from meshmetrics import instrument

    app = Flask("svc")
    inst = instrument(app, service="svc", created_series=True)
    app.add_url_rule("/r/<x>", "r", lambda x: "ok")
    client = app.test_client()
    for i in range(5):
        client.get(f"/r/{i}")
    from werkzeug.test import Client

    reference = make_wsgi_app(inst.served)
    accepts = [
        "",
        "text/plain;version=0.0.4",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8",
    ]
    for accept in accepts:
        for encoding in ("", "gzip"):
            headers = {"Accept": accept, "Accept-Encoding": encoding}
            ours = client.get("/metrics", headers=headers)
            expected = Client(reference).get("/metrics", headers=headers)
            assert ours.headers["Content-Type"] == expected.headers["Content-Type"]
            body, want = ours.get_data(), expected.get_data()
            if encoding:
                assert ours.headers["Content-Encoding"] == "gzip"
                body, want = gzip.decompress(body), gzip.decompress(want)
            # the scrape itself counts nothing (/metrics is excluded), so both see one state;
            # the process' own CPU and GC figures move between two collections
            assert _steady(body) == _steady(want), accept


def test_created_series_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from flask import Flask

    from meshmetrics import instrument

    def created_lines(**options: object) -> int:
        app = Flask("svc")
        instrument(app, service="svc", **options)  # type: ignore[arg-type]
        app.add_url_rule("/r", "r", lambda: "ok")
        client = app.test_client()
        client.get("/r")
        text = client.get("/metrics").get_data(as_text=True)
        return sum(
            1
            for line in text.splitlines()
            if line.startswith("flask_http_request") and "_created" in line.split("{")[0]
        )

    assert created_lines() == 0
    assert created_lines(created_series=True) == 2  # the counter's and the histogram's
    monkeypatch.setenv("MESHMETRICS_CREATED_SERIES", "yes")
    assert created_lines() == 2


def _steady(body: bytes) -> list[bytes]:
    moving = (b"process_", b"python_gc_")
    return [line for line in body.splitlines() if not any(m in line for m in moving)]


@pytest.mark.parametrize("query", ["name[]=flask_service_info", "name%5B%5D=flask_service_info"])
def test_name_filter_is_honoured_encoded_or_not(query: str) -> None:
    from flask import Flask

    from meshmetrics import instrument

    app = Flask("svc")
    instrument(app, service="svc")
    text = app.test_client().get(f"/metrics?{query}").get_data(as_text=True)
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    assert names == {"flask_service_info"}
