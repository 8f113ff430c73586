"""Resolving every option in one order: an explicit argument, else ``app.config``, else
the environment (``MESHMETRICS_<NAME>``, then the variables other clients read), else the
default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .environment import FROM_ENVIRONMENT, service_from_name
from .errors import ConfigError
from .options import OPTIONS, MeshConfig, Option, convert_option, reject_unknown
from .values import Context


def resolve_config(
    explicit: Mapping[str, Any],
    *,
    default_service: str,
    app_config: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> MeshConfig:
    """Resolve every option: explicit (not ``None``) > ``app_config`` > environment > default."""
    reject_unknown(explicit)
    env = os.environ if environ is None else environ
    app_config = app_config or {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        source, raw = _raw_value(option, explicit, app_config, env, values, default_service)
        sources[option.name] = source
        # a default converts to itself; MeshConfig fills in the backend's default endpoint
        values[option.name] = convert_option(option, raw, source, values)
    try:
        config = MeshConfig(**values)
    except ConfigError as exc:  # a rule across options: name where the value came from
        raise exc.from_source(sources.get(exc.option, exc.source)) from None
    object.__setattr__(config, "_sources", sources)
    return config


def _raw_value(
    option: Option,
    explicit: Mapping[str, Any],
    app_config: Mapping[str, Any],
    env: Mapping[str, str],
    resolved: Context,
    default_service: str,
) -> tuple[str, Any]:
    """Where ``option`` comes from, and its raw value there."""
    if explicit.get(option.name) is not None:
        return "argument", explicit[option.name]
    if option.explicit_only:
        _refuse_settings(option, app_config, env)
        return "default", option.default
    if app_config.get(option.env) is not None:
        return f"app.config[{option.env!r}]", app_config[option.env]
    if option.env in env:
        return option.env, env[option.env]
    if option.name == "service":
        if env.get("OTEL_SERVICE_NAME", "").strip():
            return "OTEL_SERVICE_NAME", env["OTEL_SERVICE_NAME"].strip()
        return "the application name; pass service=...", service_from_name(default_service)
    if option.name in FROM_ENVIRONMENT:
        found = FROM_ENVIRONMENT[option.name](env, resolved)
        if found is not None:
            return found
    return "default", option.default


def _refuse_settings(option: Option, app_config: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """An explicit-only option set in ``app.config`` or the environment: a
    :class:`ConfigError` rather than a setting silently ignored."""
    for source, settings in ((f"app.config[{option.env!r}]", app_config), (option.env, env)):
        if settings.get(option.env) is not None:
            raise ConfigError(
                option.name,
                settings[option.env],
                source,
                "given as an argument of instrument() only: it holds an object, which the "
                "argument passes as it is",
            )
