"""The multiprocess directory's value files merged into metrics, as prometheus_client's
``MultiProcessCollector.merge(files, accumulate=True)`` merges them, for less.

prometheus_client decodes the keys at each scrape (a JSON document per series, each
decoded once a scrape), decodes every entry's key bytes to text, builds a ``Sample`` per
entry (8 per series with 8 workers) and then regroups them.  :class:`FileMerger` reads
the entries straight from the file bytes and keeps each key's decoding across scrapes,
keyed by the key's bytes themselves: a file that grows, is folded into an archive or
replaced reads its keys afresh where they are new and never finds a stale one (the bytes
are the key).  The cache holds the keys of the last scrape only (it is rebuilt at each),
so it never outgrows the directory.  Values are added in the order prometheus_client adds
them (files in the order given, entries in file order), so every sum is the same float;
``tests/test_multiproc.py`` compares the metrics with ``MultiProcessCollector``'s over
generated directories.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from collections.abc import Iterator
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

_go: Any = floatToGoString  # prometheus_client's (untyped) value formatting
_INT = struct.Struct("i").unpack_from
_TWO_DOUBLES = struct.Struct("dd").unpack_from
_MIN_MODES = ("min", "livemin")
_MAX_MODES = ("max", "livemax")
_SUM_MODES = ("sum", "livesum")
_RECENT_MODES = ("mostrecent", "livemostrecent")
_PID_FREE_MODES = _MIN_MODES + _MAX_MODES + _SUM_MODES + _RECENT_MODES

#: A decoded key: metric name, sample name, sorted label pairs, help text, the pairs
#: without ``pid`` (a gauge's, the mode dropping the writer's pid), the bucket bound and
#: the pairs without ``le`` (a histogram bucket's; ``None`` otherwise).
_Key = tuple[str, str, tuple[tuple[str, str], ...], str, tuple[tuple[str, str], ...], Any, Any]
_Groups = dict[Any, dict[tuple[str, Any], float]]


def _decode(raw: bytes) -> _Key:
    metric_name, name, labels, help_text = json.loads(raw.decode("utf-8"))
    pairs = tuple(sorted(labels.items()))
    bound = without_le = None
    for label, value in pairs:
        if label == "le":
            bound = float(value)
            without_le = tuple(pair for pair in pairs if pair[0] != "le")
            break
    without_pid = tuple(pair for pair in pairs if pair[0] != "pid")
    return metric_name, name, pairs, help_text, without_pid, bound, without_le


def _file_bytes(path: str) -> bytes:
    """The used part of a value file (``MmapedDict.read_all_values_from_file``)."""
    with open(path, "rb") as f:
        data = f.read(mmap.PAGESIZE)
        used = _INT(data, 0)[0]
        if used > len(data):
            data += f.read(used - len(data))
    return data


class _Family:
    """One metric being merged: its samples grouped by label set, in the order
    prometheus_client groups them."""

    __slots__ = ("buckets", "entries", "groups", "metric", "mode", "stamps")

    def __init__(self, metric: Metric) -> None:
        self.metric = metric
        self.mode: str | None = None
        self.groups: _Groups = {}
        self.buckets: dict[Any, dict[float, float]] = {}
        self.stamps: dict[Any, dict[str, float]] = {}
        self.entries: list[tuple[_Key, float, float | None, str | None]] = []


class FileMerger:
    """Merges value files into metrics; one per multiprocess collector (it keeps the
    decoded keys of its last merge)."""

    def __init__(self) -> None:
        self._keys: dict[bytes, _Key] = {}

    @property
    def cached_keys(self) -> int:
        """Decoded keys kept from the last merge."""
        return len(self._keys)

    def merge(self, files: list[str]) -> list[Metric]:
        """The metrics of ``files`` (``MultiProcessCollector.merge(files)``)."""
        merge = _Merge(self._keys)
        for path in files:
            merge.read(path)
        self._keys = merge.decoded
        return [_accumulated(family) for family in merge.families.values()]


class _Merge:
    """One merge: the families met so far, and where each key's value is added."""

    def __init__(self, known: dict[bytes, _Key]) -> None:
        self.known = known
        self.decoded: dict[bytes, _Key] = {}
        self.families: dict[str, _Family] = {}
        #: A key of a counter, summary or histogram file: the dict and the entry its
        #: value is added to (``None``: a gauge family's, merged once its mode is known).
        self.slots: dict[bytes, tuple[dict[Any, float] | None, Any]] = {}

    def key(self, raw: bytes) -> _Key:
        key = self.decoded.get(raw)
        if key is None:
            key = self.decoded[raw] = self.known.get(raw) or _decode(raw)
        return key

    def family(self, key: _Key, kind: str) -> _Family:
        family = self.families.get(key[0])
        if family is None:
            family = self.families[key[0]] = _Family(Metric(key[0], key[3], kind))
        return family

    def read(self, path: str) -> None:
        parts = os.path.basename(path).split("_")
        kind = parts[0]
        try:
            data = _file_bytes(path)
        except FileNotFoundError:
            if kind == "gauge" and parts[1].startswith("live"):
                return  # removed by a process marked dead since the listing
            raise
        if kind == "gauge":
            pid, mode = parts[2][:-3], parts[1]
            for raw, value, stamp in _entries(data):
                key = self.key(raw)
                family = self.family(key, kind)
                family.mode = mode
                family.entries.append((key, value, stamp, pid))
            return
        slots = self.slots
        for raw, value, _ in _entries(data):
            slot = slots.get(raw)
            if slot is None:
                slot = slots[raw] = self.slot(raw, kind)
            target, entry = slot
            if target is None:
                entry[1].entries.append((entry[0], value, None, None))
            else:
                target[entry] = target.get(entry, 0.0) + value

    def slot(self, raw: bytes, kind: str) -> tuple[dict[Any, float] | None, Any]:
        key = self.key(raw)
        family = self.family(key, kind)
        kind = family.metric.type
        if kind == "gauge":
            return None, (key, family)
        if kind == "histogram" and key[5] is not None:
            return family.buckets.setdefault(key[6], {}), key[5]
        return family.groups.setdefault(key[2], {}), (key[1], key[2])


