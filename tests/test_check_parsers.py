"""Properties of what `check` parses with: the line reader over any chunking of any bytes,
the text format handed over in parts, the recorded names read from PromQL, origins."""

from __future__ import annotations

import io
import itertools
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_fd_to_metric_families

from meshmetrics.diagnose.cardinality import Tally
from meshmetrics.diagnose.dashboards import recorded_names
from meshmetrics.diagnose.scrape import PART_BREAK, Deadline, in_parts, lines, origin

SETTINGS = settings(max_examples=200, deadline=None)


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@SETTINGS
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
def test_lines_read_any_chunking_as_prometheus_decodes_the_whole(
    data: bytes, cuts: list[int]
) -> None:
    chunks = _chunked(data, cuts)
    try:
        split = data.decode("utf-8").split("\n")
        expected: Any = [f"{line}\n" for line in split[:-1]] + [split[-1]] * bool(split[-1])
    except UnicodeDecodeError as exc:
        expected = f"not valid UTF-8 at byte {exc.start}"
    try:
        got: Any = list(lines(iter(chunks), Deadline(60)))
    except ValueError as exc:
        got = str(exc).split(" (")[0]
    assert got == expected


def test_lines_stop_at_the_deadline() -> None:
    with pytest.raises(TimeoutError):
        list(lines(iter([b"a\n" * 10]), Deadline(0.0)))


names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
values = st.text(alphabet='abz/0-9:"\\ ', max_size=6)


@st.composite
def expositions(draw: st.DrawFn) -> str:
    """Text-format pages: families of any type, any number of series, any labels."""
    out = []
    for name in draw(st.lists(names, min_size=1, max_size=4, unique=True)):
        kind = draw(st.sampled_from(["counter", "gauge", "untyped", "histogram"]))
        out.append(f"# HELP {name} Help of {name}.\n# TYPE {name} {kind}\n")
        for i in range(draw(st.integers(0, 40))):
            value = draw(values).replace("\\", "\\\\").replace('"', '\\"')
            labels = f'path="{value}",i="{i}"'
            if kind == "histogram":
                for le in ("0.1", "+Inf"):
                    out.append(f'{name}_bucket{{{labels},le="{le}"}} 1.0\n')
                out.append(f"{name}_count{{{labels}}} 1.0\n{name}_sum{{{labels}}} 0.5\n")
            else:
                suffix = "_total" if kind == "counter" else ""
                out.append(f"{name}{suffix}{{{labels}}} 1.0\n")
    return "".join(out)


def _tallies(families: Any) -> dict[str, tuple[str, str, int, dict[str, set[str]]]]:
    merged: dict[str, Any] = {}
    for family in families:
        if family.name == PART_BREAK:
            continue
        tally = merged.setdefault(
            family.name, (family.type, family.documentation, Tally(family.name, family.type))
        )
        tally[2].add(family.samples)
    return {n: (t, d, k.series, dict(k.values)) for n, (t, d, k) in merged.items()}


@SETTINGS
@given(expositions(), st.integers(1, 25))
def test_a_page_in_parts_tallies_as_the_page_whole(page: str, size: int) -> None:
    whole = _tallies(text_fd_to_metric_families(io.StringIO(page)))
    parts = list(text_fd_to_metric_families(in_parts(iter(io.StringIO(page)), size)))  # type: ignore[arg-type]
    assert _tallies(parts) == whole
    held: dict[str, int] = defaultdict(int)
    for family in parts:
        held[family.name] = max(held[family.name], len(family.samples))
    assert all(count <= size * 4 for count in held.values())  # a histogram series: 4 samples


recorded = st.from_regex(r"[a-z_]{1,5}:[a-z_]{1,5}:[a-z0-9_]{1,5}", fullmatch=True)
scraped = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)


@SETTINGS
@given(
    st.lists(recorded, min_size=1, max_size=3),
    st.lists(scraped, max_size=3),
    st.from_regex(r"[a-z:/ ]{0,8}", fullmatch=True),
)
def test_recorded_names_are_exactly_the_recorded_series_read(
    records: list[str], raw: list[str], matcher: str
) -> None:
    terms = [f'sum by (path) ({r}{{job="a:b",path=~"{matcher}"}})' for r in records]
    terms += [f"rate({name}[5m:1m] offset 1m)" for name in raw]
    assert recorded_names(" + ".join(terms)) == set(records)


hosts = st.from_regex(r"[a-zA-Z][a-zA-Z0-9]{0,5}(\.[a-z]{2,3})?", fullmatch=True)


@SETTINGS
@given(st.sampled_from(["http", "https", "HTTP"]), hosts, st.none() | st.integers(1, 65535))
def test_origins_normalise_case_and_default_ports(scheme: str, host: str, port: int | None) -> None:
    netloc = host if port is None else f"{host}:{port}"
    default = {"http": 80, "https": 443}[scheme.lower()]
    assert origin(f"{scheme}://{netloc}/a") == (scheme.lower(), host.lower(), port or default)
    assert origin(f"{scheme}://{netloc.upper()}/b?x") == origin(f"{scheme}://{netloc}/")
