"""An app whose metrics are on a separate port and behind a token, for the gunicorn test."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, request

from meshmetrics import instrument


def token_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if request.headers.get("Authorization") != f"Bearer {os.environ['METRICS_TOKEN']}":
            return "unauthorized\n", 401
        return view(*args, **kwargs)

    return guarded


app = Flask("protected")
instrument(app, service="protected", metrics_auth=token_required, metrics_host="127.0.0.1")


@app.route("/orders/<oid>")
def order(oid: str) -> dict[str, str]:
    return {"order": oid}
