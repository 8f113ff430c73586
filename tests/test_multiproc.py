"""gunicorn with several workers: the app's own /metrics aggregates every worker."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from pathlib import Path

import hypothesis
import hypothesis.strategies as st
import pytest
import requests

from helpers import Server, gunicorn_argv, value

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("workers", [2, 4])
def test_summed_count_is_exact_across_workers(
    start_server: Callable[..., Server], tmp_path: Path, workers: int
) -> None:
    argv = gunicorn_argv("apps.service:app", workers)
    # A file left by an earlier run would be summed in (here: would break parsing);
    # the master must empty the directory before the workers start.
    (tmp_path / "counter_999999.db").write_bytes(b"stale")
    server = start_server(argv, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert not (tmp_path / "counter_999999.db").exists()
    total = 0
    pids: set[str] = set()

    def hit(i: int) -> str:
        with requests.Session() as s:  # a new connection each time: any worker may answer
            response = s.get(f"{server.base}/api/v1/items/pid", timeout=10)
            assert response.status_code == 200
            return response.text

    # 400 requests, and more while one worker answered them all (on a busy machine the
    # first worker to wake may take every connection): the sums must cover several.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        while (total < 400 or len(pids) < 2) and total < 4000:
            pids.update(pool.map(hit, range(400)))
            total += 400
    assert len(pids) >= 2, "all requests went to one worker: aggregation not exercised"
    scrapes = [requests.get(f"{server.base}/metrics", timeout=10).text for _ in range(6)]
    for text in scrapes:
        assert value(text, "flask_http_request_total", path="/api/v1/items/pid") == total
        assert (
            value(text, "flask_http_request_duration_seconds_count", path="/api/v1/items/pid")
            == total
        )
        assert value(text, "flask_http_requests_in_progress") == 0
        assert value(text, "flask_service_info", service="items") == 1
    server.stop()


@pytest.mark.parametrize("workers", [2, 4])
def test_killed_worker_loses_no_counted_request(
    start_server: Callable[..., Server], tmp_path: Path, workers: int
) -> None:
    """5,000 requests; a worker is SIGKILLed half-way and respawned; the sum stays exact."""
    import os
    import signal
    import time

    argv = gunicorn_argv("apps.service:app", workers)
    server = start_server(argv, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    url = f"{server.base}/api/v1/items/pid"

    def hit(_: int) -> str:
        with requests.Session() as s:
            response = s.get(url, timeout=10)
            assert response.status_code == 200
            return response.text

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        first = list(pool.map(hit, range(2_500)))
    victim = max(set(first), key=first.count)  # the busiest worker, idle now
    os.kill(int(victim), signal.SIGKILL)
    probes, deadline = 0, time.monotonic() + 30
    while time.monotonic() < deadline:  # until the master has respawned a worker
        live = {hit(0) for _ in range(10)}
        probes += 10
        if victim not in live and len(os.listdir(tmp_path)) > 0:
            break
        time.sleep(0.2)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        second = list(pool.map(hit, range(2_500)))
    assert victim not in second
    counted = 5_000 + probes
    for _ in range(6):  # whichever worker answers the scrape
        text = requests.get(f"{server.base}/metrics", timeout=10).text
        assert value(text, "flask_http_request_total", path="/api/v1/items/pid") == counted
        assert (
            value(text, "flask_http_request_duration_seconds_count", path="/api/v1/items/pid")
            == counted
        )
        assert value(text, "flask_http_requests_in_progress") == 0
    server.stop()


def test_multiproc_dir_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from flask import Flask

    from meshmetrics import instrument

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    with pytest.raises(RuntimeError, match="is not a directory"):
        instrument(Flask("mp"))


@pytest.mark.slow
@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_info_gauge_and_per_worker_process_metrics(
    start_server: Callable[..., Server], tmp_path: Path, preload: bool
) -> None:
    argv = gunicorn_argv("apps.service:app", 2)
    if preload:
        argv.insert(-1, "--preload")
    server = start_server(argv, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        pids = set(
            pool.map(
                lambda _: requests.get(f"{server.base}/api/v1/items/pid", timeout=10).text,
                range(40),
            )
        )
    text = requests.get(f"{server.base}/metrics", timeout=10).text
    assert value(text, "flask_service_info", service="items") == 1
    memory = {
        labels["pid"]
        for (name, labels) in ((n, dict(lab)) for (n, lab) in __import__("helpers").samples(text))
        if name == "process_resident_memory_bytes"
    }
    assert pids <= memory  # every worker that served has its own process series
    # issue 25 item 6: the master is not listed, even when it loaded the app (--preload)
    assert str(server.proc.pid) not in memory


def test_set_function_gauge_under_workers_is_named_not_lost_silently(tmp_path: Path) -> None:
    import subprocess

    from helpers import PYTHON

    code = (
        "from flask import Flask\n"
        "from prometheus_client import Gauge\n"
        "from meshmetrics import instrument\n"
        "app = Flask('q')\n"
        "inst = instrument(app)\n"
        "Gauge('queue_depth', 'Jobs waiting', registry=inst.registry).set_function(lambda: 3)\n"
        "client = app.test_client()\n"
        "for _ in range(2):\n"
        "    assert b'queue_depth{pid=' in client.get('/metrics').data\n"
    )
    result = subprocess.run(
        [PYTHON, "-c", code],
        env={**__import__("os").environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("gauge queue_depth uses set_function()") == 1


def test_scrapes_never_fail_while_workers_are_recycled(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    """Issue 21 item 3: 3 workers recycled every 7 requests, 4 load threads, 2 scrapers.

    A new worker's value file used to exist with 0 bytes before it was sized, and a scrape
    reading it answered 500 (``struct.error``).  Bounded by counts: the scrapers stop once
    the load threads have sent their requests (or after 60 s on a machine too busy to
    recycle); every scrape must be a 200 and the last one must count every request."""
    import threading
    import time

    argv = [*gunicorn_argv("apps.service:app", 3), "--max-requests", "7"]
    server = start_server(argv, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    per_thread, done = 60, threading.Event()
    statuses: list[int] = []
    scrapes: list[int] = []
    deadline = time.monotonic() + 60

    def load(_: int) -> None:
        with requests.Session() as s:
            for _ in range(per_thread):
                if time.monotonic() > deadline:
                    break
                statuses.append(s.get(f"{server.base}/api/v1/items/1", timeout=10).status_code)

    def scrape() -> None:
        with requests.Session() as s:
            while not done.is_set() and time.monotonic() < deadline:
                scrapes.append(s.get(f"{server.base}/metrics", timeout=10).status_code)

    scrapers = [threading.Thread(target=scrape) for _ in range(2)]
    for thread in scrapers:
        thread.start()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(load, range(4)))
    done.set()
    for thread in scrapers:
        thread.join(15)
    _, err = server.stop()
    recycled = err.count("Autorestarting worker")
    print(f"{len(scrapes)} scrapes, {sum(s != 200 for s in scrapes)} failed, {recycled} recycled")
    assert recycled >= 20, err[-2000:]  # recycling exercised (240 requests / 7 per worker)
    assert len(scrapes) >= 20
    assert [s for s in scrapes if s != 200] == [], err[-3000:]
    assert set(statuses) == {200}


def test_a_value_file_is_listed_only_once_sized(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21 item 3, the writer: no ``*.db`` file of 0 bytes is ever visible (it is
    sized under another name, then linked into place); no temporary file is left."""
    import os

    from prometheus_client import mmap_dict

    from meshmetrics._compat import AllocatedMmapedDict

    listed: list[tuple[str, int]] = []
    allocate = os.posix_fallocate

    def spy(fd: int, offset: int, size: int) -> None:  # what a scrape would list now
        listed.extend((p.name, p.stat().st_size) for p in tmp_path.glob("*.db"))
        allocate(fd, offset, size)

    monkeypatch.setattr(os, "posix_fallocate", spy)
    store = AllocatedMmapedDict(str(tmp_path / "counter_4242.db"))
    store.write_value("k", 1.0, 0.0)
    store.close()
    assert [entry for entry in listed if entry[1] < 8] == []
    assert [p.name for p in tmp_path.iterdir()] == ["counter_4242.db"]
    assert (tmp_path / "counter_4242.db").stat().st_size == mmap_dict._INITIAL_MMAP_SIZE


