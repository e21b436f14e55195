"""Records are bounded: nesting, size, dates; a poisoned watermark never crashes a plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from publisher.bounds import OMITTED, date_problem, nested_deeper, reportable
from publisher.diff import Limits, diff_page
from publisher.pages import RecordPage
from publisher.pipeline import StepSummary
from publisher.plan import plan_since, step_progress
from publisher.records import RESOURCES, Resource

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def stock(pk: int, **values: Any) -> dict[str, Any]:
    return {**RESOURCES[Resource.STOCK].example, "pk": pk, **values}


def test_nesting_is_measured_without_recursion() -> None:
    assert not nested_deeper(nested(2), 3)  # three objects, one in the other
    assert nested_deeper(nested(3), 3)
    assert nested_deeper(nested(100_000), 32)  # no RecursionError


@pytest.mark.parametrize("depth", [40, 252, 900])
def test_a_deep_extra_field_is_a_rejection_that_can_be_published(depth: int) -> None:
    page = RecordPage.plain(Resource.STOCK, [stock(1), stock(2, extra_field=nested(depth))])
    diff = diff_page(page, {})
    assert [c.key for c in diff.changes] == [1]
    (rejection,) = diff.rejections
    assert "nested more than 32 levels deep" in rejection.reason
    assert rejection.raw["extra_field"] == OMITTED
    orjson.dumps(rejection.raw)


def test_a_record_over_the_size_cap_is_rejected_alone_and_reported_cut() -> None:
    big = stock(2, extra_field={"blob": "x" * 5000})
    page = RecordPage.plain(Resource.STOCK, [stock(1), big])
    diff = diff_page(page, {}, Limits(max_record_bytes=1000))
    assert [c.key for c in diff.changes] == [1]
    (rejection,) = diff.rejections
    assert "more than the 1000 allowed" in rejection.reason
    assert isinstance(rejection.raw, str) and len(rejection.raw) < 1100
    assert reportable(big, 100_000) == big


@pytest.mark.parametrize(
    ("text", "problem"),
    [("2099-01-01T00:00:00Z", "later"), ("zzz", "not a date"), ("2026-12-04T12:01:00Z", None)],
)
def test_a_modified_date_counts_only_if_it_is_a_date_not_in_the_future(
    text: str, problem: str | None
) -> None:
    found = date_problem(text, NOW + timedelta(minutes=5))
    assert found is None if problem is None else problem in (found or "")


def test_a_bad_date_is_rejected_even_on_an_unchanged_record_and_is_no_watermark() -> None:
    good = stock(1, modified_date="2026-12-04T11:00:00.000000Z")
    page = RecordPage.plain(Resource.STOCK, [good, stock(2, modified_date="zzz")])
    diff = diff_page(page, {}, Limits(latest=NOW))
    assert diff.newest_modified == good["modified_date"]
    assert [r.key for r in diff.rejections] == [2]


@pytest.mark.parametrize("watermark", ["zzz", "2099-01-01T00:00:00.000000Z"])
def test_a_poisoned_watermark_plans_a_complete_scan_and_is_replaced(watermark: str) -> None:
    meta = {"watermark": watermark, "newest_seen": watermark, "last_full_scan_at": NOW.isoformat()}
    assert plan_since(meta, NOW, lookback_seconds=60, full_scan_seconds=900) is None
    summary = StepSummary(1, "stock", newest_modified="2026-12-04T11:00:00.000000Z")
    fields = step_progress(summary, meta, NOW, NOW)
    assert fields["watermark"] == "2026-12-04T11:00:00.000000Z"
    assert fields["newest_seen"].startswith("2026-12-04T11:00:00")
    emptied = step_progress(StepSummary(1, "stock"), meta, NOW, NOW)
    assert (emptied["watermark"], emptied["newest_seen"]) == ("", "")
