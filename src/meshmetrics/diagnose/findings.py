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
        return f"{self.severity.value:<5} {self.target}: {self.message}{fix}"


#: ``check``'s exit statuses (as Nagios plugins: 3 for "could not tell"), also in --help.
EXIT_CLEAN, EXIT_ERRORS, EXIT_USAGE, EXIT_UNCHECKED = 0, 1, 2, 3


def exit_status(findings: list[Finding]) -> int:
    """1 when an error was found (whatever else), else 3 when an input could not be checked."""
    severities = {f.severity for f in findings}
    if Severity.ERROR in severities:
        return EXIT_ERRORS
    return EXIT_UNCHECKED if Severity.UNKNOWN in severities else EXIT_CLEAN
