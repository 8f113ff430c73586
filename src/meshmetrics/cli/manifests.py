"""``meshmetrics manifests`` and ``flask meshmetrics manifests``: a service's cluster objects.

Importing this module needs no extra (``--help`` lists every option on a plain install);
running the command checks for the ``manifests`` extra first and names it if missing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import ScriptInfo, with_appcontext

from ..config import COMMAND_LINE, ConfigError
from ..manifests import (
    DEFAULT_KINDS,
    KINDS,
    ManifestOptions,
    build_objects,
    default_kinds,
    to_multi_yaml,
    to_yaml,
)
from ..manifests.service_model import ModelError, build_model
from ..manifests.writing import OutputError, check_files, write_atomically
from ._errors import fail, fail_config, needs_extra
from .cluster import VALUE_FILES, cluster_from_options, cluster_options, values_documents


def load_app(import_path: str) -> Flask:
    """Import an app the way ``flask --app`` does (module, module:app, module:factory(), file)."""
    try:
        return ScriptInfo(app_import_path=import_path).load_app()
    except click.ClickException as exc:
        fail(f"cannot load app {import_path!r}: {exc.format_message()}")
    except Exception as exc:  # an import error inside the user's module
        fail(f"cannot load app {import_path!r}: {type(exc).__name__}: {exc}")


#: Options whose command-line flag is not ``--`` + the option's name.
_FLAGS = {
    "metrics_path": "--path",
    "scrape_interval": "--interval",
    "dashboard_label_value": "--dashboard-label",
}


def _flag(option: str) -> str:
    """The command-line flag of an option."""
    return _FLAGS.get(option, "--" + option.replace("_", "-"))


_KIND_CHOICE = click.Choice(KINDS, case_sensitive=False)


def _kinds(values: Sequence[str]) -> tuple[str, ...] | None:
    """The kinds asked for, or ``None`` for the model's defaults."""
    if not values:
        return None
    kinds: list[str] = []
    for value in values:
        for kind in value.split(","):
            kind = kind.strip().lower()
            if kind not in KINDS:
                fail(f"unknown --kind {kind!r}; choose from {', '.join(KINDS)}")
            kinds.append(kind)
    return tuple(kinds)


def _label(value: str) -> tuple[str, str]:
    key, sep, label_value = value.partition("=")
    if not sep or not key:
        fail(f"--dashboard-label {value!r} must be KEY=VALUE, e.g. grafana_dashboard=1")
    return key, label_value


