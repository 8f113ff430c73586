"""meshmetrics: one-line observability for Flask services in Kubernetes + Istio.

>>> from flask import Flask
>>> from meshmetrics import instrument
>>> app = Flask("orders")
>>> instrumentation = instrument(app, namespace="shop")
>>> instrumentation.config.service
'orders'

Importing this package loads the request path only (configuration, metrics,
tracing); the manifests, the command line, the operator tools and the test support
(:mod:`meshmetrics.testing`) load when used.
"""

from .config import ConfigError, HostPort, HttpEndpoint, MeshConfig, MissingExtraError
from .instrumentation import Instrumentation, MeshMetrics, instrument
from .metrics import CLIENT_CLOSED, OTHER_METHOD, UNMATCHED
from .tracing.client import TracingSession, forward_headers
from .tracing.sampling import (
    ConstSampler,
    ProbabilisticSampler,
    RateLimitingSampler,
    Sampler,
)

__all__ = [
    "CLIENT_CLOSED",
    "OTHER_METHOD",
    "UNMATCHED",
    "ConfigError",
    "ConstSampler",
    "HostPort",
    "HttpEndpoint",
    "Instrumentation",
    "MeshConfig",
    "MeshMetrics",
    "MissingExtraError",
    "ProbabilisticSampler",
    "RateLimitingSampler",
    "Sampler",
    "TracingSession",
    "forward_headers",
    "instrument",
]
__version__ = "0.2.0"
