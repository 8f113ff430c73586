"""Connections the app takes over (a WebSocket session): the ``101`` the client saw.

A WebSocket handshake is an HTTP request (``Upgrade: websocket``) answered with
``101 Switching Protocols``; the connection then carries the session, not a response.
WSGI has no API for it, so the app (simple-websocket, under Flask-Sock or Flask-SocketIO's
threading mode) answers the handshake on the server's socket itself and signals the server
in the server's own way when the session is over:

* it calls ``start_response("101 …")`` (servers that send the status line themselves);
* it raises what the server takes for "the app handled the connection: write nothing":
  gunicorn's workers catch ``StopIteration``, werkzeug's server a ``ConnectionError``;
* it returns without calling ``start_response`` at all;
* it answers ``2xx`` from a WebSocket route (werkzeug's ``Rule(websocket=True)``, which
  only upgrade requests match): under werkzeug, Flask-Sock's handler returns an empty
  ``200`` that werkzeug writes to the socket the session already closed.

Each of these, for a request that asked for an upgrade, is counted as status ``101`` with
no exception.  The session is not a latency: a ``101`` is counted in
``http_request_total`` but not observed in the latency histogram (its span lasts the
session); while it lasts the route's in-progress gauge counts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The status of an upgraded connection.
SWITCHING_PROTOCOLS = 101

#: Raised out of the WSGI call by an app that took the connection over, so that the
#: server writes nothing more: gunicorn's workers stop on ``StopIteration``, werkzeug's
#: server treats a ``ConnectionError`` as a connection that is gone.
TAKEN_OVER: tuple[type[BaseException], ...] = (StopIteration, ConnectionError)


def asks_upgrade(environ: Mapping[str, Any]) -> bool:
    """Whether the request asks to switch protocols (``Connection: upgrade`` and an
    ``Upgrade`` header, as a WebSocket handshake does)."""
    return bool(environ.get("HTTP_UPGRADE")) and "upgrade" in str(
        environ.get("HTTP_CONNECTION", "")
    ).lower().replace(" ", "").split(",")


def upgraded(
    environ: Mapping[str, Any],
    status: int,
    raised: BaseException | None,
    websocket_route: bool,
) -> bool:
    """Whether the WSGI call upgraded its connection.

    ``status`` is what the app passed to ``start_response`` (0: nothing), ``raised`` what
    escaped the WSGI call, ``websocket_route`` whether the request was routed to a
    WebSocket rule.
    """
    if status == SWITCHING_PROTOCOLS:
        return True
    if not asks_upgrade(environ):
        return False
    if raised is not None:
        return isinstance(raised, TAKEN_OVER)
    return status == 0 or (websocket_route and 200 <= status < 300)


def websocket_rule(req: Any) -> bool:
    """Whether ``req`` (a Flask request, or ``None``) was routed to a WebSocket rule."""
    rule = getattr(req, "url_rule", None)
    return bool(getattr(rule, "websocket", False))
