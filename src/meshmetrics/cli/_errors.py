"""How the command line reports bad input: one line, exit status 2."""

from __future__ import annotations

from typing import NoReturn

import click

from ..config import ConfigError

#: Which extra brings each optional module a command imports.
EXTRA_OF_MODULE = {
    "yaml": "manifests",
    "grafana_foundation_sdk": "manifests",
    "jsonschema": "manifests",
    "rich": "top",
}


class UsageProblem(click.ClickException):
    """Bad input: reported on one line (``Error: …``), exit status 2."""

    exit_code = 2


def fail(message: str) -> NoReturn:
    raise UsageProblem(message)


def fail_config(error: ConfigError, flag: str | None = None) -> NoReturn:
    """A configuration error as one line, the option named by its flag."""
    fail(error.describe(flag).removeprefix("meshmetrics: "))


def extra_hint(command: str, error: ImportError) -> str | None:
    """The one-line hint for a missing optional module, or ``None`` if it is not one."""
    module = (getattr(error, "name", None) or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return (
        f"meshmetrics {command} needs the '{extra}' extra: "
        f"pip install 'meshmetrics[{extra}]' (missing module {module})"
    )


def needs_extra(command: str, error: ImportError) -> NoReturn:
    hint = extra_hint(command, error)
    if hint is None:
        raise error
    fail(hint)
