from __future__ import annotations

from datetime import UTC, datetime

from publisher.plan import plan_since, safe_watermark

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
RECENT_FULL = "2026-05-01T11:55:00+00:00"


def plan(meta: dict[str, str]) -> str | None:
    return plan_since(meta, NOW, lookback_seconds=120, full_scan_seconds=900)


def test_first_step_is_a_full_scan() -> None:
    assert plan({}) is None
    assert plan({"last_full_scan_at": RECENT_FULL}) is None


def test_incremental_step_starts_a_lookback_before_the_watermark() -> None:
    meta = {"watermark": "2026-05-01T11:59:30.250000Z", "last_full_scan_at": RECENT_FULL}
    assert plan(meta) == "2026-05-01T11:57:30.250000Z"


def test_a_full_scan_comes_back_when_due() -> None:
    meta = {"watermark": "2026-05-01T11:59:30Z", "last_full_scan_at": "2026-05-01T11:45:00+00:00"}
    assert plan(meta) is None


def test_a_scan_longer_than_the_lookback_moves_the_watermark_no_further_than_its_start() -> None:
    started = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
    later = "2026-05-01T12:00:06.500000Z"
    quick = datetime(2026, 5, 1, 12, 0, 1, tzinfo=UTC)
    slow = datetime(2026, 5, 1, 12, 0, 7, tzinfo=UTC)
    assert safe_watermark(later, started, quick, 2.0) == later
    assert safe_watermark(later, started, slow, 2.0) == "2026-05-01T12:00:00.000000Z"
    assert safe_watermark("2026-05-01T11:00:00Z", started, slow, 2.0) == "2026-05-01T11:00:00Z"
    assert safe_watermark(later, started, slow, None) == later  # no incremental steps
