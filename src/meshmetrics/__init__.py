"""meshmetrics: one-line observability for Flask services in Kubernetes + Istio.

>>> from flask import Flask
>>> from meshmetrics import instrument
>>> app = Flask("orders")
>>> instrumentation = instrument(app, namespace="shop")
>>> instrumentation.config.service
'orders'

Importing this package loads nothing else: each name below loads its module when
first used (``from meshmetrics import instrument`` loads the request path:
configuration, metrics, tracing).  So ``gunicorn -c python:meshmetrics.gunicorn``
loads no Flask into the master (gevent and eventlet workers patch after it), and
the manifests, the command line, the operator tools and the test support
(:mod:`meshmetrics.testing`) load only when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import SLO, ConfigError, HostPort, HttpEndpoint, MeshConfig, MissingExtraError
    from .config.export import ExportResult, SpanExporter
    from .errors import InstrumentationConflictError
    from .instrumentation import Instrumentation, MeshMetrics, instrument
    from .metrics import CLIENT_CLOSED, OTHER_METHOD, UNMATCHED
    from .multiproc import MultiprocessDirError
    from .tracing.client import TracingSession, forward_headers
    from .tracing.sampling import (
        ConstSampler,
        ProbabilisticSampler,
        RateLimitingSampler,
        Sampler,
    )

#: Where each public name lives.
_MODULES = {
    "ConfigError": ".config",
    "HostPort": ".config",
    "HttpEndpoint": ".config",
    "MeshConfig": ".config",
    "MissingExtraError": ".config",
    "SLO": ".config",
    "ExportResult": ".config.export",
    "SpanExporter": ".config.export",
    "InstrumentationConflictError": ".errors",
    "Instrumentation": ".instrumentation",
    "MeshMetrics": ".instrumentation",
    "instrument": ".instrumentation",
    "CLIENT_CLOSED": ".metrics",
    "OTHER_METHOD": ".metrics",
    "UNMATCHED": ".metrics",
    "MultiprocessDirError": ".multiproc",
    "TracingSession": ".tracing.client",
    "forward_headers": ".tracing.client",
    "ConstSampler": ".tracing.sampling",
    "ProbabilisticSampler": ".tracing.sampling",
    "RateLimitingSampler": ".tracing.sampling",
    "Sampler": ".tracing.sampling",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    found = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = found
    return found


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULES])


__all__ = [
    "CLIENT_CLOSED",
    "OTHER_METHOD",
    "SLO",
    "UNMATCHED",
    "ConfigError",
    "ConstSampler",
    "ExportResult",
    "HostPort",
    "HttpEndpoint",
    "Instrumentation",
    "InstrumentationConflictError",
    "MeshConfig",
    "MeshMetrics",
    "MissingExtraError",
    "MultiprocessDirError",
    "ProbabilisticSampler",
    "RateLimitingSampler",
    "Sampler",
    "SpanExporter",
    "TracingSession",
    "forward_headers",
    "instrument",
]
__version__ = "0.2.0"
