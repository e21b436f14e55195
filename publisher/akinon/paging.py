"""Walk the pages of a list endpoint: both list shapes, `next` links, fetching ahead.

A plain JSON array ends paging unless it is exactly full (then the next `page` is asked
for); an object with a truthy `next` leads to the page it names, on our own host only. A
helper thread fetches page N+1 while the caller works on page N.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
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
    # The first record of the page before (plain arrays): notices a server ignoring `page`.
    previous_first: Any = None


@dataclass(frozen=True, slots=True)
class Page:
    records: RecordPage
    # The page to ask for next, an error to raise once these records are handed over, or
    # None at the end.
    following: PageRequest | PublisherError | None


@dataclass(frozen=True, slots=True)
class Host:
    """Where the token may go: the base URL's scheme, host and port, and how to name it."""

    origin: Origin
    display: str


def read_page(body: Any, request: PageRequest, where: Where, host: Host) -> Page:
    """Tell a decoded page's shape; return its records and where paging goes next."""
    if isinstance(body, RecordPage):
        return array_page(body, request, where)
    if isinstance(body, dict) and isinstance(body.get("results"), RecordPage):
        return Page(body["results"], following(body.get("next"), request, where, host))
    raise AkinonBadResponse(
        f"a page is neither a JSON array nor an object with a `results` array "
        f"(got {type(body).__name__}) at {where}"
    )


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


def array_page(body: RecordPage, request: PageRequest, where: Where) -> Page:
    """Decide where a plain-array page leads.

    Akinon's own client stops at a plain array. Ours asks for `limit` records, so a full
    array may hide more behind it: ask for the next page while an array is exactly full,
    stop at a shorter (or empty) one. A longer one means the server ignored `limit`, and so
    most likely `page` too: it is the whole list.
    """
    # A typed page's row tells its first record from another without decoding it whole (that
    # would take a second pass over the body, on every page).
    if request.previous_first is not None and body and body.row(0) == request.previous_first:
        log.warning("akinon.page_repeated %s: the server seems to ignore `page`; stopping", where)
        ended = RecordPage.plain(body.resource, [])
        ended.cut_short = True  # the list's end was never reached
        return Page(ended, None)
    if not body or len(body) != request.limit:
        return Page(body, None)
    url = request.url.copy_set_param("page", str(request.page + 1))
    return Page(body, PageRequest(url, request.page + 1, request.limit, body.row(0)))


def next_request(
    page: Page, count: int, max_pages: int, scan: Where
) -> PageRequest | PublisherError | None:
    if isinstance(page.following, PageRequest) and count >= max_pages:
        return AkinonProtocolError(
            f"more than {max_pages} pages at {scan}: does the server repeat `next`?"
        )
    return page.following


def sequential(
    fetch: Callable[[PageRequest, threading.Event | None], Page],
    first: PageRequest,
    max_pages: int,
    scan: Where,
) -> Iterator[RecordPage]:
    """Fetch each page only when the caller asks for it."""
    step: PageRequest | PublisherError | None = first
    count = 0
    while isinstance(step, PageRequest):
        page = fetch(step, None)
        count += 1
        step = next_request(page, count, max_pages, scan)
        yield page.records
    if step is not None:
        raise step


def prefetched(
    fetch: Callable[[PageRequest, threading.Event | None], Page],
    first: PageRequest,
    max_pages: int,
    scan: Where,
) -> Iterator[RecordPage]:
    """Yield each page while a helper thread already fetches the one after it."""
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="akinon-prefetch")
    try:
        pending: Future[Page] | None = pool.submit(fetch, first, stop)
        count = 0
        while pending is not None:
            page = pending.result()  # re-raises, here, an error of this very page
            count += 1
            step = next_request(page, count, max_pages, scan)
            pending = pool.submit(fetch, step, stop) if isinstance(step, PageRequest) else None
            yield page.records
            if step is not None and not isinstance(step, PageRequest):
                raise step
    finally:
        # The caller may stop early (close, break, an exception): end the helper with us.
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


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
