"""``meshmetrics top``: live per-route rate, errors and latency from /metrics."""

from __future__ import annotations

import time

import click

from ._errors import fail, needs_extra


@click.command("top")
@click.argument("urls", nargs=-1, required=True, metavar="URL...")
@click.option(
    "--interval",
    type=click.FloatRange(0.2, 3600),
    default=2.0,
    show_default=True,
    help="Seconds between scrapes.",
)
@click.option("--once", is_flag=True, help="Print one snapshot (two scrapes apart) and exit.")
def top_command(urls: tuple[str, ...], interval: float, once: bool) -> None:
    """Live per-route rate, 5xx ratio, p50/p95/p99 and in-flight of services (their /metrics)."""
    try:
        from rich.console import Console
        from rich.live import Live
    except ImportError as exc:
        needs_extra("top", exc)
    from ..diagnose.rates import Top, render, snapshot
    from ..diagnose.scrape import USERINFO_REFUSED, has_userinfo, shown, url_problem

    for url in urls:
        if not url.startswith(("http://", "https://")):
            fail(f"{shown(url)!r} is not an http(s) URL")
        problem = url_problem(url)
        if problem is not None:
            fail(f"{shown(url)}: {problem}")
        if has_userinfo(url):
            fail(f"{shown(url)}: {USERINFO_REFUSED}")
    if once:
        table, down = snapshot(list(urls), interval)
        Console(width=160).print(render(table, down))
        return
    top = Top(list(urls))
    try:  # a Ctrl-C once this line is out (the first scrape included) ends top, exit 0
        click.echo(f"watching {len(urls)} target(s) every {interval:g} s; Ctrl-C stops", err=True)
        top.poll()
        with Live(render([], top.down), refresh_per_second=4) as live:
            while True:
                time.sleep(interval)
                live.update(render(top.poll(), top.down))
    except KeyboardInterrupt:
        pass
