"""Health rules: stale or failed steps, a silent beat, a Redis that does not persist."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from publisher.health import beat_problem, heartbeat_file, persistence_problem, step_problem

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).isoformat()


def test_a_step_is_healthy_within_its_intervals_and_stale_after() -> None:
    assert step_problem({"last_success_at": _ago(80)}, 30, 3, NOW) is None
    problem = step_problem({"last_success_at": _ago(100)}, 30, 3, NOW)
    assert problem == "no successful step for 100s (more than 3 intervals of 30s)"


def test_a_failure_after_the_last_success_is_a_problem_until_a_success() -> None:
    failed = {"last_success_at": _ago(20), "last_error_at": _ago(10), "last_error": "AuthError: x"}
    assert step_problem(failed, 30, 3, NOW) == "last step failed: AuthError: x"
    recovered = {**failed, "last_success_at": _ago(5)}
    assert step_problem(recovered, 30, 3, NOW) is None


def test_a_running_first_sync_is_not_stale_but_a_step_never_run_is() -> None:
    assert step_problem({"lock_holder": "w1"}, 30, 3, NOW) is None
    assert step_problem({}, 30, 3, NOW) == "no successful step yet"


def test_only_aof_keeps_the_state_without_a_warning() -> None:
    assert persistence_problem({"aof_enabled": 1}, "") is None
    none = persistence_problem({"aof_enabled": 0}, "")
    assert none is not None and "no save points" in none and "re-publication" in none
    snapshots = persistence_problem({"aof_enabled": 0}, "3600 1")
    assert snapshots is not None and "only by snapshots (save 3600 1)" in snapshots
    unknown = persistence_problem({"aof_enabled": 0}, None)
    assert unknown is not None and "appendonly no" in unknown


def test_beat_is_healthy_while_it_touches_its_heartbeat(tmp_path: Path) -> None:
    schedule = str(tmp_path / "beat" / "beat-schedule")
    missing = beat_problem(schedule)
    assert missing is not None and "has not started" in missing
    heartbeat = heartbeat_file(schedule)
    heartbeat.parent.mkdir()
    heartbeat.touch()
    mtime = heartbeat.stat().st_mtime
    assert beat_problem(schedule, now=mtime + 60) is None
    old = beat_problem(schedule, now=mtime + 120)
    assert old is not None and "last ticked 120s ago" in old
    os.utime(heartbeat)
