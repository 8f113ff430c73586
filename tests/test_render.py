"""meshmetrics' renderer writes exactly what prometheus_client writes."""

from __future__ import annotations

import gc
import random
import string
import sys
import tracemalloc
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
    disable_created_metrics,
    enable_created_metrics,
)
from prometheus_client.core import GaugeHistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from meshmetrics import render
from meshmetrics.exposition import ServedRegistry
from meshmetrics.render import reference_openmetrics, reference_text
from meshmetrics.render_objects import NAMES_MEMOIZED, go_float, label_name

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


def ours(source: Collector, created: bool = True) -> tuple[bytes, bytes]:
    """meshmetrics' text and OpenMetrics renderings of ``source`` (served as the endpoint
    serves it: prometheus_client's own metric objects read directly)."""
    served = ServedRegistry(source, created=created)
    return (
        render.text(served.families(), created=created),
        render.openmetrics(served.families(), created=created),
    )


def reference(source: Collector, created: bool = True) -> tuple[bytes, bytes]:
    served = ServedRegistry(source, created=created)
    return reference_text(served), reference_openmetrics(served)


@settings(max_examples=60, deadline=None)
@given(st.lists(LABEL_TEXT, min_size=0, max_size=6, unique=True), st.booleans())
def test_same_bytes_as_prometheus_client(values: list[str], created: bool) -> None:
    registry = registry_with(values)
    assert ours(registry, created) == reference(registry, created)
    if created:  # and the same as prometheus_client's renderer on the registry itself
        assert ours(registry) == (reference_text(registry), reference_openmetrics(registry))


VALUES = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**60), 2**60)
EXEMPLARS = st.none() | st.fixed_dictionaries({"trace_id": LABEL_TEXT})


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(LABEL_TEXT, LABEL_TEXT, VALUES, EXEMPLARS, st.floats(0, 1e9) | st.none()),
        max_size=5,
    ),
    st.sampled_from(["", "bytes"]),
    st.booleans(),
)
def test_every_family_kind_renders_the_same(
    series: list[tuple[str, str, float, dict[str, str] | None, float | None]],
    unit: str,
    created: bool,
) -> None:
    """Counters, gauges, summaries and histograms (read from their children), info, enum,
    gauge histograms and custom families (from their samples): label values with escapes
    and non-ASCII, NaN and ±Inf, exemplars with and without timestamps, units, created
    series on and off."""
    registry = CollectorRegistry()
    labels = ["zeta", "alpha"]  # not in sorted order: both formats sort them
    counter = Counter("c", "C \\ doc\n", labels, registry=registry, unit=unit)
    gauge = Gauge("g", 'G "doc"', labels, registry=registry)
    summary = Summary("s", "S", labels, registry=registry)
    histogram = Histogram("h", "H", ["path", "method"], registry=registry, buckets=(-1, 0.5, 1e7))
    unlabelled = Histogram("h_plain", "Hp", registry=registry, buckets=(1, 2))
    around = Histogram("h_le", "le sorts between", ["zone", "code", "a"], registry=registry)
    customs: list[tuple[str, str, float, float | None]] = []
    for a, b, value, exemplar, stamp in series:
        number = float(value)
        counter.labels(a, b).inc(abs(number) if number == number else 0, exemplar=exemplar)
        gauge.labels(a, b).set(number)
        summary.labels(a, b).observe(number)
        histogram.labels(a, b).observe(number, exemplar=exemplar)
        unlabelled.observe(number)
        around.labels(a, b, a + b).observe(number, exemplar=exemplar)
        customs.append((a, b, number, stamp))
    Info("i", "I", ["k"], registry=registry).labels("x").info({"v": "1", "a\\": "é"})
    registry.register(_Custom(customs))
    assert ours(registry, created) == reference(registry, created)


class _Custom(Collector):
    def __init__(self, series: list[tuple[str, str, float, float | None]]) -> None:
        self._series = series

    def collect(self):  # type: ignore[no-untyped-def]
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        gauge = GaugeMetricFamily("weird:gauge", "Custom", labels=["a", "b"])
        counter = CounterMetricFamily("custom", "Custom", labels=["a"])
        for a, b, value, stamp in self._series:
            gauge.add_metric([a, b], value, timestamp=stamp)
            counter.add_metric([a + b], abs(value) if value == value else 1, created=stamp)
        yield gauge
        yield counter
        yield from _GaugeHistogram().collect()


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**70), 2**70))
def test_values_are_formatted_as_go_does(value: float) -> None:
    assert go_float(value) == floatToGoString(value)


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
    assert ours(registry) == (reference_text(registry), reference_openmetrics(registry))


