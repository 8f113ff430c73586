"""cmpt756db: the course's datastore service, observable with one ``instrument()`` call.

Same API as the course's ``db`` service (a Blueprint at ``/api/v1/datastore``), with
SQLite instead of DynamoDB and proper errors where the course answered 200 or crashed:

    GET    /read?objtype=user&objkey=ID      -> {"Count": n, "Items": [...]}
    POST   /write   {"objtype": "user", ...} -> {"user_id": "<uuid4>"}
    PUT    /update?objtype=&objkey=  {...}   -> {"user_id": ID}       (404 unknown key)
    DELETE /delete?objtype=&objkey=          -> {}                    (404 unknown key)
    POST   /load    {"objtype", "uuid", ...} -> HTTP Basic svc-loader:$SVC_LOADER_TOKEN

Run: ``python examples/cmpt756db/app.py [PORT]`` (default 30002). Storage: the SQLite file
in ``CMPT756_DB_PATH`` (default: in memory, for the demo).
"""

from __future__ import annotations

import hmac
import json
import os
import sqlite3
import sys
import threading
import uuid
from typing import Any, NoReturn

from flask import Blueprint, Flask, abort, jsonify, make_response, request

from meshmetrics import Instrumentation, instrument

PREFIX = "/api/v1/datastore"
#: objtype -> (table, key field), as in the course's DynamoDB tables.
TABLES = {"user": ("User", "user_id"), "music": ("Music", "music_id")}


class Store:
    """JSON documents in SQLite tables, one connection guarded by a lock (threaded serving)."""

    def __init__(self, path: str = ":memory:") -> None:
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            for table, _ in TABLES.values():
                self._db.execute(
                    f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, doc TEXT)"
                )

    def read(self, objtype: str, key: str) -> list[dict[str, Any]]:
        table, _ = TABLES[objtype]
        with self._lock:
            rows = self._db.execute(f"SELECT doc FROM {table} WHERE id = ?", (key,)).fetchall()
        return [json.loads(doc) for (doc,) in rows]

    def put(self, objtype: str, key: str, fields: dict[str, Any]) -> None:
        table, key_field = TABLES[objtype]
        doc = json.dumps({**fields, key_field: key})
        with self._lock, self._db:
            self._db.execute(f"INSERT OR REPLACE INTO {table} (id, doc) VALUES (?, ?)", (key, doc))

    def update(self, objtype: str, key: str, fields: dict[str, Any]) -> bool:
        with self._lock:
            table, key_field = TABLES[objtype]
            row = self._db.execute(f"SELECT doc FROM {table} WHERE id = ?", (key,)).fetchone()
            if row is None:
                return False
            doc = {**json.loads(row[0]), **fields, key_field: key}
            with self._db:
                self._db.execute(f"UPDATE {table} SET doc = ? WHERE id = ?", (json.dumps(doc), key))
        return True

    def delete(self, objtype: str, key: str) -> bool:
        table, _ = TABLES[objtype]
        with self._lock, self._db:
            return self._db.execute(f"DELETE FROM {table} WHERE id = ?", (key,)).rowcount > 0


def fail(status: int, reason: str) -> NoReturn:
    """Answer ``status`` with a JSON reason (and stop handling the request)."""
    abort(make_response(jsonify({"error": reason}), status))


def _objtype(value: Any) -> str | None:
    return value if isinstance(value, str) and value in TABLES else None


def _fields(body: Any) -> dict[str, Any] | None:
    """The document fields of a JSON body (never the key or objtype themselves)."""
    if not isinstance(body, dict):
        return None
    return {k: v for k, v in body.items() if k not in ("objtype", "uuid", "user_id", "music_id")}


def create_blueprint(store: Store, loader_token: str | None) -> Blueprint:
    bp = Blueprint("datastore", __name__, url_prefix=PREFIX)

    @bp.route("/health")
    def health() -> str:
        return "ok"

    @bp.route("/readiness")
    def readiness() -> str:
        return "ok"

    def key_args() -> tuple[str, str]:
        objtype = _objtype(request.args.get("objtype"))
        if objtype is None:
            fail(400, f"objtype must be one of {sorted(TABLES)}")
        objkey = request.args.get("objkey", "")
        if not objkey:
            fail(400, "objkey is required")
        return objtype, objkey

    @bp.route("/read", methods=["GET"])
    def read() -> Any:
        items = store.read(*key_args())
        return {"Count": len(items), "Items": items}

    @bp.route("/write", methods=["POST"])
    def write() -> Any:
        body = request.get_json(silent=True)
        objtype = _objtype(body.get("objtype")) if isinstance(body, dict) else None
        fields = _fields(body)
        if objtype is None or fields is None:
            fail(400, f"a JSON object with objtype in {sorted(TABLES)} is required")
        key = str(uuid.uuid4())
        store.put(objtype, key, fields)
        return {TABLES[objtype][1]: key}

    @bp.route("/update", methods=["PUT"])
    def update() -> Any:
        objtype, objkey = key_args()
        fields = _fields(request.get_json(silent=True))
        if fields is None:
            fail(400, "a JSON object of fields is required")
        if not store.update(objtype, objkey, fields):
            fail(404, f"no {objtype} {objkey}")
        return {TABLES[objtype][1]: objkey}

    @bp.route("/delete", methods=["DELETE"])
    def delete() -> Any:
        objtype, objkey = key_args()
        if not store.delete(objtype, objkey):
            fail(404, f"no {objtype} {objkey}")
        return {}

    @bp.route("/load", methods=["POST"])
    def load() -> Any:
        auth = request.authorization
        if (
            loader_token is None
            or auth is None
            or auth.type != "basic"
            or auth.username != "svc-loader"
            or not hmac.compare_digest(auth.password or "", loader_token)
        ):
            fail(401, "HTTP Basic auth as svc-loader with $SVC_LOADER_TOKEN required")
        body = request.get_json(silent=True)
        objtype = _objtype(body.get("objtype")) if isinstance(body, dict) else None
        fields = _fields(body)
        key = body.get("uuid") if isinstance(body, dict) else None
        if objtype is None or fields is None or not isinstance(key, str) or not key:
            fail(400, "a JSON object with objtype and uuid is required")
        store.put(objtype, key, fields)
        return {TABLES[objtype][1]: key}

    return bp


def create_app(db_path: str | None = None, **options: Any) -> Flask:
    """The service; ``options`` go to ``instrument()`` (environment variables apply too)."""
    app = Flask("cmpt756db")
    store = Store(db_path or os.environ.get("CMPT756_DB_PATH", ":memory:"))
    bp = create_blueprint(store, os.environ.get("SVC_LOADER_TOKEN"))
    inst: Instrumentation = instrument(
        bp,
        service="cmpt756db",
        excluded_paths=(f"{PREFIX}/health", f"{PREFIX}/readiness"),
        **options,
    )
    app.register_blueprint(bp)
    app.config["instrumentation"] = inst
    return app


app = create_app()

if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 30002
    app.run(host=os.environ.get("CMPT756_HOST", "0.0.0.0"), port=port)
