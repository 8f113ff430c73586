"""Command line: ``python -m meshmetrics …``, ``meshmetrics …`` and ``flask meshmetrics …``.

Commands load lazily: listing them or running one imports nothing of the others, so
the CLI (and the ``flask`` command, which loads the ``flask meshmetrics`` group through
an entry point) always starts on a plain install.  A command whose extra is missing
says in one line which extra to install and exits 2; other bad input also exits 2
with one line; ``manifests --check`` exits 1 when files on disk differ.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import click
from flask.cli import AppGroup

from ._errors import UsageProblem, extra_hint

#: name -> (module, attribute, one-line help shown without importing the module)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "manifests": (
        "meshmetrics.cli.manifests",
        "manifests_command",
        "Emit the ServiceMonitor, dashboard ConfigMap and PrometheusRule of a service.",
    ),
    "check": (
        "meshmetrics.cli.check",
        "check_command",
        "Find why Prometheus does not see a service (a URL, or manifest files).",
    ),
    "top": (
        "meshmetrics.cli.top",
        "top_command",
        "Live per-route rate, 5xx ratio, latency and in-flight of services.",
    ),
}
#: The ``flask meshmetrics`` group's commands (run against the app given by ``--app``).
FLASK_COMMANDS: dict[str, tuple[str, str, str]] = {
    "manifests": (
        "meshmetrics.cli.manifests",
        "flask_manifests_command",
        "Emit the monitoring manifests of this app.",
    ),
    "check": COMMANDS["check"],
}


def _load(name: str, spec: tuple[str, str, str]) -> click.Command:
    module_name, attribute, help_text = spec
    try:
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
    except ImportError as exc:
        hint = extra_hint(name, exc)
        if hint is None:
            raise
        return _missing_extra(name, help_text, hint)
    return command


def _missing_extra(name: str, help_text: str, hint: str) -> click.Command:
    def fail(**_: Any) -> None:
        raise UsageProblem(hint)

    return click.Command(
        name,
        callback=fail,
        help=f"{help_text} ({hint.split(': ', 1)[1]})",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        params=[click.Argument(["args"], nargs=-1, required=False)],
    )


class LazyGroup(click.Group):
    """A group whose commands are imported when run, not when the group is built."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            return _load(cmd_name, self._lazy[cmd_name])
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, spec[2]) for name, spec in sorted(self._lazy.items())]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class LazyAppGroup(LazyGroup, AppGroup):
    """Flask's ``AppGroup`` (commands run with the app's context), loaded lazily."""


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="meshmetrics")
def main() -> None:
    """meshmetrics: metrics, tracing and monitoring manifests for Flask services."""


flask_group = LazyAppGroup(
    "meshmetrics", lazy=FLASK_COMMANDS, help="meshmetrics commands for the app given by --app."
)


def run(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m meshmetrics``: usage errors are one line, exit 2."""
    try:
        main.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"Error: {exc.format_message()}{hint}", err=True)
        return 2
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 130
    return 0
