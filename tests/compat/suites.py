"""The Flask extensions whose own test suites the compatibility run replays.

Each one is pinned here (the sdist's version) and its test dependencies in
``constraints.txt``; a suite runs from its sdist, in a venv of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Suite:
    """One extension's test suite."""

    name: str
    dist: str
    version: str
    kind: str
    deps: tuple[str, ...]
    #: where its tests are in the sdist
    tests: str = "tests"
    #: extra pytest arguments (deselections, with the reason next to them)
    args: tuple[str, ...] = field(default=())

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}"

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"


SUITES: tuple[Suite, ...] = (
    Suite(
        "flask-limiter",
        "Flask-Limiter",
        "4.1.1",
        "rate limiting",
        (
            "flask[async]",
            "flask-restful",
            "flask-restx",
            "asgiref",
            "redis",
            "pymemcache",
            "pymongo",
            "hiro",
            "pytest",
            "pytest-check",
            "pytest-mock",
        ),
        # the storage backends run in docker containers (lovely-pytest-docker): none here
        args=("-k", "not redis and not memcache and not mongo and not valkey and not storage"),
    ),
    Suite(
        "flask-login",
        "Flask-Login",
        "0.6.3",
        "authentication (sessions)",
        ("pytest", "asgiref", "semantic-version"),
    ),
    Suite(
        "flask-httpauth",
        "Flask-HTTPAuth",
        "4.8.1",
        "authentication (HTTP Basic/Digest/Token)",
        ("pytest", "asgiref"),
    ),
    Suite(
        "flask-wtf",
        "Flask-WTF",
        "1.3.0",
        "CSRF and forms",
        ("pytest", "Flask-Babel", "flask-reuploaded"),
    ),
    Suite(
        "apiflask",
        "APIFlask",
        "3.1.2",
        "OpenAPI / REST framework",
        ("pytest", "openapi-spec-validator", "pyyaml", "asgiref", "requests"),
    ),
    Suite(
        "flask-cors",
        "Flask-Cors",
        "6.0.5",
        "CORS",
        ("pytest", "packaging"),
    ),
    Suite(
        "flask-compress",
        "Flask-Compress",
        "1.25",
        "compression",
        ("pytest", "flask-caching"),
    ),
    Suite(
        "flask-caching",
        "Flask-Caching",
        "2.5.1",
        "caching",
        ("pytest", "pytest-asyncio", "pytest-xprocess", "redis", "asgiref", "flask[async]"),
        # redis/memcached servers started by pytest-xprocess: none here; the suite turns
        # warnings into errors, and this pytest-asyncio warns about an unset option
        args=(
            "-k",
            "not redis and not memcache and not Redis and not Memcache",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
        ),
    ),
    Suite(
        "flask-admin",
        "Flask-Admin",
        "2.2.1",
        "admin views over SQL / ORM models (Flask-SQLAlchemy, SQLite)",
        (
            "pytest",
            "flask-sqlalchemy",
            "sqlalchemy",
            "sqlalchemy-utils",
            "flask-sqlalchemy-lite",
            "flask-babel",
            "beautifulsoup4",
            "pillow",
            "tablib",
            "arrow",
            "colour",
            "email-validator",
        ),
        tests="flask_admin/tests",
        # MongoDB, PostgreSQL, S3 and Azure (the file admin imports its client) need servers
        # or accounts: none here
        args=(
            "--ignore=flask_admin/tests/mongoengine",
            "--ignore=flask_admin/tests/pymongo",
            "--ignore=flask_admin/tests/peeweemodel",
            "--ignore=flask_admin/tests/geoa",
            "--ignore=flask_admin/tests/fileadmin",
            "--ignore=flask_admin/tests/sqla/test_postgres.py",
            "-k",
            "not postgres",
        ),
    ),
    Suite(
        "flask-sqlalchemy",
        "Flask-SQLAlchemy",
        "3.1.1",
        "SQL / ORM",
        ("pytest", "sqlalchemy", "blinker"),
    ),
)

#: The part ``.ci/run`` runs (``--bounded``): small, quick suites of different kinds.
BOUNDED = ("flask-limiter", "flask-login")
