"""What Kubernetes and Prometheus accept for names, label values and durations.

One definition of each rule, imported by the options (:mod:`.config`), the generated
objects and their offline validation (``manifests``): a value the options accept is
one the cluster accepts.  Each rule is a predicate and the sentence that states it.
"""

from __future__ import annotations

import re

_DNS1123_LABEL = re.compile(r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1035_LABEL = re.compile(r"\A[a-z]([-a-z0-9]*[a-z0-9])?\Z")
_PORT_NAME = re.compile(r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1123_SUBDOMAIN = re.compile(
    r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z"
)
#: A label value that is not empty, and the name part of a label key (a qualified name).
_QUALIFIED_NAME = re.compile(r"\A[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")
_DURATION = re.compile(
    r"\A(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?"
    r"(?:([0-9]+)s)?(?:([0-9]+)ms)?\Z"
)
_DURATION_UNITS_MS = (
    365 * 86_400_000,
    7 * 86_400_000,
    86_400_000,
    3_600_000,
    60_000,
    1000,
    1,
)
#: Prometheus holds a duration in Go's time.Duration: int64 nanoseconds (about 292 years).
MAX_DURATION_MS = (2**63 - 1) // 1_000_000

DNS1123_LABEL_RULE = (
    "a DNS-1123 label: at most 63 characters of a-z, 0-9 and '-', starting and ending "
    "with a letter or digit"
)
DNS1035_LABEL_RULE = (
    "a DNS-1035 label, as Kubernetes requires of Service names: at most 63 characters "
    "of a-z, 0-9 and '-', starting with a letter and ending with a letter or digit"
)
LABEL_VALUE_RULE = (
    "a Kubernetes label value: at most 63 characters of A-Z, a-z, 0-9, '-', '_' and '.', "
    "starting and ending with a letter or digit"
)
PORT_NAME_RULE = (
    "an IANA service name: at most 15 characters of a-z, 0-9 and '-', with at least "
    "one letter, no '--', not starting or ending with '-'"
)
LABEL_KEY_RULE = (
    "a Kubernetes label key: an optional DNS subdomain prefix and '/', then at most "
    "63 characters of A-Z, a-z, 0-9, '-', '_', '.' starting and ending alphanumeric"
)


def is_dns1123_label(value: object) -> bool:
    """A namespace or most object names: ``[a-z0-9]([-a-z0-9]*[a-z0-9])?``, at most 63."""
    return isinstance(value, str) and len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def is_dns1035_label(value: object) -> bool:
    """A Service name: a DNS-1123 label that starts with a letter."""
    return isinstance(value, str) and len(value) <= 63 and bool(_DNS1035_LABEL.match(value))


def is_port_name(value: object) -> bool:
    """A port name (IANA_SVC_NAME), what a ServiceMonitor's endpoint selects by."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= 15
        and bool(_PORT_NAME.match(value))
        and "--" not in value
        and any("a" <= char <= "z" for char in value)
    )


def is_dns1123_subdomain(value: object) -> bool:
    """An object name such as a ConfigMap's: dot-separated labels, at most 253."""
    return isinstance(value, str) and len(value) <= 253 and bool(_DNS1123_SUBDOMAIN.match(value))


def is_label_value(value: object, *, empty: bool = False) -> bool:
    """A label value: at most 63 of ``[-A-Za-z0-9_.]``, alphanumeric at both ends;
    the empty string too when ``empty``."""
    if not isinstance(value, str):
        return False
    if value == "":
        return empty
    return len(value) <= 63 and bool(_QUALIFIED_NAME.match(value))


def is_label_key(value: object) -> bool:
    """A label key: an optional DNS subdomain prefix and ``/``, then a qualified name."""
    if not isinstance(value, str):
        return False
    prefix, slash, name = value.rpartition("/")
    if slash and not is_dns1123_subdomain(prefix):
        return False
    return is_label_value(name)


def duration_ms(text: str) -> int | None:
    """Milliseconds of a Prometheus duration (``1h30m``, ``30d``), as Prometheus' parser
    reads it, or ``None`` when Prometheus would refuse it (not its syntax, or longer than
    a Go ``time.Duration`` holds: Prometheus answers "duration out of range")."""
    if text == "0":
        return 0
    match = _DURATION.match(text) if text else None
    if match is None:
        return None
    total = 0
    for number, unit in zip(match.groups(), _DURATION_UNITS_MS, strict=True):
        if number is not None:
            total += int(number) * unit
    return total if total <= MAX_DURATION_MS else None
