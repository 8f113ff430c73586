"""The example services: their API contract, the hop between them, and current manifests."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from helpers import ROOT, load_example, serve_in_thread
from meshmetrics.testing.receivers import JaegerAgent

db_module = load_example("cmpt756db")
s1_module = load_example("cmpt756s1")
SECRET = "test-secret-" + "k" * 32


@pytest.fixture
def db() -> FlaskClient:
    return db_module.create_app(db_path=":memory:").test_client()


@pytest.fixture
def services() -> Iterator[tuple[FlaskClient, Flask]]:
    db_app = db_module.create_app(db_path=":memory:")
    base, stop = serve_in_thread(db_app)
    s1 = s1_module.create_app(db_url=f"{base}/api/v1/datastore", secret=SECRET)
    yield s1.test_client(), db_app
    stop()


DB = "/api/v1/datastore"
USERS = "/api/v1/user"


def test_db_contract(db: FlaskClient) -> None:
    created = db.post(
        f"{DB}/write", json={"objtype": "user", "fname": "A", "lname": "B", "email": "e"}
    )
    assert created.status_code == 200
    uid = created.json["user_id"]
    read = db.get(f"{DB}/read", query_string={"objtype": "user", "objkey": uid})
    assert read.json == {
        "Count": 1,
        "Items": [{"fname": "A", "lname": "B", "email": "e", "user_id": uid}],
    }
    assert db.get(f"{DB}/read", query_string={"objtype": "user", "objkey": "nope"}).json == {
        "Count": 0,
        "Items": [],
    }
    updated = db.put(
        f"{DB}/update", query_string={"objtype": "user", "objkey": uid}, json={"email": "f"}
    )
    assert updated.json == {"user_id": uid}
    assert (
        db.get(f"{DB}/read", query_string={"objtype": "user", "objkey": uid}).json["Items"][0][
            "email"
        ]
        == "f"
    )
    song = db.post(f"{DB}/write", json={"objtype": "music", "Artist": "X", "SongTitle": "Y"}).json
    assert set(song) == {"music_id"}
    assert db.delete(f"{DB}/delete", query_string={"objtype": "user", "objkey": uid}).json == {}
    assert (
        db.delete(f"{DB}/delete", query_string={"objtype": "user", "objkey": uid}).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/read", {"query_string": {"objtype": "car", "objkey": "1"}}, 400),
        ("GET", "/read", {"query_string": {"objtype": "user"}}, 400),
        ("POST", "/write", {"json": {"fname": "no objtype"}}, 400),
        ("POST", "/write", {"data": "not json"}, 400),
        (
            "PUT",
            "/update",
            {"query_string": {"objtype": "user", "objkey": "x"}, "json": {"a": 1}},
            404,
        ),
        ("PUT", "/update", {"query_string": {"objtype": "user", "objkey": "x"}, "json": [1]}, 400),
        ("DELETE", "/delete", {"query_string": {"objtype": "music", "objkey": "x"}}, 404),
        ("POST", "/load", {"json": {"objtype": "user", "uuid": "u1"}}, 401),
    ],
)
def test_db_errors_are_json(
    db: FlaskClient, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    response = db.open(f"{DB}{path}", method=method, **kwargs)
    assert response.status_code == status
    assert "error" in response.json


def test_db_loader_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVC_LOADER_TOKEN", "loader-token")
    db = db_module.create_app(db_path=":memory:").test_client()
    good = base64.b64encode(b"svc-loader:loader-token").decode()
    bad = base64.b64encode(b"svc-loader:wrong").decode()
    body = {"objtype": "user", "uuid": "u-1", "fname": "L"}
    assert (
        db.post(f"{DB}/load", json=body, headers={"Authorization": f"Basic {bad}"}).status_code
        == 401
    )
    loaded = db.post(f"{DB}/load", json=body, headers={"Authorization": f"Basic {good}"})
    assert loaded.json == {"user_id": "u-1"}
    assert (
        db.get(f"{DB}/read", query_string={"objtype": "user", "objkey": "u-1"}).json["Count"] == 1
    )


def test_db_metrics_at_root_health_not_measured(db: FlaskClient) -> None:
    db.get(f"{DB}/health")
    db.get(f"{DB}/readiness")
    db.get(f"{DB}/read", query_string={"objtype": "user", "objkey": "x"})
    text = db.get("/metrics").get_data(as_text=True)
    assert 'path="/api/v1/datastore/read"' in text
    assert "health" not in text
    assert "readiness" not in text
    assert 'service="cmpt756db"' in text


def test_s1_contract(services: tuple[FlaskClient, Flask]) -> None:
    s1, _ = services
    assert s1.post(f"{USERS}/", json={"fname": "A"}).status_code == 400
    assert s1.post(f"{USERS}/", json={"fname": "A", "lname": "", "email": "e"}).status_code == 400
    uid = s1.post(f"{USERS}/", json={"fname": "A", "lname": "B", "email": "a@b"}).json["user_id"]
    assert s1.put(f"{USERS}/login", json={"uid": "nobody"}).status_code == 404
    assert s1.put(f"{USERS}/login", json={}).status_code == 400
    token = s1.put(f"{USERS}/login", json={"uid": uid}).json["jwt"]
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["user_id"] == uid
    auth = {"Authorization": f"Bearer {token}"}
    assert s1.get(f"{USERS}/{uid}").status_code == 401
    assert s1.get(f"{USERS}/{uid}", headers={"Authorization": "Bearer forged"}).status_code == 401
    forged = jwt.encode({"user_id": uid}, "another-key-" + "z" * 32, "HS256")
    assert (
        s1.get(f"{USERS}/{uid}", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    )
    expired = jwt.encode({"user_id": uid, "exp": 1}, SECRET, "HS256")
    expired_response = s1.get(f"{USERS}/{uid}", headers={"Authorization": f"Bearer {expired}"})
    assert expired_response.status_code == 401
    assert "expired" in expired_response.json["error"]
    assert s1.get(f"{USERS}/{uid}", headers=auth).json["Items"][0]["email"] == "a@b"
    assert s1.put(f"{USERS}/{uid}", headers=auth, json={"email": "new@b"}).json == {"user_id": uid}
    assert s1.put(f"{USERS}/{uid}", headers=auth, json={"age": 3}).status_code == 400
    assert s1.put(f"{USERS}/missing", headers=auth, json={"email": "x"}).status_code == 404
    assert s1.delete(f"{USERS}/{uid}", headers=auth).json == {}
    assert s1.delete(f"{USERS}/{uid}", headers=auth).status_code == 404
    assert s1.put(f"{USERS}/logoff", json={"jwt": token}).json == {}
    assert s1.put(f"{USERS}/logoff", json={}).status_code == 400


def test_s1_answers_503_when_db_is_down() -> None:
    s1 = s1_module.create_app(
        db_url="http://127.0.0.1:9/api/v1/datastore", secret=SECRET
    ).test_client()
    response = s1.post(f"{USERS}/", json={"fname": "A", "lname": "B", "email": "a@b"})
    assert response.status_code == 503
    assert "unavailable" in response.json["error"]
    text = s1.get("/metrics").get_data(as_text=True)
    assert 'path="/api/v1/user/",status="503"' in text


def test_one_trace_and_request_id_cross_the_hop(agent: JaegerAgent) -> None:
    options = {"tracing": "jaeger", "trace_endpoint": agent.endpoint}
    db_app = db_module.create_app(db_path=":memory:", **options)
    seen: list[str] = []
    db_app.before_request(
        lambda: seen.append(__import__("flask").request.headers.get("x-request-id", ""))
    )
    base, stop = serve_in_thread(db_app)
    try:
        s1 = s1_module.create_app(
            db_url=f"{base}/api/v1/datastore", secret=SECRET, **options
        ).test_client()
        envoy = {
            "x-request-id": "istio-req-42",
            "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
            "x-b3-spanid": "e457b5a2e4d86bd1",
            "x-b3-sampled": "1",
        }
        assert (
            s1.post(
                f"{USERS}/", json={"fname": "A", "lname": "B", "email": "c"}, headers=envoy
            ).status_code
            == 200
        )
        spans = agent.wait_for(3)
    finally:
        stop()
    assert seen == ["istio-req-42"]
    assert {s.trace_id for s in spans} == {int(envoy["x-b3-traceid"], 16)}
    assert {s.service for s in spans} == {"cmpt756s1", "cmpt756db"}
    by_op = {s.operation: s for s in spans}
    assert by_op["datastore.write"].parent_id == by_op["HTTP POST"].span_id
    assert by_op["HTTP POST"].parent_id == by_op["users.create_user"].span_id


@pytest.mark.slow
@pytest.mark.parametrize(
    ("service", "probe"),
    [("cmpt756db", "/api/v1/datastore/health"), ("cmpt756s1", "/api/v1/user/health")],
)
def test_started_like_the_course(start_server: Any, service: str, probe: str) -> None:
    from helpers import PYTHON

    server = start_server(
        [PYTHON, str(ROOT / "examples" / service / "app.py"), "0"],
        env={"CMPT756_HOST": "127.0.0.1", "JWT_SECRET": SECRET},
    )
    import requests

    assert requests.get(server.base + probe, timeout=5).text == "ok"
    metrics = requests.get(server.base + "/metrics", timeout=5).text
    assert f'service="{service}"' in metrics
    assert "health" not in metrics
