"""Plan a sync step from its bookkeeping, and write the bookkeeping back (pure: no I/O).

Per (channel, resource) the state store keeps a small meta hash; these are its fields:

    watermark               newest `modified_date` committed (where incremental steps start)
    newest_seen             the same, parsed: deletions are dated after it
    last_full_scan_at       when the last step without a date filter began
    loaded_at               when the state was first loaded (absent: the next step is a
                            reload, and what it sees for the first time is a `snapshot`)
    last_reconciled_at      when a complete scan last read every stored key
    date_filter_ignored_at  when the server was found ignoring `modified_date__gte`
                            (since then: complete scans only)
    deletes_held, deletes_held_at
                            vanished records the delete guard holds back, and since when
    reload_held             `1`: a reload read the whole list empty and holds its reload
                            events (released like held deletes)
    release_deletes         `1`: the next complete scan publishes held deletes anyway
    last_success_at, last_summary, last_error, last_error_at, tracked
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson

from publisher.bounds import CLOCK_SKEW
from publisher.pipeline import StepSpec, StepSummary

# How often a complete scan reads every stored key even when the tracked count agrees.
RECONCILE_SECONDS = 24 * 3600.0


def plan_step(
    spec: StepSpec,
    meta: Mapping[str, str],
    now: datetime,
    reconcile_seconds: float = RECONCILE_SECONDS,
) -> StepSpec:
    """Return the step to run now, from its configuration and its bookkeeping."""
    since = None
    dated = not spec.acknowledge and not meta.get("date_filter_ignored_at")
    if spec.lookback_seconds is not None and dated:
        since = plan_since(
            meta,
            now,
            lookback_seconds=spec.lookback_seconds,
            full_scan_seconds=spec.full_scan_seconds,
        )
    last_reconciled = _moment(meta.get("last_reconciled_at"))
    due = last_reconciled is None or (now - last_reconciled).total_seconds() >= reconcile_seconds
    return replace(
        spec,
        since=since,
        reload=not meta.get("loaded_at"),
        newest_seen=_moment(meta.get("newest_seen")),
        delete_guard=replace(spec.delete_guard, released=meta.get("release_deletes") == "1"),
        reconcile=due,
    )


def plan_since(
    meta: Mapping[str, str], now: datetime, *, lookback_seconds: float, full_scan_seconds: float
) -> str | None:
    """Choose where an incremental step starts, or None for a full scan.

    A full scan runs when there is no watermark yet or the last full scan is older than
    `full_scan_seconds`: it is the safety net for anything a date filter could miss (a
    record saved with an older `modified_date` than one already seen). Otherwise the step
    asks for records modified since the watermark minus `lookback_seconds`; records seen
    again are dropped by their fingerprints.
    """
    watermark, last_full = _watermark(meta, now), _moment(meta.get("last_full_scan_at"))
    if watermark is None or last_full is None:
        return None  # none yet, or one that is not a date or is in the future: scan it all
    if (now - last_full).total_seconds() >= full_scan_seconds:
        return None
    start = watermark - timedelta(seconds=lookback_seconds)
    return start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _watermark(meta: Mapping[str, str], now: datetime) -> datetime | None:
    """Return the stored watermark if it is a date no later than now (plus the skew).

    Dates that are not are rejected before they get here; one stored by an older version
    (`2099-…`, `zzz`) would otherwise hold incremental steps above every change, forever.
    """
    moment = _moment(meta.get("watermark"))
    if moment is None or moment > now + CLOCK_SKEW:
        return None
    return moment


def step_progress(
    summary: StepSummary,
    meta: Mapping[str, str],
    started_at: datetime,
    now: datetime,
    *,
    lookback_seconds: float | None = None,
) -> dict[str, str]:
    """Return the bookkeeping of a successful step: outcome, watermark, scans, deletes."""
    fields = {
        "last_success_at": now.isoformat(),
        "last_summary": orjson.dumps(summary.as_dict()).decode(),
    }
    reached = safe_watermark(summary.newest_modified, started_at, now, lookback_seconds)
    fields.update(_newest(reached, summary.newest_modified, meta, now))
    if not summary.incremental:
        fields["last_full_scan_at"] = started_at.isoformat()
        if not summary.reload_held:  # a held reload stays a reload until released
            fields.setdefault("loaded_at", meta.get("loaded_at") or now.isoformat())
    if summary.reconciled:
        fields["last_reconciled_at"] = now.isoformat()
    if summary.date_filter_ignored and not meta.get("date_filter_ignored_at"):
        fields["date_filter_ignored_at"] = now.isoformat()
    if summary.complete_scan:
        fields.update(_held(summary, meta, now))
    return fields


def _newest(
    reached: str | None, newest_modified: str | None, meta: Mapping[str, str], now: datetime
) -> dict[str, str]:
    """Return the watermark and `newest_seen`: the newest valid date, never in the future.

    `reached` is how far this step may move the watermark (`safe_watermark`),
    `newest_modified` the newest date it saw.

    A stored value that is no such date (written by an older version) is replaced, by an
    empty watermark if nothing better is known: the next step then scans everything.
    """
    latest = now + CLOCK_SKEW
    candidates = [
        (moment, text)
        for text in (meta.get("watermark"), reached)
        if text and (moment := _moment(text)) is not None and moment <= latest
    ]
    seen = [_moment(meta.get("newest_seen")), _moment(newest_modified)]
    newest = max((m for m in seen if m is not None and m <= latest), default=None)
    found = {
        "watermark": max(candidates)[1] if candidates else "",
        "newest_seen": newest.isoformat() if newest is not None else "",
    }
    return {name: value for name, value in found.items() if value or meta.get(name)}


def safe_watermark(
    newest: str | None, started_at: datetime, now: datetime, lookback_seconds: float | None
) -> str | None:
    """Return how far a step may move the watermark: the newest date it saw, or less.

    A record changed on a page the scan had already passed is dated after the scan began,
    and the scan did not see it. Later steps start at the watermark minus the lookback, so
    they find it only if that is not after its date. A scan shorter than the lookback
    cannot skip it; a longer one moves the watermark no further than its own start (one
    lookback of margin for the servers' clocks remains).
    """
    if newest is None or lookback_seconds is None:
        return newest
    if (now - started_at).total_seconds() <= lookback_seconds:
        return newest
    start = started_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    seen = _moment(newest)
    return start if seen is not None and seen > started_at else newest


def _held(summary: StepSummary, meta: Mapping[str, str], now: datetime) -> dict[str, str]:
    """Return the delete guard's bookkeeping after a complete scan."""
    if summary.deletes_held or summary.reload_held:
        since = meta.get("deletes_held_at") or now.isoformat()
        return {
            "deletes_held": str(summary.deletes_held),
            "deletes_held_at": since,
            "reload_held": "1" if summary.reload_held else "0",
        }
    return {"deletes_held": "0", "deletes_held_at": "", "release_deletes": "0", "reload_held": "0"}


def _moment(text: str | None) -> datetime | None:
    """Read an ISO-8601 moment (a trailing Z too); None for none or unreadable text."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
