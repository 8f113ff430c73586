"""The request path's caches and cells (issue 23 items 1 and 4): bounded under hostile
paths, right when routes come late, the same exported numbers as prometheus_client's own
values, and the same work per request whatever the route."""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from werkzeug.routing import Rule

from helpers import PYTHON, value
from meshmetrics import UNMATCHED, _compat, instrument
from meshmetrics.cells import LocalValue, Series, adopt_value
from meshmetrics.middleware import ROUTE_CACHE_SIZE, AppObserver


def make_app(routes: int = 0) -> Flask:
    app = Flask("paths")

    @app.route("/items/<item_id>")
    def item(item_id: str) -> str:
        return item_id

    for i in range(routes):
        app.add_url_rule(f"/extra/{i}/<x>", f"extra{i}", lambda x: x)
    return app


def observer_of(app: Flask) -> AppObserver:
    observer = app.wsgi_app
    assert isinstance(observer, AppObserver)
    return observer


def scrape(app: Flask) -> str:
    return app.test_client().get("/metrics").get_data(as_text=True)


def test_hostile_405_paths_keep_the_route_label_in_a_bounded_cache() -> None:
    app = make_app()
    instrument(app)
    client = app.test_client()
    hits = ROUTE_CACHE_SIZE * 2 + 10
    for i in range(hits):
        assert client.delete(f"/items/{i}").status_code == 405
    assert len(observer_of(app)._not_allowed) <= ROUTE_CACHE_SIZE
    text = scrape(app)
    assert value(text, "flask_http_request_total", path="/items/<item_id>", status="405") == hits


def test_hostile_404_paths_cache_nothing_per_path() -> None:
    app = make_app()
    instrument(app)
    client = app.test_client()
    observer = observer_of(app)
    for i in range(500):
        assert client.get(f"/nope/{i}").status_code == 404
    assert observer._routes == {}
    assert observer._not_allowed == {}
    assert value(scrape(app), "flask_http_request_total", path=UNMATCHED, status="404") == 500


def test_unmatched_paths_under_prefixes_are_labelled_per_path() -> None:
    app = make_app()
    instrument(app, path_prefixes={"/static-files/": "/static-files/"})
    client = app.test_client()
    client.get("/nope")
    client.get("/static-files/a.css")
    client.get("/static-files/b.css")
    text = scrape(app)
    assert value(text, "flask_http_request_total", path=UNMATCHED) == 1
    assert value(text, "flask_http_request_total", path="/static-files/") == 2


def test_a_route_added_after_the_first_request_gets_its_own_label() -> None:
    app = make_app()
    instrument(app)
    client = app.test_client()
    assert client.get("/late/1").status_code == 404
    assert client.post("/items/1").status_code == 405
    # Flask refuses add_url_rule once the app served a request: the map itself takes it
    app.url_map.add(Rule("/late/<n>", endpoint="late"))
    app.url_map.add(Rule("/items/<item_id>", endpoint="post_item", methods=["POST"]))
    app.view_functions.update(late=lambda n: n, post_item=lambda item_id: ("made", 201))
    assert client.get("/late/2").status_code == 200
    assert client.post("/items/1").status_code == 201
    assert client.get("/nope").status_code == 404
    text = scrape(app)
    assert value(text, "flask_http_request_total", path="/late/<n>", status="200") == 1
    assert value(text, "flask_http_request_total", path=UNMATCHED, status="404") == 2
    assert value(text, "flask_http_request_total", path="/items/<item_id>", status="405") == 1
    assert value(text, "flask_http_request_total", method="POST", status="201") == 1


# -- cells: the same numbers as prometheus_client's own values --------------------------

DURATIONS = [0.0, 0.005, 0.0050001, 0.01, 0.7, 2.5, 10.0, 11.0, 1e9, 0.1 + 0.2, 3e-7]


def _families(registry: CollectorRegistry) -> list[Any]:
    """Every sample, its exemplar without its timestamp (the time it was observed)."""
    return [
        (m.name, [(*s[:4], s.exemplar and s.exemplar[:2]) for s in m.samples])
        for m in registry.collect()
    ]


def _request_families(registry: CollectorRegistry) -> tuple[Histogram, Counter, Gauge]:
    labels = ("method", "path", "status")
    return (
        Histogram("d_seconds", "d", labels, registry=registry),
        Counter("r", "r", labels, registry=registry),
        Gauge("g", "g", ("method", "path"), registry=registry, multiprocess_mode="livesum"),
    )


def _created_zero(families: list[Any]) -> list[Any]:
    """The samples with the children's creation times (not the values) set aside."""
    return [
        (name, [s for s in samples if not s[0].endswith("_created")]) for name, samples in families
    ]


