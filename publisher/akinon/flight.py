"""Keep several page requests in flight and hand the pages over in page order.

After page 1, the next pages are predicted by number (the request of page k+1 is that of
page k with only `page` changed): up to the last page an envelope's `count` tells, or, for
plain arrays, ahead speculatively until a page comes back short. How many are asked for at
once is the scan's `Window`. Each page, taken in order, confirms the prediction: when its
own `next` (or, for an array, its being full) names the predicted request, paging goes on;
when it names another, the predictions past it are dropped and paging follows it instead;
when it ends the list, whatever was asked for beyond it is dropped unread (a speculative
request past the end costs a request, never a record).

An error fetching page N is raised when the caller asks for page N, never sooner, and a
dropped request's error is never raised. Stopping early (``close()``, ``break``, an
exception) stops the fetch threads: those waiting to retry give up at once.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from publisher.akinon.errors import Where
from publisher.akinon.paging import (
    Fetch,
    Page,
    PageRequest,
    Repeats,
    next_request,
    numbered,
    same_request,
)
from publisher.akinon.window import Window
from publisher.errors import PublisherError
from publisher.pages import RecordPage


@dataclass(slots=True)
class _Ahead:
    """The pages predicted after the last one confirmed: the next number, and where to stop."""

    template: PageRequest
    next_page: int
    last_page: int | None

    def take(self) -> PageRequest | None:
        if self.last_page is not None and self.next_page > self.last_page:
            return None
        request = self.template if self.next_page == self.template.page else None
        request = request or numbered(self.template, self.next_page)
        self.next_page += 1
        return request


class _Flights:
    """The requests asked for and not yet handed over, oldest first."""

    def __init__(self, fetch: Fetch, window: Window, max_pages: int) -> None:
        self._fetch = fetch
        self._window = window
        self._max_pages = max_pages
        self._pool = ThreadPoolExecutor(max_workers=window.cap, thread_name_prefix="akinon-page")
        self.stop = threading.Event()
        self.pending: deque[tuple[PageRequest, Future[Page]]] = deque()
        self.ahead: _Ahead | None = None

    def ask(self, request: PageRequest) -> None:
        self.pending.append((request, self._pool.submit(self._fetch, request, self.stop)))

    def top_up(self, taken: int) -> None:
        """Ask for predicted pages until the window is full (never past `max_pages`)."""
        while self.ahead is not None and len(self.pending) < self._window.size:
            if taken + len(self.pending) >= self._max_pages:
                return
            request = self.ahead.take()
            if request is None:
                return
            self.ask(request)

    def follow(self, step: PageRequest | PublisherError | None, last_page: int | None) -> None:
        """Keep the predictions if `step` is the next of them; else drop them, follow `step`."""
        if (
            isinstance(step, PageRequest)
            and self.pending
            and same_request(self.pending[0][0], step)
        ):
            if last_page is not None and self.ahead is not None:
                self.ahead.last_page = last_page
            return
        self.drop()
        if isinstance(step, PageRequest):
            self.ahead = _Ahead(step, step.page, last_page)

    def drop(self) -> None:
        while self.pending:
            self.pending.pop()[1].cancel()
        self.ahead = None

    def close(self) -> None:
        self.stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)


def windowed(
    fetch: Fetch, first: PageRequest, max_pages: int, scan: Where, window: Window
) -> Iterator[RecordPage]:
    """Yield the pages in order while up to `window.size` requests are in flight."""
    flights = _Flights(fetch, window, max_pages)
    repeats = Repeats()
    try:
        flights.ask(first)
        taken = 0
        while flights.pending:
            request, future = flights.pending.popleft()
            if not future.done():
                window.waited()  # the step waits on the network: more in flight would help
            page = future.result()  # re-raises, here, an error of this very page
            taken += 1
            ended = repeats.ended(page, replace(scan, page=request.page))
            if ended is not None:
                flights.drop()
                yield ended
                return
            step = next_request(page, taken, max_pages, scan)
            flights.follow(step, page.last_page)
            flights.top_up(taken)
            yield page.records
            if step is not None and not isinstance(step, PageRequest):
                raise step
    finally:
        # The caller may stop early (close, break, an exception): end the helpers with us.
        flights.close()
