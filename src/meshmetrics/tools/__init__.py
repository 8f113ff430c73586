"""Operator tools behind ``meshmetrics check`` and ``meshmetrics top``: they read a
service's ``/metrics`` (and manifest files) from outside; the request path never
imports them."""