def test_series_exports_exactly_what_prometheus_clients_values_would() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    h1, c1, g1 = _request_families(theirs)
    h2, c2, g2 = _request_families(ours)
    gauge = adopt_value(g2.labels("GET", "/x"))
    series = Series(h2.labels("GET", "/x", "200"), c2.labels("GET", "/x", "200"))
    assert isinstance(gauge, LocalValue)
    for seconds in DURATIONS:
        g1.labels("GET", "/x").inc()
        h1.labels("GET", "/x", "200").observe(seconds)
        c1.labels("GET", "/x", "200").inc()
        g1.labels("GET", "/x").dec()
        gauge.inc(1.0)
        series.observe(seconds, gauge)
    g1.labels("GET", "/x").inc()
    gauge.inc(1.0)
    # the children's own methods still work, on the same values
    h1.labels("GET", "/x", "200").observe(0.2, {"trace_id": "abc"})
    h2.labels("GET", "/x", "200").observe(0.2, {"trace_id": "abc"})
    assert _created_zero(_families(theirs)) == _created_zero(_families(ours))


def test_one_lock_loses_no_update_under_threads() -> None:
    registry = CollectorRegistry()
    histogram, counter, gauge_family = _request_families(registry)
    gauge = adopt_value(gauge_family.labels("GET", "/x"))
    series = Series(histogram.labels("GET", "/x", "200"), counter.labels("GET", "/x", "200"))

    def work() -> None:
        for i in range(2000):
            gauge.inc(1.0)
            series.observe(0.001 * (i % 7), gauge)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    labels = {"method": "GET", "path": "/x", "status": "200"}
    assert registry.get_sample_value("r_total", labels) == 16000
    assert registry.get_sample_value("d_seconds_count", labels) == 16000
    assert gauge.get() == 0
    assert sum(b.get() for b in series.buckets) == 16000


MULTIPROCESS_SCRIPT = """
import os, sys
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from meshmetrics._compat import use_mmap_values
from meshmetrics.cells import Series, adopt_value

def families():
    registry = CollectorRegistry()
    labels = ("method", "path", "status")
    return (
        Histogram("d_seconds", "d", labels, registry=registry),
        Counter("r", "r", labels, registry=registry),
        Gauge("g", "g", ("method", "path"), registry=registry, multiprocess_mode="livesum"),
    )

durations = [0.0, 0.005, 0.0050001, 0.7, 11.0, 0.1 + 0.2]
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
use_mmap_values()
h, c, g = families()
for seconds in durations:
    g.labels("GET", "/x").inc()
    h.labels("GET", "/x", "200").observe(seconds)
    c.labels("GET", "/x", "200").inc()
    g.labels("GET", "/x").dec()
g.labels("GET", "/x").inc()

os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[2]
values.ValueClass = values.MultiProcessValue()  # files of its own, in the second directory
h, c, g = families()
gauge = adopt_value(g.labels("GET", "/x"))
series = Series(h.labels("GET", "/x", "200"), c.labels("GET", "/x", "200"))
assert series.files is not None
for seconds in durations:
    gauge.inc(1.0)
    series.observe(seconds, gauge)
gauge.inc(1.0)

if sys.argv[3] == "fork":
    pid = os.fork()
    if pid == 0:  # the child counts in its own files, from zero
        gauge.inc(1.0)
        series.observe(0.5, gauge)
        os._exit(0)
    os.waitpid(pid, 0)
    series.observe(0.5, gauge)
"""


def _run(script: str, *args: str) -> None:
    subprocess.run([PYTHON, "-c", script, *args], check=True)


def test_file_values_write_prometheus_clients_bytes(tmp_path: Path) -> None:
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    theirs.mkdir()
    ours.mkdir()
    _run(MULTIPROCESS_SCRIPT, str(theirs), str(ours), "-")
    names = sorted(p.name for p in theirs.iterdir())
    assert names == sorted(p.name for p in ours.iterdir())
    assert [n.split("_")[0] for n in names] == ["counter", "gauge", "histogram"]
    for name in names:
        assert (theirs / name).read_bytes() == (ours / name).read_bytes(), name


def test_a_forked_child_writes_its_own_files_from_zero(tmp_path: Path) -> None:
    from prometheus_client.mmap_dict import MmapedDict

    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    theirs.mkdir()
    ours.mkdir()
    _run(MULTIPROCESS_SCRIPT, str(theirs), str(ours), "fork")
    counts: dict[str, dict[str, float]] = collections.defaultdict(dict)
    for path in ours.iterdir():
        pid = path.stem.rsplit("_", 1)[1]
        for key, number, *_ in MmapedDict.read_all_values_from_file(str(path)):  # type: ignore[no-untyped-call]
            if '"r_total"' in key or '"g"' in key or "_sum" in key:
                counts[pid][key.split(",")[1].strip(' "')] = number
    assert len(counts) == 2
    # the child counted one request only; the parent 6 before the fork and 1 after
    child, parent = sorted(counts.values(), key=lambda values: values["r_total"])
    assert parent["r_total"] == 7
    assert parent["g"] == 0
    assert child["r_total"] == 1
    assert child["g"] == 0
    assert child["d_seconds_sum"] == 0.5


# -- the same work per request, whatever the route (issue 23 item 4) -------------------


