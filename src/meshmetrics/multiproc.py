"""The multiprocess directory: where it is, which of its writers still run, and their
files over a long life (dead workers' files folded into one).

prometheus_client keeps every worker's value files until the directory is emptied,
so that a dead worker's counts stay in the sums.  With ``--max-requests`` gunicorn
recycles workers all day: the files pile up and each scrape reads them all (scrape
time grows with their number).  When a worker exits, the master folds its files
into one archive file per metric kind, with the semantics the collector gives them
(counters, histograms, summaries and ``sum`` gauges add; ``max``/``min`` keep the
extreme; ``mostrecent`` the newest), and removes them.  ``all`` gauges keep their
per-pid files (their series carry the pid).

Scrapes hold a shared lock on the directory while they read it, the fold an
exclusive one, so a scrape sees the worker's values exactly once: in its own files
or in the archive.  Archives are named after the master (``counter_archive-<pid>.db``)
so a second master sharing the directory leaves them alone.

Live gauges (``livesum``, ``liveall``, ...: in-progress requests) of a process that
is gone are dropped by every scrape, whatever the server: gunicorn's ``child_exit``
tells prometheus_client when a worker exits, but uWSGI, an OOM kill or a harakiri
tell nobody.  A process is gone when no process has its pid, when it is a zombie, or
when the process holding its pid started after its files were last written (the pid
was reused).  All
processes writing to one directory must share a pid namespace (one container, or a
pod with ``shareProcessNamespace``): a pid from another namespace looks gone.

This module imports no Flask, requests or urllib3: the gunicorn config module loads
it into the master, before gevent or eventlet patch the standard library in the
workers.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.process_collector import ProcessCollector

from ._compat import AllocatedMmapedDict, use_mmap_values
from .multiproc_merge import FileMerger

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LOCK_NAME = ".meshmetrics.lock"
_WORKER_FILE = re.compile(
    r"\A(counter|histogram|summary|gauge_(?:sum|max|min|mostrecent))_(\d+)\.db\Z"
)
_ARCHIVE_FILE = re.compile(r"_archive-(\d+)\.db\Z")
_LIVE_GAUGE_FILE = re.compile(r"\Agauge_live[a-z]+_(\d+)\.db\Z")


def multiprocess_dir() -> str | None:
    """The multiprocess directory, or ``None`` when metrics live in this process only.

    When the variable was set after prometheus_client was imported (a common trap),
    the value store is switched here, before meshmetrics creates its metrics.
    """
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return None
    if not os.path.isdir(path):
        raise MultiprocessDirError(
            f"meshmetrics: {MULTIPROC_ENV}={path!r} is not a directory; create it (empty) "
            "before the workers start, or use `gunicorn -c python:meshmetrics.gunicorn`"
        )
    check_multiprocess_dir(path)
    use_mmap_values()
    return path


#: Room a worker's value files need at least (prometheus_client maps 64 KiB per file,
#: a few files per worker); below it the directory is refused at start.
MIN_FREE_BYTES = 1024 * 1024


def check_multiprocess_dir(path: str) -> None:
    """Refuse, with one line naming it, a directory the value files cannot be written to.

    Read-only or full, prometheus_client would fail later: a traceback per worker, or
    SIGBUS (a mapped page that cannot be allocated) in a boot loop without a message.
    """
    probe = os.path.join(path, f".meshmetrics-probe-{os.getpid()}")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, MIN_FREE_BYTES)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise MultiprocessDirError(
            f"meshmetrics: {MULTIPROC_ENV}={path!r} cannot hold the metrics files "
            f"({exc.strerror or exc}): it needs to be writable with at least "
            f"{MIN_FREE_BYTES // 1024} KiB free per worker (an emptyDir's sizeLimit; "
            "medium: Memory counts against the pod's memory)"
        ) from None


class MultiprocessDirError(RuntimeError):
    """The multiprocess directory is missing, read-only or full."""


_PID_FILE = re.compile(r"_(\d+)\.db\Z")


def files_by_pid(directory: str | Path) -> dict[int | None, list[Path]]:
    """The multiprocess directory's value files, by the pid that wrote them (``None``:
    a file whose name carries no pid)."""
    found: dict[int | None, list[Path]] = {}
    for path in Path(directory).glob("*.db"):
        match = _PID_FILE.search(path.name)
        found.setdefault(int(match.group(1)) if match else None, []).append(path)
    return found


def live_pids(directory: str | Path) -> list[int]:
    """The processes with files in the multiprocess directory that are still running."""
    return sorted(
        pid
        for pid, paths in files_by_pid(directory).items()
        if pid is not None and writer_alive(pid, _last_written(paths))
    )


class WorkerProcessCollector:
    """``process_*`` metrics of every live worker writing to the multiprocess directory,
    each with a ``pid`` label: a dead worker's series disappear with it.

    The server's master (the parent of the process serving the scrape) is not listed,
    whether or not it loaded the app (gunicorn ``--preload``, uWSGI without
    ``--lazy-apps``): one series per worker, however the server was started."""

    def __init__(self, directory: str) -> None:
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        master = os.getppid()
        for pid in live_pids(self._directory):
            if pid == master:
                continue
            collector = ProcessCollector(pid=_pid_of(pid), registry=None)
            for metric in collector.collect():
                family = families.get(metric.name)
                if family is None:
                    family = families[metric.name] = Metric(
                        metric.name, f"{metric.documentation} (per worker)", metric.type
                    )
                for sample in metric.samples:
                    labels = {**sample.labels, "pid": str(pid)}
                    family.add_sample(sample.name, labels, sample.value)
        yield from families.values()


def _pid_of(pid: int) -> Callable[[], int]:
    return lambda: pid


def is_alive(pid: int) -> bool:
    """A process with this pid exists (in this pid namespace)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Slack for comparing a process' start (clock ticks after a boot time that /proc gives
