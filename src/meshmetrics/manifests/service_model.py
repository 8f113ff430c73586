"""The service model the manifests describe: from an instrumented app (what it really
exports, with command-line overrides), or from options alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from ..config import COMMAND_LINE, ConfigError, MeshConfig, resolve_config
from ..instrumentation import Instrumentation
from ..names import EXTENSION_KEY
from .model import ServiceModel, model_from_config, model_from_registry


class ModelError(Exception):
    """The model cannot be built as asked (the message says why, one line)."""


def _option_flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def instrumentation_of(app: Flask) -> Instrumentation:
    inst = app.extensions.get(EXTENSION_KEY)
    if not isinstance(inst, Instrumentation):
        raise ModelError(
            f"app {app.name!r} has no meshmetrics instrumentation: call "
            "meshmetrics.instrument(app) (or on its Blueprint, registered) when it is created"
        )
    return inst


def build_model(
    app: Flask | None,
    overrides: dict[str, Any],
    *,
    podmonitor: bool,
    istio: bool,
    recording_rules: bool = True,
    flag: Callable[[str], str] = _option_flag,
) -> ServiceModel:
    """The service model from an app's instrumentation, or from options alone.

    ``overrides`` come from the command line (``flag`` names each option there): a bad
    one is a :class:`ConfigError` from the command line, a conflict a :class:`ModelError`.
    """
    kind = "PodMonitor" if podmonitor else "ServiceMonitor"
    given = {key: value for key, value in overrides.items() if value not in (None, ())}
    try:
        if app is None:
            if "service" not in given:
                raise ModelError(f"{flag('service')} is required without {flag('app')}")
            config = resolve_config(given, default_service=given["service"])
            return model_from_config(
                config, monitor_kind=kind, istio=istio, recording_rules=recording_rules
            )
        inst = instrumentation_of(app)
        for fixed in ("prefix", "metrics_path"):
            if fixed in given and given[fixed] != getattr(inst.config, fixed):
                current = getattr(inst.config, fixed)
                raise ModelError(
                    f"{flag(fixed)} conflicts with the app's {fixed} {current!r}: "
                    "the manifests must match what the app exports; change it in instrument()"
                )
        config = inst.config.replace(source="the command line", **given)
    except ConfigError as exc:
        if exc.source == "argument":  # options alone: they all come from the command line
            exc = exc.from_source(COMMAND_LINE)
        if isinstance(exc.value, tuple) and len(exc.value) == 1:  # one --slo: as typed
            exc = ConfigError(exc.option, exc.value[0], exc.source, exc.rule, exc.fix)
        raise exc from None
    check_routes(app, config)
    return model_from_registry(
        config,
        inst.registries,
        inst.request_metrics,
        monitor_kind=kind,
        istio=istio,
        recording_rules=recording_rules,
    )


def check_routes(app: Flask, config: MeshConfig) -> None:
    """Every ``--slo`` route is a route of the app: another one records no series."""
    unmeasured = {config.metrics_path, *config.excluded_paths}
    routes = sorted({rule.rule for rule in app.url_map.iter_rules()} - unmeasured)
    for objective in config.slo:
        if objective.route is not None and objective.route not in routes:
            raise ModelError(
                f"invalid --slo {objective.spec!r}: the app has no route {objective.route!r}; "
                f"its routes: {', '.join(routes) or 'none'}"
            )
