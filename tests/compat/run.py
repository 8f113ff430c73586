"""The compatibility run: Flask extensions' own test suites, with every app instrumented.

For each suite of ``suites.py``: download its sdist from PyPI, install it with its test
dependencies (pinned by ``constraints.txt``) and this checkout of meshmetrics into a venv
of its own, run its tests once without and once with the pytest plugin
``meshmetrics.testing.invariants``, and compare: an invariant violation, or a test that
passes without meshmetrics and fails with it, fails the run (exit status 1).

    .venv/bin/python tests/compat/run.py               # every suite; updates the results
    .venv/bin/python tests/compat/run.py --bounded     # the part .ci/run runs
    .venv/bin/python tests/compat/run.py --only flask-wtf,apiflask
    .venv/bin/python tests/compat/run.py --only apiflask --results tests/compat/results.json
    .venv/bin/python tests/compat/run.py --table       # docs/compatibility.md from results.json

Suites run one at a time, single-process, each bounded by ``--timeout``.  Downloads, venvs
and reports live in ``.compat-cache/`` (``MESHMETRICS_COMPAT_CACHE``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from suites import BOUNDED, SUITES, Suite

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONSTRAINTS = HERE / "constraints.txt"
RESULTS = HERE / "results.json"
DOC = ROOT / "docs" / "compatibility.md"
TABLE_START, TABLE_END = "<!-- compat-table:start -->", "<!-- compat-table:end -->"
PLUGIN = "meshmetrics.testing.invariants"
#: variables of the driver's environment that would change what a suite runs
SCRUBBED = ("PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PROMETHEUS_MULTIPROC_DIR")


def cache_dir() -> Path:
    return Path(os.environ.get("MESHMETRICS_COMPAT_CACHE", ROOT / ".compat-cache")).resolve()


def log(message: str) -> None:
    print(f"[compat {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- preparing a suite ----------------------------------------------------------------


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, **kwargs)


def fetch(suite: Suite, cache: Path) -> Path:
    """The suite's sdist, from PyPI (once), unpacked afresh; its tests must be in it."""
    sdists = cache / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    found = _sdist(suite, sdists)
    if found is None:
        run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:",
             "--no-deps", suite.requirement, "-d", str(sdists)],
            capture_output=True,
        )  # fmt: skip
        found = _sdist(suite, sdists)
    if found is None:
        raise RuntimeError(f"no sdist of {suite.requirement} downloaded")
    source = cache / "src" / suite.key
    shutil.rmtree(source, ignore_errors=True)
    source.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(found) as archive:
        top = archive.getnames()[0].split("/")[0]
        archive.extractall(source.parent / "_unpack", filter="data")
    (source.parent / "_unpack" / top).rename(source)
    shutil.rmtree(source.parent / "_unpack", ignore_errors=True)
    if not any((source / suite.tests).rglob("test*.py")):
        raise RuntimeError(f"the sdist of {suite.requirement} has no tests in {suite.tests}/")
    return source


def _sdist(suite: Suite, folder: Path) -> Path | None:
    wanted = {suite.dist.lower().replace("-", "_"), suite.dist.lower()}
    for path in sorted(folder.glob("*.tar.gz")):
        name, _, version = path.name.removesuffix(".tar.gz").rpartition("-")
        if name.lower().replace("-", "_") in wanted and version == suite.version:
            return path
    return None


def venv(suite: Suite, cache: Path, sdist_source: Path) -> Path:
    """A venv with the extension (from its sdist), its test deps and this meshmetrics."""
    env_dir = cache / "venvs" / suite.key
    python = env_dir / "bin" / "python"
    stamp = env_dir / "meshmetrics-compat.stamp"
    wanted = _stamp(suite)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    shutil.rmtree(env_dir, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(env_dir)])
    run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-c", str(CONSTRAINTS), str(sdist_source), *suite.deps, "-e", str(ROOT)],
        capture_output=True,
    )  # fmt: skip
    stamp.write_text(wanted)
    return python


