"""A small instrumented service used by the subprocess tests (reloader, gunicorn, threads).

Run as a script: ``python service.py PORT [debug|nothreads|blueprint-debug|meshmetrics-run]``.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from flask import Blueprint, Flask, request

from meshmetrics import MeshMetrics, instrument

PAIR = threading.Barrier(2, timeout=10)


def create_app(blueprint: bool = False) -> Flask:
    app = Flask("service")
    bp = Blueprint("items", __name__, url_prefix="/api/v1/items")

    @bp.route("/<item_id>")
    def get_item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @bp.route("/pair")
    def pair() -> str:
        # Two requests must be inside this view at once, or the barrier breaks (500).
        PAIR.wait()
        return "met"

    @bp.route("/sleep")
    def sleep() -> str:
        time.sleep(float(request.args.get("s", "1")))
        return "slept"

    @bp.route("/pid")
    def pid() -> str:
        return str(os.getpid())

    app.register_blueprint(bp)
    if blueprint:
        instrument(bp, app=app, service="items")
    else:
        instrument(app, service="items")
    return app


app = create_app()

if __name__ == "__main__":
    port = int(sys.argv[1])
    mode = sys.argv[2] if len(sys.argv) > 2 else ""
    if mode == "debug":
        app.run(host="127.0.0.1", port=port, debug=True)
    elif mode == "blueprint-debug":
        create_app(blueprint=True).run(host="127.0.0.1", port=port, debug=True)
    elif mode == "nothreads":
        app.run(host="127.0.0.1", port=port, threaded=False)
    elif mode == "meshmetrics-run":
        MeshMetrics.instrumentation(app).run(host="127.0.0.1", port=port)
    else:
        app.run(host="127.0.0.1", port=port)
