"""The bounded GET of a ``/metrics`` page, as ``check`` and ``top`` read it.

- One deadline for the whole of it: redirects, the body, and the parsing of each line as
  it arrives (a page too large to read in time is cut there, however fast it comes).
- A size cap, and no copy of the page held whole: the body is decoded and parsed line by
  line from the socket, family by family.
- UTF-8 as strictly as Prometheus.
- Redirects followed (at most 5), the caller's headers sent only to the origin they named:
  a redirect to another scheme, host or port (its *origin*, as curl >= 7.83 compares
  after CVE-2022-27776, and stricter than Go's ``net/http``, which keeps ``Authorization``
  for subdomains) gets none of them.  ``requests`` also strips ``Authorization`` when the
  host changes.  Once a hop went elsewhere the headers stay behind for the rest of the
  chain, back at the named origin too (the path there was chosen by the other host), as
  requests and WHATWG fetch keep them stripped and Go does since CVE-2024-45336.
"""

from __future__ import annotations

import codecs
import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from .._http import Answer, Streamed, stream
from ..tracing.redaction import redact_url

#: Largest exposition read (Prometheus' own default body_size_limit is unlimited, but a
#: page this size is a cardinality problem in itself).
MAX_BODY = 64 * 1024 * 1024
_MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
_DEFAULT_PORTS = {"http": 80, "https": 443}


#: Why a URL holding ``user:password@`` is refused: http.client never sends user-info.
USERINFO_REFUSED = (
    "user:password@ in a URL is never sent (and would be printed on every line): "
    "pass --header 'Authorization: Basic BASE64' instead"
)


def shown(url: str) -> str:
    """``url`` as a finding may print it: any ``user:password@`` as ``REDACTED``."""
    return redact_url(url, frozenset())


def has_userinfo(url: str) -> bool:
    """Does ``url`` hold ``user[:password]@`` (read as :func:`redact_url` reads it when
    the URL does not even parse)?"""
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return shown(url) != url


def url_problem(url: str) -> str | None:
    """Why ``url`` is no URL to GET (an unclosed ``[``, a port that is not 1-65535, no
    host), or ``None``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a URL ({exc})"
    if not parts.hostname:
        return "not a URL (no host)"
    if port == 0:
        return "not a URL (port 0)"
    return None


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port (the scheme's default when absent), as browsers compare them."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


@dataclass(frozen=True)
class Redirect:
    """A redirect followed: where to, and whether the caller's headers stayed behind."""

    status: int
    to: str
    headers_dropped: bool
    #: Back at the named origin after another one: the headers stay behind all the same.
    back: bool = False

    def describe(self) -> str:
        where = "after another origin" if self.back else "another origin"
        dropped = f" ({where}: the --header values were not sent there)"
        return f"{self.status} to {shown(self.to)}" + (dropped if self.headers_dropped else "")


@dataclass
class Deadline:
    """A wall-clock deadline shared by every step of one check."""

    seconds: float
    at: float = field(init=False)

    def __post_init__(self) -> None:
        self.at = time.monotonic() + self.seconds

    def remaining(self, what: str) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{what} not done within {self.seconds:g} s")
        return left


@dataclass
class Page:
    """The final answer of a GET (its body still to read) and the redirects before it."""

    answer: Streamed
    redirects: list[Redirect]

    @property
    def status(self) -> int:
        return self.answer.status

    @property
    def content_type(self) -> str:
        return self.answer.content_type


