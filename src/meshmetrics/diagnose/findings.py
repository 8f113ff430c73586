"""One finding per line: how bad, about what, what was seen, and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    """How a finding counts: ``ERROR`` fails the check, ``WARN`` is counted, the rest inform."""

    ERROR = "ERROR"
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
