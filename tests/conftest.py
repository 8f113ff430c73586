"""Fixtures: servers stopped at teardown, span receivers, the manifest validator."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from helpers import Server, serve_in_thread
from meshmetrics.testing.receivers import JaegerAgent, OTLPCollector, ZipkinCollector


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    """Start a :class:`Server`; every server started is stopped at teardown."""
    servers: list[Server] = []

    def start(argv: list[str], env: dict[str, str] | None = None) -> Server:
        """``argv`` makes the server bind port 0 of 127.0.0.1; ``server.port`` is the port."""
        server = Server(argv, env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], str]]:
    """Serve apps on loopback threads for one test; every server stops after it."""
    stops: list[Callable[[], None]] = []

    def start(app: Flask) -> str:
        base, stop = serve_in_thread(app)
        stops.append(stop)
        return base

    yield start
    for stop in stops:
        stop()


@pytest.fixture(scope="session")
def validator() -> object:
    """Strict validation with the schemas meshmetrics ships."""
    from meshmetrics.manifests import validate

    return validate


@pytest.fixture
def agent() -> Iterator[JaegerAgent]:
    receiver = JaegerAgent()
    yield receiver
    receiver.close()


@pytest.fixture
def collector() -> Iterator[OTLPCollector]:
    receiver = OTLPCollector()
    yield receiver
    receiver.close()


@pytest.fixture
def zipkin() -> Iterator[ZipkinCollector]:
    receiver = ZipkinCollector()
    yield receiver
    receiver.close()
