"""The servers matrix runs only when selected (``-m servers``): it starts six servers and
takes minutes, so the normal suite leaves it to its own command (docs/servers.md) and to
.ci/run."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "servers" in (config.option.markexpr or ""):
        return
    matrix = [item for item in items if item.get_closest_marker("servers") is not None]
    if matrix:
        config.hook.pytest_deselected(items=matrix)
        items[:] = [item for item in items if item.get_closest_marker("servers") is None]
