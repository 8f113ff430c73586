"""What the direct wire encoders (:mod:`.otlp_wire`, :mod:`.jaeger_wire`) share: varints
written 14 bits at a time, and a bounded cache of encoded attributes.

Attributes repeat from span to span (the method, the route, the host, the status), so
the encoding of a string (at most ``CACHED_LENGTH`` long), int or bool attribute is
kept, by type, key and value: a type of its own for each, so ``True``, ``1`` and ``1.0``
(equal in Python) never share an entry, and floats (``-0.0 == 0.0``) are not kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Attributes whose value is longer are encoded every time (bounds the cache).
CACHED_LENGTH = 64
#: Entries kept at most; the cache starts over past them.
CACHE_ENTRIES = 4096
#: Every one-byte value (one-byte varints, Thrift's headers).
BYTE = [bytes((n,)) for n in range(256)]


def _chunks() -> tuple[bytes, bytes]:
    """Every 14-bit value as two varint bytes with continuation bits (``_CONT``), and as
    the last bytes of a varint (``_LAST``: one or two), each in a 2-byte slot."""
    cont = bytearray()
    last = bytearray()
    for chunk in range(1 << 14):
        cont += bytes(((chunk & 0x7F) | 0x80, (chunk >> 7) | 0x80))
        last += bytes(((chunk & 0x7F) | 0x80, chunk >> 7)) if chunk >= 128 else bytes((chunk, 0))
    return bytes(cont), bytes(last)


_CONT, _LAST = _chunks()  # 32 KiB each


def varint(value: int) -> bytes:
    """``value`` (0 <= value < 2**64) as a varint: its 7-bit groups, low first, each but
    the last with the high bit set; written 14 bits at a time from tables (a Python loop
    per byte costs more than the rest of a span)."""
    if value < 128:
        return BYTE[value]
    parts = []
    while value >= 1 << 14:
        chunk = (value & 0x3FFF) << 1
        parts.append(_CONT[chunk : chunk + 2])
        value >>= 14
    chunk = value << 1
    parts.append(_LAST[chunk : chunk + 2] if value >= 128 else BYTE[value])
    return b"".join(parts)


class AttributeCache:
    """Encoded attributes by type, key and value; ``encode`` makes a missing one."""

    def __init__(self, encode: Callable[[str, Any], bytes]) -> None:
        self._encode = encode
        self._entries = 0
        #: type -> key -> value -> encoded (read directly by the encoders' loops)
        self.known: dict[type, dict[str, dict[Any, bytes]]] = {str: {}, int: {}, bool: {}}

    def encode(self, key: str, value: Any) -> bytes:
        """The attribute's encoding, kept for next time when it is of a kept kind."""
        encoded = self._encode(key, value)
        per_type = self.known.get(type(value))
        if per_type is None or (type(value) is str and len(value) > CACHED_LENGTH):
            return encoded
        if self._entries >= CACHE_ENTRIES:
            for values in self.known.values():
                values.clear()
            self._entries = 0
        per_type.setdefault(key, {})[value] = encoded
        self._entries += 1
        return encoded

    def encode_all(self, items: Any, skip: frozenset[str] = frozenset()) -> list[bytes]:
        """The encodings of ``items`` (key, value pairs), those with a key in ``skip`` left
        out."""
        known = self.known
        out = []
        for key, value in items:
            if key in skip:
                continue
            per_type = known.get(type(value))
            if per_type is not None:
                per_key = per_type.get(key)
                if per_key is not None:
                    encoded = per_key.get(value)
                    if encoded is not None:
                        out.append(encoded)
                        continue
            out.append(self.encode(key, value))
        return out
