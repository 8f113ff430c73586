"""Samplers: objects deciding whether a new trace is recorded.

A request that arrives with a decision (Envoy's ``x-b3-sampled``, W3C flags) keeps
it; the sampler only decides for traces that start here.  Pass one as
``instrument(app, sampler=ProbabilisticSampler(0.1))`` or as the text forms
``const:1``, ``probabilistic:0.1``, ``ratelimiting:5`` (what ``JAEGER_SAMPLER_*``
and ``MESHMETRICS_SAMPLER`` hold), parsed once by :func:`parse_sampler`.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod

#: The rule a sampler written as text must follow (shown in configuration errors).
SAMPLER_RULE = (
    "a Sampler object, or type:param with type const (0 or 1), probabilistic (0..1) "
    "or ratelimiting (traces per second)"
)


class Sampler(ABC):
    """Decides, for a trace starting here, whether it is recorded and exported."""

    @abstractmethod
    def sample(self, trace_id: int) -> bool:
        """True when the trace with this id is recorded."""

    def decide(self, trace_id: int, parent: bool | None) -> bool:
        """The decision for a span whose caller decided ``parent`` (``None``: no decision).

        The caller's decision wins, so a trace stays whole across services (Envoy decides
        at the edge); only :class:`ConstSampler` ``const:0`` overrides it.
        """
        return self.sample(trace_id) if parent is None else parent

    @property
    @abstractmethod
    def spec(self) -> str:
        """The text form (``probabilistic:0.1``), as the environment would give it."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sampler) and type(other) is type(self) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


class ConstSampler(Sampler):
    """Records every trace (``True``) or none (``False``: whatever a caller's headers ask,
    so a client cannot force ``b3: 1`` traces out of a service configured ``const:0``)."""

    def __init__(self, decision: bool) -> None:
        self.decision = bool(decision)

    def sample(self, trace_id: int) -> bool:
        return self.decision

    def decide(self, trace_id: int, parent: bool | None) -> bool:
        if not self.decision:
            return False
        return super().decide(trace_id, parent)

    @property
    def spec(self) -> str:
        return f"const:{int(self.decision)}"


class ProbabilisticSampler(Sampler):
    """Records a share ``rate`` of traces, decided from the trace id (consistent across
    services that use the same rule, as Jaeger's clients do)."""

    def __init__(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"probabilistic rate must be within 0..1, not {rate!r}")
        self.rate = float(rate)
        self._bound = self.rate * 2**64

    def sample(self, trace_id: int) -> bool:
        return (trace_id & 0xFFFFFFFFFFFFFFFF) < self._bound

    @property
    def spec(self) -> str:
        return f"probabilistic:{self.rate:g}"


class RateLimitingSampler(Sampler):
    """At most ``per_second`` new traces a second (a token bucket), per process."""

    def __init__(self, per_second: float) -> None:
        if not (0.0 <= per_second < math.inf):
            raise ValueError(f"ratelimiting needs a finite rate >= 0, not {per_second!r}")
        self.per_second = float(per_second)
        self._tokens = self.per_second
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def sample(self, trace_id: int) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.per_second, self._tokens + (now - self._last) * self.per_second)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False

    @property
    def spec(self) -> str:
        return f"ratelimiting:{self.per_second:g}"


def parse_sampler(text: str) -> Sampler:
    """A sampler from its text form; ``ValueError`` when it is not one."""
    kind, sep, raw = text.strip().partition(":")
    if not sep:
        raise ValueError(text)
    param = float(raw)  # ValueError for a non-number
    if kind == "const" and param in (0, 1):
        return ConstSampler(param == 1)
    if kind == "probabilistic":
        return ProbabilisticSampler(param)
    if kind == "ratelimiting":
        return RateLimitingSampler(param)
    raise ValueError(text)
