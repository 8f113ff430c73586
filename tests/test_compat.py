"""One test per private detail of a dependency that ``meshmetrics._compat`` relies on: an
upgrade that changes one fails here, by name, not on the request path."""

from __future__ import annotations

from flask import Flask, request
from prometheus_client import CollectorRegistry, Counter, Gauge, values
from prometheus_flask_exporter import PrometheusMetrics

from meshmetrics import _compat


def test_current_request_is_the_real_request_object() -> None:
    app = Flask("compat")
    with app.test_request_context("/x"):
        assert _compat.current_request() is request._get_current_object()  # type: ignore[attr-defined]


def test_prometheus_flask_exporter_request_flags() -> None:
    app = Flask("pfe")
    metrics = PrometheusMetrics(app=None, path=None, registry=CollectorRegistry())
    seen: list[bool] = []

    @app.get("/untracked")
    @metrics.do_not_track()
    def untracked() -> str:
        seen.append(_compat.excluded_by_pfe(_compat.current_request()))
        return "ok"

    @app.get("/excluded")
    @metrics.exclude_all_metrics()
    def excluded() -> str:
        seen.append(_compat.excluded_by_pfe(_compat.current_request()))
        return "ok"

    @app.get("/tracked")
    def tracked() -> str:
        seen.append(_compat.excluded_by_pfe(_compat.current_request()))
        return "ok"

    client = app.test_client()
    for path in ("/untracked", "/excluded", "/tracked"):
        client.get(path)
    assert seen == [True, True, False]


def test_metric_object_attributes() -> None:
    registry = CollectorRegistry()
    counter = Counter("orders_total", "Orders placed", ["kind"], registry=registry)
    assert _compat.family_name(counter) == "orders"
    assert _compat.family_type(counter) == "counter"
    assert _compat.label_names(counter) == ("kind",)
    assert _compat.documentation(counter) == "Orders placed"
    assert list(_compat.collectors(registry)) == [counter]


def test_value_class_switch_exists() -> None:
    assert hasattr(values, "ValueClass")
    assert callable(values.get_value_class)


def test_set_function_is_seen_on_gauges_and_their_children() -> None:
    registry = CollectorRegistry()
    plain = Gauge("plain", "p", registry=registry)
    computed = Gauge("computed", "c", registry=registry)
    computed.set_function(lambda: 1.0)
    labelled = Gauge("labelled", "l", ["queue"], registry=registry)
    labelled.labels("a").set_function(lambda: 2.0)
    flags = [_compat.uses_set_function(m) for m in (plain, computed, labelled)]
    assert flags == [False, True, True]


def test_flask_renders_http_exceptions_into_a_closing_iterator_of_known_length() -> None:
    from flask import Response, abort
    from werkzeug.wsgi import ClosingIterator

    app = Flask("rendered")
    seen: list[bool] = []
    app.after_request(lambda r: seen.append(_compat.rendered_by_flask(r)) or r)
    app.add_url_rule("/abort", "abort", lambda: abort(401))
    app.add_url_rule("/plain", "plain", lambda: "ok")
    app.add_url_rule(
        "/stream", "stream", lambda: Response(ClosingIterator(iter([b"x"]), lambda: None))
    )
    client = app.test_client()
    for path in ("/abort", "/missing", "/plain", "/stream"):
        client.get(path)
    client.post("/plain")  # 405
    assert seen == [True, True, False, False, True]


def test_metric_children_and_values_read_directly() -> None:
    """The renderer's reads of prometheus_client's metric objects (issue 23 item 3)."""
    from prometheus_client import Histogram, Summary

    registry = CollectorRegistry()
    counter = Counter("c", "C", ["a"], registry=registry, unit="bytes")
    counter.labels("x").inc(2, exemplar={"t": "1"})
    histogram = Histogram("h", "H", ["a"], registry=registry, buckets=(1, 2))
    histogram.labels("x").observe(1.5)
    summary = Summary("s", "S", registry=registry)
    summary.observe(4)
    gauge = Gauge("g", "G", registry=registry)
    gauge.set_function(lambda: 1)
    assert [_compat.direct_kind(m) for m in (counter, histogram, summary, gauge)] == [
        "counter",
        "histogram",
        "summary",
        None,
    ]
    assert _compat.direct_kind(object()) is None
    [(values, child)] = _compat.children(counter)
    assert values == ("x",)
    assert _compat.value_of(child) == 2.0
    assert _compat.counter_exemplar(child).labels == {"t": "1"}
    assert _compat.created_of(child) > 0
    assert _compat.family_unit(counter) == "bytes"
    [(_, bucketed)] = _compat.children(histogram)
    assert _compat.upper_bounds(histogram) == [1.0, 2.0, float("inf")]
    assert _compat.bucket_counts(bucketed) == [0.0, 1.0, 0.0]
    assert _compat.bucket_exemplars(bucketed) == [None, None, None]
    assert _compat.sum_of(bucketed) == 1.5
    assert _compat.children(summary) == [((), summary)]
    assert (_compat.count_of(summary), _compat.sum_of(summary)) == (1.0, 4.0)
    assert _compat.created_samples() is True
    assert _compat.has_target_info(CollectorRegistry(target_info={"a": "b"}))
    assert not _compat.has_target_info(registry)
    assert _compat.has_family_name(counter)
    assert _compat.openmetrics_sample_name("a:b_total") == "a_b_total"