def _stamp(suite: Suite) -> str:
    digest = hashlib.sha256()
    for part in (
        CONSTRAINTS.read_bytes(),
        repr((suite.requirement, suite.deps)).encode(),
        (ROOT / "pyproject.toml").read_bytes(),
    ):
        digest.update(part)
    return digest.hexdigest()


# -- running it -------------------------------------------------------------------------


def pytest_run(
    suite: Suite, python: Path, source: Path, out: Path, timeout: float, plugin: bool
) -> dict[str, Any]:
    """One run of the suite; its outcomes per test (and the plugin's report)."""
    mode = "meshmetrics" if plugin else "baseline"
    junit = out / f"{suite.key}.{mode}.xml"
    report = out / f"{suite.key}.invariants.json"
    for path in (junit, report):
        path.unlink(missing_ok=True)
    argv = [
        str(python), "-m", "pytest", suite.tests, *suite.args,
        "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly",
        "-o", "addopts=", f"--junitxml={junit}", f"--basetemp={out / 'tmp' / f'{suite.key}.{mode}'}",
    ]  # fmt: skip
    if plugin:
        argv += ["-p", PLUGIN, f"--meshmetrics-report={report}"]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SCRUBBED and not k.startswith("MESHMETRICS_")
    }
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv, cwd=source, env=env, capture_output=True, text=True, timeout=timeout
        )
        error = (
            None
            if done.returncode in (0, 1)
            else f"pytest exited {done.returncode}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    except subprocess.TimeoutExpired:
        error = f"timed out after {timeout:.0f} s"
    result: dict[str, Any] = {
        "seconds": round(time.monotonic() - started, 1),
        "outcomes": outcomes(junit) if junit.exists() else {},
        "error": error,
    }
    if plugin:
        result["report"] = json.loads(report.read_text()) if report.exists() else None
        if result["report"] is None and error is None:
            result["error"] = "the plugin wrote no report"
    return result


def outcomes(junit: Path) -> dict[str, str]:
    """``{test id: passed|failed|skipped}`` from a JUnit XML report (worst outcome wins)."""
    found: dict[str, str] = {}
    rank = {"passed": 0, "skipped": 1, "failed": 2}
    for case in ET.parse(junit).iter("testcase"):
        test = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        else:
            outcome = "passed"
        if rank[outcome] >= rank[found.get(test, "passed")]:
            found[test] = outcome
    return found


def compare(suite: Suite, baseline: dict[str, Any], probed: dict[str, Any]) -> dict[str, Any]:
    """The suite's line of the results."""
    before, after = baseline["outcomes"], probed["outcomes"]
    report = probed.get("report") or {}
    newly_failing = sorted(
        t for t, o in before.items() if o == "passed" and after.get(t) != "passed"
    )
    errors = [e for e in (baseline["error"], probed["error"]) if e]
    return {
        "suite": suite.name,
        "dist": suite.dist,
        "version": suite.version,
        "kind": suite.kind,
        "tests": len(after),
        "passed_baseline": sum(o == "passed" for o in before.values()),
        "passed": sum(o == "passed" for o in after.values()),
        "requests": report.get("requests", 0),
        "apps": report.get("apps", 0),
        "violations": report.get("violations", []),
        "newly_failing": newly_failing,
        "seconds": baseline["seconds"] + probed["seconds"],
        "error": "; ".join(errors) or None,
    }


def run_suite(suite: Suite, cache: Path, timeout: float) -> dict[str, Any]:
    out = cache / "runs"
    (out / "tmp").mkdir(parents=True, exist_ok=True)
    try:
        log(f"{suite.requirement}: sdist")
        source = fetch(suite, cache)
        log(f"{suite.requirement}: venv")
        python = venv(suite, cache, source)
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        return {"suite": suite.name, "dist": suite.dist, "version": suite.version,
                "kind": suite.kind, "error": f"preparing failed: {detail[-2000:]}"}  # fmt: skip
    log(f"{suite.requirement}: baseline run")
    baseline = pytest_run(suite, python, source, out, timeout, plugin=False)
    log(f"{suite.requirement}: run with {PLUGIN}")
    probed = pytest_run(suite, python, source, out, timeout, plugin=True)
    line = compare(suite, baseline, probed)
    log(
        f"{suite.requirement}: {line['tests']} tests, {line['requests']} requests probed, "
        f"{len(line['violations'])} violations, {len(line['newly_failing'])} newly failing"
        + (f", error: {line['error']}" if line["error"] else "")
    )
    return line


def failed(line: dict[str, Any]) -> bool:
    return bool(line.get("error") or line.get("violations") or line.get("newly_failing"))


# -- the results table ---------------------------------------------------------------------


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| Suite | Version | Kind | Tests | Requests probed | Violations | Newly failing |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for line in results:
        if line.get("tests") is None:
            rows.append(
                f"| {line['dist']} | {line['version']} | {line['kind']} | not run: {line.get('error', '')[:80]} | | | |"
            )
            continue
        rows.append(
            f"| {line['dist']} | {line['version']} | {line['kind']} | {line['tests']} | "
            f"{line['requests']} | {len(line['violations'])} | {len(line['newly_failing'])} |"
        )
    total = [line for line in results if line.get("tests") is not None]
    rows.append(
        f"| **all** | | | {sum(x['tests'] for x in total)} | {sum(x['requests'] for x in total)} | "
        f"{sum(len(x['violations']) for x in total)} | {sum(len(x['newly_failing']) for x in total)} |"
    )
    return "\n".join(rows)


def write_table(results_file: Path) -> None:
    """Replace the table of ``docs/compatibility.md`` with the one of ``results_file``."""
    results = json.loads(results_file.read_text())["suites"]
    text = DOC.read_text()
    head, _, rest = text.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    DOC.write_text(f"{head}{TABLE_START}\n{table(results)}\n{TABLE_END}{tail}")
    log(f"wrote the table of {DOC.relative_to(ROOT)} from {results_file}")


def merged(results_file: Path, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lines of ``results_file``, with the suites just run replaced (in suite order)."""
    lines = {line["suite"]: line for line in json.loads(results_file.read_text())["suites"]}
    lines.update({line["suite"]: line for line in results})
    return [lines[s.name] for s in SUITES if s.name in lines]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated suite names (see suites.py)")
    parser.add_argument("--bounded", action="store_true", help=f"only {', '.join(BOUNDED)}")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per pytest run")
    parser.add_argument(
        "--results",
        type=Path,
        help="the results JSON to write (with --only: its other suites' lines are kept)",
    )
    parser.add_argument("--table", action="store_true", help="only rewrite the docs table")
    args = parser.parse_args(argv)
    if args.table:
        write_table(args.results or RESULTS)
        return 0
    names = BOUNDED if args.bounded else (args.only.split(",") if args.only else None)
    unknown = set(names or ()) - {s.name for s in SUITES}
    if unknown:
        parser.error(f"unknown suites {sorted(unknown)}; known: {[s.name for s in SUITES]}")
    chosen = [s for s in SUITES if names is None or s.name in names]
    everything = names is None
    results_file = args.results or (RESULTS if everything else cache_dir() / "results.json")
    results = [run_suite(suite, cache_dir(), args.timeout) for suite in chosen]
    results_file.parent.mkdir(parents=True, exist_ok=True)
    kept = merged(results_file, results) if args.results and results_file.exists() else results
    results_file.write_text(json.dumps({"suites": kept}, indent=2) + "\n")
    log(f"results in {results_file}")
    if results_file.resolve() == RESULTS:
        write_table(results_file)
    print(table(results))
    bad = [line for line in results if failed(line)]
    for line in bad:
        for v in line.get("violations", []):
            print(f"VIOLATION {line['suite']}: {v['test']}: {v['invariant']}: {v['detail']}")
        for test in line.get("newly_failing", []):
            print(f"NEWLY FAILING {line['suite']}: {test}")
        if line.get("error"):
            print(f"ERROR {line['suite']}: {line['error']}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
