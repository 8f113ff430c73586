"""apps.service's app behind an ASGI-to-WSGI adapter (a2wsgi), for uvicorn."""

from __future__ import annotations

from a2wsgi import WSGIMiddleware

from apps.service import app

asgi = WSGIMiddleware(app)  # type: ignore[arg-type]
