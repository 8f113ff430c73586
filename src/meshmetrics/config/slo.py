"""Service level objectives: the :class:`SLO` model, its text form, and the burn-rate
alerts every objective gets (what ``manifests`` turns into rules and panels)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..formats import MAX_DURATION_MS, duration_ms
from .errors import InvalidError
from .values import Context

SLO_RULE = (
    "objectives 'availability:PERCENT' or 'latency:PERCENT:SECONDS' (plain decimals), each "
    "optionally ':WINDOW' (default 30d) and '@/route', separated by ';' (e.g. "
    "'availability:99.9;latency:99:0.5@/api/v1/user/<user_id>'), or SLO objects"
)
_SLO_WINDOW = re.compile(r"\A[1-9][0-9]*[dhw]\Z")
#: A number as an objective or a threshold is written: digits, optionally a fraction
#: (no sign, exponent, ``_``, ``inf`` or ``nan``: Python's float() reads ``1_0`` as 10).
_PLAIN_DECIMAL = re.compile(r"\A(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z")
#: The multiwindow multi-burn-rate alerts of every objective (Google SRE workbook, "Alerting
#: on SLOs"): (name, severity, [(long window, short window, share of the budget consumed
#: over the long window)]).  An alert fires when either pair is above its threshold.
BURN_RATE_ALERTS: tuple[tuple[str, str, tuple[tuple[str, str, float], ...]], ...] = (
    ("Page", "critical", (("1h", "5m", 0.02), ("6h", "30m", 0.05))),
    ("Ticket", "warning", (("1d", "2h", 0.10), ("3d", "6h", 0.10))),
)
BURN_RATE_WINDOW_HOURS = {"5m": 5 / 60, "30m": 0.5, "1h": 1, "2h": 2, "6h": 6, "1d": 24, "3d": 72}


def burn_rate_threshold(
    budget: float, window_hours: float, long_window: str, share: float
) -> float:
    """The error ratio of a burn-rate pair: spending ``share`` of the budget over
    ``long_window`` is ``share * window / long_window`` times the rate the budget allows."""
    return share * window_hours / BURN_RATE_WINDOW_HOURS[long_window] * budget


def _least_objective(window_hours: float) -> float:
    """The least objective (percent) under which every burn-rate alert can still fire: each
    needs one pair whose threshold is below 1 (an error ratio never exceeds 1)."""
    needed = max(
        min(share * window_hours / BURN_RATE_WINDOW_HOURS[long] for long, _, share in pairs)
        for _, _, pairs in BURN_RATE_ALERTS
    )
    return 100 * (1 - 1 / needed) if needed > 1 else 0.0


def _least_window_hours() -> float:
    """The shortest window whose page alert keeps a pair that burns at least as fast as
    the budget allows: over a shorter one, spending the pair's share of the budget in its
    long window is slower than the budget's own rate (a page on a service meeting its
    SLO)."""
    _, _, page_pairs = BURN_RATE_ALERTS[0]
    return min(BURN_RATE_WINDOW_HOURS[long] / share for long, _, share in page_pairs)


@dataclass(frozen=True)
class SLO:
    """A service level objective: the share of requests that are good over a window.

    ``availability``: not answered 5xx.  ``latency``: answered within ``threshold``
    seconds, which must be a bucket bound of the latency histogram (the share is read from
    that bucket).  ``route`` limits it to one route template (default: every request).
    """

    kind: Literal["availability", "latency"]
    #: Target percentage, e.g. ``99.9``.
    objective: float
    #: Seconds (latency objectives only).
    threshold: float | None = None
    #: The period the error budget spans (a Prometheus duration in days, hours or weeks).
    window: str = "30d"
    route: str | None = None

    def __post_init__(self) -> None:
        rule = SLO_RULE
        if self.kind not in ("availability", "latency"):
            raise InvalidError(rule)
        if not (_is_real(self.objective) and 0 < float(self.objective) < 100):
            raise InvalidError("an objective strictly between 0 and 100 (percent)")
        if (self.kind == "latency") != (self.threshold is not None):
            raise InvalidError(
                "a latency objective with a threshold in seconds (latency:99:0.5), "
                "an availability objective without"
            )
        if self.threshold is not None and not (
            _is_real(self.threshold) and 0 < self.threshold < math.inf
        ):
            raise InvalidError("a latency threshold is a finite number of seconds above 0")
        if not (
            isinstance(self.window, str)
            and _SLO_WINDOW.match(self.window)
            and duration_ms(self.window) is not None
        ):
            raise InvalidError(
                "an SLO window such as 30d, 28d, 4w or 720h, at most what Prometheus can "
                f"hold ({MAX_DURATION_MS // 86_400_000}d)"
            )
        if self.route is not None and not _is_route(self.route):
            raise InvalidError(
                "an SLO route is a route template starting with '/', in valid Unicode"
            )
        if self.window_hours < _least_window_hours():
            raise InvalidError(
                f"an SLO window of at least {_least_window_hours():g}h: over a shorter one "
                "the page alert's burn rates are slower than the budget allows, so it would "
                "page while the objective is met"
            )
        least = _least_objective(self.window_hours)
        if float(self.objective) <= least:
            raise InvalidError(
                f"an objective of at least {math.ceil(least * 1000) / 1000:g} for a "
                f"{self.window} window: below it the page alert's burn-rate threshold is above "
                "an error ratio of 1, so it could never fire"
            )

    @property
    def ratio(self) -> float:
        return float(self.objective) / 100

    @property
    def error_budget(self) -> float:
        """The share of requests allowed to be bad: ``1 - objective``."""
        return 1 - self.ratio

    @property
    def window_hours(self) -> float:
        number, unit = int(self.window[:-1]), self.window[-1]
        return number * {"h": 1, "d": 24, "w": 168}[unit]

    @property
    def name(self) -> str:
        """The ``slo`` label: kind, threshold and route, e.g. ``latency-0.5-api-v1-user``."""
        parts: list[str] = [self.kind]
        if self.threshold is not None:
            parts.append(f"{self.threshold:g}")
        if self.route is not None:
            slug = re.sub(r"[^a-z0-9]+", "-", self.route.lower()).strip("-")
            parts.append(slug or "root")
        return "-".join(parts)

    @property
    def spec(self) -> str:
        text = f"{self.kind}:{decimal_text(self.objective)}"
        if self.threshold is not None:
            text += f":{decimal_text(self.threshold)}"
        if self.window != "30d":
            text += f":{self.window}"
        return text + (f"@{self.route}" if self.route is not None else "")


def decimal_text(number: float) -> str:
    """A number as a plain decimal that reads back to the same float (99.95, 0.5, 1e-07
    as 0.0000001): what the SLO text form accepts."""
    text = repr(float(number))
    if "e" in text or "E" in text:
        text = f"{float(number):.20f}".rstrip("0")
    return text.removesuffix(".0").rstrip(".")


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_route(route: object) -> bool:
    if not isinstance(route, str) or not route.startswith("/"):
        return False
    try:
        route.encode("utf-8")  # a lone surrogate is no text Prometheus can hold
    except UnicodeEncodeError:
        return False
    return True


def _decimal(text: str) -> float:
    number = text.strip()
    if not _PLAIN_DECIMAL.match(number):
        raise ValueError(number)
    return float(number)


def _parse_slo(text: str) -> SLO:
    head, at, route = text.strip().partition("@")
    parts = [p.strip() for p in head.split(":")]
    window = "30d"
    if len(parts) > 2 and _SLO_WINDOW.match(parts[-1]):
        window = parts.pop()
    try:
        kind = parts[0].lower()
        objective = _decimal(parts[1].removesuffix("%"))
        threshold = _decimal(parts[2]) if len(parts) > 2 else None
    except (IndexError, ValueError):
        raise InvalidError(SLO_RULE) from None
    if len(parts) > 3:
        raise InvalidError(SLO_RULE)
    return SLO(kind, objective, threshold, window, route.strip() if at else None)  # type: ignore[arg-type]


def slos(value: Any, _: Context) -> tuple[SLO, ...]:
    if value is None:
        return ()
    items: Sequence[Any] = [value] if isinstance(value, str | SLO) else value
    slos: list[SLO] = []
    for item in items:
        if isinstance(item, SLO):
            slos.append(item)
        elif isinstance(item, str):
            slos += [_parse_slo(part) for part in item.split(";") if part.strip()]
        else:
            raise InvalidError(SLO_RULE)
    names = [slo.name for slo in slos]
    if len(names) != len(set(names)):
        raise InvalidError(
            "objectives with distinct names (the slo label: kind, threshold and the route's "
            "letters and digits)"
        )
    return tuple(slos)
