"""Every detail of a dependency that is not its public API, in one place.

Each function names the detail it relies on; ``tests/test_compat.py`` has a test per
detail that fails loudly when the dependency changes shape, so an upgrade breaks
here, with a clear message, and not somewhere on the request path.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Gauge, mmap_dict, values
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.openmetrics import exposition as om_exposition


def _current_request_function() -> Callable[[], Any]:
    """Flask's request context, read the fastest way this Flask allows."""
    try:  # Flask >= 2.2 keeps the request context in a context variable
        from flask.globals import _cv_request
    except ImportError:  # pragma: no cover - a Flask that moved it
        from flask import request as proxy

        return lambda: proxy._get_current_object()  # type: ignore[attr-defined]

    def current_request() -> Any:
        """The real request object (one context-variable read, not a proxy per attribute)."""
        return _cv_request.get().request

    return current_request


if TYPE_CHECKING:

    def current_request() -> Any:
        """The real request object behind Flask's proxy."""


def __getattr__(name: str) -> Any:
    """``current_request`` imports Flask when first asked for, not with this module: the
    gunicorn config module needs this module's value-file store in the master, which
    must not load Flask (see :mod:`meshmetrics.gunicorn`)."""
    if name == "current_request":
        function = globals()["current_request"] = _current_request_function()
        return function
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Request attributes prometheus-flask-exporter's ``@do_not_track`` and
#: ``@exclude_all_metrics`` set on ``flask.request``.
PFE_REQUEST_FLAGS = ("prom_do_not_track", "prom_exclude_all")


def excluded_by_pfe(req: Any) -> bool:
    """True when a prometheus-flask-exporter decorator excluded this request."""
    attrs = req.__dict__
    return PFE_REQUEST_FLAGS[0] in attrs or PFE_REQUEST_FLAGS[1] in attrs


def rendered_by_flask(response: Any) -> bool:
    """A response Flask made from a WSGI app's output: an ``HTTPException`` (``abort(404)``,
    a routing 404/405, a redirect) goes through werkzeug's ``Response.force_type`` and
    ``run_wsgi_app``, which leave the rendered body in a ``ClosingIterator`` with its
    ``Content-Length``: in memory, complete when the app returns.  (werkzeug is imported
    at the first call, not with this module: gunicorn's config module imports this one
    into the master before green-thread workers patch the standard library.)"""
    global _closing_iterator
    if _closing_iterator is None:
        from werkzeug.wsgi import ClosingIterator

        _closing_iterator = ClosingIterator
    return type(response.response) is _closing_iterator and "Content-Length" in response.headers


_closing_iterator: type | None = None


def family_name(metric: Any) -> str:
    """The family name of a prometheus_client metric object (``_name``)."""
    name: str = metric._name
    return name


def family_type(metric: Any) -> str | None:
    """The type of a prometheus_client metric object (``_type``), or ``None``."""
    kind = getattr(metric, "_type", None)
    return kind if isinstance(kind, str) else None


def label_names(metric: Any) -> tuple[str, ...]:
    """The label names of a prometheus_client metric object (``_labelnames``)."""
    return tuple(getattr(metric, "_labelnames", ()))


def documentation(metric: Any) -> str:
    """The help text of a prometheus_client metric object (``_documentation``)."""
    return str(getattr(metric, "_documentation", ""))


def collectors(registry: CollectorRegistry) -> Iterable[Any]:
    """The collectors registered in ``registry`` (``_collector_to_names``)."""
    with registry._lock:
        return list(registry._collector_to_names)


def uses_set_function(metric: Any) -> bool:
    """True for a Gauge (or one of its children) given ``set_function()``, which replaces
    the instance's ``_child_samples`` (children live in ``_metrics``)."""
    if not isinstance(metric, Gauge):
        return False
    children = list(getattr(metric, "_metrics", {}).values())
    return any("_child_samples" in vars(m) for m in [metric, *children])


def use_mmap_values() -> None:
    """Switch prometheus_client to its multiprocess value store.

    prometheus_client picks ``values.ValueClass`` when first imported; when
    ``PROMETHEUS_MULTIPROC_DIR`` was set after that import, metrics created later
    would still live in process memory only.
    """
    if getattr(values, "MmapedDict", None) is not AllocatedMmapedDict:
        values.MmapedDict = AllocatedMmapedDict  # type: ignore[attr-defined]
    if values.ValueClass.__name__ != "MmapedValue":
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


