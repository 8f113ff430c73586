"""meshmetrics: one-line observability for Flask services in Kubernetes + Istio.

>>> from flask import Flask
>>> from meshmetrics import instrument
>>> app = Flask("orders")
>>> instrumentation = instrument(app, namespace="shop")
>>> instrumentation.config.service
'orders'
"""

from .client import TracingSession, forward_headers
from .config import MeshConfig
from .instrumentation import Instrumentation, instrument
from .metrics import OTHER_METHOD, UNMATCHED

__all__ = [
    "OTHER_METHOD",
    "UNMATCHED",
    "Instrumentation",
    "MeshConfig",
    "TracingSession",
    "forward_headers",
    "instrument",
]
__version__ = "0.1.0"
