"""Run one sync step for one (channel, resource): poll -> diff -> publish -> commit.

No Celery and no environment here: the edges (an Akinon source, a state store, an event
publisher) are passed in, so the same step runs in a worker, in `akinon-publisher poll`, in
the in-process demo and in tests.

Each page is its own batch: its events are published and confirmed before its state is
committed. If anything fails, the step raises and what was not committed is published
again, with the same event ids, by the next step. A page already sent when fetching the
next one fails is still confirmed and committed first, so an outage on page N+1 does not
publish page N again on every step (the watermark still moves only when a step succeeds).

A complete scan (the whole list, no date filter) that read every page then knows every
key of the list: the tracked records it did not see are published as deleted and then
forgotten (`publisher.deletes`), unless so many vanished at once that the read is not
believable. A complete scan that loaded an empty state (the first load, or the state was
lost) ends with reload events listing the keys it saw: the deletes the lost state could
not tell are a consumer's to find (`publisher.events.RELOAD_RULE`).

About 580 lines, over the package's 400, on purpose: the step's whole flow, the read-only
scan and the acknowledging drain, reads top to bottom in one module; the rules it applies
are in pure modules of their own (`diff`, `deletes`, `plan`, `acks`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from publisher.acks import acknowledge, acks_of, recover
from publisher.bounds import MAX_RECORD_BYTES, latest_date
from publisher.deletes import (
    DeleteGuard,
    Pending,
    Scan,
    deleted_at,
    deletions,
    journal_entries,
    missing,
    newest_published,
    reload_parts,
    sent_instead,
)
from publisher.diff import (
    Deletion,
    Limits,
    PageDiff,
    Rejection,
    Stored,
    diff_page,
    report_key,
    unreported,
)
from publisher.outgoing import (
    EventContext,
    OutgoingEvent,
    change_event,
    deletion_event,
    rejection_event,
    reload_events,
    source_uri,
)
from publisher.pages import RecordPage
from publisher.ports import Ack, ChangeSource, EventPublisher, StateStore
from publisher.records import Endpoint, Resource

# Deletion events go out in batches of this many: each confirmed, then forgotten.
DELETE_BATCH = 500

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StepSpec:
    """What one sync step works on."""

    channel_id: int
    resource: Resource
    base_url: str
    endpoint: Endpoint = Endpoint.LIST
    acknowledge: bool = False
    # Incremental steps ask only for records modified since this moment (see `plan_since`).
    since: str | None = None
    # None: every step scans everything; else the lookback of incremental steps.
    lookback_seconds: float | None = None
    full_scan_seconds: float = 900.0
    # Acknowledging drains a work queue from its first page; at most this many pages a step.
    max_rounds: int = 1000
    # The step loads the list into an empty state (first load, or the state was lost).
    reload: bool = False
    # The newest `modified_date` ever committed for the list: deletions are dated after it.
    newest_seen: datetime | None = None
    delete_guard: DeleteGuard = field(default_factory=DeleteGuard)
    # Read every stored key after a complete scan even if the tracked count agrees.
    reconcile: bool = False
    # How often steps are scheduled (heartbeats say so), None for a one-off step.
    interval_seconds: float | None = None
    # The queries one step reads in turn (one per stock or price list, with the channel's
    # filters: `publisher.channels`); a complete scan of them all finds the deletes.
    queries: tuple[tuple[tuple[str, str], ...], ...] = ((),)
    # Records per page for this channel; None: the source's own.
    page_size: int | None = None
    # A record with more content than this is rejected alone (`MAX_RECORD_BYTES`).
    max_record_bytes: int = MAX_RECORD_BYTES

    def __post_init__(self) -> None:
        if self.acknowledge != self.endpoint.is_work_queue:
            raise ValueError(
                f"endpoint {self.endpoint.value} cannot be read "
                f"{'acknowledging' if self.acknowledge else 'read-only'}: acknowledging drains "
                "a work queue (inserts, updates, inserts_or_updates), reading only takes a list"
            )

    @property
    def complete(self) -> bool:
        """Say whether the step reads the whole list (so it can find deletes)."""
        return self.since is None and not self.acknowledge and not self.endpoint.is_work_queue


@dataclass(frozen=True, slots=True)
class StepSummary:
    """What one sync step did: the task result Flower shows and the line `poll` prints."""

    channel_id: int
    resource: str
    pages: int = 0
    seen: int = 0
    changed: int = 0
    published: int = 0
    rejected: int = 0
    acknowledged: int = 0
    duration_seconds: float = 0.0
    skipped_because: str | None = None
    incremental: bool = False
    newest_modified: str | None = None
    complete_scan: bool = False
    deleted: int = 0
    # Vanished records the delete guard held back (nothing published for them).
    deletes_held: int = 0
    # Whether the whole state's keys were read to find deletes (see `publisher.deletes`).
    reconciled: bool = False
    # A date-filtered step got records older than its filter: the server ignores it.
    date_filter_ignored: bool = False
    # Acknowledging: why the drain stopped (`empty`, `nothing new`, `cap`), and how many of
    # our batches a previous step left open were ended first.
    drained_because: str | None = None
    batches_recovered: int = 0
    # A load into an empty state that read the whole list: the reload events it published
    # (not counted in `published`, which counts record events), or held back: a whole list
    # read empty then waits for `deletes release`, like a mass disappearance.
    reload_events: int = 0
    reload_held: bool = False

    def add(self, diff: PageDiff, published: int, acknowledged: int) -> StepSummary:
        """Return this summary with one more page counted."""
        return replace(
            self,
            pages=self.pages + 1,
            seen=self.seen + diff.seen,
            changed=self.changed + len(diff.changes),
            published=self.published + published,
            rejected=self.rejected + len(diff.rejections),
            acknowledged=self.acknowledged + acknowledged,
            newest_modified=_newest(self.newest_modified, diff.newest_modified),
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as plain JSON-ready values."""
        return asdict(self)

    def line(self) -> str:
        """Return the one-line human summary."""
        if self.skipped_because is not None:
            return (
                f"channel={self.channel_id} resource={self.resource} "
                f"skipped: {self.skipped_because}"
            )
        return (
            f"channel={self.channel_id} resource={self.resource} pages={self.pages} "
            f"seen={self.seen} changed={self.changed} deleted={self.deleted} "
            f"published={self.published} rejected={self.rejected} "
            f"acknowledged={self.acknowledged} duration={self.duration_seconds:.3f}s"
            + (f" deletes_held={self.deletes_held}" if self.deletes_held else "")
            + (f" drained_because={self.drained_because!r}" if self.drained_because else "")
            + (f" batches_recovered={self.batches_recovered}" if self.batches_recovered else "")
        )


