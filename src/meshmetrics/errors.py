"""The error instrumenting raises when an app already has what meshmetrics would add.

The other errors users catch live with what raises them and are exported by
:mod:`meshmetrics` too: :class:`~meshmetrics.config.ConfigError` (a bad option value),
:class:`~meshmetrics.config.MissingExtraError` (an option needs an extra) and
:class:`~meshmetrics.multiproc.MultiprocessDirError` (``PROMETHEUS_MULTIPROC_DIR`` is
unusable).  A leaf: it imports nothing of meshmetrics.
"""

from __future__ import annotations


class InstrumentationConflictError(RuntimeError):
    """Instrumenting would clash with what the app already has: the target is already
    instrumented with different options, the app already has an instrumentation (of the
    app or of one of its Blueprints), or the app already routes the metrics path.

    A :class:`RuntimeError` (what meshmetrics raised for these before it had a class of
    its own), so ``except RuntimeError`` keeps catching it.  The message names the way
    out (``uninstrument()`` first, or another ``metrics_path``).
    """