class AllocatedMmapedDict(MmapedDict):
    """prometheus_client's value file, with its blocks allocated before they are mapped.

    prometheus_client grows a file with ``truncate()`` (a sparse file) and writes through
    ``mmap``: on a full filesystem (an ``emptyDir`` with ``sizeLimit``) the first write to
    a new page kills the process with SIGBUS, without a word.  Allocating the blocks
    first (``posix_fallocate``) turns that into ``OSError(ENOSPC)``, which can be named.
    """

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        if not read_mode:
            if not os.path.exists(filename):
                _create_sized(filename, mmap_dict._INITIAL_MMAP_SIZE)
            with open(filename, "a+b") as f:
                size = os.fstat(f.fileno()).st_size
                _allocate(f.fileno(), max(size, mmap_dict._INITIAL_MMAP_SIZE), filename)
        super().__init__(filename, read_mode)  # type: ignore[no-untyped-call]

    def _init_value(self, key: str) -> None:
        needed = self._used + len(key.encode("utf-8")) + 32
        capacity = self._capacity
        while needed > capacity:
            capacity *= 2
        if capacity != self._capacity:
            _allocate(self._f.fileno(), capacity, self._fname)
        super()._init_value(key)  # type: ignore[no-untyped-call]


def _create_sized(filename: str, size: int) -> None:
    """Create ``filename`` already ``size`` bytes long (zeros: a file with no values).

    prometheus_client creates a value file empty and sizes it afterwards: a scrape
    listing the directory in between reads 0 bytes and fails (``struct.error``).  The
    file is sized under a name no reader lists (not ``*.db``), then linked into place
    (another thread of this process may have linked it first: that one is kept)."""
    temporary = f"{filename}.{os.getpid()}-{threading.get_ident()}.new"
    fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    try:
        _allocate(fd, size, filename)
        with contextlib.suppress(FileExistsError):
            os.link(temporary, filename)
    finally:
        os.close(fd)
        os.unlink(temporary)


def _allocate(fd: int, size: int, filename: str) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"meshmetrics: cannot grow {filename} to {size} bytes: {exc.strerror} "
            f"(is {os.path.dirname(filename)} full or read-only?)",
        ) from None


# -- prometheus_client's metric objects, read by the renderer (meshmetrics.render_objects) --
# A scrape reads each child's values directly instead of through ``collect()`` (which
# builds a Sample and two dicts per sample line); the exposition tests compare the bytes
# with prometheus_client's own renderer.

_DIRECT_KINDS: dict[type, str] = {
    prometheus_metrics.Counter: "counter",
    prometheus_metrics.Gauge: "gauge",
    prometheus_metrics.Histogram: "histogram",
    prometheus_metrics.Summary: "summary",
}


def direct_kind(collector: Any) -> str | None:
    """The kind of a metric object whose children the renderer can read directly: one of
    prometheus_client's own Counter, Gauge, Histogram, Summary (not a subclass, not a
    gauge given ``set_function()``); ``None`` for anything else (rendered from
    ``collect()``)."""
    kind = _DIRECT_KINDS.get(type(collector))
    if kind == "gauge" and uses_set_function(collector):
        return None
    return kind


def has_target_info(registry: CollectorRegistry) -> bool:
    """The registry serves a ``target_info`` metric first (``_target_info``)."""
    return bool(getattr(registry, "_target_info", None))


def created_samples() -> bool:
    """prometheus_client writes ``*_created`` samples (``disable_created_metrics()`` not
    called: the module global ``_use_created``)."""
    return bool(prometheus_metrics._use_created)


def children(family: Any) -> list[tuple[tuple[str, ...], Any]]:
    """A metric object's children by label values (``_metrics`` under ``_lock``); a metric
    without labels is its own only child."""
    if not family._labelnames or family._labelvalues:
        return [((), family)]
    with family._lock:
        return list(family._metrics.items())


def family_unit(family: Any) -> str:
    """The unit of a metric object (``_unit``)."""
    return str(family._unit)