def manifest_options(func: Any) -> Any:
    """The options shared by ``python -m meshmetrics manifests`` and ``flask meshmetrics``."""
    decorators = [
        click.option("--service", help="Service name (required without --app)."),
        click.option("--namespace", help="Namespace the service runs in."),
        click.option("--release", help="kube-prometheus-stack Helm release (the release label)."),
        click.option("--monitor-namespace", help="Namespace of the monitor and rules."),
        click.option("--dashboard-namespace", help="Namespace of the dashboard ConfigMap."),
        click.option("--port-name", help="Service port name that serves the metrics."),
        click.option("--path", "metrics_path", help="Metrics path (without --app)."),
        click.option("--interval", "scrape_interval", help="Scrape interval, e.g. 30s."),
        click.option("--prefix", help="Metric name prefix (without --app)."),
        click.option(
            "--slo",
            multiple=True,
            metavar="OBJECTIVE",
            help="A service level objective: availability:99.9, latency:99:0.5 (seconds: a "
            "histogram bucket bound), optionally :WINDOW (30d) and @/route; repeatable.",
        ),
        click.option(
            "--mtls",
            type=click.Choice(["permissive", "strict"], case_sensitive=False),
            help="Istio mTLS mode of the namespace; strict needs a metrics port and adds "
            "a PeerAuthentication exempting it alone (default: permissive).",
        ),
        click.option(
            "--metrics-port",
            type=click.IntRange(1, 65535),
            help="The app's separate metrics port (the Service gets a port for it).",
        ),
        click.option(
            "--istio-namespace",
            default="istio-system",
            show_default=True,
            help="Namespace of istiod and of Istio's Jaeger add-on.",
        ),
        click.option(
            "--grafana-values",
            is_flag=True,
            help="Print the kube-prometheus-stack Helm values that link latency exemplars "
            "to their traces in Jaeger, instead of objects.",
        ),
        click.option(
            "--kind",
            "kinds",
            multiple=True,
            metavar="KIND[,KIND]",
            help=f"Objects to emit: {', '.join(KINDS)} (default: {', '.join(DEFAULT_KINDS)}, "
            "and peerauthentication under --mtls strict).",
        ),
        click.option(
            "--dashboard-label",
            default="grafana_dashboard=1",
            show_default=True,
            help="Label the Grafana sidecar selects dashboards by.",
        ),
        click.option(
            "--recording-rules/--no-recording-rules",
            default=True,
            show_default=True,
            help="Pre-aggregate the request metrics in recording rules (in the PrometheusRule) "
            "and have the dashboard and alerts read them.",
        ),
        click.option(
            "--istio/--no-istio",
            default=True,
            show_default=True,
            help="Add the Istio mesh row to the dashboard.",
        ),
        click.option(
            "--error-ratio",
            type=float,
            default=0.05,
            show_default=True,
            help="Alert threshold on the 5xx ratio.",
        ),
        click.option(
            "--latency-p95",
            type=float,
            default=0.5,
            show_default=True,
            help="Alert threshold on p95 latency, seconds.",
        ),
        click.option(
            "--service-port",
            type=click.IntRange(1, 65535),
            default=80,
            show_default=True,
            help="Port number of the generated Service.",
        ),
        click.option(
            "--target-port",
            type=click.IntRange(1, 65535),
            help="Container port of the generated Service (default: --service-port).",
        ),
        *cluster_options(),
        click.option(
            "--out",
            type=click.Path(file_okay=False, path_type=Path),
            help="Write one file per object into DIR.",
        ),
        click.option(
            "--check",
            type=click.Path(file_okay=False, path_type=Path),
            help="Exit 1 with a diff when DIR differs from what would be generated.",
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def run_manifests(app: Flask | None, **opts: Any) -> None:
    """Generate, then print, write (``--out``) or compare (``--check``) the manifests."""
    kinds = _kinds(opts.pop("kinds"))
    wanted_values = {flag for flag in VALUE_FILES if opts.pop(flag)}
    label_key, label_value = _label(opts.pop("dashboard_label"))
    out, check = opts.pop("out"), opts.pop("check")
    if out and check:
        fail("--out and --check exclude each other")
    _require_extra()
    if kinds is not None and {"servicemonitor", "podmonitor"} <= set(kinds):
        fail(
            "--kind servicemonitor and --kind podmonitor select the same pods: Prometheus "
            "would scrape each twice; choose one"
        )
    try:
        workload, scaling = cluster_from_options(opts)
        if scaling.autoscale is not None and "autoscaler" not in (kinds or ("autoscaler",)):
            kinds = (*kinds, "autoscaler") if kinds else None
        options = ManifestOptions(
            workload=workload,
            scaling=scaling,
            monitor_namespace=opts.pop("monitor_namespace"),
            dashboard_namespace=opts.pop("dashboard_namespace"),
            dashboard_label=label_key,
            dashboard_label_value=label_value,
            error_ratio=opts.pop("error_ratio"),
            latency_p95=opts.pop("latency_p95"),
            service_port=opts.pop("service_port"),
            target_port=opts.pop("target_port"),
            istio_namespace=opts.pop("istio_namespace"),
        )
    except ConfigError as exc:
        fail_config(exc.from_source(COMMAND_LINE), _flag(exc.option))
    istio = opts.pop("istio")
    recording = opts.pop("recording_rules")
    try:
        model = build_model(
            app,
            opts,
            podmonitor="podmonitor" in (kinds or ()),
            istio=istio,
            recording_rules=recording,
            flag=_flag,
        )
    except ModelError as exc:
        fail(str(exc))
    except ConfigError as exc:
        fail_config(exc, _flag(exc.option))
    if kinds is None and scaling.autoscale is not None:
        kinds = (*default_kinds(model.config), "autoscaler")
    if "peerauthentication" in (kinds or ()) and model.config.metrics_port is None:
        fail(
            "--kind peerauthentication needs --metrics-port: the PeerAuthentication exempts "
            "that port alone from mTLS (e.g. --metrics-port 9464)"
        )
    if kinds is not None and "dashboard" in kinds and "rules" not in kinds and recording:
        click.echo(
            "INFO: the dashboard reads the raw series, not recording rules: no PrometheusRule "
            "is emitted (add --kind rules for the cheaper recorded queries)",
            err=True,
        )
    try:
        objects = (
            values_documents(model, options, wanted_values)
            if wanted_values
            else build_objects(model, kinds, options)
        )
    except ValueError as exc:
        fail(str(exc))
    if wanted_values and out is None and check is None:
        if len(objects) > 1:
            fail("one values file at a time without --out (each is a file of its own)")
        click.echo(to_yaml(next(iter(objects.values()))), nl=False)
        return
    if out is None and check is None:
        click.echo(to_multi_yaml(objects.values()), nl=False)
        return
    files = {name: to_yaml(obj) for name, obj in objects.items()}
    if out is not None:
        try:
            write_atomically(out, files)
        except OutputError as exc:
            fail(str(exc))
        click.echo(f"wrote {len(files)} file(s) to {out}: {', '.join(files)}", err=True)
        return
    try:
        diffs = check_files(check, files)
    except OutputError as exc:
        fail(str(exc))
    if diffs:
        click.echo("".join(diffs), nl=False)
        click.echo(
            f"meshmetrics manifests: {len(diffs)} file(s) in {check} differ from the app; "
            f"regenerate with --out {check}",
            err=True,
        )
        sys.exit(1)
    click.echo(f"{check}: {len(files)} file(s) up to date", err=True)


def _require_extra() -> None:
    """Building and writing the objects needs the ``manifests`` extra; its options do not."""
    try:
        import grafana_foundation_sdk  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as exc:
        needs_extra("manifests", exc)


@click.command("manifests")
@click.option(
    "--app",
    "app_path",
    metavar="IMPORT",
    help="The instrumented app, as for flask --app: module, module:app, "
    "module:create_app(), or a file.",
)
@manifest_options
def manifests_command(app_path: str | None, **opts: Any) -> None:
    """Emit the ServiceMonitor, dashboard ConfigMap and PrometheusRule of a service."""
    run_manifests(load_app(app_path) if app_path else None, **opts)


@click.command("manifests")
@manifest_options
@with_appcontext
def flask_manifests_command(**opts: Any) -> None:
    """Emit the monitoring manifests of this app."""
    run_manifests(current_app._get_current_object(), **opts)  # type: ignore[attr-defined]
