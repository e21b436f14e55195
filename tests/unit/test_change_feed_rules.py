"""The change feed's pure rules: what a scan saw, which deletes it may publish, the plan."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from publisher.consumer import microseconds, reload_drops
from publisher.deletes import (
    DeleteGuard,
    Pending,
    ReloadPart,
    Scan,
    deleted_at,
    deletions,
    journal_entries,
    missing,
    newest_published,
    reload_parts,
    sent_instead,
)
from publisher.diff import PageDiff, Rejection, Stored, StoredPage, diff_page
from publisher.events import ReloadData
from publisher.pipeline import StepSpec, StepSummary
from publisher.plan import plan_step, step_progress
from publisher.records import Endpoint, Resource
from publisher.topology import BUCKET_SIZE
from tests.factories import as_page, stock

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
RECENT = (NOW - timedelta(minutes=5)).isoformat()


def scan_of(*pages: list[int]) -> Scan:
    scan = Scan()
    for keys in pages:
        scan.add(as_page(Resource.STOCK, [stock(k) for k in keys]), PageDiff())
    return scan


# ----------------------------------------------------------------------------------- scans


def test_a_scan_knows_every_key_it_saw_across_buckets() -> None:
    far = 5 * BUCKET_SIZE + 3
    scan = scan_of([1, 2, BUCKET_SIZE - 1], [BUCKET_SIZE, far])
    assert all(key in scan for key in (1, 2, BUCKET_SIZE - 1, BUCKET_SIZE, far))
    assert 3 not in scan and far + 1 not in scan
    assert missing([1, 3, far, far + 1], scan) == [3, far + 1]
    assert scan.tracked_seen() == 5


def test_keys_seen_only_as_untracked_rejections_are_not_counted_as_tracked() -> None:
    scan = Scan()
    rejected = Rejection(9, "stock is not an integer", {}, "d", tracked=False)
    scan.add(as_page(Resource.STOCK, [stock(8), stock(9)]), PageDiff(rejections=[rejected]))
    assert 9 in scan  # still in the list: never a delete
    assert scan.tracked_seen() == 1


def test_a_page_cut_short_marks_the_whole_scan() -> None:
    scan = scan_of([1])
    page = as_page(Resource.STOCK, [stock(2)])
    page.cut_short = True
    scan.add(page, PageDiff())
    scan.add(as_page(Resource.STOCK, [stock(3)]), PageDiff())
    assert scan.cut_short


# --------------------------------------------------------------------------------- deletes


def test_the_guard_holds_an_implausible_share_and_lets_a_few_through() -> None:
    guard = DeleteGuard(share=0.2, minimum=10)
    assert guard.holds(12, 30)  # 40%, and at least ten
    assert not guard.holds(9, 30)  # fewer than the minimum, whatever the share
    assert not guard.holds(15, 100)  # a plausible share
    assert not replace(guard, released=True).holds(30, 30)


def test_a_deletion_carries_the_next_sequence_and_the_last_published_content() -> None:
    stored = StoredPage({4: Stored(3, b'{"pk":4}')})
    (deletion,) = deletions([4, 5], stored)  # 5 has no version: nothing to delete
    assert (deletion.key, deletion.sequence, deletion.before) == (4, 4, b'{"pk":4}')


def test_a_deletion_is_dated_after_every_published_version() -> None:
    assert deleted_at(NOW, None) == NOW
    assert deleted_at(NOW, NOW - timedelta(hours=1)) == NOW
    ahead = NOW + timedelta(seconds=3)  # Akinon's clock runs ahead of ours
    assert deleted_at(NOW, ahead) > ahead


def test_a_version_sent_but_never_committed_is_deleted_after_it() -> None:
    # Stored at sequence 3; a failed step sent sequence 4 (never committed); another key
    # was sent as new (sequence 1) and has no stored version at all.
    stored = StoredPage({4: Stored(3, b'{"pk":4,"v":3}')})
    sent = NOW - timedelta(minutes=1)
    pending = {4: Pending(4, b'{"pk":4,"v":4}', sent), 6: Pending(1, b'{"pk":6}', sent)}
    gone = deletions([4, 5, 6], stored, pending)
    assert [(d.key, d.sequence, d.before) for d in gone] == [
        (4, 5, b'{"pk":4,"v":4}'),
        (6, 2, b'{"pk":6}'),
    ]


def test_a_stored_version_newer_than_a_pending_one_wins() -> None:
    # A pending entry left by a step that lost its lock, older than what was committed since.
    stored = StoredPage({4: Stored(5, b'{"pk":4,"v":5}')})
    (deletion,) = deletions([4], stored, {4: Pending(4, b'{"pk":4,"v":4}', NOW)})
    assert (deletion.sequence, deletion.before) == (6, b'{"pk":4,"v":5}')


def test_pending_dates_count_as_published_for_the_deletion_date() -> None:
    ahead = NOW + timedelta(seconds=3)  # sent, never committed: not in `newest_seen`
    pending = [Pending(2, b"[1]", ahead)]
    assert newest_published(None, []) is None
    assert newest_published(NOW - timedelta(hours=1), pending) == ahead
    assert newest_published(ahead + timedelta(seconds=1), pending) == ahead + timedelta(seconds=1)
    assert deleted_at(NOW, newest_published(NOW - timedelta(hours=1), pending)) > ahead


def test_a_page_journal_round_trips_through_its_encoding() -> None:
    page = as_page(Resource.STOCK, [stock(1, stock=3), stock(2)])
    diff = diff_page(page, {})
    entries = journal_entries(diff.changes, RECENT)
    assert sorted(entries) == [1, 2]
    read = {key: Pending.decode(entry) for key, entry in entries.items()}
    assert read == {
        c.key: Pending(c.sequence, c.after, datetime.fromisoformat(RECENT)) for c in diff.changes
    }
    assert journal_entries([], RECENT) == {}  # a page without changes writes nothing


def test_a_journal_date_without_an_offset_reads_as_utc() -> None:
    assert Pending.decode(b'2|2026-05-01T12:00:00|[1,"a|b"]') == Pending(2, b'[1,"a|b"]', NOW)


# ------------------------------------------------------------------------------------ plan


def spec(**options: Any) -> StepSpec:
    return StepSpec(7, Resource.STOCK, "https://omni.example", lookback_seconds=60, **options)


def test_a_step_with_no_bookkeeping_is_a_complete_reload() -> None:
    planned = plan_step(spec(), {}, NOW)
    assert (planned.since, planned.reload, planned.reconcile) == (None, True, True)
    assert planned.complete


def test_an_ignored_date_filter_means_complete_scans_from_then_on() -> None:
    meta = {"watermark": "2026-05-01T11:59:00Z", "last_full_scan_at": RECENT, "loaded_at": RECENT}
    assert plan_step(spec(), meta, NOW).since == "2026-05-01T11:58:00.000000Z"
    ignored = plan_step(spec(), {**meta, "date_filter_ignored_at": RECENT}, NOW)
    assert ignored.since is None and not ignored.reload


def test_an_acknowledging_step_never_uses_a_date_filter() -> None:
    meta = {"watermark": "2026-05-01T11:59:00Z", "last_full_scan_at": RECENT}
    queue = spec(endpoint=Endpoint.INSERTS_OR_UPDATES, acknowledge=True)
    assert plan_step(queue, meta, NOW).since is None


def test_an_operator_release_reaches_the_next_scan_only() -> None:
    released = plan_step(spec(), {"release_deletes": "1"}, NOW)
    assert released.delete_guard.released
    summary = StepSummary(7, "stock", complete_scan=True, deleted=12)
    progress = step_progress(summary, {"release_deletes": "1", "deletes_held": "12"}, NOW, NOW)
    assert (progress["release_deletes"], progress["deletes_held"]) == ("0", "0")


def test_held_deletes_keep_the_moment_they_were_first_held() -> None:
    summary = StepSummary(7, "stock", complete_scan=True, deletes_held=12)
    first = step_progress(summary, {}, NOW, NOW)
    later = NOW + timedelta(minutes=15)
    again = step_progress(summary, first, later, later)
    assert again["deletes_held"] == "12" and again["deletes_held_at"] == NOW.isoformat()


def test_a_found_ignored_date_filter_is_written_once() -> None:
    summary = StepSummary(7, "stock", incremental=True, date_filter_ignored=True)
    assert step_progress(summary, {}, NOW, NOW)["date_filter_ignored_at"] == NOW.isoformat()
    known = {"date_filter_ignored_at": RECENT}
    assert "date_filter_ignored_at" not in step_progress(summary, known, NOW, NOW)


def test_the_watermark_never_moves_back() -> None:
    summary = StepSummary(7, "stock", newest_modified="2026-05-01T10:00:00Z")
    progress = step_progress(summary, {"watermark": "2026-05-01T11:00:00Z"}, NOW, NOW)
    assert progress["watermark"] == "2026-05-01T11:00:00Z"


def test_a_record_deleted_twice_in_two_lifetimes_gets_two_deletion_ids() -> None:
    """Found by the fault suite: deleted, created again with the same content, deleted again."""
    from publisher.diff import Deletion
    from publisher.outgoing import EventContext, deletion_event

    ctx = EventContext(7, Resource.STOCK, "https://omni.example/api/v1/channel/7", NOW)
    from publisher.diff import diff_page

    (created,) = diff_page(as_page(Resource.STOCK, [stock(4)]), {}).changes
    gone = Deletion(4, 2, created.after)
    first_life = NOW - timedelta(hours=1)  # the newest date committed before each deletion
    first = deletion_event(ctx, gone, NOW, known_until=first_life)
    again = deletion_event(ctx, gone, NOW + timedelta(seconds=5), known_until=first_life)
    second = deletion_event(ctx, gone, NOW + timedelta(hours=2), known_until=NOW)
    assert first.id == again.id  # published again after a crash: a duplicate
    assert second.id != first.id


# ----------------------------------------------------------------- reloads after a state loss


def test_a_scan_yields_its_keys_in_ascending_order_across_buckets() -> None:
    far = 7 * BUCKET_SIZE + 1
    scan = scan_of([far, 5, BUCKET_SIZE + 2], [2, BUCKET_SIZE - 1])
    assert list(scan.seen()) == [2, 5, BUCKET_SIZE - 1, BUCKET_SIZE + 2, far]


def test_reload_parts_cover_every_key_exactly_once_and_list_each_seen_key() -> None:
    seen = [3, 8, 9, 40, 41, 100]
    parts = reload_parts(iter(seen), size=2)
    assert [p.keys for p in parts] == [[3, 8], [9, 40], [41, 100]]
    for key in range(-5, 120):
        owners = [
            p
            for p in parts
            if (p.lowest is None or key >= p.lowest) and (p.highest is None or key <= p.highest)
        ]
        assert len(owners) == 1, key
        assert (key in owners[0].keys) == (key in seen)


def test_a_reload_that_saw_nothing_is_one_part_without_bounds() -> None:
    assert reload_parts(iter([])) == [ReloadPart(None, None, [])]


def reload_data(keys: list[int], lowest: int | None = None, highest: int | None = None) -> Any:
    return ReloadData(
        channel_id=1,
        resource=Resource.STOCK,
        started_at=NOW,
        lowest_key=lowest,
        highest_key=highest,
        keys=keys,
        part=1,
        parts=1,
    )


def test_a_reload_drops_only_held_records_outside_its_keys_changed_before_it_began() -> None:
    before, after = microseconds(NOW) - 1, microseconds(NOW)
    data = reload_data([10, 20], lowest=5, highest=30)
    assert reload_drops(data, 15, before)  # in the span, not listed, older: gone
    assert not reload_drops(data, 10, before)  # listed: still in the list
    assert not reload_drops(data, 15, after)  # changed since the load began: its events decide
    assert not reload_drops(data, 15, None)  # date unknown (a 1.0 position): kept
    assert not reload_drops(data, 4, before) and not reload_drops(data, 31, before)  # elsewhere
    assert reload_drops(reload_data([]), 10**12, before)  # no bounds: every key


def test_a_record_back_at_its_stored_content_is_diffed_against_the_version_sent_since() -> None:
    stored = StoredPage({1: Stored(2, b"v1"), 2: Stored(2, b"v1"), 3: Stored(4, b"v4")})
    sent = {
        1: Pending(3, b"v2", NOW),  # sent, never committed: consumers may hold v2
        2: Pending(3, b"v1", NOW),  # sent with the stored content: nothing to undo
        3: Pending(3, b"v3", NOW),  # older than the stored version: committed since
        4: Pending(1, b"v1", NOW),  # no stored version: a diff sees it as new anyway
    }
    assert sent_instead(sent, stored, [1, 2, 3, 4, 5]) == {1: Stored(3, b"v2")}
    assert sent_instead(sent, stored, [2, 3]) == {}  # only the unchanged records count
