"""The demo: the two example services, observed, on this machine.

Run it from a checkout: ``python examples/demo.py [--prometheus] [--keep-running]``.

Starts ``cmpt756db`` and ``cmpt756s1`` on free 127.0.0.1 ports with tracing to an
in-process Jaeger agent, drives a bounded workload through s1 (including 4xx and a
datastore outage for 5xx), then prints each service's per-route RED table from its own
``/metrics``, one trace crossing s1 -> db as a tree, and writes both services' manifests.
With ``--prometheus`` it also runs Debian's Prometheus against them and prints the
dashboard's queries with their results.  Everything it starts, it stops.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import requests
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from meshmetrics import Instrumentation
from meshmetrics.diagnose.rates import Scrape, rows, scrape
from meshmetrics.manifests import DEFAULT_KINDS, ManifestOptions, build_objects, to_yaml
from meshmetrics.manifests.dashboard import dashboard_expressions
from meshmetrics.manifests.model import model_from_registry
from meshmetrics.manifests.validate import OPERATOR_VERSION, validate_text
from meshmetrics.testing.receivers import JaegerAgent, Span

NAMESPACE = "cmpt756e4"
RELEASE = "komplete-prometheus"
EXAMPLES = Path(__file__).resolve().parent
#: Finer than the default (which starts at 5 ms): on loopback most requests take 1-5 ms.
DEMO_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def load_example(name: str, examples: Path) -> ModuleType:
    """Import ``examples/<name>/app.py`` as a module of its own."""
    path = examples / name / "app.py"
    if not path.is_file():
        raise click.UsageError(
            f"{path} not found: the demo runs the examples of a meshmetrics checkout "
            "(pass --examples DIR)"
        )
    spec = importlib.util.spec_from_file_location(f"meshmetrics_demo_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Service:
    """An app served by werkzeug's threaded server on 127.0.0.1, restartable on its port."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.port = 0
        self._server: BaseWSGIServer | None = None
        self.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def instrumentation(self) -> Instrumentation:
        inst: Instrumentation = self.app.config["instrumentation"]
        return inst

    def start(self) -> None:
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@dataclass
class Workload:
    """A bounded user-service workload: the course's flows plus the errors users make."""

    s1: str
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = requests.request(method, f"{self.s1}/api/v1/user{path}", timeout=10, **kwargs)
        self.sent += 1
        self.statuses[response.status_code] += 1
        return response

    def step(self, i: int) -> None:
        """One user's life: create, login, read, update, read, then delete."""
        user = {"fname": f"Ada{i}", "lname": "Lovelace", "email": f"ada{i}@example.com"}
        uid = self.call("POST", "/", json=user).json()["user_id"]
        token = self.call("PUT", "/login", json={"uid": uid}).json()["jwt"]
        auth = {"Authorization": f"Bearer {token}", "x-request-id": f"demo-{i}"}
        self.call("GET", f"/{uid}", headers=auth)
        self.call("PUT", f"/{uid}", headers=auth, json={"email": f"ada{i}@cmpt756.example"})
        self.call("GET", f"/{uid}", headers=auth)
        if i % 4 == 0:  # the mistakes clients make: 400, 401, 404
            self.call("POST", "/", json={"fname": "no email"})
            self.call("GET", f"/{uid}")
            self.call("GET", f"/{uid}", headers={"Authorization": "Bearer not-a-jwt"})
            self.call("PUT", "/login", json={"uid": "no-such-user"})
        self.call("DELETE", f"/{uid}", headers=auth)
        self.call("PUT", "/logoff", json={"jwt": token})


# -- reading /metrics ---------------------------------------------------------------------


