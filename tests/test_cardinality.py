"""Series stay bounded whatever paths, methods, query strings and headers clients send."""

from __future__ import annotations

import random
import string

from flask import Flask

from helpers import samples, series_count, serve_in_thread
from meshmetrics import OTHER_METHOD, UNMATCHED, instrument
from meshmetrics.diagnose.exposition import check_url
from meshmetrics.metrics import STANDARD_METHODS

REQUEST_COUNT = 10_000
#: histogram: 14 buckets + +Inf, _count, _sum; counter: _total (no ``_created`` series:
#: ``created_series`` is off by default).
SERIES_PER_COMBINATION = 17 + 1
#: 10 method values x 3 path values (2 routes + unmatched) x 4 statuses this app answers,
#: plus one in-progress gauge per (method, path).
MAX_GROWTH = 10 * 3 * 4 * SERIES_PER_COMBINATION + 10 * 3


def make_app() -> Flask:
    app = Flask("cardinality")

    @app.route("/api/v1/user/<user_id>", methods=["GET", "POST", "PUT", "DELETE"])
    def user(user_id: str) -> str:
        return user_id

    @app.route("/api/v1/music/<int:music_id>")
    def music(music_id: int) -> str:
        return str(music_id)

    return app


def random_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits + "-._~") for _ in range(n))


def test_random_traffic_adds_a_bounded_number_of_series() -> None:
    rng = random.Random(756)
    app = make_app()
    instrument(app)
    client = app.test_client()
    baseline = series_count(client.get("/metrics").get_data(as_text=True))
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
    for i in range(REQUEST_COUNT):
        kind = i % 4
        if kind == 0:
            path = f"/api/v1/user/{random_text(rng, 12)}"
        elif kind == 1:
            path = f"/api/v1/music/{rng.randrange(10**9)}"
        elif kind == 2:
            path = "/" + "/".join(random_text(rng, 6) for _ in range(rng.randrange(1, 5)))
        else:
            path = f"/api/v1/music/{random_text(rng, 5)}"  # not an int: no route matches
        method = rng.choice(methods) if rng.random() < 0.9 else random_text(rng, 7).upper()
        client.open(
            f"{path}?{random_text(rng, 4)}={random_text(rng, 8)}",
            method=method,
            headers={"Host": f"{random_text(rng, 8)}.example", "X-Junk": random_text(rng, 20)},
        )
    text = client.get("/metrics").get_data(as_text=True)
    found = samples(text)
    combos = {
        (dict(labels)["method"], dict(labels)["path"], dict(labels)["status"])
        for (name, labels) in found
        if name == "flask_http_request_total"
    }
    assert {m for m, _, _ in combos} <= STANDARD_METHODS | {OTHER_METHOD}
    assert {p for _, p, _ in combos} <= {
        "/api/v1/user/<user_id>",
        "/api/v1/music/<int:music_id>",
        UNMATCHED,
    }
    assert {s for _, _, s in combos} <= {"200", "400", "404", "405"}  # 400: bad Host
    # Each (method, path, status) adds SERIES_PER_COMBINATION samples, each (method, path)
    # one in-progress gauge: nothing else grows.
    pairs = {(m, p) for m, p, _ in combos}
    growth = series_count(text) - baseline
    assert growth == SERIES_PER_COMBINATION * len(combos) + len(pairs)
    assert growth <= MAX_GROWTH, growth
    # the check command's cardinality report counts the same series
    base, stop = serve_in_thread(app)
    try:
        findings = check_url(base)
    finally:
        stop()
    (report,) = [f.message for f in findings if f.severity == "INFO"]
    assert report.startswith(f"{series_count(text)} series in ")
    assert not [f for f in findings if f.severity in ("ERROR", "WARN")]
    assert "example" not in text
    assert "X-Junk" not in text
