"""Trace-context header formats as Envoy/Istio speak them: B3 (multi and single) and W3C.

Parsing never raises: a malformed or hostile header is ignored and the request
starts a new trace.  Emitted headers are always well-formed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from typing import NamedTuple

#: The lengths an id may have (ids are checked without a regex: the ids of every request
#: of a mesh are read).
_HEX16 = (16,)
_HEX16_32 = (16, 32)
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?\Z")

#: Headers Istio documents as the ones an app must copy from inbound to outbound requests,
#: besides the B3/W3C ones meshmetrics rewrites for its own client span.
FORWARDED_HEADERS = (
    "x-request-id",
    "tracestate",
    "x-ot-span-context",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "sw8",
    "baggage",
    # Datadog's three, exactly (a prefix would relay whatever x-datadog-* a client invents
    # to every host the app calls, external APIs included)
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
)
#: The trace-context headers meshmetrics writes itself for the spans it opens.
TRACE_HEADERS = frozenset(
    {
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
        "b3",
        "traceparent",
    }
)
_MAX_FORWARDED_LENGTH = 4096
_MAX_TRACE_HEADER_LENGTH = 255  # the longest valid one, b3 with 128-bit ids, is 68
_PRINTABLE = re.compile(r"[\x20-\x7e]*\Z")


class TraceContext(NamedTuple):
    """An extracted context: ids (``None`` when only a sampling decision came) and flags
    (immutable; a tuple, cheaper to make than a frozen dataclass)."""

    trace_id: int | None
    span_id: int | None
    parent_id: int | None = None
    #: ``True``/``False`` when the caller decided, ``None`` to let the sampler decide.
    sampled: bool | None = None
    debug: bool = False


def new_trace_id() -> int:
    """A random non-zero 128-bit trace id."""
    return random.getrandbits(128) or 1


def new_span_id() -> int:
    """A random non-zero 64-bit span id."""
    return random.getrandbits(64) or 1


def _sampled_flag(value: str | None) -> bool | None:
    if value is None:
        return None
    value = value.strip().lower()
    if value in ("1", "true", "d"):
        return True
    if value in ("0", "false"):
        return False
    return None


def _hex_id(value: str | None, lengths: tuple[int, ...]) -> int | None:
    if value is None:
        return None
    value = value.strip().lower()
    # ASCII letters and digits but no "x" (int() would take a "0x" prefix): int() then
    # refuses anything but hex digits
    if len(value) not in lengths or not (value.isascii() and value.isalnum()) or "x" in value:
        return None
    try:
        number = int(value, 16)
    except ValueError:
        return None
    return number or None


def _header(environ: Mapping[str, object], key: str) -> str | None:
    value = environ.get(key)
    return value if isinstance(value, str) else None


def _from_b3_multi(environ: Mapping[str, object]) -> TraceContext | None:
    get = environ.get
    flags = get("HTTP_X_B3_FLAGS")
    debug = isinstance(flags, str) and flags.strip() == "1"
    sampled_header = get("HTTP_X_B3_SAMPLED")
    sampled = (
        True
        if debug
        else _sampled_flag(sampled_header if isinstance(sampled_header, str) else None)
    )
    trace_header = get("HTTP_X_B3_TRACEID")
    if not isinstance(trace_header, str):
        return TraceContext(None, None, sampled=sampled) if sampled is not None else None
    trace_id = _hex_id(trace_header, _HEX16_32)
    span_header = get("HTTP_X_B3_SPANID")
    span_id = _hex_id(span_header, _HEX16) if isinstance(span_header, str) else None
    if trace_id is None or span_id is None:
        return TraceContext(None, None, sampled=sampled) if sampled is not None else None
    parent_header = get("HTTP_X_B3_PARENTSPANID")
    parent_id = _hex_id(parent_header, _HEX16) if isinstance(parent_header, str) else None
    return TraceContext(trace_id, span_id, parent_id, sampled, debug)


def _from_b3_single(value: str) -> TraceContext | None:
    parts = value.strip().lower().split("-")
    if len(parts) == 1:
        sampled = _sampled_flag(parts[0])
        return (
            TraceContext(None, None, sampled=sampled, debug=parts[0] == "d")
            if sampled is not None
            else None
        )
    if len(parts) > 4:
        return None
    trace_id = _hex_id(parts[0], _HEX16_32)
    span_id = _hex_id(parts[1], _HEX16)
    if trace_id is None or span_id is None:
        return None
    state = parts[2] if len(parts) > 2 else None
    sampled = _sampled_flag(state)
    if state is not None and sampled is None:
        return None
    parent_id = _hex_id(parts[3], _HEX16) if len(parts) > 3 else None
    if len(parts) > 3 and parent_id is None:
        return None
    return TraceContext(trace_id, span_id, parent_id, sampled, state == "d")


def _from_traceparent(value: str) -> TraceContext | None:
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_hex, span_hex, flags = match.groups()
    if version == "ff" or (version == "00" and len(value.strip()) != 55):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    return TraceContext(trace_id, span_id, None, bool(int(flags, 16) & 1))


_CONTEXT_KEYS = (
    "HTTP_X_B3_TRACEID",
    "HTTP_X_B3_SAMPLED",
    "HTTP_X_B3_FLAGS",
    "HTTP_B3",
    "HTTP_TRACEPARENT",
)


def extract(environ: Mapping[str, object]) -> TraceContext | None:
    """The inbound context of a WSGI request: B3 multi, then single ``b3``, then W3C."""
    if (
        "HTTP_X_B3_TRACEID" not in environ
        and "HTTP_B3" not in environ
        and "HTTP_TRACEPARENT" not in environ
        and "HTTP_X_B3_SAMPLED" not in environ
        and "HTTP_X_B3_FLAGS" not in environ
    ):
        return None  # the common case without a mesh: five dict lookups
    multi = _from_b3_multi(environ)
    if multi is not None and multi.trace_id is not None:
        return multi
    single_header = _header(environ, "HTTP_B3")
    single = _from_b3_single(single_header) if single_header is not None else None
    if single is not None and single.trace_id is not None:
        return single
    parent_header = _header(environ, "HTTP_TRACEPARENT")
    w3c = _from_traceparent(parent_header) if parent_header is not None else None
    return w3c or multi or single


def forwarded(environ: Mapping[str, object]) -> dict[str, str]:
    """The inbound headers Istio wants copied onto outbound calls, if well-formed.

    Values are trimmed of surrounding whitespace (an obsolete line-folded header reaches
    WSGI with leading spaces, which ``requests`` refuses to send) and dropped when empty,
    too long or not printable ASCII.
    """
    return _copy(
        environ,
        FORWARDED_HEADERS.__contains__,
        _MAX_FORWARDED_LENGTH,
    )


def inbound_trace_headers(environ: Mapping[str, object]) -> dict[str, str]:
    """The inbound B3/W3C headers, if well-formed (copied verbatim when the app does not trace)."""
    return _copy(environ, TRACE_HEADERS.__contains__, _MAX_TRACE_HEADER_LENGTH)


def _copy(
    environ: Mapping[str, object], wanted: Callable[[str], bool], limit: int
) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in environ.items():
        if not key.startswith("HTTP_") or not isinstance(value, str):
            continue
        name = key[5:].lower().replace("_", "-")
        if not wanted(name):
            continue
        value = value.strip(" \t")
        if value and len(value) <= limit and _PRINTABLE.match(value):
            out[name] = value
    return out


def b3_headers(
    trace_id: int, span_id: int, parent_id: int | None, sampled: bool, debug: bool = False
) -> dict[str, str]:
    """B3 multi headers plus the single ``b3`` header for the given span.

    Debug (``x-b3-flags: 1``, single ``d``) implies sampled and, as B3 specifies, is sent
    instead of ``x-b3-sampled``, so every hop keeps forcing the trace.
    """
    trace_hex = f"{trace_id:032x}" if trace_id >> 64 else f"{trace_id:016x}"
    headers = {"x-b3-traceid": trace_hex, "x-b3-spanid": f"{span_id:016x}"}
    if debug:
        headers["x-b3-flags"] = "1"
        state = "d"
    else:
        state = "1" if sampled else "0"
        headers["x-b3-sampled"] = state
    single = f"{trace_hex}-{span_id:016x}-{state}"
    if parent_id:
        headers["x-b3-parentspanid"] = f"{parent_id:016x}"
        single += f"-{parent_id:016x}"
    headers["b3"] = single
    return headers


def traceparent(trace_id: int, span_id: int, sampled: bool) -> str:
    """The W3C ``traceparent`` of the given span."""
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"