def red_table(url: str, started: float) -> tuple[str, list[tuple[str, ...]]]:
    """The service name and its per-route rows since ``started``: requests, rate, 4xx, 5xx,
    p50 and p95 latency (the same figures as ``meshmetrics top``, from one scrape)."""
    after = scrape(url)
    since_start = Scrape(service=after.service, at=started)  # every counter began at zero
    table: list[tuple[str, ...]] = [
        (
            r.route,
            f"{r.requests:.0f}",
            f"{r.rate:.1f}",
            f"{r.client_errors:.0f}",
            f"{r.error_ratio * r.requests:.0f}",
            f"{r.p50 * 1000:.1f}",
            f"{r.p95 * 1000:.1f}",
        )
        for r in rows(since_start, after)
    ]
    return after.service, table


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    ]
    lines += [
        "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    return "\n".join(lines)


# -- traces -------------------------------------------------------------------------------


def best_trace(spans: list[Span]) -> list[Span]:
    """The trace crossing the most services (then the most spans)."""
    traces: dict[int, list[Span]] = defaultdict(list)
    for span in spans:
        traces[span.trace_id].append(span)
    if not traces:
        return []
    return max(
        traces.values(),
        key=lambda t: (
            len({s.service for s in t}),
            any("guid:x-request-id" in s.tags for s in t),
            len(t),
        ),
    )


def trace_tree(spans: list[Span]) -> str:
    by_parent: dict[int, list[Span]] = defaultdict(list)
    ids = {s.span_id for s in spans}
    for span in spans:
        by_parent[span.parent_id if span.parent_id in ids else 0].append(span)
    lines: list[str] = []

    def walk(parent: int, depth: int) -> None:
        for span in sorted(by_parent[parent], key=lambda s: s.start):
            status = span.tags.get("http.response.status_code", "")
            request_id = span.tags.get("guid:x-request-id")
            extra = f"  x-request-id={request_id}" if request_id else ""
            lines.append(
                f"{'  ' * depth}{'└─ ' if depth else ''}{span.service}: {span.operation} "
                f"[{status}] {span.tags.get('url.full') or span.tags.get('url.path', '')}{extra}"
            )
            walk(span.span_id, depth + 1)

    walk(0, 0)
    return "\n".join(lines)


# -- manifests ----------------------------------------------------------------------------


def write_manifests(services: dict[str, Service], out: Path) -> tuple[list[Path], str]:
    """Each service's manifests into ``out/<service>/``; and how they were validated."""
    written: list[Path] = []
    texts = []
    for name, service in services.items():
        inst = service.instrumentation
        model = model_from_registry(inst.config, inst.registries, inst.request_metrics)
        for filename, obj in build_objects(model, DEFAULT_KINDS, ManifestOptions()).items():
            path = out / name / filename
            path.parent.mkdir(parents=True, exist_ok=True)
            text = to_yaml(obj)
            path.write_text(text)
            written.append(path)
            texts.append(text)
    return written, validate("---\n".join(texts))


def validate(text: str) -> str:
    """Validate strictly with the schemas meshmetrics ships (``meshmetrics check`` does too)."""
    errors = validate_text(text)
    if errors:
        return "INVALID: " + "; ".join(errors[:3])
    schemas = f"prometheus-operator {OPERATOR_VERSION} CRDs and Grafana's dashboard schema"
    return f"valid ({schemas}, strict)"


# -- Prometheus ---------------------------------------------------------------------------


def run_prometheus(services: dict[str, Service], workload: Workload, echo: Any) -> None:
    from meshmetrics.testing.prometheus import (
        LocalPrometheus,
        prometheus_binary,
        target_from_monitor,
    )

    if prometheus_binary() is None:
        echo("\n--prometheus: no prometheus binary (apt-get install -y prometheus); skipped")
        return
    targets, expressions, groups = [], [], []
    for name, service in services.items():
        inst = service.instrumentation
        model = model_from_registry(inst.config, inst.registries, inst.request_metrics, istio=False)
        objects = build_objects(model, ["servicemonitor", "dashboard", "rules"])
        groups += objects[f"{name}-rules.yaml"]["spec"]["groups"]  # the dashboard reads them
        targets.append(
            target_from_monitor(
                objects[f"{name}-servicemonitor.yaml"], f"127.0.0.1:{service.port}", f"{name}-0"
            )
        )
        import json

        dashboard = json.loads(next(iter(objects[f"{name}-dashboard.yaml"]["data"].values())))
        expressions += [
            (name, e.replace("$__rate_interval", "30s")) for e in dashboard_expressions(dashboard)
        ]
    with LocalPrometheus(targets, rule_groups=groups) as prom:
        prom.wait_for("up == 1")
        for i in range(4):  # spread over scrapes so rate() sees increases
            workload.step(10_000 + i)
            time.sleep(1.1)
        echo(f"\nPrometheus {prom.url}: the generated dashboards' queries")
        for name, expr in expressions:
            result = prom.query(expr)
            values = [r["value"][1] for r in result[:3]]
            shown = expr if len(expr) <= 110 else expr[:107] + "..."
            echo(f"  [{name}] {len(result)} series {values}  {shown}")


# -- the command --------------------------------------------------------------------------


@contextmanager
def quiet_werkzeug() -> Iterator[None]:
    logger = logging.getLogger("werkzeug")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_demo(
    requests_count: int, out: Path, keep_running: bool, prometheus: bool, examples: Path
) -> None:
    echo = click.echo
    with ExitStack() as stack:
        stack.enter_context(quiet_werkzeug())
        agent = JaegerAgent()
        stack.callback(agent.close)
        options = {
            "namespace": NAMESPACE,
            "release": RELEASE,
            "tracing": "jaeger",
            "trace_endpoint": agent.endpoint,
            "sampler": "const:1",
            "buckets": DEMO_BUCKETS,
        }
        db = Service(load_example("cmpt756db", examples).create_app(db_path=":memory:", **options))
        stack.callback(db.stop)
        s1_module = load_example("cmpt756s1", examples)
        s1 = Service(
            s1_module.create_app(
                db_url=f"{db.base}/api/v1/datastore", secret="demo-" + "x" * 32, **options
            )
        )
        stack.callback(s1.stop)
        services = {"cmpt756s1": s1, "cmpt756db": db}
        echo(
            f"cmpt756db on {db.base}, cmpt756s1 on {s1.base}; "
            f"spans to a Jaeger agent on {agent.endpoint}"
        )

        workload = Workload(s1.base)
        started = started_at = time.monotonic()
        with click.progressbar(length=requests_count, label="workload", file=sys.stderr) as bar:
            i = 0
            while workload.sent < requests_count:
                before = workload.sent
                workload.step(i)
                bar.update(workload.sent - before)
                i += 1
            db.stop()  # the datastore goes away: s1 must answer 503, not a stack trace
            for _ in range(3):
                workload.call("POST", "/", json={"fname": "A", "lname": "B", "email": "a@b"})
            db.start()
        elapsed = time.monotonic() - started
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(workload.statuses.items()))
        echo(f"\n{workload.sent} requests in {elapsed:.1f} s ({statuses})")

        header = ("route", "requests", "req/s", "4xx", "5xx", "p50 ms", "p95 ms")
        for name, service in services.items():
            _, table = red_table(f"{service.base}/metrics", started_at)
            echo(f"\n{name}: RED per route (from {service.base}/metrics; p50/p95 from its buckets)")
            echo(format_table(header, table))

        for service in services.values():
            tracing = service.instrumentation.tracing
            if tracing is not None:
                tracing.tracer.close()
        spans = agent.wait_for(1)
        trace = best_trace(spans)
        echo(f"\none trace of {len(trace)} spans (of {len(spans)} received), s1 -> db:")
        echo(trace_tree(trace))

        written, validity = write_manifests(services, out)
        echo(f"\nmanifests written to {out}/ ({len(written)} files): {validity}")
        for path in written:
            echo(f"  {path}")

        if prometheus:
            run_prometheus(services, workload, echo)
        if keep_running:
            echo(f"\nserving until Ctrl-C: {s1.base}/metrics  {db.base}/metrics")
            wait_for_ctrl_c()


