"""A throw-away Prometheus on loopback that scrapes like prometheus-operator would.

Used by the demo (``python examples/demo.py --prometheus``) and the end-to-end tests:
each target gets the labels the operator attaches from a ServiceMonitor (``job`` = Service name,
``namespace``, ``service``, ``pod``, ``endpoint`` = port name), so the generated
dashboard and rules can be run unchanged against real data.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Target:
    """A scrape target with the labels prometheus-operator would give it."""

    address: str  # host:port
    metrics_path: str
    labels: dict[str, str] = field(default_factory=dict)
    #: The scrape pool (job name) the operator would give it, e.g.
    #: ``serviceMonitor/<namespace>/<name>/0``; ``None``: ``target-<index>``.
    scrape_pool: str | None = None


def target_from_monitor(
    monitor: dict[str, Any], address: str, pod: str, pod_labels: dict[str, str] | None = None
) -> Target:
    """The target a ServiceMonitor would produce for the Service endpoint at ``address``
    (of a pod labelled ``pod_labels``: its ``podTargetLabels`` are copied onto the target)."""
    spec = monitor["spec"]
    copied = {
        name: (pod_labels or {})[name]
        for name in spec.get("podTargetLabels", [])
        if name in (pod_labels or {})
    }
    service = spec["selector"]["matchLabels"]["app"]
    endpoint = spec["endpoints"][0]
    meta = monitor["metadata"]
    return Target(
        address,
        endpoint.get("path", "/metrics"),
        {
            "job": service,
            "namespace": spec["namespaceSelector"]["matchNames"][0],
            "service": service,
            "pod": pod,
            "endpoint": endpoint["port"],
            **copied,
        },
        f"serviceMonitor/{meta.get('namespace', 'default')}/{meta['name']}/0",
    )


def _pool_name(target: Target, index: int, targets: list[Target]) -> str:
    """The target's scrape pool; a repeated one (two targets of one monitor) gets a suffix."""
    pool = target.scrape_pool or f"target-{index}"
    earlier = [t.scrape_pool for t in targets[:index]]
    return pool if pool not in earlier else f"{pool}-{index}"


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPrometheus:
    """Run ``prometheus`` on 127.0.0.1 with a temporary TSDB (or ``data_dir``, an existing
    one left in place, e.g. backfilled by promtool); use as a context manager."""

    def __init__(
        self,
        targets: list[Target],
        rule_groups: list[dict[str, Any]] | None = None,
        scrape_interval: str = "1s",
        features: tuple[str, ...] = (),
        *,
        data_dir: Path | None = None,
        flags: tuple[str, ...] = ("--storage.tsdb.retention.time=1h",),
        query_timeout: float = 10.0,
    ) -> None:
        self._features = features
        self._flags = flags
        self._query_timeout = query_timeout
        binary = prometheus_binary()
        if binary is None:
            raise FileNotFoundError("prometheus not found on PATH (apt-get install -y prometheus)")
        self._binary = binary
        self._dir = Path(tempfile.mkdtemp(prefix="meshmetrics-prometheus-"))
        self.data_dir = data_dir if data_dir is not None else self._dir / "data"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config: dict[str, Any] = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [
                {
                    "job_name": _pool_name(target, index, targets),
                    "metrics_path": target.metrics_path,
                    # a target's own "job" label wins over the scrape config's name
                    "static_configs": [{"targets": [target.address], "labels": target.labels}],
                }
                for index, target in enumerate(targets)
            ],
        }
        if rule_groups:
            (self._dir / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups}))
            config["rule_files"] = [str(self._dir / "rules.yaml")]
        (self._dir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalPrometheus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        self._log = open(self._dir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [
                self._binary,
                f"--config.file={self._dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.data_dir}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *self._flags,
                *(f"--enable-feature={feature}" for feature in self._features),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready after {timeout}s: {self.log()[-2000:]}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if hasattr(self, "_log"):
            self._log.close()
        shutil.rmtree(self._dir, ignore_errors=True)  # config, log and a temporary TSDB

    def log(self) -> str:
        path = self._dir / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def api(self, path: str, **params: Any) -> Any:
        """GET ``/api/v1/<path>``; returns ``data`` or raises with Prometheus' error."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self._query_timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise ValueError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def exemplars(self, expr: str, seconds: float = 600) -> list[dict[str, Any]]:
        """``/api/v1/query_exemplars`` over the last ``seconds`` (needs ``exemplar-storage``)."""
        now = time.time()
        result: list[dict[str, Any]] = self.api(
            "query_exemplars", query=expr, start=str(now - seconds), end=str(now)
        )
        return result

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (or scalar as a one-element list)."""
        data = self.api("query", query=expr)
        result = data["result"]
        return result if data["resultType"] in ("vector", "matrix") else [{"value": result}]

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll until ``expr`` returns data."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.5)
