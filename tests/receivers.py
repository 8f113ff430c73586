"""The span receivers the tests assert on (real protocol peers, not mocks)."""

from meshmetrics.collector import JaegerAgent, OTLPCollector, Span

__all__ = ["JaegerAgent", "OTLPCollector", "Span"]