#: How late a Ctrl-C may be acted on at most (see :func:`wait_for_ctrl_c`).
CTRL_C_SLICE = 0.2


def wait_for_ctrl_c() -> None:
    """Block until Ctrl-C (``KeyboardInterrupt``), in short sleeps.

    Python acts on a signal between bytecodes, in the main thread; a blocking call is cut
    short only when the signal interrupts that call itself.  A Ctrl-C that arrives just
    before the sleep starts (the main thread busy printing, or preempted on a loaded
    machine), or that the kernel hands to another thread (the servers' or the span
    exporter's), leaves ``time.sleep(3600)`` running for the hour.  A short sleep ends
    soon, and the interrupt waiting for it is raised then."""
    while True:
        time.sleep(CTRL_C_SLICE)


@click.command("demo")
@click.option(
    "--requests",
    "requests_count",
    type=click.IntRange(10, 100_000),
    default=200,
    show_default=True,
    help="Requests to send through cmpt756s1.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("meshmetrics-demo"),
    show_default=True,
    help="Where to write the generated manifests.",
)
@click.option("--keep-running", is_flag=True, help="Keep serving after the report (Ctrl-C stops).")
@click.option(
    "--prometheus", is_flag=True, help="Also run Debian's prometheus against the services."
)
@click.option(
    "--examples",
    type=click.Path(file_okay=False, path_type=Path),
    default=EXAMPLES,
    show_default=False,
    help="The examples directory of a checkout.",
)
def main(
    requests_count: int, out: Path, keep_running: bool, prometheus: bool, examples: Path
) -> None:
    """Run cmpt756db and cmpt756s1, drive traffic, show metrics, a trace and manifests."""
    try:
        run_demo(requests_count, out, keep_running, prometheus, examples)
    except KeyboardInterrupt:
        click.echo("\nstopped; everything the demo started is shut down", err=True)


if __name__ == "__main__":
    main()