ProgressCallback = Callable[[StepSummary], None]


@dataclass(slots=True)
class PreparedPage:
    """One page, diffed and encoded: what is published, then committed."""

    records: RecordPage
    diff: PageDiff
    rejections: list[Rejection]
    events: list[OutgoingEvent]

    def pending_state(self) -> dict[int, Stored]:
        """Return the state this page commits once its events are confirmed."""
        return {c.key: Stored(c.sequence, c.after) for c in self.diff.changes}


def sync_step(
    spec: StepSpec,
    source: ChangeSource,
    state: StateStore,
    publisher: EventPublisher,
    on_page: ProgressCallback | None = None,
) -> StepSummary:
    """Run one sync step; raise a `PublisherError` if any part of it failed.

    Pages are pipelined: page N+1 is fetched and diffed while the broker confirms page N,
    but page N is committed before page N+1 is published, so the commit order is the page
    order and a failure leaves nothing committed past the last confirmed page. (When
    acknowledging, each page is finished before the next is fetched: the work queue only
    moves on once a page is acknowledged.) A complete scan then finds the deletes.
    """
    started = time.monotonic()
    ctx = EventContext(
        spec.channel_id,
        spec.resource,
        source_uri(spec.base_url, spec.channel_id),
        datetime.now(UTC),
        reload=spec.reload,
    )
    summary = StepSummary(
        spec.channel_id,
        spec.resource.value,
        incremental=spec.since is not None,
        complete_scan=spec.complete,
    )
    if spec.acknowledge:
        summary = _drain(spec, ctx, source, state, publisher, summary, on_page)
        return replace(summary, duration_seconds=time.monotonic() - started)
    scan = Scan() if spec.complete else None
    in_flight: tuple[PreparedPage, int] | None = None
    # Versions an earlier step sent and never committed: read once, for the diff
    # (`sent_instead`) and for the deletes (`_vanished`); only keys this step sees change.
    sent = state.read_pending(spec.channel_id, spec.resource)

    def finish_sent() -> None:  # fetching the next page failed: keep what was already sent
        if in_flight is not None:
            _finish(spec, state, publisher, in_flight, summary, on_page)

    with closing(_finishing(_pages(spec, source), finish_sent)) as pages:
        for records in pages:
            before = in_flight[0] if in_flight else None
            page = prepare_page(ctx, records, state, before, spec.max_record_bytes, sent)
            if scan is not None:
                scan.add(records, page.diff)
            if _ignores_date_filter(spec, records):
                summary = replace(summary, date_filter_ignored=True)
            if in_flight is not None:
                summary = _finish(spec, state, publisher, in_flight, summary, on_page)
            in_flight = (page, _send(spec, state, publisher, page))
    if in_flight is not None:
        summary = _finish(spec, state, publisher, in_flight, summary, on_page)
    summary = _end_scan(spec, ctx, state, publisher, scan, summary, sent)
    return replace(summary, duration_seconds=time.monotonic() - started)


def _send(spec: StepSpec, state: StateStore, publisher: EventPublisher, page: PreparedPage) -> int:
    """Write the page's new versions down as pending, then send its events; return the ticket.

    Written after the page before was committed (its commit removes its own keys' entries),
    and before anything is sent: a step that fails between this send and the page's commit
    leaves them behind, so a complete scan can still publish their deletion (`_vanished`).
    """
    diff = page.diff
    if diff.changes:
        entries = journal_entries(diff.changes, diff.newest_modified)
        state.write_pending(spec.channel_id, spec.resource, entries)
    return publisher.send(page.events)


def _pages(spec: StepSpec, source: ChangeSource) -> Iterator[RecordPage]:
    """Yield the pages of every query of the step, one query after the other."""
    for query in spec.queries:
        params = _params(spec, query)
        yield from source.iter_pages(spec.channel_id, spec.resource, spec.endpoint, params)


def _params(spec: StepSpec, query: tuple[tuple[str, str], ...]) -> dict[str, str] | None:
    params = dict(query)
    if spec.since:
        params["modified_date__gte"] = spec.since
    if spec.page_size is not None:
        params["limit"] = str(spec.page_size)
    return params or None


def _drain(
    spec: StepSpec,
    ctx: EventContext,
    source: ChangeSource,
    state: StateStore,
    publisher: EventPublisher,
    summary: StepSummary,
    on_page: ProgressCallback | None,
) -> StepSummary:
    """Drain a work queue: publish, commit and acknowledge its first page until it is done.

    Acknowledged records leave the queue, so page 1 is read again each round. The drain
    stops on an empty page, on a page with nothing this step has not acknowledged already
    (a record that cannot be acknowledged, or a server that keeps serving them), or after
    `max_rounds` pages; the summary says which. Our batches a previous step left open are
    ended first (`publisher.acks.recover`), or the queue could stay blocked.
    """
    recovered = recover(source, state, spec.channel_id, spec.resource)
    summary = replace(summary, batches_recovered=recovered.touched)
    handled: set[Ack] = set()
    rounds = spec.max_rounds
    for query in spec.queries:
        while True:
            if rounds == 0:
                return replace(summary, drained_because="cap")
            rounds -= 1
            records = _first_page(spec, source, query)
            if not records:
                summary = replace(summary, drained_because="empty")
                break
            page = prepare_page(ctx, records, state, max_record_bytes=spec.max_record_bytes)
            publisher.confirm(publisher.send(page.events))
            state.commit(spec.channel_id, spec.resource, page.diff.changes, page.rejections)
            fresh = [ack for ack in acks_of(records, page.diff) if ack not in handled]
            acknowledge(source, state, spec.channel_id, spec.resource, fresh)
            handled.update(fresh)
            summary = summary.add(page.diff, len(page.events), len(fresh))
            if on_page is not None:
                on_page(summary)
            if not fresh:
                summary = replace(summary, drained_because="nothing new")
                break
    return summary


def _first_page(
    spec: StepSpec, source: ChangeSource, query: tuple[tuple[str, str], ...]
) -> RecordPage | None:
    params = _params(spec, query)
    pages = source.iter_pages(spec.channel_id, spec.resource, spec.endpoint, params, prefetch=False)
    try:
        return next(pages, None)
    finally:
        _stop(pages)


def _end_scan(
    spec: StepSpec,
    ctx: EventContext,
    state: StateStore,
    publisher: EventPublisher,
    scan: Scan | None,
    summary: StepSummary,
    sent: Mapping[int, Pending],
) -> StepSummary:
    """Find the deletes after a complete scan; a scan cut short is no complete one."""
    if scan is None:
        return summary
    if scan.cut_short:
        return replace(summary, complete_scan=False)
    summary = _delete_vanished(spec, ctx, state, publisher, scan, summary, sent)
    if spec.reload:
        summary = _end_reload(spec, ctx, publisher, scan, summary)
    return summary


def _end_reload(
    spec: StepSpec, ctx: EventContext, publisher: EventPublisher, scan: Scan, summary: StepSummary
) -> StepSummary:
    """Publish the keys a load into an empty state saw: consumers drop what left meanwhile.

    A load that saw no record at all would make consumers drop the whole list, and an empty
    answer may be a bad read: it is held, as the delete guard holds a mass disappearance,
    until an operator releases it (the list stays a reload until then).
    """
    if not scan.masks and not spec.delete_guard.released:
        log.error(
            "reload held channel=%s resource=%s: the whole list read empty after the state "
            "was lost; nothing tells consumers to drop their copy until it is released "
            "(check the list, then `akinon-publisher deletes release`)",
            ctx.channel_id,
            ctx.resource.value,
        )
        return replace(summary, reload_held=True)
    events = reload_events(ctx, ctx.observed_at, reload_parts(scan.seen()))
    publisher.confirm(publisher.send(events))
    return replace(summary, reload_events=len(events))


def _finishing(
    pages: Iterator[RecordPage], on_failure: Callable[[], None]
) -> Generator[RecordPage]:
    """Yield the pages; if fetching one fails, call `on_failure` before the error goes on.

    Stopped early (the step failed), it stops the source's pages too: a prefetching
    source ends its helper thread then, not whenever the garbage collector gets to it.
    """
    try:
        while True:
            try:
                records = next(pages)
            except StopIteration:
                return
            except Exception:
                on_failure()
                raise
            yield records
    finally:
        _stop(pages)


def _stop(pages: Iterator[RecordPage]) -> None:
    """Close a source's pages early, if they can be: a prefetching source ends its threads."""
    close = getattr(pages, "close", None)
    if close is not None:
        close()


def _ignores_date_filter(spec: StepSpec, records: RecordPage) -> bool:
    """Say whether a date-filtered page holds a record older than the filter."""
    if spec.since is None or records.oldest_modified is None:
        return False
    try:
        oldest = datetime.fromisoformat(records.oldest_modified)
    except ValueError:
        return False  # not a date: the record is rejected, the filter is not judged by it
    return oldest < datetime.fromisoformat(spec.since)


def _delete_vanished(
    spec: StepSpec,
    ctx: EventContext,
    state: StateStore,
    publisher: EventPublisher,
    scan: Scan,
    summary: StepSummary,
    sent: Mapping[int, Pending],
) -> StepSummary:
    """After a complete scan: publish the deletion of what vanished, then forget it."""
    channel_id, resource = spec.channel_id, spec.resource
    found = _vanished(spec, state, scan, sent)
    if found is None:
        return summary
    vanished, candidates = found
    summary = replace(summary, reconciled=True)
    if spec.delete_guard.holds(len(vanished), candidates):
        log.error(
            "deletes held channel=%s resource=%s vanished=%d tracked=%d: more than the "
            "delete guard believes; nothing was published or forgotten (release them with "
            "`akinon-publisher deletes release`)",
            channel_id,
            resource.value,
            len(vanished),
            candidates,
        )
        return replace(summary, deletes_held=len(vanished))
    journalled = [sent[key] for key in vanished if key in sent]
    when = deleted_at(ctx.observed_at, newest_published(spec.newest_seen, journalled))
    for start in range(0, len(vanished), DELETE_BATCH):
        batch = vanished[start : start + DELETE_BATCH]
        gone = deletions(batch, state.load(channel_id, resource, batch), sent)
        _publish_deletions(ctx, state, publisher, gone, when, spec.newest_seen)
        summary = replace(
            summary, deleted=summary.deleted + len(gone), published=summary.published + len(gone)
        )
    return summary


def _vanished(
    spec: StepSpec, state: StateStore, scan: Scan, pending: Mapping[int, Pending]
) -> tuple[list[int], int] | None:
    """Return the keys a complete scan no longer saw and how many keys could have vanished;
    None when nothing vanished (the usual case: no keys read).

    The candidates are the stored keys and the pending ones (sent by a step that failed
    before committing them: consumers may hold them). Every stored key is read when the
    tracked count disagrees with the scan, when a reconciliation is due, or when a pending
    key was not seen. `pending` is the journal as the step began: this step writes and
    clears entries only of keys it saw, which cannot have vanished.
    """
    channel_id, resource = spec.channel_id, spec.resource
    tracked, present = state.tracked(channel_id, resource), scan.tracked_seen()
    unseen = missing(list(pending), scan)
    if tracked == present and not spec.reconcile and not unseen:
        return None
    every_key = state.keys(channel_id, resource)
    if len(every_key) != tracked:  # the kept count drifted: the keys themselves are right
        state.write_meta(channel_id, resource, {"tracked": str(len(every_key))})
    candidates = sorted(set(every_key).union(pending))
    return missing(candidates, scan), len(candidates)


def _publish_deletions(
    ctx: EventContext,
    state: StateStore,
    publisher: EventPublisher,
    gone: list[Deletion],
    when: datetime,
    known_until: datetime | None,
) -> None:
    """Publish deletion events, and forget the records only once the broker confirmed."""
    events = [deletion_event(ctx, d, when, known_until) for d in gone]
    publisher.confirm(publisher.send(events))
    state.forget(ctx.channel_id, ctx.resource, gone)
    for deletion in gone:
        log.info(
            "record deleted channel=%s resource=%s key=%s",
            ctx.channel_id,
            ctx.resource.value,
            deletion.key,
        )


def prepare_page(
    ctx: EventContext,
    records: RecordPage,
    state: StateStore,
    in_flight: PreparedPage | None = None,
    max_record_bytes: int = MAX_RECORD_BYTES,
    sent: Mapping[int, Pending] | None = None,
) -> PreparedPage:
    """Load the page's stored state, diff it and encode its events (nothing is written).

    A `modified_date` later than the server's clock (the page's `served_at`, else ours)
    plus a small skew is a rejection: it must never become the watermark. A record back at
    its stored content after a newer version was sent and never committed (`sent`) is
    compared with that version instead, so it goes out again (`sent_instead`).
    """
    channel_id, resource = ctx.channel_id, ctx.resource
    distinct = {key for key in records.keys if key is not None}
    stored = state.load(channel_id, resource, distinct)
    if in_flight is not None:  # the page before is not committed yet: see its new state
        pending = in_flight.pending_state()
        stored.overlay({k: pending[k] for k in pending.keys() & distinct})
    latest = latest_date(records.served_at, datetime.now(UTC))
    limits = Limits(max_record_bytes, latest)
    diff = diff_page(records, stored, limits)
    if sent:
        settled = {c.key for c in diff.changes} | {r.key for r in diff.rejections}
        instead = sent_instead(sent, stored, distinct - settled)
        if instead:
            stored.overlay(instead)
            diff = diff_page(records, stored, limits)
    rejected_keys = [report_key(r) for r in diff.rejections]
    rejections = unreported(
        diff.rejections, state.load_rejected(channel_id, resource, rejected_keys)
    )
    for rejection in rejections:
        log.warning(
            "record rejected channel=%s resource=%s key=%s reason=%s",
            channel_id,
            resource.value,
            rejection.key,
            rejection.reason,
        )
    events = [change_event(ctx, change) for change in diff.changes]
    events += [rejection_event(ctx, rejection) for rejection in rejections]
    return PreparedPage(records, diff, rejections, events)


def _finish(
    spec: StepSpec,
    state: StateStore,
    publisher: EventPublisher,
    in_flight: tuple[PreparedPage, int],
    summary: StepSummary,
    on_page: ProgressCallback | None,
) -> StepSummary:
    """Wait for a page's confirms, then commit it."""
    page, ticket = in_flight
    publisher.confirm(ticket)
    state.commit(spec.channel_id, spec.resource, page.diff.changes, page.rejections)
    summary = summary.add(page.diff, len(page.events), 0)
    if on_page is not None:
        on_page(summary)
    return summary


def _newest(first: str | None, second: str | None) -> str | None:
    if first is None or second is None:
        return first or second
    return max(first, second)
