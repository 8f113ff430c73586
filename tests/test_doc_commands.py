"""Every shell command the docs show is run, as written, unless it needs the cluster.

Commands are read from the ```sh blocks of README.md, docs/*.md and the examples' READMEs.
Each one is either run here (in a scratch copy of the repository, with this environment's
``python`` first on PATH), or belongs to the cluster (``kubectl``, ``helm``, ``istioctl``,
``minikube``), or is run elsewhere for a named reason; a new command in the docs that fits
none of these fails :func:`test_every_docs_command_is_accounted_for`.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from helpers import ROOT

DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "examples").glob("*/README.md")),
]
CLUSTER_TOOLS = ("kubectl", "helm", "istioctl", "minikube")
#: Commands run by something else, exactly as written, and why.
ELSEWHERE = {
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[examples]' && "
    ".venv/bin/python examples/demo.py": "the README's demo command: .ci/run runs the README "
    "commands in a fresh clone (and tests/test_demo.py the demo itself)",
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && "
    ".venv/bin/python -m pytest -q": "the README's test command: .ci/run runs it in a fresh clone",
    "pip install -e '.[examples]'": "an installation into the user's environment: .ci/run and "
    ".ci/smoke_plain_install.sh install the package into fresh virtual environments",
    "python -m pytest -q -n 0 -m servers tests/servers": "the servers matrix: .ci/run runs "
    "it after installing the servers extra",
    "python -m meshmetrics check live.yaml --release komplete-prometheus": "reads the output of "
    "the kubectl command before it (the same check runs on generated files below)",
    "python -m meshmetrics check examples/cmpt756s1/k8s/*.yaml --prometheus "
    "http://127.0.0.1:9090": "asks the cluster's Prometheus through a port-forward "
    "(tests/test_mesh_manifests.py runs it against a real local Prometheus)",
    ".venv/bin/python tests/compat/run.py": "the full compatibility run (Flask extensions' "
    "suites in venvs of their own, many minutes): run before a release; .ci/run runs --bounded",
    ".venv/bin/python tests/compat/run.py --bounded": ".ci/run runs it as written",
    ".venv/bin/python tests/compat/run.py --table": "rewrites docs/compatibility.md: "
    "tests/test_compat_suite.py checks the table there is the one it writes",
}
#: Commands that serve until stopped, and the URL that answers once they do.
SERVERS = {
    "python examples/cmpt756db/app.py 30002": "http://127.0.0.1:30002/metrics",
    "JWT_SECRET=$(openssl rand -hex 32) CMPT756_DB_URL=http://127.0.0.1:30002/api/v1/datastore "
    "python examples/cmpt756s1/app.py 30000": "http://127.0.0.1:30000/metrics",
    "gunicorn -w 4 -c python:meshmetrics.gunicorn 'app:app'": "http://127.0.0.1:8000/metrics",
}
#: Commands that run until interrupted (Ctrl-C), and what they print on stderr once a Ctrl-C
#: ends them cleanly: interrupted then (not after a fixed wait, which on a busy machine
#: could land while Python was still importing), they must exit 0.
INTERACTIVE = {
    "python -m meshmetrics top http://127.0.0.1:30000 http://127.0.0.1:30002": "Ctrl-C stops"
}

_BLOCK = re.compile(r"```(?:sh|bash|shell)\n(.*?)```", re.S)
#: The app a user's ``gunicorn ... 'app:app'`` would serve (the guide's command names theirs).
_USER_APP = """
from flask import Flask
from meshmetrics import instrument

