"""Zipkin's v2 JSON written span by span, without a dict per span.

The same text as ``json.dumps([...], separators=(",", ":"))`` of the dicts
:meth:`~.exporters.ZipkinExporter._span` builds (strings quoted by the ``json`` module's
own ASCII encoder); a tag's ``"key":"value"`` text is kept for the next span when short
(tags repeat: the method, the route, the host, the status).
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii as quote
from typing import TYPE_CHECKING

from .wire import CACHE_ENTRIES, CACHED_LENGTH

if TYPE_CHECKING:
    from .spans import MeshSpan

_NOT_TAGS = frozenset({"span.kind", "error"})
_KINDS = {"server": ',"kind":"SERVER"', "client": ',"kind":"CLIENT"'}


class SpanWriter:
    """JSON arrays of spans of one service (its ``localEndpoint`` and resource tags)."""

    def __init__(self, service: str, resource: dict[str, str]) -> None:
        self._endpoint = f'"localEndpoint":{{"serviceName":{quote(service)}}}'
        self._resource = {str(k): str(v) for k, v in resource.items()}
        self._resource_text = ",".join(self._pair(k, v) for k, v in self._resource.items())
        self._known: dict[str, dict[str, str]] = {}
        self._entries = 0

    @staticmethod
    def _pair(key: str, value: str) -> str:
        return f"{quote(key)}:{quote(value)}"

    def _tag(self, key: str, value: str) -> str:
        per_key = self._known.get(key)
        if per_key is not None:
            text = per_key.get(value)
            if text is not None:
                return text
        text = self._pair(key, value)
        if len(value) <= CACHED_LENGTH:
            if self._entries >= CACHE_ENTRIES:
                self._known.clear()
                self._entries = 0
            self._known.setdefault(key, {})[value] = text
            self._entries += 1
        return text

    def _tags(self, span: MeshSpan) -> str:
        tags = span.tags
        own = {k: str(v) for k, v in tags.items() if k not in _NOT_TAGS}
        error = tags.get("error") is True
        resource = self._resource
        if any(k in resource for k in own) or (error and "error" in resource):
            # a tag named like a resource attribute: the dict merge decides order and value
            merged = {**resource, **own}
            if error:
                merged["error"] = str(tags.get("error.type", "true"))
            return ",".join(self._pair(k, v) for k, v in merged.items())
        parts = [self._resource_text] if resource else []
        parts += [self._tag(k, v) for k, v in own.items()]
        if error:
            parts.append(self._pair("error", str(tags.get("error.type", "true"))))
        return ",".join(parts)

    def span(self, span: MeshSpan) -> str:
        """One span's JSON object."""
        context = span.context
        trace_id = context.trace_id
        trace = f"{trace_id:032x}" if trace_id >> 64 else f"{trace_id:016x}"
        text = (
            f'{{"traceId":"{trace}","id":"{context.span_id:016x}",'
            f'"name":{quote(span.operation_name)},'
            f'"timestamp":{int(span.start_time * 1e6)},'
            f'"duration":{max(1, int(span.duration * 1e6))},'
            f'{self._endpoint},"tags":{{{self._tags(span)}}}'
        )
        if context.parent_id:
            text += f',"parentId":"{context.parent_id:016x}"'
        kind = span.tags.get("span.kind")
        if kind in ("server", "client"):
            text += _KINDS[kind]
        if context.debug:
            text += ',"debug":true'
        if span.logs:
            annotations = ",".join(
                f'{{"timestamp":{int(ts * 1e6)},"value":{quote(str(fields.get("event", "log")))}}}'
                for ts, fields in span.logs
            )
            text += f',"annotations":[{annotations}]'
        return text + "}"

    def body(self, spans: list[MeshSpan]) -> bytes:
        """The request body: the JSON array of ``spans``."""
        return f"[{','.join([self.span(s) for s in spans])}]".encode()