def test_a_scrape_skips_a_value_file_still_being_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21 item 3, the reader: a 0-byte file (prometheus_client's own writer, between
    creating and sizing it) is skipped, the others are summed."""
    from prometheus_client import CollectorRegistry, Counter, values

    from meshmetrics._compat import use_mmap_values
    from meshmetrics.multiproc import LockedMultiProcessCollector

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # restored afterwards
    use_mmap_values()
    Counter("jobs", "jobs", registry=CollectorRegistry()).inc(3)
    (tmp_path / "counter_999999.db").write_bytes(b"")
    collected = {
        s.name: s.value
        for metric in LockedMultiProcessCollector(str(tmp_path)).collect()
        for s in metric.samples
    }
    assert collected["jobs_total"] == 3


def test_a_writer_is_gone_when_killed_or_its_pid_reused(tmp_path: Path) -> None:
    """Issue 25 item 4: a process is gone when no process has its pid, when it is a zombie
    (killed, not yet reaped), or when the process with its pid started after the files
    were last written (pid reused)."""
    import os
    import signal
    import subprocess
    import time

    from meshmetrics.multiproc import writer_alive

    child = subprocess.Popen(["sleep", "60"])
    try:
        now = time.time()
        assert writer_alive(child.pid, now)
        assert writer_alive(child.pid, None)
        assert not writer_alive(child.pid, now - 3600)  # started after the last write
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _state(child.pid) != b"Z":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert not writer_alive(child.pid, now)  # a zombie: killed, not reaped yet
    finally:
        child.kill()
        child.wait()
    assert not writer_alive(child.pid, now)


def _state(pid: int) -> bytes:
    from meshmetrics.multiproc import parse_proc_stat

    with open(f"/proc/{pid}/stat", "rb") as f:
        return parse_proc_stat(f.read())[0]


def test_dead_processes_live_gauges_are_dropped_their_counts_kept(tmp_path: Path) -> None:
    import os
    import subprocess

    from meshmetrics.multiproc import drop_dead_live_gauges

    gone = subprocess.Popen(["true"])
    gone.wait()
    names = [
        f"gauge_livesum_{gone.pid}.db",
        f"gauge_liveall_{gone.pid}.db",
        f"gauge_livemax_{gone.pid}.db",
        f"counter_{gone.pid}.db",
        f"gauge_all_{gone.pid}.db",
        f"gauge_livesum_{os.getpid()}.db",
        "counter_archive-1.db",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"\0" * 8)
    assert drop_dead_live_gauges(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[3:])


@hypothesis.given(
    comm=st.binary(min_size=0, max_size=15).filter(lambda b: b"\0" not in b),
    state=st.sampled_from([b"R", b"S", b"D", b"Z", b"T", b"X", b"I"]),
    ticks=st.integers(min_value=0, max_value=2**63),
    rest=st.lists(st.integers(min_value=-(2**31), max_value=2**63), min_size=30, max_size=40),
)
def test_proc_stat_parsed_whatever_the_command_name(
    comm: bytes, state: bytes, ticks: int, rest: list[int]
) -> None:
    """The command name may hold spaces, parentheses and digits (``prctl(PR_SET_NAME)``)."""
    from meshmetrics.multiproc import parse_proc_stat

    numbers = [str(n).encode() for n in rest]
    fields = [*numbers[:18], str(ticks).encode(), *numbers[18:]]
    line = b"4242 (" + comm + b") " + state + b" " + b" ".join(fields) + b"\n"
    assert parse_proc_stat(line) == (state, ticks)


# -- the merge of the value files: MultiProcessCollector's metrics, exactly -------------

MODES = ("all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum")
FILE_KINDS = ("counter", "histogram", "summary", *(f"gauge_{m}" for m in MODES))
FILE_KINDS += ("gauge_mostrecent", "gauge_livemostrecent")
LABEL_VALUES = st.sampled_from(["", "a", 'q\\"\n', "€é:{}"])  # few: writers share series
WRITES = st.lists(
    st.tuples(
        st.sampled_from(FILE_KINDS),
        st.integers(0, 1),  # which metric of that kind
        LABEL_VALUES,
        st.sampled_from(["101", "102", "103", "archive-9"]),  # the writer (or an archive)
        st.floats(-1e6, 1e6, allow_nan=False) | st.sampled_from([0.0, -0.0, 1e300]),
        st.floats(0, 2e9, allow_nan=False),
    ),
    max_size=40,
)


def write_values(directory: Path, writes: list[tuple[str, int, str, str, float, float]]) -> None:
    """Value files as prometheus_client's multiprocess values write them (its key format,
    its file layout), one per kind and writer."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    stores: dict[str, MmapedDict] = {}
    for kind, index, label, pid, number, stamp in writes:
        path = str(directory / f"{kind}_{pid}.db")
        store = stores.get(path) or stores.setdefault(path, MmapedDict(path))  # type: ignore[no-untyped-call]
        metric = f"{kind}_m{index}"
        for name, names, values, amount in _sample_keys(kind, metric, label, number):
            key = mmap_key(metric, name, names, values, f"help of {metric}")
            old = store.read_value(key)[0]  # type: ignore[no-untyped-call]
            total = amount if kind.startswith("gauge") else old + amount
            store.write_value(key, total, stamp)  # type: ignore[no-untyped-call]
    for store in stores.values():
        store.close()  # type: ignore[no-untyped-call]