def value_of(child: Any) -> float:
    """A counter's or gauge's value (``_value``)."""
    value: float = child._value.get()
    return value


def counter_exemplar(child: Any) -> Any:
    """A counter's exemplar, or ``None``."""
    return child._value.get_exemplar()


def created_of(child: Any) -> float:
    """When a counter, histogram or summary child was created (``_created``)."""
    created: float = child._created
    return created


def upper_bounds(family: Any) -> list[float]:
    """A histogram's bucket bounds (``_upper_bounds``)."""
    return list(family._upper_bounds)


def bucket_counts(child: Any) -> list[float]:
    """A histogram child's per-bucket (not cumulative) counts (``_buckets``)."""
    return [bucket.get() for bucket in child._buckets]


def bucket_exemplars(child: Any) -> list[Any]:
    """A histogram child's exemplar per bucket (``None`` where there is none)."""
    return [bucket.get_exemplar() for bucket in child._buckets]


def sum_of(child: Any) -> float:
    """A histogram's or summary's sum (``_sum``)."""
    total: float = child._sum.get()
    return total


def count_of(child: Any) -> float:
    """A summary's count (``_count``)."""
    count: float = child._count.get()
    return count


def openmetrics_sample_name(name: str) -> str:
    """A sample name as prometheus_client's OpenMetrics writer escapes it (``_escape`` with
    the label-name character set: a colon becomes ``_``)."""
    escaped: str = om_exposition._escape(
        name, om_exposition.UNDERSCORES, om_exposition._is_legacy_labelname_rune
    )
    return escaped


def compose_exemplar(metric: Any, sample: Any, exemplar: Any) -> str:
    """A sample's exemplar as prometheus_client's OpenMetrics writer appends it
    (``_compose_exemplar_string``, which refuses a metric that cannot carry one)."""
    composed: str = om_exposition._compose_exemplar_string(metric, sample, exemplar)  # type: ignore[no-untyped-call]
    return composed


def has_family_name(collector: Any) -> bool:
    """A collector is a prometheus_client metric object with a family name (``_name``)."""
    return isinstance(getattr(collector, "_name", None), str)


# -- the request families' values (meshmetrics.cells): prometheus_client's value slots ----


def value_of_child(child: Any) -> Any:
    """A counter's or gauge's value object (``_value``)."""
    return child._value


def replace_value(child: Any, value: Any) -> None:
    """Give a counter's or gauge's child another value object (``_value``)."""
    child._value = value


def histogram_values(child: Any) -> tuple[Any, list[Any], tuple[float, ...]]:
    """A histogram child's sum and per-bucket value objects and its upper bounds
    (``_sum``, ``_buckets``, ``_upper_bounds``: the last bound is +Inf)."""
    return child._sum, list(child._buckets), tuple(child._upper_bounds)


def replace_histogram_values(child: Any, total: Any, buckets: list[Any]) -> None:
    """Give a histogram child other sum and bucket value objects (``_sum``, ``_buckets``)."""
    child._sum, child._buckets = total, buckets


def mmap_slot(value: Any) -> tuple[Any, int, float]:
    """Where prometheus_client's multiprocess ``value`` lives: the map of its file
    (``_file._m``), its position there (``_file._positions[_key]``: the key was written
    when the value was made) and the value read back.  ``get()`` first: prometheus_client
    re-opens its files in a forked child there."""
    value.get()
    file = value._file
    return file._m, file._positions[value._key], value._value


#: A value and its timestamp as prometheus_client writes them into a value file
#: (``_pack_two_doubles_func``: two native doubles, assigned to the slot in one piece).
pack_mmap_value: Callable[[float, float], bytes] = mmap_dict._pack_two_doubles_func


def request_context_getter() -> Callable[[], Any]:
    """A function returning Flask's current request context (``RequestContext``, whose
    ``request`` is the real request object): the context variable's own ``get``, so
    that a request hook reads it without a Python call (Flask >= 2.2; else through the
    proxy).  Imports Flask: call it from a module that does."""
    try:
        from flask.globals import _cv_request
    except ImportError:  # pragma: no cover - a Flask that moved it
        from flask.globals import request_ctx

        return lambda: request_ctx._get_current_object()  # type: ignore[attr-defined]
    get: Callable[[], Any] = _cv_request.get
    return get
