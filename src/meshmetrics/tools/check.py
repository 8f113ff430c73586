"""``meshmetrics check``: why Prometheus (or Grafana) sees nothing, one finding per line.

For a URL: is ``/metrics`` reachable (and if it is 404 while the app answers, the
reloader is the usual cause), is its Content-Type one Prometheus accepts, does it
parse, are the request metrics there, how many series each metric and label holds
(raw paths and ids in labels), and the lint ``promtool check metrics`` applies.
For manifests: will each ServiceMonitor/PodMonitor select its Service/pods, by
namespace, labels, port *name*, and the Helm ``release`` label.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from .._http import Answer, BodyTooLargeError, fetch

ERROR, WARNING, INFO, OK = "ERROR", "WARN", "INFO", "OK"
_ACCEPTED_TYPES = ("text/plain", "application/openmetrics-text")
_ID_LIKE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$|^[0-9a-f]{16,}$|^\d{4,}$",
    re.I,
)
_RAW_PATH_SEGMENT = re.compile(r"/(\d+|[0-9a-f]{8,}(-[0-9a-f]{4,})*)(/|$)", re.I)
_CAMEL = re.compile(r"[a-z][A-Z]")
_ABBREVIATED_UNITS = re.compile(r"_(ms|us|ns|sec|secs|kb|mb|gb|b)(_|$)")


@dataclass(frozen=True)
class Finding:
    severity: str
    target: str
    message: str
    fix: str = ""

    def line(self) -> str:
        fix = f" -> {self.fix}" if self.fix else ""
        return f"{self.severity:<5} {self.target}: {self.message}{fix}"


# -- a /metrics URL ----------------------------------------------------------------------

#: Largest exposition read (Prometheus' own default body_size_limit is unlimited, but a
#: page this size is a cardinality problem in itself).
MAX_BODY = 64 * 1024 * 1024
_MAX_REDIRECTS = 5


def get(
    url: str,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    max_bytes: int = MAX_BODY,
) -> Answer:
    """GET within ``timeout`` seconds in all (redirects included), at most ``max_bytes``.

    Raises ``OSError`` (``TimeoutError`` past the deadline), ``http.client.HTTPException``
    or ``ValueError`` (a body too large, a redirect loop).
    """
    deadline = time.monotonic() + timeout
    for _ in range(_MAX_REDIRECTS + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{url} did not answer within {timeout:g} s")
        answer = fetch(url, headers=headers, timeout=remaining, max_bytes=max_bytes)
        location = answer.headers.get("location")
        if answer.status not in (301, 302, 303, 307, 308) or not location:
            return answer
        url = urljoin(url, location)
    raise ValueError(f"more than {_MAX_REDIRECTS} redirects")


def exposition_text(answer: Answer) -> str:
    """The body as Prometheus reads it: UTF-8, strictly (it rejects anything else)."""
    try:
        return answer.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"not valid UTF-8 at byte {exc.start} (Prometheus rejects the whole scrape)"
        ) from None


def metrics_url(target: str, metrics_path: str = "/metrics") -> str:
    """A service base URL gets ``metrics_path``; a URL with a path is taken as is."""
    parts = urlsplit(target)
    if parts.path in ("", "/"):
        return target.rstrip("/") + metrics_path
    return target


def check_url(
    target: str,
    *,
    headers: dict[str, str] | None = None,
    max_series: int = 2000,
    max_label_values: int = 100,
    timeout: float = 10.0,
    max_bytes: int = MAX_BODY,
) -> list[Finding]:
    url = metrics_url(target)
    try:
        response = get(url, headers=headers, timeout=timeout, max_bytes=max_bytes)
    except TimeoutError:
        return [
            Finding(
                ERROR,
                url,
                f"no complete answer within {timeout:g} s",
                "the app is stuck or the scrape is too large: Prometheus' scrape_timeout "
                "(10 s by default) fails the same way",
            )
        ]
    except BodyTooLargeError as exc:
        return [
            Finding(
                ERROR,
                url,
                str(exc)[:300],
                "a page this large is a cardinality problem of its own: look for raw paths "
                "or ids in labels (raise the limit with --max-bytes to see them)",
            )
        ]
    except (OSError, ValueError, HTTPException) as exc:
        return [
            Finding(
                ERROR,
                url,
                f"unreachable ({type(exc).__name__}: {exc})"[:300],
                "is the service running? with minikube: kubectl port-forward svc/NAME PORT",
            )
        ]
    if response.status == 404:
        return [_diagnose_404(url, headers, timeout)]
    if response.status in (401, 403):
        return [
            Finding(
                ERROR,
                url,
                f"{response.status}: the metrics need credentials",
                "pass them with --header 'Authorization: ...'; in the ServiceMonitor use "
                "endpoints[].authorization or basicAuth",
            )
        ]
    if response.status != 200:
        return [Finding(ERROR, url, f"answered {response.status}", "see the app's log")]
    findings = [Finding(OK, url, "reachable")]
    content_type = response.content_type
    media = content_type.split(";")[0].strip().lower()
    if media not in _ACCEPTED_TYPES:
        findings.append(
            Finding(
                ERROR,
                url,
                f"Content-Type {content_type or '(none)'!r} is not a Prometheus format",
                "Prometheus 3 fails such scrapes: answer 'text/plain; version=0.0.4' or "
                "'application/openmetrics-text; version=1.0.0' (prometheus_client does)",
            )
        )
        return findings
    try:
        parser = parse_om if media == "application/openmetrics-text" else parse_text
        families = list(parser(exposition_text(response)))
    except Exception as exc:  # the parsers raise ValueError and friends
        findings.append(
            Finding(
                ERROR,
                url,
                f"exposition does not parse: {exc}"[:300],
                "fix the exporter; Prometheus drops the whole scrape",
            )
        )
        return findings
    findings.append(Finding(OK, url, f"{content_type} parses: {len(families)} families"))
    if media == "text/plain":
        findings.append(_check_openmetrics(url, headers, timeout))
    findings += _expected_families(url, families)
    findings += cardinality(url, families, max_series, max_label_values)
    findings += lint(url, families)
    findings += tracing_health(url, families)
    return findings


def _check_openmetrics(url: str, headers: dict[str, str] | None, timeout: float) -> Finding:
    """What Prometheus negotiates first (and needs for exemplars): OpenMetrics."""
    accept = {**(headers or {}), "Accept": "application/openmetrics-text; version=1.0.0"}
    try:
        response = get(url, headers=accept, timeout=timeout)
        media = response.content_type.split(";")[0].strip().lower()
        if media != "application/openmetrics-text":
            return Finding(INFO, url, "no OpenMetrics offered (text format only): no exemplars")
        families = list(parse_om(exposition_text(response)))  # type: ignore[no-untyped-call]
    except Exception as exc:
        return Finding(
            ERROR,
            url,
            f"the OpenMetrics answer does not parse: {exc}"[:300],
            "Prometheus asks for OpenMetrics first: fix the exporter",
        )
    return Finding(OK, url, f"OpenMetrics parses too: {len(families)} families")


def _diagnose_404(url: str, headers: dict[str, str] | None, timeout: float) -> Finding:
    parts = urlsplit(url)
    root = f"{parts.scheme}://{parts.netloc}/"
    try:
        get(root, headers=headers, timeout=timeout)
    except (OSError, ValueError, HTTPException):
        return Finding(ERROR, url, "404", "check the metrics path")
    return Finding(
        ERROR,
        url,
        "404 while the app answers: the metrics endpoint is not registered",
        "typical of prometheus-flask-exporter under app.run(debug=True)/flask run --debug: "
        "the reloader's serving process drops /metrics unless DEBUG_METRICS=1; "
        "meshmetrics.instrument(app) keeps it on. Otherwise check metrics_path",
    )


def _expected_families(url: str, families: list[Any]) -> list[Finding]:
    names = {f.name for f in families}
    prefixes = {
        n[: -len("http_request_duration_seconds")]
        for n in names
        if n.endswith("http_request_duration_seconds")
    }
    if not prefixes:
        return [
            Finding(
                WARNING,
                url,
                "no *_http_request_duration_seconds family: not a "
                "meshmetrics/prometheus-flask-exporter app, or no request measured yet",
                "instrument the app with meshmetrics.instrument(app)",
            )
        ]
    prefix = sorted(prefixes)[0]
    missing = [
        f"{prefix}{n}"
        for n in ("http_request", "http_request_exceptions")
        if f"{prefix}{n}" not in names
    ]
    if missing:
        return [Finding(WARNING, url, f"missing {', '.join(missing)}: dashboards will show gaps")]
    return [Finding(OK, url, f"request metrics present (prefix {prefix!r})")]


def series_counts(families: Iterable[Any]) -> dict[str, int]:
    """Series (samples) per family."""
    return {f.name: len(f.samples) for f in families}


def cardinality(
    url: str, families: list[Any], max_series: int, max_label_values: int
) -> list[Finding]:
    counts = series_counts(families)
    total = sum(counts.values())
    findings = [
        Finding(
            INFO,
            url,
            f"{total} series in {len(counts)} families; largest: "
            + ", ".join(f"{n} {c}" for n, c in sorted(counts.items(), key=lambda i: -i[1])[:3]),
        )
    ]
    for family in families:
        if counts[family.name] > max_series:
            findings.append(
                Finding(
                    WARNING,
                    url,
                    f"{family.name} has {counts[family.name]} series (> {max_series})",
                    "find the unbounded label below",
                )
            )
        values: dict[str, set[str]] = defaultdict(set)
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label not in ("le", "quantile"):
                    values[label].add(value)
        for label, seen in values.items():
            raw_paths = [v for v in seen if v.startswith("/") and _RAW_PATH_SEGMENT.search(v)]
            ids = [v for v in seen if _ID_LIKE.match(v)]
            if raw_paths:
                findings.append(
                    Finding(
                        WARNING,
                        url,
                        f"{family.name}{{{label}}} holds raw paths ({raw_paths[0]!r}, "
                        f"{len(raw_paths)} in all): one series per URL",
                        "label by route template (meshmetrics does; prometheus-flask-exporter: "
                        "group_by='url_rule')",
                    )
                )
            elif ids:
                findings.append(
                    Finding(
                        WARNING,
                        url,
                        f"{family.name}{{{label}}} holds ids ({ids[0]!r}, {len(ids)} in all)",
                        "drop ids from labels",
                    )
                )
            elif len(seen) > max_label_values:
                findings.append(
                    Finding(
                        WARNING,
                        url,
                        f"{family.name}{{{label}}} has {len(seen)} values (> {max_label_values})",
                        "bound that label",
                    )
                )
    return findings


def _sum(families: list[Any], sample: str, **labels: str) -> float | None:
    values = [
        s.value
        for f in families
        for s in f.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(values) if values else None


def tracing_health(url: str, families: list[Any]) -> list[Finding]:
    """What meshmetrics' span counters say: spans lost, export failures, or no span at all
    while requests are served (the usual cause: a backend host or port nobody listens on)."""
    exported = _sum(families, "meshmetrics_spans_exported_total")
    sent = _sum(families, "meshmetrics_spans_sent_total")
    if exported is None and sent is None:
        return []  # tracing off, or OpenTelemetry's SDK exports (its own metrics)
    findings = []
    requests_served = sum(
        s.value
        for f in families
        if f.name.endswith("http_request")
        for s in f.samples
        if s.name.endswith("http_request_total")
    )
    drops = {
        reason: _sum(families, "meshmetrics_spans_dropped_total", reason=reason) or 0.0
        for reason in ("export_error", "queue_full", "too_large")
    }
    fix = {
        "export_error": "the backend refused or is unreachable: check trace_endpoint (the "
        "app's log names the first error); with Istio, install the Jaeger add-on "
        "(samples/addons/jaeger.yaml) and use zipkin.istio-system:9411 or OTLP on 4318",
        "queue_full": "the backend cannot keep up: sample less (sampler=probabilistic:0.1) "
        "or raise span_queue_size",
        "too_large": "spans above the UDP datagram limit: use tracing=otlp or zipkin",
    }
    for reason, count in drops.items():
        if count:
            findings.append(
                Finding(WARNING, url, f"{count:,.0f} spans dropped ({reason})", fix[reason])
            )
    if sent:
        findings.append(
            Finding(
                INFO,
                url,
                f"{sent:,.0f} spans sent over UDP to a Jaeger agent: UDP confirms nothing, "
                "these may have reached nobody",
                "prefer tracing=otlp or zipkin, whose deliveries are confirmed",
            )
        )
    if not exported and not sent and requests_served and not any(drops.values()):
        findings.append(
            Finding(
                INFO,
                url,
                f"no span exported yet for {requests_served:,.0f} requests",
                "spans leave in batches every 0.5 s; if this stays, check the sampler "
                "(const:0? the mesh's PILOT_TRACE_SAMPLING decides for requests through Envoy)",
            )
        )
    if exported and not any(drops.values()):
        findings.append(Finding(OK, url, f"{exported:,.0f} spans delivered, none dropped"))
    return findings


def lint(url: str, families: list[Any]) -> list[Finding]:
    """The rules of ``promtool check metrics`` (client_golang's promlint)."""
    problems: list[str] = []
    for f in families:
        exposed = f"{f.name}_total" if f.type == "counter" else f.name
        if not f.documentation:
            problems.append(f"{exposed}: no help text")
        if _CAMEL.search(f.name):
            problems.append(
                f"{exposed}: metric names should be written in 'snake_case' not 'camelCase'"
            )
        if f.type != "counter" and f.name.endswith("_total"):
            problems.append(f'{exposed}: non-counter metrics should not have "_total" suffix')
        if f.type not in ("histogram", "summary", "gaugehistogram") and f.name.endswith(
            ("_bucket", "_count", "_sum")
        ):
            problems.append(
                f"{exposed}: non-histogram and non-summary metrics should not have "
                '"_bucket", "_count" or "_sum" suffixes'
            )
        if _ABBREVIATED_UNITS.search(f.name):
            problems.append(f"{exposed}: metric names should not contain abbreviated units")
    if not problems:
        return [Finding(OK, url, "lint clean (promtool check metrics rules)")]
    return [Finding(WARNING, url, p) for p in problems]


# -- manifests ---------------------------------------------------------------------------


def load_manifests(paths: list[Path]) -> list[dict[str, Any]]:
    """Every object in the files (``kind: List`` from ``kubectl get -o yaml`` unpacked)."""
    import yaml

    objects: list[dict[str, Any]] = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            items = doc.get("items") if doc.get("kind", "").endswith("List") else [doc]
            objects += [o for o in items or [] if isinstance(o, dict)]
    return objects


def _labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (
            op == "NotIn" and labels.get(key) in values
        ):
            return False
        if (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def _namespaces(monitor: dict[str, Any]) -> set[str] | None:
    """Namespaces a monitor looks in; None for any."""
    selector = monitor.get("spec", {}).get("namespaceSelector") or {}
    if selector.get("any"):
        return None
    names = selector.get("matchNames")
    return set(names) if names else {monitor.get("metadata", {}).get("namespace", "default")}


def check_manifests(objects: list[dict[str, Any]], release: str | None) -> list[Finding]:
    findings: list[Finding] = []
    services = [o for o in objects if o.get("kind") == "Service"]
    pods = [
        o for o in objects if o.get("kind") in ("Pod", "Deployment", "StatefulSet", "DaemonSet")
    ]
    monitors = [o for o in objects if o.get("kind") in ("ServiceMonitor", "PodMonitor")]
    if not monitors:
        return [Finding(ERROR, "manifests", "no ServiceMonitor or PodMonitor found")]
    for monitor in monitors:
        meta = monitor.get("metadata", {})
        name = f"{monitor['kind']}/{meta.get('namespace', 'default')}/{meta.get('name')}"
        labels = meta.get("labels") or {}
        if release is not None and labels.get("release") != release:
            findings.append(
                Finding(
                    ERROR,
                    name,
                    f"label release={labels.get('release')!r}, Prometheus selects "
                    f"release={release!r}: the monitor is ignored",
                    f"add metadata.labels.release: {release}",
                )
            )
        elif release is None and "release" not in labels:
            findings.append(
                Finding(
                    WARNING,
                    name,
                    "no release label: kube-prometheus-stack ignores it by default",
                    "add metadata.labels.release: <helm release>",
                )
            )
        if monitor["kind"] == "ServiceMonitor":
            findings += _check_service_monitor(name, monitor, services)
        else:
            findings += _check_pod_monitor(name, monitor, pods)
    return findings + check_mtls(objects)


def _check_service_monitor(
    name: str, monitor: dict[str, Any], services: list[dict[str, Any]]
) -> list[Finding]:
    spec = monitor.get("spec", {})
    namespaces = _namespaces(monitor)
    selector = spec.get("selector") or {}
    if not services:
        return [
            Finding(
                WARNING,
                name,
                "no Service given to check against",
                "add the Service's YAML (kubectl get svc NAME -o yaml)",
            )
        ]
    in_ns = [
        s
        for s in services
        if namespaces is None or s["metadata"].get("namespace", "default") in namespaces
    ]
    selected = [s for s in in_ns if _labels_match(selector, s["metadata"].get("labels") or {})]
    if not selected:
        near = [s for s in services if _labels_match(selector, s["metadata"].get("labels") or {})]
        if near:
            ns = near[0]["metadata"].get("namespace", "default")
            return [
                Finding(
                    ERROR,
                    name,
                    f"Service {near[0]['metadata']['name']} has the labels but is in "
                    f"namespace {ns}, outside namespaceSelector {sorted(namespaces or [])}",
                    f"set spec.namespaceSelector.matchNames: [{ns}]",
                )
            ]
        return [
            Finding(
                ERROR,
                name,
                f"selector {selector.get('matchLabels') or selector} matches no Service "
                f"(Service labels: {[s['metadata'].get('labels') for s in in_ns]})",
                "make selector.matchLabels equal the Service's metadata.labels (app: NAME)",
            )
        ]
    findings = []
    for service in selected:
        svc = service["metadata"]["name"]
        port_names = [p.get("name") for p in service.get("spec", {}).get("ports", [])]
        for endpoint in spec.get("endpoints") or []:
            port = endpoint.get("port")
            if port is None:
                findings.append(
                    Finding(
                        WARNING,
                        name,
                        "endpoint without a port name",
                        "name the Service port and use endpoints[].port",
                    )
                )
            elif port not in port_names:
                findings.append(
                    Finding(
                        ERROR,
                        name,
                        f"endpoint port {port!r} is not a port name of "
                        f"Service {svc} (names: {port_names})",
                        "endpoints[].port is the Service port's *name*, not its number",
                    )
                )
            else:
                findings.append(
                    Finding(
                        OK,
                        name,
                        f"selects Service {svc}, port {port!r}, path "
                        f"{endpoint.get('path', '/metrics')}",
                    )
                )
    return findings


def _check_pod_monitor(
    name: str, monitor: dict[str, Any], workloads: list[dict[str, Any]]
) -> list[Finding]:
    spec = monitor.get("spec", {})
    namespaces = _namespaces(monitor)
    selector = spec.get("selector") or {}
    for workload in workloads:
        meta = workload["metadata"]
        template = workload.get("spec", {}).get("template", workload)
        labels = template.get("metadata", {}).get("labels") or {}
        if namespaces is not None and meta.get("namespace", "default") not in namespaces:
            continue
        if not _labels_match(selector, labels):
            continue
        containers = template.get("spec", {}).get("containers", [])
        names = [p.get("name") for c in containers for p in c.get("ports", [])]
        findings = []
        for endpoint in spec.get("podMetricsEndpoints") or []:
            if endpoint.get("port") in names:
                findings.append(
                    Finding(
                        OK,
                        name,
                        f"selects {workload['kind']} {meta['name']}, port {endpoint['port']!r}",
                    )
                )
            else:
                findings.append(
                    Finding(
                        ERROR,
                        name,
                        f"port {endpoint.get('port')!r} is not a container "
                        f"port name of {meta['name']} (names: {names})",
                        "name the container port",
                    )
                )
        return findings
    if not workloads:
        return [
            Finding(
                WARNING,
                name,
                "no pod template given to check against",
                "add the Deployment's YAML (kubectl get deploy NAME -o yaml)",
            )
        ]
    return [Finding(ERROR, name, "selects no pod template given", "check selector and namespace")]


# -- Istio mTLS ------------------------------------------------------------------------

#: Where a policy without a selector applies to the whole mesh (Istio's root namespace).
MESH_ROOT_NAMESPACE = "istio-system"


def _mtls_mode(
    policies: list[dict[str, Any]], namespace: str, labels: dict[str, str], port: int | None
) -> tuple[str, str]:
    """The mode Istio applies to ``port`` of a workload, and the policy deciding it.

    Workload policies (with a selector) win over the namespace's, which wins over the
    mesh's; ``UNSET`` inherits from the next level; a port-level mode wins within a policy.
    """
    workload = [
        p
        for p in policies
        if p["metadata"].get("namespace", "default") == namespace
        and (p.get("spec", {}).get("selector") or {}).get("matchLabels")
        and _labels_match(p["spec"]["selector"], labels)
    ]
    namespace_wide = [
        p
        for p in policies
        if p["metadata"].get("namespace", "default") == namespace
        and not (p.get("spec", {}).get("selector") or {}).get("matchLabels")
    ]
    mesh = [
        p
        for p in policies
        if p["metadata"].get("namespace") == MESH_ROOT_NAMESPACE
        and not (p.get("spec", {}).get("selector") or {}).get("matchLabels")
    ]
    for found in (workload, namespace_wide, mesh):
        for policy in found:
            spec = policy.get("spec") or {}
            where = f"PeerAuthentication/{policy['metadata'].get('namespace', 'default')}/"
            where += str(policy["metadata"].get("name"))
            port_mode = ((spec.get("portLevelMtls") or {}).get(str(port)) or {}).get("mode")
            if port is not None and port_mode and port_mode != "UNSET":
                return port_mode, where
            mode = (spec.get("mtls") or {}).get("mode", "UNSET")
            if mode != "UNSET":
                return mode, where
    return "PERMISSIVE", "Istio's default"


def check_mtls(objects: list[dict[str, Any]]) -> list[Finding]:
    """Will Prometheus, outside the mesh and in plain text, get through to each scraped port?"""
    policies = [o for o in objects if o.get("kind") == "PeerAuthentication"]
    if not policies:
        return []
    findings: list[Finding] = []
    services = [o for o in objects if o.get("kind") == "Service"]
    for monitor in (o for o in objects if o.get("kind") == "ServiceMonitor"):
        mname = f"ServiceMonitor/{monitor['metadata'].get('namespace', 'default')}/"
        mname += str(monitor["metadata"].get("name"))
        selector = monitor.get("spec", {}).get("selector") or {}
        for service in services:
            if not _labels_match(selector, service["metadata"].get("labels") or {}):
                continue
            namespace = service["metadata"].get("namespace", "default")
            pod_labels = service.get("spec", {}).get("selector") or {}
            ports = {p.get("name"): p for p in service.get("spec", {}).get("ports", [])}
            for endpoint in monitor.get("spec", {}).get("endpoints") or []:
                entry = ports.get(endpoint.get("port"))
                if entry is None:
                    continue
                target = entry.get("targetPort", entry.get("port"))
                port = target if isinstance(target, int) else None
                mode, decided_by = _mtls_mode(policies, namespace, pod_labels, port)
                if mode == "STRICT":
                    findings.append(
                        Finding(
                            ERROR,
                            mname,
                            f"port {endpoint.get('port')!r} ({target}) of Service "
                            f"{service['metadata']['name']} is under STRICT mTLS "
                            f"({decided_by}): Prometheus, outside the mesh, scrapes in plain "
                            "text and the sidecar rejects it",
                            "serve the metrics on a port of their own and exempt it alone: "
                            "metrics_port=9464, then meshmetrics manifests --mtls strict",
                        )
                    )
                else:
                    findings.append(
                        Finding(
                            OK,
                            mname,
                            f"port {endpoint.get('port')!r} ({target}) accepts plain text "
                            f"({mode}, {decided_by})",
                        )
                    )
    return findings


# -- what a live Prometheus really loaded ----------------------------------------------


def _prometheus_api(base: str, path: str, timeout: float) -> Any:
    answer = get(f"{base.rstrip('/')}/api/v1/{path}", timeout=timeout)
    if answer.status != 200:
        raise ValueError(f"answered {answer.status}")
    body = json.loads(answer.body)
    if body.get("status") != "success":
        raise ValueError(str(body.get("error")))
    return body["data"]


def check_live(base: str, objects: list[dict[str, Any]], timeout: float = 10.0) -> list[Finding]:
    """Did this Prometheus select the monitors and load the rules?

    A monitor or rule whose ``release`` label (or namespace) Prometheus does not select is
    ignored without a trace in the cluster, and so is any alert inside it: only Prometheus'
    own API shows it.  prometheus-operator names scrape pools
    ``serviceMonitor/<namespace>/<name>/<endpoint>`` (``podMonitor/...``)."""
    try:
        pools = {
            t.get("scrapePool", "")
            for t in _prometheus_api(base, "targets", timeout)["activeTargets"]
        }
        groups = {g.get("name") for g in _prometheus_api(base, "rules", timeout)["groups"]}
    except (OSError, ValueError, HTTPException) as exc:
        return [Finding(ERROR, base, f"Prometheus API unreachable ({type(exc).__name__}: {exc})")]
    findings: list[Finding] = []
    for obj in objects:
        kind, meta = obj.get("kind"), obj.get("metadata") or {}
        namespace, name = meta.get("namespace", "default"), meta.get("name")
        where = f"{kind}/{namespace}/{name}"
        if kind in ("ServiceMonitor", "PodMonitor"):
            prefix = f"{kind[0].lower()}{kind[1:]}/{namespace}/{name}/"
            if any(pool.startswith(prefix) for pool in pools):
                findings.append(Finding(OK, where, f"Prometheus scrapes it ({prefix}*)"))
            else:
                findings.append(
                    Finding(
                        ERROR,
                        where,
                        f"Prometheus at {base} has no scrape pool {prefix}*: it did not select "
                        f"this monitor (release label {meta.get('labels', {}).get('release')!r}, "
                        "or its namespace)",
                        "compare with kubectl get prometheus -A -o yaml: serviceMonitorSelector "
                        "and serviceMonitorNamespaceSelector",
                    )
                )
        elif kind == "PrometheusRule":
            wanted = [g.get("name") for g in (obj.get("spec") or {}).get("groups") or []]
            missing = [g for g in wanted if g not in groups]
            if missing:
                findings.append(
                    Finding(
                        ERROR,
                        where,
                        f"Prometheus at {base} did not load rule group(s) {missing}: the rule "
                        f"is ignored, its alerts too (release label "
                        f"{meta.get('labels', {}).get('release')!r})",
                        "compare with the Prometheus' ruleSelector and ruleNamespaceSelector",
                    )
                )
            else:
                findings.append(Finding(OK, where, f"Prometheus loaded {wanted}"))
    return findings
