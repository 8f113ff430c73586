"""One finding per line: how bad, about what, what was seen, and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    """How a finding counts: ``ERROR`` fails the check, ``UNKNOWN`` says an input could not
    be checked at all (not what Prometheus would suffer: ``check``'s own input was unusable),
    ``WARN`` is counted, the rest inform."""

    ERROR = "ERROR"
    UNKNOWN = "UNKNOWN"
    WARNING = "WARN"
    INFO = "INFO"
    OK = "OK"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    target: str
    message: str
    fix: str = ""

    def line(self) -> str:
        fix = f" -> {self.fix}" if self.fix else ""
        return f"{self.severity.value:<5} {self.target}: {_bounded(self.message)}{fix}"


#: The longest message a finding prints whole: a schema's message quotes the offending
#: value, which may be a megabyte (a dashboard's JSON, a pasted blob).
MAX_MESSAGE = 1000


def _bounded(message: str) -> str:
    """``message``, or its start and end around how much was left out (the end of a
    schema's message says what was wrong: ``… is not of type 'array'``)."""
    if len(message) <= MAX_MESSAGE:
        return message
    half = MAX_MESSAGE // 2
    left_out = len(message) - 2 * half
    return f"{message[:half]} …({left_out} more characters)… {message[-half:]}"


#: ``check``'s exit statuses (as Nagios plugins: 3 for "could not tell"), also in --help.
EXIT_CLEAN, EXIT_ERRORS, EXIT_USAGE, EXIT_UNCHECKED = 0, 1, 2, 3


def exit_status(findings: list[Finding]) -> int:
    """1 when an error was found (whatever else), else 3 when an input could not be checked."""
    severities = {f.severity for f in findings}
    if Severity.ERROR in severities:
        return EXIT_ERRORS
    return EXIT_UNCHECKED if Severity.UNKNOWN in severities else EXIT_CLEAN
