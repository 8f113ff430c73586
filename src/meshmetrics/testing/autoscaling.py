"""What prometheus-adapter and the HPA controller do with the generated objects, in Python,
so tests can run it against a real Prometheus.

- :func:`render_metrics_query`: an adapter rule's ``metricsQuery`` for a request about some
  pods of one namespace (prometheus-adapter ``pkg/naming/metrics_query.go``): the template
  uses the delimiters ``<<``/``>>``; ``.Series`` is the series name, ``.LabelMatchers`` the
  resource's label equal to the one name asked for (or matching ``a|b`` for several),
  then the namespace's label, comma-separated; ``.GroupBy`` the resource's label.
- :class:`HpaSimulator`: the replica calculation of the HPA controller for a ``Pods``
  metric with an ``AverageValue`` target: ``ceil(current * value / target)``, skipped when
  the ratio is within the tolerance (0.1); scale-up limited by the policies (the larger of
  100 % and 4 pods per 15 s), scale-down to the highest recommendation of the
  stabilization window.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

_ACTION = re.compile(r"<<\s*(.*?)\s*>>")
TOLERANCE = 0.1


def render_metrics_query(
    template: str,
    series: str,
    resource_label: str,
    names: Sequence[str],
    namespace: str | None = None,
    namespace_label: str = "namespace",
) -> str:
    """The query the adapter sends for ``names`` of the resource labelled ``resource_label``.

    Only the fields meshmetrics' rules use are known; any other action is an error, as a
    missing field is for Go's templates."""
    if not names:
        raise ValueError("the adapter asks for at least one object")
    matchers = [
        f'{resource_label}="{names[0]}"'
        if len(names) == 1
        else f'{resource_label}=~"{"|".join(names)}"'
    ]
    if namespace is not None:
        matchers.append(f'{namespace_label}="{namespace}"')
    fields = {
        ".Series": series,
        ".LabelMatchers": ",".join(matchers),
        ".GroupBy": resource_label,
    }

    def replace(match: re.Match[str]) -> str:
        action = match.group(1)
        if action not in fields:
            raise ValueError(f"template action <<{action}>> is not one the adapter provides")
        return fields[action]

    return _ACTION.sub(replace, template)


@dataclass
class HpaSimulator:
    """One HorizontalPodAutoscaler on one Pods metric, stepped every sync period."""

    target: float
    min_replicas: int
    max_replicas: int
    scale_down_window: int
    replicas: int = 1
    tolerance: float = TOLERANCE
    #: Every raw recommendation (bounded by min/max), one per step.
    recommendations: list[int] = field(default_factory=list)
    #: (time, recommendation) of the window, for the scale-down stabilization.
    _window: list[tuple[float, int]] = field(default_factory=list)

    def desired(self, values: Sequence[float]) -> int:
        """The controller's raw recommendation from the pods' values (their average)."""
        if not values:
            return self.replicas  # no metrics: no change
        ratio = (sum(values) / len(values)) / self.target
        if abs(ratio - 1.0) <= self.tolerance:
            return self.replicas
        return math.ceil(self.replicas * ratio)

    def step(self, now: float, values: Sequence[float]) -> int:
        """One sync: the new replica count."""
        recommendation = max(self.min_replicas, min(self.max_replicas, self.desired(values)))
        self.recommendations.append(recommendation)
        self._window.append((now, recommendation))
        self._window = [
            (t, r) for t, r in self._window if now - t < self.scale_down_window or t == now
        ]
        if recommendation > self.replicas:
            limit = max(self.replicas * 2, self.replicas + 4)  # Percent 100, Pods 4 per 15 s
            self.replicas = min(recommendation, limit, self.max_replicas)
        elif recommendation < self.replicas:
            # never below the highest recommendation of the window
            self.replicas = min(self.replicas, max(r for _, r in self._window))
        return self.replicas
