"""The errors a bad option raises, and how their messages say where to fix it."""

from __future__ import annotations

from typing import Any

ENV_PREFIX = "MESHMETRICS_"


class ConfigError(ValueError):
    """An option's value broke its rule; raised when the configuration is built.

    Attributes:
        option: the option's name (``trace_endpoint``).
        value: the value as given.
        source: where it came from (``argument``, ``app.config['MESHMETRICS_…']``,
            an environment variable's name, or ``default``).
        rule: what the value must be.
        fix: another option that would make the value valid, and an example value: the
            message says how to set it where this value came from (a flag on the command
            line, a variable in the environment, an argument in code).
    """

    def __init__(
        self, option: str, value: Any, source: str, rule: str, fix: tuple[str, str] | None = None
    ) -> None:
        self.option, self.value, self.source, self.rule = option, value, source, rule
        self.fix = fix
        super().__init__(self.describe())

    def from_source(self, source: str) -> ConfigError:
        """The same error, its value given by ``source``."""
        return ConfigError(self.option, self.value, source, self.rule, self.fix)

    def describe(self, name: str | None = None) -> str:
        """The message, naming the option as ``name`` (a CLI flag) when given."""
        fix = f"; set {setting(*self.fix, self.source)}" if self.fix else ""
        return (
            f"meshmetrics: invalid {name or self.option} {self.value!r} (from {self.source}): "
            f"must be {self.rule}{fix}"
        )


#: The source of values given on meshmetrics' command line.
COMMAND_LINE = "the command line"


def setting(option: str, example: str, source: str) -> str:
    """How to set ``option`` the way a value from ``source`` was set."""
    env = ENV_PREFIX + option.upper()
    if source == COMMAND_LINE:
        return "--" + option.replace("_", "-") + f" {example}"
    if source.startswith("app.config["):
        return f"app.config[{env!r}] = {example}"
    if source.startswith(ENV_PREFIX):
        return f"{env}={example}"
    return f"{option}={example}"


class MissingExtraError(ConfigError, ImportError):
    """A configured feature needs an optional extra that is not installed."""

    def __init__(self, option: str, value: Any, source: str, extra: str, cause: str) -> None:
        self.extra = extra
        self.cause = cause
        super().__init__(option, value, source, f"installed: pip install 'meshmetrics[{extra}]'")

    def describe(self, name: str | None = None) -> str:
        return (
            f"meshmetrics: {name or self.option}={self.value!r} (from {self.source}) needs the "
            f"'{self.extra}' extra: pip install 'meshmetrics[{self.extra}]' ({self.cause})"
        )


class InvalidError(ValueError):
    """Raised by a converter: the value broke ``rule``."""

    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule
