"""Measure the pipeline over a distant network: the latency section (7) and the 429 section (8).

7  The same full no-change scan (both kinds, the state already loaded) through the delay
   proxy of `bench.delay` at 0, 50 and 100 ms round trip, the three taken in turn, round
   after round; each figure is the median of its rounds, its ceiling the 0 ms scan of the
   same run. Targets: >= 0.7 x at 50 ms, >= 0.5 x at 100 ms (one request in flight gave
   0.10 x and 0.05 x).
8  The sandbox answers 429 (`Retry-After: 1`) beyond a fixed number of requests per second;
   a full no-change scan with small pages must end without a failed request, its successful
   requests per second within 20% of that limit (target >= 0.8 x the limit).
"""

from __future__ import annotations

from dataclasses import replace
from statistics import median
from typing import Final
from urllib.parse import urlsplit

import httpx

from bench import workloads
from bench.delay import delayed
from bench.env import REDIS_URL, TOKEN, Sandbox
from bench.report import Row, Target
from bench.workloads import Pass
from publisher.akinon import AkinonClient
from publisher.publish import KombuPublisher
from publisher.service import Edges
from publisher.state import RedisStateStore

RTTS_MS: Final = (0, 50, 100)
TARGETS: Final = {50: 0.7, 100: 0.5}
RATE_PAGE_SIZE: Final = 100  # small pages: many requests, so the limit is what binds


def _edges(box: Sandbox, page_size: int) -> Edges:
    from bench.env import AMQP_URL

    state = RedisStateStore.from_url(REDIS_URL)
    client = AkinonClient(box.url, token=TOKEN, page_size=page_size)
    return Edges(client, state, KombuPublisher(AMQP_URL), redis=state.client)


def _window(edges: Edges) -> str:
    window = getattr(edges.source, "window", None)
    return "" if window is None else f"window {window.size} at the end, {window.decreases} halvings"


def latency_rows(box: Sandbox, rounds: int, page_size: int) -> list[Row]:
    """Scan through the delay proxy at each round trip, `rounds` times; return the rows."""
    port = urlsplit(box.url).port or 80
    passes: dict[int, list[Pass]] = {rtt: [] for rtt in RTTS_MS}
    notes: dict[int, str] = {}
    for _ in range(rounds):
        for rtt in RTTS_MS:
            with delayed(port, rtt) as proxy:
                distant = replace(box, url=f"http://127.0.0.1:{proxy}")
                edges = _edges(distant, page_size)
                try:
                    passes[rtt].append(workloads.full_pass(edges, distant))
                    notes[rtt] = _window(edges)
                finally:
                    edges.close()
    rates = {rtt: median(p.records_per_second for p in runs) for rtt, runs in passes.items()}
    rows = []
    for rtt in RTTS_MS:
        target = Target(ratio_at_least=TARGETS[rtt]) if rtt in TARGETS else None
        seen = passes[rtt][0].seen
        rows.append(
            Row(
                f"7 no change at {rtt} ms round trip",
                rates[rtt],
                "records/s",
                ceiling=rates[0] if rtt else None,
                target=target,
                note=f"{seen:,} records, pages of {page_size:,}; {notes[rtt]}",
                samples=tuple(p.records_per_second for p in passes[rtt]),
            )
        )
    return rows


def rate_limited_row(box: Sandbox, limit: float) -> Row:
    """Scan while the sandbox allows `limit` requests/s; return the row (requests/s)."""
    faults = f"{box.url}/_control/faults"
    before = _requests(box)
    httpx.patch(faults, json={"rate_limit_per_second": limit, "retry_after": 1}).raise_for_status()
    edges = _edges(box, RATE_PAGE_SIZE)
    try:
        done = workloads.full_pass(edges, box)
        note = _window(edges)
    finally:
        edges.close()
        httpx.patch(faults, json={"rate_limit_per_second": 0}).raise_for_status()
    pages = -(-done.seen // RATE_PAGE_SIZE)
    refused = _requests(box) - before - pages
    return Row(
        f"8 scan under a {limit:g} requests/s limit (429)",
        pages / done.seconds,
        "requests/s",
        ceiling=limit,
        target=Target(ratio_at_least=0.8, ratio_at_most=1.2),
        note=f"{pages:,} pages of {RATE_PAGE_SIZE}, 0 failed, {refused:,} answered 429 "
        f"(or asked past the end); {note}",
    )


def _requests(box: Sandbox) -> int:
    state = httpx.get(f"{box.url}/_control/state", timeout=10).json()
    found: int = state["requests"] if isinstance(state.get("requests"), int) else 0
    return found
