"""The public surface: what ``meshmetrics`` exports, that each name imports, that
docs/api.md lists each, and what the errors users may catch are."""

from __future__ import annotations

import importlib
import subprocess

import pytest

import meshmetrics
from helpers import PYTHON, ROOT

PUBLIC = [
    "CLIENT_CLOSED",
    "OTHER_METHOD",
    "SLO",
    "UNMATCHED",
    "ConfigError",
    "ConstSampler",
    "ExportResult",
    "HostPort",
    "HttpEndpoint",
    "Instrumentation",
    "InstrumentationConflictError",
    "MeshConfig",
    "MeshMetrics",
    "MissingExtraError",
    "MultiprocessDirError",
    "ProbabilisticSampler",
    "RateLimitingSampler",
    "Sampler",
    "SpanExporter",
    "TracingSession",
    "forward_headers",
    "instrument",
]


def test_all_is_pinned() -> None:
    assert meshmetrics.__all__ == PUBLIC
    assert set(dir(meshmetrics)) >= set(PUBLIC)


def test_each_public_name_imports_in_a_fresh_interpreter() -> None:
    code = f"from meshmetrics import {', '.join(PUBLIC)}"
    subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True)


@pytest.mark.parametrize("name", PUBLIC)
def test_each_public_name_is_its_module_s(name: str) -> None:
    module = importlib.import_module(meshmetrics._MODULES[name], "meshmetrics")
    assert getattr(meshmetrics, name) is getattr(module, name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'instrumnet'"):
        _ = meshmetrics.instrumnet  # type: ignore[attr-defined]


def test_docs_api_lists_every_public_name() -> None:
    api = (ROOT / "docs" / "api.md").read_text()
    assert [name for name in PUBLIC if f"meshmetrics.{name}" not in api] == []


def test_the_errors_users_catch() -> None:
    """A conflict stays a ``RuntimeError`` (what meshmetrics raised for it before it had a
    class), a bad option a ``ValueError``, a missing extra an ``ImportError`` too."""
    assert issubclass(meshmetrics.InstrumentationConflictError, RuntimeError)
    assert issubclass(meshmetrics.MultiprocessDirError, RuntimeError)
    assert issubclass(meshmetrics.ConfigError, ValueError)
    assert issubclass(meshmetrics.MissingExtraError, meshmetrics.ConfigError)
    assert issubclass(meshmetrics.MissingExtraError, ImportError)


def test_every_public_member_of_instrumentation_is_documented() -> None:
    """Issue 24 item 5: what ``Instrumentation`` shows without an underscore is in
    docs/api.md's table; the rest is private."""
    from flask import Flask

    app = Flask("documented")
    inst = meshmetrics.instrument(app)
    try:
        public = {n for n in [*vars(inst), *dir(type(inst))] if not n.startswith("_")}
        api = (ROOT / "docs" / "api.md").read_text()
        table = api.split("## `meshmetrics.Instrumentation`")[1].split("\n## ")[0]
        assert sorted(n for n in public if f"`{n}" not in table) == []
    finally:
        inst.uninstrument()
