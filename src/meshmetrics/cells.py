"""Write-side values of the request metric families: one lock per update, not one per value.

prometheus_client keeps every value of a child (a counter's value, a histogram's sum and
each bucket) in its own object, each taking a lock on every update (in multiprocess mode
one lock shared by all, plus a check for a fork and a key lookup on every write).  A
request updates five of them.  The children meshmetrics creates for its request families
get the values below instead (:func:`adopt_counter`, :func:`adopt_histogram`): the same
interface (``inc``, ``set``, ``get``, exemplars), so the children's own methods, the
registry's ``collect()`` and every reader keep working and stay the exported source of
truth, but :class:`Series` updates a histogram, its counter and the in-progress gauge
under one acquisition of one lock, with the bucket found by bisection.

In multiprocess mode a :class:`FileValue` writes to the very slot prometheus_client's own
value object was given in its per-process file (the same ``MmapedDict``, found through
:mod:`._compat`): the file format and its readers are untouched.  After a fork the child
re-resolves its slots through prometheus_client, which opens the child's own files as it
does for its own values.
"""

from __future__ import annotations

import os
import threading
import weakref
from bisect import bisect_left
from typing import Any

from ._compat import (
    histogram_values,
    mmap_slot,
    pack_mmap_value,
    replace_histogram_values,
    replace_value,
    value_of_child,
)

#: Every update of a cell: one process-wide lock (a fresh one in a forked child, which
#: may have been forked while another thread held it).
lock = threading.Lock()
#: The file values of this process, marked stale in a forked child.
_file_values: weakref.WeakSet[FileValue] = weakref.WeakSet()


class LocalValue:
    """A value kept in process memory (prometheus_client's ``MutexValue`` interface)."""

    __slots__ = ("exemplar", "value")
    _multiprocess = False

    def __init__(self, value: float = 0.0, exemplar: Any = None) -> None:
        self.value = value
        self.exemplar = exemplar

    def inc(self, amount: float) -> None:
        with lock:
            self.value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        with lock:
            self.value = value

    def set_exemplar(self, exemplar: Any) -> None:
        with lock:
            self.exemplar = exemplar

    def get(self) -> float:
        return self.value

    def get_exemplar(self) -> Any:
        return self.exemplar

    def add(self, amount: float) -> None:
        """Add ``amount``; the caller holds the lock."""
        self.value += amount


class FileValue:
    """A value in this process' prometheus_client value file (``MmapedValue``'s interface
    and slot): every change written as prometheus_client writes it (value, timestamp 0)."""

    __slots__ = ("__weakref__", "end", "m", "pos", "source", "value")
    _multiprocess = True

    def __init__(self, source: Any) -> None:
        self.source = source  # prometheus_client's value: how the slot is found again
        self.m: Any = None
        self.pos = self.end = 0
        self.value = 0.0
        self.refresh()
        _file_values.add(self)

    def refresh(self) -> None:
        """Find the slot (again, in a forked child: the child's file, as prometheus_client
        reads it back)."""
        self.m, self.pos, self.value = mmap_slot(self.source)
        self.end = self.pos + 16

    def add(self, amount: float) -> None:
        """Add ``amount`` and write it; the caller holds the lock."""
        if self.m is None:
            self.refresh()
        value = self.value = self.value + amount
        self.m[self.pos : self.end] = pack_mmap_value(value, 0.0)

    def inc(self, amount: float) -> None:
        with lock:
            if self.m is None:
                self.refresh()
            value = self.value = self.value + amount
            self.m[self.pos : self.end] = pack_mmap_value(value, 0.0)

    def set(self, value: float, timestamp: float | None = None) -> None:
        with lock:
            if self.m is None:
                self.refresh()
            self.value = value
            self.m[self.pos : self.end] = pack_mmap_value(value, timestamp or 0.0)

    def set_exemplar(self, exemplar: Any) -> None:
        """Multiprocess mode keeps no exemplars (as prometheus_client)."""

    def get(self) -> float:
        with lock:
            if self.m is None:
                self.refresh()
            return self.value

    def get_exemplar(self) -> Any:
        return None


