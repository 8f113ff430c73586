"""What the direct wire encoders (:mod:`.otlp_wire`, :mod:`.jaeger_wire`) share: varints
without a Python loop, and a bounded cache of encoded attributes.

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
_GROUPS = [(0x7F << (7 * i), i) for i in range(10)]
#: The continuation bits of an n-byte varint, as a little-endian integer.
_CONTINUATION = [sum(0x80 << (8 * i) for i in range(n - 1)) for n in range(11)]


def varint(value: int) -> bytes:
    """``value`` (0 <= value < 2**64) as a varint: its 7-bit groups, low first, each but
    the last with the high bit set (spread in one expression: no loop per byte)."""
    if value < 128:
        return BYTE[value]
    if value < 16384:
        return BYTE[(value & 0x7F) | 0x80] + BYTE[value >> 7]
    size = (value.bit_length() + 6) // 7
    spread = (
        (value & 0x7F)
        | (value & 0x3F80) << 1
        | (value & 0x1FC000) << 2
        | (value & 0xFE00000) << 3
        | (value & 0x7F0000000) << 4
        | (value & 0x3F800000000) << 5
        | (value & 0x1FC0000000000) << 6
        | (value & 0xFE000000000000) << 7
        | (value & 0x7F00000000000000) << 8
        | (value & 0x8000000000000000) << 9
    )
    return (spread | _CONTINUATION[size]).to_bytes(size, "little")


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