#: in whole seconds, from the wall clock as it is now) with a file's modification time (the
#: wall clock then): a clock stepped forward by less than this never makes a live writer
#: look reused.  The kernel hands out pids in turn up to ``pid_max``, so a pid comes back
#: within a minute only after some 32,000 forks or more in that minute.
_CLOCK_SLACK = 60.0


def writer_alive(pid: int, written_at: float | None) -> bool:
    """The process that wrote files named after ``pid`` (last at ``written_at``) still
    runs: a process has this pid, it is not a zombie (killed, not yet reaped by its
    parent), and it did not start after the files were written (then the pid was
    reused by another process)."""
    if not is_alive(pid):
        return False
    status = _proc_status(pid)
    if status is None:
        return True  # no /proc to tell (not Linux): trust the pid
    state, started = status
    if state in (b"Z", b"X"):
        return False
    return written_at is None or started <= written_at + _CLOCK_SLACK


def _proc_status(pid: int) -> tuple[bytes, float] | None:
    """``pid``'s state letter and start time (seconds since the epoch) from Linux' /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state, ticks = parse_proc_stat(f.read())
        with open("/proc/stat", "rb") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith(b"btime "))
    except (OSError, IndexError, StopIteration, ValueError):
        return None
    return state, boot + ticks / os.sysconf("SC_CLK_TCK")


def parse_proc_stat(line: bytes) -> tuple[bytes, int]:
    """The state letter and the start time (clock ticks after boot) of a
    ``/proc/PID/stat`` line.  The command name (field 2, in parentheses) may hold spaces
    and parentheses itself: the fields are counted from its last ``)``."""
    fields = line.rsplit(b")", 1)[1].split()
    return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)


def _last_written(paths: list[Path]) -> float | None:
    times = []
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            times.append(path.stat().st_mtime)
    return max(times, default=None)


def drop_dead_live_gauges(directory: str | Path) -> int:
    """Remove the live-gauge files (``livesum``, ``liveall``, ...: in-progress requests)
    of processes that are gone, as gunicorn's ``child_exit`` does for its workers; files
    removed.  Other files of a dead process stay: its counts remain in the sums."""
    removed = 0
    for pid, paths in files_by_pid(directory).items():
        live = [p for p in paths if _LIVE_GAUGE_FILE.match(p.name)]
        if pid is None or not live or writer_alive(pid, _last_written(paths)):
            continue
        for path in live:
            with contextlib.suppress(FileNotFoundError):  # another scrape removed it
                path.unlink()
                removed += 1
    return removed


@contextlib.contextmanager
def directory_lock(directory: str | Path, *, exclusive: bool) -> Iterator[None]:
    """``flock`` on the directory's lock file: shared for readers, exclusive for the fold."""
    fd = os.open(os.path.join(directory, LOCK_NAME), os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def archive_owner(path: Path) -> int | None:
    """The master pid an archive file belongs to (``None``: not an archive)."""
    match = _ARCHIVE_FILE.search(path.name)
    return int(match.group(1)) if match else None


def _combine(
    kind: str, old: tuple[float, float] | None, new: tuple[float, float]
) -> tuple[float, float]:
    if old is None:
        return new
    (old_value, old_ts), (value, ts) = old, new
    if kind == "gauge_max":
        return (max(old_value, value), max(old_ts, ts))
    if kind == "gauge_min":
        return (min(old_value, value), max(old_ts, ts))
    if kind == "gauge_mostrecent":
        return new if ts >= old_ts else old
    return (old_value + value, max(old_ts, ts))


def _values(path: Path) -> dict[str, tuple[float, float]]:
    if not path.exists():
        return {}
    return {
        key: (value, timestamp)
        for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
    }


def fold_worker(directory: str | Path, pid: int, owner: int) -> int:
    """Fold the value files of dead worker ``pid`` into ``owner``'s archives; files folded."""
    directory = Path(directory)
    folded = 0
    with directory_lock(directory, exclusive=True):
        for path in sorted(directory.glob(f"*_{pid}.db")):
            match = _WORKER_FILE.match(path.name)
            if match is None or int(match.group(2)) != pid:
                continue
            kind = match.group(1)
            archive = directory / f"{kind}_archive-{owner}.db"
            merged = _values(archive)
            for key, value in _values(path).items():
                merged[key] = _combine(kind, merged.get(key), value)
            _write(archive, merged)
            path.unlink()
            folded += 1
    return folded


def _write(archive: Path, values: dict[str, tuple[float, float]]) -> None:
    """Write ``values`` to a new file and rename it over ``archive`` (never half-written)."""
    temporary = archive.with_name(archive.name + ".tmp")
    temporary.unlink(missing_ok=True)
    store: Any = AllocatedMmapedDict(str(temporary))
    try:
        for key, (value, timestamp) in values.items():
            store.write_value(key, value, timestamp)
    finally:
        store.close()
    os.replace(temporary, archive)


class LockedMultiProcessCollector:
    """prometheus_client's ``MultiProcessCollector``, reading under the shared lock (and
    merging the files with :class:`~meshmetrics.multiproc_merge.FileMerger`: the same
    metrics, its decoded keys kept from one scrape to the next)."""

    def __init__(self, directory: str) -> None:
        if not os.path.isdir(directory):
            raise ValueError(f"{directory!r} is not a directory")
        self._directory = directory
        self._merger = FileMerger()

    def collect(self) -> Iterator[Metric]:
        with directory_lock(self._directory, exclusive=False):
            drop_dead_live_gauges(self._directory)
            files = [
                path for path in glob.glob(os.path.join(self._directory, "*.db")) if _sized(path)
            ]
            metrics = self._merger.merge(files)
        yield from metrics


#: A value file starts with its 4-byte "bytes used" and 4 bytes of padding.
_HEADER_BYTES = 8


def _sized(path: str) -> bool:
    """False for a file another process is still creating (prometheus_client creates its
    value files empty, then sizes them: reading one in between fails), or just removed."""
    try:
        return os.stat(path).st_size >= _HEADER_BYTES
    except FileNotFoundError:  # a live gauge's file of a process marked dead meanwhile
        return False