Value = LocalValue | FileValue


def _adopted(value: Any) -> Value:
    """The cell standing for prometheus_client's ``value`` (itself when already one)."""
    if isinstance(value, LocalValue | FileValue):
        return value
    if getattr(value, "_multiprocess", False):
        return FileValue(value)
    return LocalValue(value.get(), value.get_exemplar())


def adopt_value(child: Any) -> Value:
    """A counter's or gauge's child, given a cell for its value; returns the cell."""
    with lock:
        cell = _adopted(value_of_child(child))
        replace_value(child, cell)
    return cell


class Series:
    """One ``(method, path, status)`` of the latency histogram and the request counter."""

    __slots__ = ("bounds", "buckets", "count", "counter", "files", "histogram", "local", "total")

    def __init__(self, histogram: Any, counter: Any) -> None:
        self.histogram, self.counter = histogram, counter
        with lock:
            total, buckets, bounds = histogram_values(histogram)
            self.total = _adopted(total)
            self.buckets = tuple(_adopted(bucket) for bucket in buckets)
            replace_histogram_values(histogram, self.total, list(self.buckets))
            self.count = _adopted(value_of_child(counter))
            replace_value(counter, self.count)
        #: the buckets' upper bounds (the last is +Inf): bucket ``i`` counts the
        #: observations ``x`` with ``bounds[i-1] < x <= bounds[i]``, which is where
        #: ``bisect_left`` places ``x`` (a latency: never NaN)
        self.bounds = tuple(bounds)
        values = (self.total, *self.buckets, self.count)
        #: every value in process memory
        self.local = all(type(v) is LocalValue for v in values)
        #: every value in a file: the sum, the buckets, the count
        self.files: tuple[FileValue, tuple[FileValue, ...], FileValue] | None = None
        if all(type(v) is FileValue for v in values):
            self.files = _files(self.total), tuple(map(_files, self.buckets)), _files(self.count)

    def observe(self, seconds: float, gauge: Value | None) -> None:
        """One request that took ``seconds``: its histogram bucket and sum, its count and,
        when given, the end of its in-progress gauge, under one lock."""
        i = bisect_left(self.bounds, seconds)
        if self.local:
            total, bucket, count = self.total, self.buckets[i], self.count
            with lock:
                if gauge is not None:
                    if type(gauge) is LocalValue:
                        gauge.value -= 1.0
                    else:
                        gauge.add(-1.0)
                total.value += seconds
                bucket.value += 1.0
                count.value += 1.0
        elif self.files is not None:  # written as FileValue.add does, without its calls
            total, buckets, count = self.files
            bucket = buckets[i]
            with lock:
                if gauge is not None:
                    gauge.add(-1.0)
                if total.m is None or bucket.m is None or count.m is None:
                    self._refresh()  # in a forked child
                value = total.value = total.value + seconds
                total.m[total.pos : total.end] = pack_mmap_value(value, 0.0)
                value = bucket.value = bucket.value + 1.0
                bucket.m[bucket.pos : bucket.end] = pack_mmap_value(value, 0.0)
                value = count.value = count.value + 1.0
                count.m[count.pos : count.end] = pack_mmap_value(value, 0.0)
        else:  # made while the value class changed: some values here, some in files
            with lock:
                if gauge is not None:
                    gauge.add(-1.0)
                self.total.add(seconds)
                self.buckets[i].add(1.0)
                self.count.add(1.0)

    def _refresh(self) -> None:
        for value in (self.total, *self.buckets, self.count):
            if type(value) is FileValue and value.m is None:
                value.refresh()


def _files(value: Value) -> FileValue:
    assert type(value) is FileValue
    return value


def _forked() -> None:
    """In a forked child: a fresh lock, every file value to be found again."""
    global lock
    lock = threading.Lock()
    for value in list(_file_values):
        value.m = None


os.register_at_fork(after_in_child=_forked)
