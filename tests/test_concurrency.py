"""Exact counts under concurrency: 8 threads x 1,000 requests, scraped every 50 ms."""

from __future__ import annotations

import concurrent.futures
import http.client
import threading
import time

import pytest
import requests
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from helpers import serve_in_thread, value
from meshmetrics import instrument

pytestmark = pytest.mark.slow
THREADS, PER_THREAD = 8, 1_000


def test_counts_exact_and_scrapes_whole_under_load() -> None:
    app = Flask("load")
    instrument(app, service="load")

    @app.route("/work/<int:n>")
    def work(n: int) -> dict[str, int]:
        return {"n": n}

    base, stop = serve_in_thread(app)
    host, port = base.removeprefix("http://").split(":")
    done = threading.Event()
    scrapes: list[str] = []
    failures: list[str] = []

    def scraper() -> None:
        with requests.Session() as session:
            while not done.is_set():
                response = session.get(f"{base}/metrics", timeout=10)
                if response.status_code != 200:
                    failures.append(f"scrape {response.status_code}")
                scrapes.append(response.text)
                time.sleep(0.05)

    def client(worker: int) -> int:
        # http.client on one keep-alive connection: the load is the server's, not the
        # client library's (requests costs ~1 ms a call)
        ok = 0
        connection = http.client.HTTPConnection(host, port, timeout=10)
        try:
            for i in range(PER_THREAD):
                connection.request("GET", f"/work/{worker * PER_THREAD + i}")
                response = connection.getresponse()
                response.read()
                ok += response.status == 200
        finally:
            connection.close()
        return ok

    scraping = threading.Thread(target=scraper)
    scraping.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            succeeded = sum(pool.map(client, range(THREADS)))
    finally:
        done.set()
        scraping.join(10)
        final = requests.get(f"{base}/metrics", timeout=10).text
        stop()
    total = THREADS * PER_THREAD
    assert succeeded == total
    assert failures == []
    assert len(scrapes) >= 10, "the scraper did not run alongside the load"
    route = {"path": "/work/<int:n>"}
    assert value(final, "flask_http_request_total", **route) == total
    assert value(final, "flask_http_request_duration_seconds_count", **route) == total
    assert value(final, "flask_http_request_duration_seconds_bucket", le="+Inf", **route) == total
    assert value(final, "flask_http_requests_in_progress") == 0
    previous = -1.0
    expected = {
        "flask_http_request",
        "flask_http_requests_in_progress",
        "flask_service_info",
        "process_cpu_seconds",
    }
    for text in scrapes:  # every scrape parses in full, has every family, never goes back
        assert text.endswith("\n")
        assert expected <= {f.name for f in text_string_to_metric_families(text)}
        count = value(text, "flask_http_request_total", **route)
        in_flight = value(text, "flask_http_requests_in_progress")
        assert 0 <= in_flight <= THREADS
        assert count >= previous
        previous = count
