"""The types of what users hand meshmetrics (the ``metrics_auth`` decorator, the views
``trace()`` decorates) and of the WSGI pieces it passes around, in one place, as
:mod:`flask.typing` does.

Flask's own types are imported for type checkers only: importing this module (the
configuration does) loads no Flask.  A leaf: it imports nothing of meshmetrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from flask import Response
    from flask.typing import ResponseReturnValue

#: A WSGI environ.
WSGIEnvironment = dict[str, Any]
#: A WSGI server's ``start_response``.
StartResponse = Callable[..., Any]
#: A WSGI application (``app.wsgi_app``, the metrics endpoint on ``metrics_port``).
WSGIApplication = Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]

#: A Flask view function.
ViewFunction = Callable[..., Any]
#: A decorator of view functions (``Instrumentation.tracing.trace(...)`` returns one).
ViewDecorator = Callable[[ViewFunction], ViewFunction]

#: The metrics endpoint's view, as ``metrics_auth`` receives it: it takes no argument and
#: returns the exposition as a :class:`flask.Response`.
MetricsView = Callable[[], "Response"]
#: What ``metrics_auth`` returns: the gated view, which may answer whatever a Flask view
#: may (the exposition, a 401 of its own, a redirect).
GatedView = Callable[[], "ResponseReturnValue"]


class MetricsAuth(Protocol):
    """The ``metrics_auth`` option: a view decorator (``auth.login_required`` of
    Flask-HTTPAuth, one of your own) applied to the metrics view once, at ``instrument()``.
    """

    def __call__(self, view: MetricsView, /) -> GatedView: ...
