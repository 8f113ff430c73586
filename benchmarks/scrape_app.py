"""The 50-route app of ``scrape_cost.py``, importable by gunicorn (``scrape_app:app``)."""

from __future__ import annotations

from flask import Flask

from meshmetrics import instrument

ROUTES = 50


def add_routes(app: Flask, routes: int = ROUTES) -> None:
    """``routes`` routes (50); ``/rN/a`` answers 200, ``/rN/b`` 404, anything else 500."""

    def view(x: str) -> tuple[str, int]:
        return "ok", {"a": 200, "b": 404}.get(x, 500)

    for r in range(routes):
        app.add_url_rule(f"/r{r}/<x>", f"r{r}", view)


app = Flask("scrape")
instrument(app, service="scrape")
add_routes(app)
