"""Walk the pages of a list endpoint: both list shapes, `next` links, fetching ahead.

A plain JSON array ends paging unless it is exactly full (then the next `page` is asked
for); an object with a truthy `next` leads to the page it names, on our own host only. A
helper thread fetches page N+1 while the caller works on page N.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Final

import httpx

from publisher.akinon.errors import Where, httpx_boundary
from publisher.errors import AkinonBadResponse, AkinonProtocolError, PublisherError
from publisher.pages import RecordPage

log = logging.getLogger("publisher.akinon")

# The safety cap on pages per scan: far above any real channel, low enough that a server
# repeating `next` (or ignoring `page`) ends in an error instead of an endless loop.
MAX_RECORDS_PER_SCAN: Final = 10_000_000
PAGE_CAP_MARGIN: Final = 100
DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# A page number or size longer than this is not one (and `int()` of 5000 digits raises).
MAX_PARAM_DIGITS: Final = 18

Origin = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class PageRequest:
    url: httpx.URL
    page: int
    limit: int


@dataclass(frozen=True, slots=True)
class Page:
    records: RecordPage
    # The page to ask for next, an error to raise once these records are handed over, or
    # None at the end.
    following: PageRequest | PublisherError | None
    # A plain array (a server ignoring `page` shows as the same first record again).
    plain: bool = False
    # The last page's number, when an envelope's `count` tells it.
    last_page: int | None = None


@dataclass(frozen=True, slots=True)
class Host:
    """Where the token may go: the base URL's scheme, host and port, and how to name it."""

    origin: Origin
    display: str


def read_page(body: Any, request: PageRequest, where: Where, host: Host) -> Page:
    """Tell a decoded page's shape; return its records and where paging goes next."""
    if isinstance(body, RecordPage):
        return array_page(body, request)
    if isinstance(body, dict) and isinstance(body.get("results"), RecordPage):
        step = following(body.get("next"), request, where, host)
        return Page(body["results"], step, last_page=last_page(body.get("count"), step))
    raise AkinonBadResponse(
        f"a page is neither a JSON array nor an object with a `results` array "
        f"(got {type(body).__name__}) at {where}"
    )


def last_page(count: Any, step: PageRequest | PublisherError | None) -> int | None:
    """Return the last page's number from an envelope's `count` (None if it cannot tell)."""
    if not isinstance(step, PageRequest) or type(count) is not int or count < 0:
        return None
    return max(step.page, -(-count // step.limit))


def following(
    link: Any, request: PageRequest, where: Where, host: Host
) -> PageRequest | PublisherError | None:
    """Return the page a `next` link points to, or the error to raise instead of it."""
    if not link:
        return None
    if not isinstance(link, str):
        return AkinonProtocolError(f"`next` is not a link ({type(link).__name__}) at {where}")
    try:
        with httpx_boundary(where):
            target = request.url.join(link)  # a relative link stays on our host
    except AkinonProtocolError as invalid:
        return invalid
    if origin(target) != host.origin:
        foreign = f"{target.scheme}://{target.host}:{origin(target)[2]}"
        return AkinonProtocolError(
            f"refusing a `next` link to another host ({foreign}) at {where}: "
            f"the token is only sent to {host.display}"
        )
    if target == request.url:
        return AkinonProtocolError(f"`next` points back to the same page at {where}")
    page = int_param(target, "page", request.page + 1)
    return PageRequest(target, page, int_param(target, "limit", request.limit))


def array_page(body: RecordPage, request: PageRequest) -> Page:
    """Decide where a plain-array page leads.

    Akinon's own client stops at a plain array. Ours asks for `limit` records, so a full
    array may hide more behind it: ask for the next page while an array is exactly full,
    stop at a shorter (or empty) one. A longer one means the server ignored `limit`, and so
    most likely `page` too: it is the whole list.
    """
    if not body or len(body) != request.limit:
        return Page(body, None, plain=True)
    return Page(body, numbered(request, request.page + 1), plain=True)


def numbered(request: PageRequest, page: int) -> PageRequest:
    """Return the request of another page of the same list: only `page` differs."""
    return PageRequest(request.url.copy_set_param("page", str(page)), page, request.limit)


def same_request(one: PageRequest, other: PageRequest) -> bool:
    """Say whether two requests ask for the same thing (query parameters in any order)."""
    if one.url.copy_with(query=None) != other.url.copy_with(query=None):
        return False
    return sorted(one.url.params.multi_items()) == sorted(other.url.params.multi_items())


class Repeats:
    """Notice a server that ignores `page`: a plain array starting with the same record again.

    A typed page's row tells its first record from another without decoding it whole (that
    would take a second pass over the body, on every page).
    """

    def __init__(self) -> None:
        self._first: Any = None

    def ended(self, page: Page, where: Where) -> RecordPage | None:
        """Return the empty, cut-short page that ends the scan if `page` repeats the last."""
        records = page.records
        if not page.plain or not records:
            return None
        first, self._first = self._first, records.row(0)
        if first is None or records.row(0) != first:
            return None
        log.warning("akinon.page_repeated %s: the server seems to ignore `page`; stopping", where)
        ended = RecordPage.plain(records.resource, [])
        ended.cut_short = True  # the list's end was never reached
        return ended


def next_request(
    page: Page, count: int, max_pages: int, scan: Where
) -> PageRequest | PublisherError | None:
    if isinstance(page.following, PageRequest) and count >= max_pages:
        return AkinonProtocolError(
            f"more than {max_pages} pages at {scan}: does the server repeat `next`?"
        )
    return page.following


Fetch = Callable[[PageRequest, threading.Event | None], Page]


def sequential(
    fetch: Fetch, first: PageRequest, max_pages: int, scan: Where
) -> Iterator[RecordPage]:
    """Fetch each page only when the caller asks for it."""
    step: PageRequest | PublisherError | None = first
    count = 0
    repeats = Repeats()
    while isinstance(step, PageRequest):
        page = fetch(step, None)
        count += 1
        ended = repeats.ended(page, replace(scan, page=step.page))
        if ended is not None:
            yield ended
            return
        step = next_request(page, count, max_pages, scan)
        yield page.records
    if step is not None:
        raise step


def origin(url: httpx.URL) -> Origin:
    return (url.scheme, url.host, url.port or DEFAULT_PORTS.get(url.scheme, 0))


def int_param(url: httpx.URL, name: str, default: int) -> int:
    """Read a positive integer query parameter; anything else (``²``, 5000 digits, 0) is `default`.

    The number only names the page in errors and logs (the link is followed as written) or
    sizes the next plain-array page, so an odd one must not stop the scan.
    """
    value = url.params.get(name, "")
    if not (value.isascii() and value.isdigit() and len(value) <= MAX_PARAM_DIGITS):
        return default
    return int(value) or default