app = Flask("app")
instrument(app)
app.add_url_rule("/", "index", lambda: "ok")
"""


def doc_commands() -> list[tuple[str, str]]:
    """``(file, command)`` for every command line of every shell block, in order."""
    found = []
    for path in DOCS:
        for block in _BLOCK.findall(path.read_text(encoding="utf-8")):
            for line in block.replace("\\\n", " ").splitlines():
                command = re.sub(r"\s+#.*$", "", line).strip()
                command = re.sub(r"\s{2,}", " ", command)
                if command and not command.startswith("#"):
                    found.append((str(path.relative_to(ROOT)), command))
    return found


def kind_of(command: str) -> str:
    if command.split()[0] in CLUSTER_TOOLS:
        return "cluster"
    if command in ELSEWHERE:
        return "elsewhere"
    if command in SERVERS:
        return "server"
    if command in INTERACTIVE:
        return "interactive"
    if command.startswith(("python -m meshmetrics ", "python examples/", "export ")):
        return "run"
    return "unknown"


def test_every_docs_command_is_accounted_for() -> None:
    commands = doc_commands()
    assert len(commands) >= 25
    unknown = [
        f"{where}: {command}" for where, command in commands if kind_of(command) == "unknown"
    ]
    assert unknown == [], "classify these docs commands (run them, or say why not):\n" + "\n".join(
        unknown
    )
    runnable = [c for _, c in commands if kind_of(c) in ("run", "server", "interactive")]
    assert len(runnable) >= 10


def test_examples_manifests_are_regenerated_by_the_documented_command() -> None:
    """The READMEs' --out commands, with --check, hold for the checked-in k8s/ (no drift)."""
    outs = [c for _, c in doc_commands() if " manifests --app " in c and "--out examples/" in c]
    services = sorted({re.search(r"examples/(\w+)/app\.py", c).group(1) for c in outs})  # type: ignore[union-attr]
    assert services == ["cmpt756db", "cmpt756s1"]
    for command in outs:
        checked = command.replace(" --out ", " --check ")
        result = _run(checked, ROOT)
        assert result.returncode == 0, f"{checked}\n{result.stdout[-3000:]}{result.stderr}"


def _environment(bin_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["CMPT756_HOST"] = "127.0.0.1"  # the examples' bind address: keep test traffic local
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def _bin_dir(tmp: Path) -> Path:
    """A directory whose ``python`` and ``gunicorn`` are this interpreter's."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    tools = {"python": sys.executable, "gunicorn": str(Path(sys.executable).parent / "gunicorn")}
    for name, target in tools.items():
        if Path(target).exists():  # a wrapper, not a symlink: a venv is found by its path
            wrapper = bin_dir / name
            wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(target)} "$@"\n')
            wrapper.chmod(0o755)
    return bin_dir


def _run(
    command: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env or _environment(Path(sys.executable).parent),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _scratch_copy(tmp: Path) -> Path:
    """The repository's tracked files (``--out`` commands write into the copy)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    names = [n for n in listed.stdout.split("\0") if n] if listed.returncode == 0 else []
    copy = tmp / "repo"
    if not names:  # not a git checkout: copy the directories the commands use
        shutil.copytree(ROOT / "examples", copy / "examples")
        return copy
    for name in names:
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, target)
    return copy


def _wait(url: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}: {proc.communicate()[1][-2000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


def _stderr_line(proc: subprocess.Popen[str], wanted: str, bound: float = 120.0) -> str:
    """The first stderr line holding ``wanted`` (or the last line read, or ``""``), read
    until ``bound`` seconds have passed or the process ended."""
    assert proc.stderr is not None
    deadline, line = time.monotonic() + bound, ""
    while wanted not in line and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = proc.stderr.readline()
        if not line:  # the process ended
            break
    return line


@pytest.mark.slow
def test_runnable_docs_commands_run_as_written(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed by the documented JWT_SECRET=$(openssl rand ...) command")
    copy = _scratch_copy(tmp_path)
    (tmp_path / "userapp").mkdir()
    (tmp_path / "userapp" / "app.py").write_text(_USER_APP)
    env = _environment(_bin_dir(tmp_path))
    commands = [c for _, c in doc_commands()]
    servers: list[subprocess.Popen[str]] = []
    failures: list[str] = []
    try:
        for command in [c for c in commands if kind_of(c) == "server"]:
            cwd = tmp_path / "userapp" if command.startswith("gunicorn") else copy
            proc = subprocess.Popen(
                ["bash", "-c", command],
                cwd=cwd,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            servers.append(proc)
            _wait(SERVERS[command], proc)
        for command in [c for c in commands if kind_of(c) == "run"]:
            result = _run(command, copy, env)
            if result.returncode != 0:
                failures.append(f"{command}\n  -> {result.returncode}: {result.stderr[-1500:]}")
        for command in [c for c in commands if kind_of(c) == "interactive"]:
            proc = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=copy,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            said = _stderr_line(proc, INTERACTIVE[command])
            assert INTERACTIVE[command] in said, f"{command}: {said!r}, {proc.communicate()}"
            os.killpg(proc.pid, signal.SIGINT)
            try:
                _, err = proc.communicate(timeout=60)  # a bound; read all, so no pipe fills
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                _, err = proc.communicate()
            if proc.returncode != 0:
                failures.append(f"{command}\n  -> Ctrl-C exit {proc.returncode}: {err[-1500:]}")
    finally:
        for proc in servers:
            _stop(proc)
    assert failures == [], "\n".join(failures)