def _entries(data: bytes) -> Iterator[tuple[bytes, float, float]]:
    """(key bytes, value, timestamp) of every entry (``mmap_dict._read_all_values``).

    Entries start 8-byte aligned (a 4-byte length, the key padded so that both end on
    a multiple of 8, two doubles): lengths and doubles are read as items of typed views
    of the bytes, not unpacked one tuple at a time."""
    used = _INT(data, 0)[0]
    whole = len(data) - len(data) % 8
    ints, doubles = memoryview(data)[:whole].cast("i"), memoryview(data)[:whole].cast("d")
    pos = 8
    while pos < used:
        length = ints[pos >> 2]
        if length + pos > used:
            raise RuntimeError("Read beyond file size detected, file is corrupted.")
        start = pos + 4
        pos = start + length + 8 - (length + 4) % 8
        at = pos >> 3
        if pos + 16 > whole:  # the file ends inside the entry: as struct.unpack_from fails
            raise struct.error("unpack_from requires a buffer of at least 16 bytes")
        yield data[start : start + length], doubles[at], doubles[at + 1]
        pos += 16


def _accumulated(family: _Family) -> Metric:
    metric = family.metric
    groups = family.groups
    for key, value, stamp, pid in family.entries:
        name = key[1]
        labels = key[2] if pid is None else (*key[2], ("pid", pid))
        if metric.type == "gauge":
            _gauge(family, name, key, labels, value, stamp)
        elif metric.type == "histogram" and _has_le(labels):
            _bucket_with_pid(family, labels, value)
        else:  # a gauge file's entry of another kind's family (never written so)
            group = groups.setdefault(labels, {})
            group[(name, labels)] = group.get((name, labels), 0.0) + value
    if metric.type == "histogram":
        bucket_name, count_name = metric.name + "_bucket", metric.name + "_count"
        les: dict[float, tuple[str, str]] = {}
        for labels, bounds in family.buckets.items():
            group = groups.setdefault(labels, {})
            acc = 0.0
            for bound, value in sorted(bounds.items()):
                acc += value
                le = les.get(bound) or les.setdefault(bound, ("le", _go(bound)))
                group[(bucket_name, (*labels, le))] = acc
            group[(count_name, labels)] = acc
    metric.samples = [
        Sample(name, dict(labels), value)
        for group in groups.values()
        for (name, labels), value in group.items()
    ]
    return metric


def _has_le(labels: tuple[tuple[str, str], ...]) -> bool:
    return any(label == "le" for label, _ in labels)


def _bucket_with_pid(family: _Family, labels: tuple[tuple[str, str], ...], value: float) -> None:
    """A histogram bucket read from a gauge file (never written so, merged all the same)."""
    for label, text in labels:
        if label == "le":
            without_le = tuple(pair for pair in labels if pair[0] != "le")
            bounds = family.buckets.setdefault(without_le, {})
            bounds[float(text)] = bounds.get(float(text), 0.0) + value
            return


def _gauge(
    family: _Family,
    name: str,
    key: _Key,
    labels: tuple[tuple[str, str], ...],
    value: float,
    stamp: float | None,
) -> None:
    mode = family.mode
    if mode in _PID_FREE_MODES:  # the writer's pid (and any label named pid) dropped
        labels = key[4]
    groups = family.groups
    if mode in _MIN_MODES or mode in _MAX_MODES:
        group = groups.setdefault(labels, {})
        current = group.setdefault((name, labels), value)
        if (value < current) if mode in _MIN_MODES else (value > current):
            group[(name, labels)] = value
    elif mode in _SUM_MODES:
        group = groups.setdefault(labels, {})
        group[(name, labels)] = group.get((name, labels), 0.0) + value
    elif mode in _RECENT_MODES:
        stamps = family.stamps.setdefault(labels, {})
        current_stamp = stamps.setdefault(name, 0.0)
        when = float(stamp or 0)
        if current_stamp < when:
            groups.setdefault(labels, {})[(name, labels)] = value
            stamps[name] = when
    else:  # all, liveall
        groups.setdefault(labels, {})[(name, labels)] = value