def test_what_is_not_read_directly_still_renders_the_same() -> None:
    """A gauge given set_function(), a subclass of Counter, a registry with target_info,
    a registered child, and prometheus_client's created series switched off."""

    class MyCounter(Counter):
        pass

    registry = CollectorRegistry(target_info={"env": "prod"})
    Gauge("fn", "Fn", registry=registry).set_function(lambda: 42)
    MyCounter("mine", "Mine", ["a"], registry=registry).labels("x").inc()
    plain = CollectorRegistry()
    Gauge("fn2", "Fn", ["a"], registry=plain).labels("x").set_function(lambda: 7)
    Counter("c", "C", ["a"], registry=plain).labels("x").inc()
    for source in (registry, plain):
        assert ours(source) == (reference_text(source), reference_openmetrics(source))
    disable_created_metrics()
    try:
        assert ours(plain) == (reference_text(plain), reference_openmetrics(plain))
    finally:
        enable_created_metrics()


def test_a_scrape_reads_children_not_samples() -> None:
    """Counted, not timed (issue 24 item 7): the function calls one scrape of 150 label
    sets makes, meshmetrics' renderer against prometheus_client's own (the same registry).
    The wall-clock figures are benchmarks/scrape_cost.py's (docs/performance.md)."""
    registry = registry_with([f"/route/{i}" for i in range(150)])
    served = ServedRegistry(registry)
    render.text(served.families())  # the escaped names memoized, as after any first scrape
    render.openmetrics(served.families())
    ours_text = calls(lambda: render.text(served.families()))
    ours_om = calls(lambda: render.openmetrics(served.families()))
    text_calls = calls(lambda: reference_text(registry))
    om_calls = calls(lambda: reference_openmetrics(registry))
    print(f"calls per scrape: text {ours_text} / {text_calls}, OpenMetrics {ours_om} / {om_calls}")
    assert ours_text == calls(lambda: render.text(served.families()))  # deterministic
    assert ours_text < text_calls * 0.4
    assert ours_om < om_calls * 0.4


def test_a_scrape_keeps_no_memory() -> None:
    """Issue 23 item 3: 9,000 label sets rendered in both formats leave (nearly) nothing
    behind: the escaped-name memo only, bounded (the former per-line cache held some
    300 MiB here)."""
    registry = CollectorRegistry()
    histogram = Histogram("latency", "L", ["method", "path", "status"], registry=registry)
    counter = Counter("requests", "R", ["method", "path", "status"], registry=registry)
    for route in range(3000):
        for status in ("200", "404", "500"):
            histogram.labels("GET", f"/r{route}/<x>", status).observe(0.1)
            counter.labels("GET", f"/r{route}/<x>", status).inc()
    served = ServedRegistry(registry)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        text, om = render.text(served.families()), render.openmetrics(served.families())
        assert text.count(b"\n") > 9000 * 19
        assert om.count(b"\n") > 9000 * 19
        del text, om
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    print(f"retained after two scrapes of 9,000 label sets: {growth} bytes")
    assert growth < 64 * 1024
    assert label_name.cache_info().maxsize == NAMES_MEMOIZED


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
    registry = CollectorRegistry()
    counter = Counter("c", "C", ["a"], registry=registry)
    for _ in range(50):
        counter.labels("".join(rng.choices(string.ascii_letters, k=3))).inc()
        assert ours(registry)[0] == reference_text(registry)


@pytest.mark.parametrize("created", [True, False])
def test_the_metrics_endpoint_serves_prometheus_clients_bytes_in_every_format(
    created: bool,
) -> None:
    import gzip

    from flask import Flask
    from prometheus_client import make_wsgi_app

    from meshmetrics import instrument

    app = Flask("svc")
    inst = instrument(app, service="svc", created_series=created)
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
        "application/openmetrics-text;version=2.0.0",
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
    from prometheus_client import make_wsgi_app
    from werkzeug.test import Client

    from meshmetrics import instrument

    app = Flask("svc")
    inst = instrument(app, service="svc")
    client = app.test_client()
    client.get("/nowhere")
    text = client.get(f"/metrics?{query}").get_data(as_text=True)
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    assert names == {"flask_service_info"}
    several = "name[]=flask_http_request_total&name[]=flask_http_request_duration_seconds_bucket"
    for accept in ("text/plain", "application/openmetrics-text;version=1.0.0"):
        for encoding in ("", "gzip"):
            headers = {"Accept": accept, "Accept-Encoding": encoding}
            ours = client.get(f"/metrics?{several}", headers=headers).get_data()
            expected = Client(make_wsgi_app(inst.served)).get(
                f"/metrics?{several}", headers=headers
            )
            assert ours == expected.get_data()
            assert b"flask_http_request_duration_seconds_bucket{" in gzip_decoded(ours, encoding)


def gzip_decoded(body: bytes, encoding: str) -> bytes:
    import gzip

    return gzip.decompress(body) if encoding else body