def _calls_per_request(app: Flask, paths: list[tuple[str, str]]) -> collections.Counter[str]:
    """meshmetrics' own Python calls while serving ``paths`` once each (after a warm-up)."""
    client = app.test_client()
    for method, path in paths:
        client.open(path, method=method)
    calls: collections.Counter[str] = collections.Counter()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and "meshmetrics" in frame.f_code.co_filename:
            calls[frame.f_code.co_qualname] += 1

    for method, path in paths:
        sys.setprofile(profile)
        try:
            client.open(path, method=method)
        finally:
            sys.setprofile(None)
    return calls


@pytest.fixture(scope="module")
def apps() -> Iterator[dict[int, Flask]]:
    built = {n: make_app(n) for n in (0, 1000)}
    for app in built.values():
        instrument(app)
    return built


def test_a_request_costs_the_same_calls_at_any_number_of_routes(apps: dict[int, Flask]) -> None:
    few = _calls_per_request(apps[0], [("GET", "/items/1")])
    many = _calls_per_request(apps[1000], [("GET", "/extra/999/x")])
    assert few == many
    assert few


def test_an_unmatched_or_405_request_costs_the_calls_of_a_matched_one(
    apps: dict[int, Flask],
) -> None:
    """A matched request's calls, but for the view's pass through ``ensure_sync`` (no view
    runs), plus the check that an error page is in memory and, for a 405, the look-up of
    its route's label (decided on the first one)."""
    matched = _calls_per_request(apps[1000], [("GET", "/items/2")])
    no_view = matched - collections.Counter({"_answer_ensure_sync.<locals>.ensure_sync": 1})
    error_page = collections.Counter({"rendered_by_flask": 1})
    assert _calls_per_request(apps[1000], [("GET", "/nope/3")]) == no_view + error_page
    not_allowed = collections.Counter({"AppObserver._unrouted": 1}) + error_page
    assert _calls_per_request(apps[1000], [("PUT", "/items/4")]) == no_view + not_allowed


def test_ensure_sync_answers_for_the_hooks_and_asks_flask_for_the_rest() -> None:
    app = make_app()
    instrument(app)
    assert "ensure_sync" in vars(app)
    assert app.ensure_sync(app.view_functions["item"]) is app.view_functions["item"]
    assert app.test_client().get("/items/1").status_code == 200


def test_an_apps_own_ensure_sync_sees_every_function() -> None:
    asked: list[str] = []

    class App(Flask):
        def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
            asked.append(func.__name__)
            return super().ensure_sync(func)

    app = App("own")

    @app.route("/")
    def index() -> str:
        return "ok"

    instrument(app)
    assert "ensure_sync" not in vars(app)
    assert app.test_client().get("/").status_code == 200
    assert asked == ["_on_routed", "index", "_on_response"]
    assert value(scrape(app), "flask_http_request_total", path="/") == 1


# -- the dependency details the request path relies on (meshmetrics._compat) -----------


def test_prometheus_client_children_keep_their_values_where_cells_replace_them() -> None:
    registry = CollectorRegistry()
    histogram, counter, _ = _request_families(registry)
    child = histogram.labels("GET", "/x", "200")
    total, buckets, bounds = _compat.histogram_values(child)
    assert bounds[-1] == float("inf")
    assert len(buckets) == len(bounds)
    assert {type(v) for v in (total, *buckets)} == {
        type(_compat.value_of_child(counter.labels("GET", "/x", "200")))
    }
    ours = [LocalValue() for _ in buckets]
    _compat.replace_histogram_values(child, LocalValue(2.5), ours)
    child.observe(0.001)
    assert ours[0].get() == 1
    counter_child = counter.labels("GET", "/x", "200")
    _compat.replace_value(counter_child, LocalValue(41.0))
    counter_child.inc()
    assert (
        registry.get_sample_value("r_total", {"method": "GET", "path": "/x", "status": "200"}) == 42
    )
    assert (
        registry.get_sample_value("d_seconds_sum", {"method": "GET", "path": "/x", "status": "200"})
        == 2.501
    )


def test_mmap_slot_is_where_prometheus_client_writes_a_value(tmp_path: Path) -> None:
    script = f"""
import os
os.environ["PROMETHEUS_MULTIPROC_DIR"] = {str(tmp_path)!r}
from prometheus_client import CollectorRegistry, Counter
from meshmetrics import _compat
_compat.use_mmap_values()
child = Counter("c", "c", ("a",), registry=CollectorRegistry()).labels("x")
child.inc(3)
m, pos, value = _compat.mmap_slot(_compat.value_of_child(child))
assert value == 3.0, value
assert m[pos : pos + 16] == _compat.pack_mmap_value(3.0, 0.0)
"""
    _run(script)


def test_request_context_getter_reads_the_request_being_served() -> None:
    app = make_app()
    get = _compat.request_context_getter()
    with app.test_request_context("/items/7"):
        assert get().request.path == "/items/7"
