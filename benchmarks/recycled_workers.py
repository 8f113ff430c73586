"""Files in the multiprocess directory and scrape time after gunicorn recycled its workers.

Two workers with ``--max-requests 10`` answer N requests (each on a new connection); then
the directory's files are counted and ``/metrics`` is scraped 20 times.

    python benchmarks/recycled_workers.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import Server, gunicorn_argv, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="meshmetrics-recycled-")
    argv = [*gunicorn_argv("apps.service:app", 2), "--max-requests", "10"]
    server = Server(argv, env={"PROMETHEUS_MULTIPROC_DIR": directory})

    def hit(_: int) -> int:
        with requests.Session() as s:
            return s.get(f"{server.base}/api/v1/items/1", timeout=10).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = set(pool.map(hit, range(args.requests)))
    time.sleep(1)
    timings = []
    text = ""
    for _ in range(20):
        started = time.perf_counter()
        text = requests.get(f"{server.base}/metrics", timeout=30).text
        timings.append(time.perf_counter() - started)
    files = len(list(Path(directory).glob("*.db")))
    _, err = server.stop()
    count = value(text, "flask_http_request_total", path="/api/v1/items/<item_id>")
    print(
        f"{args.requests:,} requests (status {sorted(codes)}), "
        f"{err.count('Autorestarting worker')} workers recycled: {files} files, "
        f"median scrape {sorted(timings)[10] * 1000:.1f} ms, counted {count:,.0f}"
    )


if __name__ == "__main__":
    main()
