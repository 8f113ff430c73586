"""What span attributes may carry: its home is :mod:`meshmetrics.config.redaction` (the
configuration's error messages redact values the same way); this module keeps the names
importable from where they were."""

from __future__ import annotations

from ..config.redaction import REDACTED, redact_url

__all__ = ["REDACTED", "redact_url"]
