"""cmpt756s1: the course's user service, calling cmpt756db through meshmetrics' session.

Blueprint at ``/api/v1/user``, same API as the course's ``s1`` service, but the JWT is
really verified (HS256, secret in ``JWT_SECRET``) and a missing datastore answers 503:

    POST   /                {"fname", "lname", "email"} -> {"user_id": ...}
    GET    /<user_id>       (Authorization: Bearer <jwt>) -> the datastore's read result
    PUT    /<user_id>       (auth) {"fname"?, "lname"?, "email"?}
    DELETE /<user_id>       (auth)
    PUT    /login           {"uid": user_id} -> the JWT
    PUT    /logoff          {"jwt": ...} -> {}

Every call to the datastore goes through ``Instrumentation.session()``, so ``x-request-id``
and the trace headers cross the hop. Run: ``python examples/cmpt756s1/app.py [PORT]``
(default 30000); the datastore is at ``CMPT756_DB_URL``.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
from typing import Any, NoReturn

import jwt
import requests
from flask import Blueprint, Flask, abort, jsonify, make_response, request

from meshmetrics import Instrumentation, instrument

PREFIX = "/api/v1/user"
DEFAULT_DB_URL = "http://cmpt756db:30002/api/v1/datastore"
TOKEN_LIFETIME = 3600  # seconds
USER_FIELDS = ("fname", "lname", "email")


def fail(status: int, reason: str) -> NoReturn:
    """Answer ``status`` with a JSON reason (and stop handling the request)."""
    abort(make_response(jsonify({"error": reason}), status))


def add_routes(bp: Blueprint, db_url: str, secret: str, session: requests.Session) -> None:
    """The service's routes, calling the datastore at ``db_url`` through ``session``."""

    def db(method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return session.request(method, f"{db_url}/{path}", timeout=5, **kwargs)
        except requests.RequestException:
            fail(503, "the datastore (cmpt756db) is unavailable")

    def body_fields(required: bool) -> dict[str, str]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            fail(400, "a JSON object is required")
        fields = {k: body[k] for k in USER_FIELDS if k in body}
        if any(not isinstance(v, str) or not v.strip() for v in fields.values()):
            fail(400, f"{', '.join(USER_FIELDS)} must be non-empty strings")
        if required and len(fields) != len(USER_FIELDS):
            fail(400, f"{', '.join(USER_FIELDS)} are required")
        if not fields:
            fail(400, f"at least one of {', '.join(USER_FIELDS)} is required")
        return fields

    def require_token() -> dict[str, Any]:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            fail(401, "Authorization: Bearer <jwt> is required")
        try:
            claims: dict[str, Any] = jwt.decode(token, secret, algorithms=["HS256"])
        except jwt.ExpiredSignatureError:
            fail(401, "the token has expired; log in again")
        except jwt.InvalidTokenError:
            fail(401, "the token is not valid")
        return claims

    def relay(response: requests.Response) -> Any:
        """The datastore's answer as this service's (a datastore 5xx becomes 503)."""
        if response.status_code >= 500:
            fail(503, f"the datastore failed ({response.status_code})")
        return make_response(
            response.content, response.status_code, {"Content-Type": "application/json"}
        )

    @bp.route("/health")
    def health() -> str:
        return "ok"

    @bp.route("/readiness")
    def readiness() -> str:
        return "ok"

    @bp.route("/", methods=["POST"])
    def create_user() -> Any:
        return relay(db("POST", "write", json={"objtype": "user", **body_fields(required=True)}))

    @bp.route("/<user_id>", methods=["GET"])
    def get_user(user_id: str) -> Any:
        require_token()
        return relay(db("GET", "read", params={"objtype": "user", "objkey": user_id}))

    @bp.route("/<user_id>", methods=["PUT"])
    def update_user(user_id: str) -> Any:
        require_token()
        params = {"objtype": "user", "objkey": user_id}
        return relay(db("PUT", "update", params=params, json=body_fields(required=False)))

    @bp.route("/<user_id>", methods=["DELETE"])
    def delete_user(user_id: str) -> Any:
        require_token()
        return relay(db("DELETE", "delete", params={"objtype": "user", "objkey": user_id}))

    @bp.route("/login", methods=["PUT"])
    def login() -> Any:
        body = request.get_json(silent=True)
        uid = body.get("uid") if isinstance(body, dict) else None
        if not isinstance(uid, str) or not uid:
            fail(400, '{"uid": "<user_id>"} is required')
        found = db("GET", "read", params={"objtype": "user", "objkey": uid})
        if found.status_code >= 500:
            fail(503, f"the datastore failed ({found.status_code})")
        if found.json().get("Count", 0) == 0:
            fail(404, f"no user {uid}")
        now = int(time.time())
        token = jwt.encode(
            {"user_id": uid, "iat": now, "exp": now + TOKEN_LIFETIME}, secret, "HS256"
        )
        return {"jwt": token}

    @bp.route("/logoff", methods=["PUT"])
    def logoff() -> Any:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("jwt"), str):
            fail(400, '{"jwt": "<token>"} is required')
        return {}  # tokens are stateless: the client forgets it


def create_app(db_url: str | None = None, secret: str | None = None, **options: Any) -> Flask:
    """The service; ``options`` go to ``instrument()`` (environment variables apply too)."""
    app = Flask("cmpt756s1")
    bp = Blueprint("users", __name__, url_prefix=PREFIX)
    inst: Instrumentation = instrument(
        bp,
        service="cmpt756s1",
        excluded_paths=(f"{PREFIX}/health", f"{PREFIX}/readiness"),
        **options,
    )
    add_routes(
        bp,
        (db_url or os.environ.get("CMPT756_DB_URL") or DEFAULT_DB_URL).rstrip("/"),
        # without JWT_SECRET, a random key: tokens then hold on this process only
        secret or os.environ.get("JWT_SECRET") or secrets.token_hex(32),
        inst.session(),
    )
    app.register_blueprint(bp)
    app.config["instrumentation"] = inst
    return app


app = create_app()

if __name__ == "__main__":
    if not os.environ.get("JWT_SECRET"):
        logging.warning(
            "JWT_SECRET is not set: tokens are signed with a random key of this process"
        )
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 30000
    app.run(host=os.environ.get("CMPT756_HOST", "0.0.0.0"), port=port)