def _sample_keys(
    kind: str, metric: str, label: str, number: float
) -> list[tuple[str, list[str], list[str], float]]:
    if kind == "counter":
        return [(f"{metric}_total", ["path"], [label], abs(number))]
    if kind == "summary":
        return [
            (f"{metric}_count", ["path"], [label], 1.0),
            (f"{metric}_sum", ["path"], [label], number),
        ]
    if kind == "histogram":
        bound = next((b for b in ("0.5", "10.0", "+Inf") if number <= float(b)), "+Inf")
        return [
            *(
                (f"{metric}_bucket", ["path", "le"], [label, b], float(b == bound))
                for b in ("0.5", "10.0", "+Inf")
            ),
            (f"{metric}_sum", ["path"], [label], number),
        ]
    return [
        (
            metric,
            ["path", "pid"] if "min" in kind else ["path"],
            [label, "own"][: 1 + ("min" in kind)],
            number,
        )
    ]


def _merged(directory: Path, merger: object | None = None) -> tuple[list[object], list[object]]:
    from prometheus_client.multiprocess import MultiProcessCollector

    from meshmetrics.multiproc_merge import FileMerger

    files = [str(p) for p in directory.glob("*.db")]
    reference = list(MultiProcessCollector.merge(files, accumulate=True))  # type: ignore[no-untyped-call]
    ours = (merger if isinstance(merger, FileMerger) else FileMerger()).merge(files)
    return ours, reference


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(WRITES, WRITES)
def test_merged_metrics_are_multiprocess_collectors(
    tmp_path_factory: pytest.TempPathFactory,
    writes: list[tuple[str, int, str, str, float, float]],
    more: list[tuple[str, int, str, str, float, float]],
) -> None:
    """Issue 23 item 5: every metric kind and gauge mode (a label named ``pid`` too),
    label values with escapes and non-ASCII, several writers and an archive: the same
    metrics, samples in the same order, every sum the same float; and with the decoded
    keys kept, still the same after the files grow and one is replaced."""
    from meshmetrics.multiproc_merge import FileMerger

    directory = tmp_path_factory.mktemp("merge")
    write_values(directory, writes)
    merger = FileMerger()
    ours, reference = _merged(directory, merger)
    assert ours == reference
    keys = merger.cached_keys
    write_values(directory, more)  # the files grow (new keys) and values change
    replaced = sorted(directory.glob("*.db"))[:1]
    for path in replaced:  # a file replaced by another (a fold rewrites an archive so)
        other = directory / "other"
        other.mkdir()
        write_values(other, list(reversed(more)) + writes)
        for new in other.glob("*.db"):
            new.replace(path) if new.name == path.name else new.unlink()
        other.rmdir()
    ours, reference = _merged(directory, merger)
    assert ours == reference
    for path in directory.glob("*.db"):
        path.unlink()
    assert _merged(directory, merger) == ([], [])
    assert merger.cached_keys == 0 <= keys  # only the last merge's keys are kept


def test_the_multiprocess_scrape_serves_prometheus_clients_bytes(tmp_path: Path) -> None:
    """What the endpoint writes from the merged files (this process as the live writer, so
    its live gauges stay) is what prometheus_client's collector and renderer write."""
    import os

    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.openmetrics.exposition import generate_latest as om_latest

    from meshmetrics import render
    from meshmetrics.exposition import ServedRegistry
    from meshmetrics.multiproc import LockedMultiProcessCollector

    pid = str(os.getpid())
    writes = [
        (kind, index, label, pid, 1.5 * index - 2, 1e9 + index)
        for kind in FILE_KINDS
        for index in (0, 1)
        for label in ("a", 'q\\"\n€')
    ]
    write_values(tmp_path, writes)
    reference = CollectorRegistry()
    MultiProcessCollector(reference, path=str(tmp_path))  # type: ignore[no-untyped-call]
    served = ServedRegistry(LockedMultiProcessCollector(str(tmp_path)))
    text = render.text(served.families())
    assert text == generate_latest(reference)
    assert render.openmetrics(served.families()) == om_latest(reference)
    assert text.count(b"gauge_livesum_m1{") == 2
