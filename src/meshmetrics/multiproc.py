"""The multiprocess directory over a long life: dead workers' files folded into one.

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
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector

from ._compat import AllocatedMmapedDict

LOCK_NAME = ".meshmetrics.lock"
_WORKER_FILE = re.compile(
    r"\A(counter|histogram|summary|gauge_(?:sum|max|min|mostrecent))_(\d+)\.db\Z"
)
_ARCHIVE_FILE = re.compile(r"_archive-(\d+)\.db\Z")


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
    """prometheus_client's ``MultiProcessCollector``, reading under the shared lock."""

    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._inner = MultiProcessCollector(None, path=directory)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterator[Metric]:
        with directory_lock(self._directory, exclusive=False):
            files = [
                path for path in glob.glob(os.path.join(self._directory, "*.db")) if _sized(path)
            ]
            metrics = list(self._inner.merge(files, accumulate=True))  # type: ignore[no-untyped-call]
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
