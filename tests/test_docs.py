"""The docs cannot rot: the site builds strictly, every Python sample runs, every YAML parses."""

from __future__ import annotations

import doctest
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import PYTHON, ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for index, (lang, body) in enumerate(FENCE.findall(page.read_text())):
            if lang == language:
                found.append((f"{page.name}#{index}", body))
    return found


@pytest.mark.parametrize(("where", "code"), blocks("python"), ids=[w for w, _ in blocks("python")])
def test_python_sample_runs(where: str, code: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [PYTHON, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"{where}:\n{result.stderr}"


@pytest.mark.parametrize(("where", "text"), blocks("yaml"), ids=[w for w, _ in blocks("yaml")])
def test_yaml_sample_parses(where: str, text: str) -> None:
    assert yaml.safe_load(text) is not None, where


def test_every_page_is_in_the_site_and_it_builds_strictly(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = {next(iter(item.values())) for item in config["nav"]}
    assert listed == {p.name for p in (ROOT / "docs").glob("*.md")}
    result = subprocess.run(
        [PYTHON, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "reference" / "index.html").read_text().count("instrument") > 3


def test_docstring_examples() -> None:
    import meshmetrics

    failures, tried = doctest.testmod(meshmetrics)
    assert tried > 0
    assert failures == 0
