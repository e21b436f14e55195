"""Health signals an operator or a probe acts on.

- a step is healthy when its last step succeeded and it succeeded within
  HEALTH_STALE_INTERVALS of its interval (`status --check`);
- beat is healthy while it touches its heartbeat file (`health beat`);
- the state is safe only on a Redis that persists it (AOF): `status` warns otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from publisher.errors import StateStoreError
from publisher.redis_client import RedisClient

# Beat wakes at least this often (beat_max_loop_interval) and touches its heartbeat file;
# `health beat` fails when the file is older than BEAT_STALE_TICKS of these.
BEAT_TICK_SECONDS: Final = 30.0
BEAT_STALE_TICKS: Final = 3
HEARTBEAT_NAME: Final = "beat-heartbeat"


def step_problem(
    row: Mapping[str, Any], interval: float, stale_intervals: float, now: datetime
) -> str | None:
    """Return why one (channel, resource) is unhealthy, from its `status` row; None if not.

    A step running right now (its lock is held) is not stale: a first sync may take longer
    than a few intervals. A failure after the last success is a problem until a step
    succeeds again.
    """
    last_success = row.get("last_success_at")
    last_error_at = row.get("last_error_at")
    if last_error_at and (not last_success or last_error_at > last_success):
        return f"last step failed: {row.get('last_error')}"
    if row.get("lock_holder"):
        return None
    limit = stale_intervals * interval
    if not last_success:
        return "no successful step yet"
    age = (now - datetime.fromisoformat(last_success)).total_seconds()
    if age > limit:
        return (
            f"no successful step for {age:.0f}s (more than {stale_intervals:g} intervals "
            f"of {interval:g}s)"
        )
    return None


def persistence_problem(info: Mapping[str, Any], save: str | None) -> str | None:
    """Return a warning if a Redis with this INFO persistence (and save points) loses state.

    `save` is CONFIG GET save's value, or None when the server does not let us read it.
    """
    if str(info.get("aof_enabled", "0")) == "1":
        return None
    if save:
        kept = f"only by snapshots (save {save}): a crash loses the changes since the last one"
    elif save is None:
        kept = "not by AOF (appendonly no)"
    else:
        kept = "not at all (appendonly no, no save points): a restart loses it all"
    return (
        f"the state is kept {kept}. A lost state costs a full re-publication: every record "
        "is published again as created, sequence 1. Run Redis with appendonly yes"
    )


def redis_persistence(client: RedisClient) -> str | None:
    """Ask the Redis the state lives on whether it persists; return a warning, or None."""
    try:
        info = client.info("persistence")
    except Exception as exc:
        raise StateStoreError(f"cannot read Redis's persistence settings: {exc}") from None
    nodes = [info] if "aof_enabled" in info else [v for v in info.values() if isinstance(v, dict)]
    try:
        config = client.config_get("save")
        save: str | None = str(config.get("save", "")) if isinstance(config, dict) else None
    except Exception:
        save = None
    problems = {persistence_problem(node, save) for node in nodes}
    problems.discard(None)
    return min(problems, default=None, key=str)


def heartbeat_file(schedule_file: str) -> Path:
    """Return the file beat touches on every tick (next to its schedule)."""
    return Path(schedule_file).parent / HEARTBEAT_NAME


def touch(path: Path) -> None:
    """Mark beat alive now."""
    path.touch()


def beat_problem(schedule_file: str, now: float | None = None) -> str | None:
    """Return why beat looks dead (no recent heartbeat); None if it ticked lately."""
    path = heartbeat_file(schedule_file)
    try:
        age = (now if now is not None else time.time()) - path.stat().st_mtime
    except FileNotFoundError:
        return f"beat has not started here ({path} does not exist)"
    limit = BEAT_STALE_TICKS * BEAT_TICK_SECONDS
    if age > limit:
        return f"beat last ticked {age:.0f}s ago (more than {limit:.0f}s; {path})"
    return None
