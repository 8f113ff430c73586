"""Samplers: their home is :mod:`meshmetrics.config.sampling` (the options hold one); this
module keeps the names importable from where they were."""

from __future__ import annotations

from ..config.sampling import (
    SAMPLER_RULE,
    ConstSampler,
    ProbabilisticSampler,
    RateLimitingSampler,
    Sampler,
    parse_sampler,
)

__all__ = [
    "SAMPLER_RULE",
    "ConstSampler",
    "ProbabilisticSampler",
    "RateLimitingSampler",
    "Sampler",
    "parse_sampler",
]
