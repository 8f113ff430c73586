"""The compatibility run's own pieces (tests/compat/): the JUnit reading, the comparison,
the pins, and the docs table generated from the results."""

from __future__ import annotations

import json
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from helpers import ROOT

sys.path.insert(0, str(ROOT / "tests" / "compat"))

import run
from suites import BOUNDED, SUITES

OUTCOMES = ("passed", "failed", "error", "skipped")
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")), min_size=1)


def junit(cases: list[tuple[str, str, str]], path: Path) -> None:
    suite = ET.Element("testsuite")
    for classname, name, outcome in cases:
        case = ET.SubElement(suite, "testcase", classname=classname, name=name)
        if outcome != "passed":
            ET.SubElement(case, "failure" if outcome == "failed" else outcome, message="x")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(path, encoding="utf-8")


@given(st.lists(st.tuples(names, names, st.sampled_from(OUTCOMES)), max_size=30))
def test_outcomes_read_every_case_and_keep_the_worst(
    cases: list[tuple[str, str, str]],
) -> None:
    rank = {"passed": 0, "skipped": 1, "failed": 2}
    expected: dict[str, str] = {}
    for classname, name, outcome in cases:
        kind = "failed" if outcome == "error" else outcome
        test = f"{classname}::{name}"
        if rank[kind] >= rank[expected.get(test, "passed")]:
            expected[test] = kind
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "junit.xml"
        junit(cases, path)
        assert run.outcomes(path) == expected


def test_compare_names_the_tests_that_fail_only_with_meshmetrics() -> None:
    suite = SUITES[0]
    baseline = {"seconds": 1.0, "error": None, "outcomes": {"a": "passed", "b": "failed", "c": "passed", "d": "skipped"}}  # fmt: skip
    probed = {"seconds": 2.0, "error": None, "report": {"requests": 7, "apps": 2, "violations": []},
              "outcomes": {"a": "failed", "b": "failed", "c": "passed", "d": "passed"}}  # fmt: skip
    line = run.compare(suite, baseline, probed)
    assert line["newly_failing"] == ["a"]
    assert (line["tests"], line["passed_baseline"], line["passed"]) == (4, 2, 2)
    assert (line["requests"], line["apps"], line["seconds"], line["error"]) == (7, 2, 3.0, None)
    assert run.failed(line)
    assert not run.failed({**line, "newly_failing": []})


def test_the_suites_cover_the_kinds_and_are_pinned() -> None:
    constraints = {
        line.split("==")[0].lower(): line.split("==")[1]
        for line in run.CONSTRAINTS.read_text().splitlines()
        if "==" in line
    }
    for suite in SUITES:
        assert constraints.get(suite.dist.lower(), suite.version) == suite.version
        for dep in suite.deps:
            assert dep.split("[")[0].lower() in constraints, dep
    assert len(SUITES) >= 6
    assert set(BOUNDED) <= {s.name for s in SUITES}
    assert "flask" in constraints
    assert "werkzeug" in constraints


def test_the_docs_table_is_the_one_generated_from_the_results() -> None:
    results = json.loads(run.RESULTS.read_text())["suites"]
    assert [line["suite"] for line in results] == [s.name for s in SUITES]
    text = run.DOC.read_text()
    inside = text.split(run.TABLE_START)[1].split(run.TABLE_END)[0]
    assert inside.strip() == run.table(results)


def test_a_partial_run_replaces_its_suites_lines_only(tmp_path: Path) -> None:
    names = [s.name for s in SUITES]
    old = [{"suite": name, "tests": 1} for name in reversed(names[:3])]
    results_file = tmp_path / "results.json"
    results_file.write_text(json.dumps({"suites": old}))
    kept = run.merged(results_file, [{"suite": names[1], "tests": 2}])
    assert kept == [
        {"suite": names[0], "tests": 1},
        {"suite": names[1], "tests": 2},
        {"suite": names[2], "tests": 1},
    ]
