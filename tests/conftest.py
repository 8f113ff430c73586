"""Fixtures: servers stopped at teardown, span receivers, the manifest validator."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from helpers import Server
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