@contextlib.contextmanager
def open_page(
    url: str,
    headers: dict[str, str] | None,
    deadline: Deadline,
    max_bytes: int = MAX_BODY,
) -> Iterator[Page]:
    """GET ``url`` following redirects, the caller's headers only to its own origin.

    Raises ``OSError`` (``TimeoutError`` past the deadline), ``http.client.HTTPException``
    or ``ValueError`` (a body too large, too many redirects).
    """
    redirects: list[Redirect] = []
    named = origin(url)
    trusted = True  # no other origin yet: once one chose the next hop, none is trusted
    for _ in range(_MAX_REDIRECTS + 1):
        trusted = trusted and origin(url) == named
        sent = headers if trusted else {}
        with stream(
            url, headers=sent, timeout=deadline.remaining(url), max_bytes=max_bytes
        ) as answer:
            location = answer.headers.get("location")
            if answer.status not in _REDIRECTS or not location:
                yield Page(answer, redirects)
                return
        url = urljoin(url, location)
        elsewhere = origin(url) != named
        dropped = bool(headers) and (elsewhere or not trusted)
        redirects.append(Redirect(answer.status, url, dropped, back=dropped and not elsewhere))
    raise ValueError(f"more than {_MAX_REDIRECTS} redirects")


def get(
    url: str,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    max_bytes: int = MAX_BODY,
) -> Answer:
    """GET within ``timeout`` seconds in all (redirects included), at most ``max_bytes``,
    the whole body read."""
    with open_page(url, headers, Deadline(timeout), max_bytes) as page:
        body = b"".join(page.answer.chunks())
        return Answer(page.status, page.answer.headers, body)


def lines(chunks: Iterable[bytes], deadline: Deadline) -> Iterator[str]:
    """The body's lines as its chunks arrive (``page.answer.chunks()``), decoded as strictly
    as Prometheus decodes them (UTF-8), the deadline checked at each line."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    pending: list[str] = []  # the start of a line not ended yet, a piece per chunk
    for chunk in chunks:
        held = len(decoder.getstate()[0])  # an incomplete character from the last chunk
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise _not_utf8(offset - held + exc.start) from None
        offset += len(chunk)
        *complete, last = text.split("\n")
        if not complete:  # joined once, when the line ends: one huge line stays linear
            pending.append(last)
            continue
        complete[0] = "".join(pending) + complete[0]
        pending = [last]
        for line in complete:
            if time.monotonic() > deadline.at:
                raise TimeoutError(f"the page was not parsed within {deadline.seconds:g} s")
            yield line + "\n"
    held = len(decoder.getstate()[0])
    try:
        rest = "".join(pending) + decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise _not_utf8(offset - held + exc.start) from None
    if rest:
        yield rest


#: Samples of one family parsed before the text parser is made to hand over what it holds.
PART_SAMPLES = 10_000
#: The name of the empty family :func:`in_parts` inserts between two parts of a family.
PART_BREAK = "meshmetrics_check_part_break"


def in_parts(page_lines: Iterator[str], size: int = PART_SAMPLES) -> Iterator[str]:
    """The text format's lines, with the current family's ``# HELP``/``# TYPE`` lines
    repeated after an empty family every ``size`` samples: prometheus_client's text parser
    holds a family's samples until the family ends, and then hands this one over in parts
    that the caller joins (consecutive parts share their name)."""
    header: dict[str, str] = {}
    family, count = "", 0
    for line in page_lines:
        if line.startswith(("# HELP ", "# TYPE ")):
            name = line.split(None, 3)[2] if len(line.split(None, 3)) > 2 else ""
            if name != family:
                family, header, count = name, {}, 0
            header[line[2:6]] = line
        elif line.strip() and not line.startswith("#"):
            count += 1
            if count > size and header:
                yield f"# TYPE {PART_BREAK} untyped\n"
                yield from header.values()
                count = 1
        yield line


def _not_utf8(at: int) -> ValueError:
    return ValueError(f"not valid UTF-8 at byte {at} (Prometheus rejects the whole scrape)")


@dataclass(frozen=True)
class Family:
    """A parsed metric family as the checks read it; ``samples`` are kept only for the
    families a check needs them of (the request counter, meshmetrics' span counters)."""

    name: str
    type: str
    documentation: str
    series: int
    samples: tuple[Any, ...] = ()


def metrics_url(target: str, metrics_path: str = "/metrics") -> str:
    """A service base URL gets ``metrics_path``; a URL with a path is taken as is."""
    parts = urlsplit(target)
    if parts.path in ("", "/"):  # the query kept after the path, a fragment never sent
        return parts._replace(path=metrics_path, fragment="").geturl()
    return target
