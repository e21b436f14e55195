"""Acknowledge records through Akinon batch requests so that every batch ends (pure).

A batch request moves `initialized -> commit -> done` (or `fail`); while one batch of a
channel's content type sits in `commit`, Akinon refuses every other commit of it. A step
killed between the `commit` and the `done` PATCH would so block its channel for good. Hence:

1. Before the `commit` PATCH the batch is written down in the state store (its pk and the
   objects with the `version_date`s it commits: the *journal*). Only batches written there
   are this service's own: other integrations' batches are never read or moved.
2. A batch is acknowledged only after its page's events were confirmed and its state
   committed, so a journal entry also says "these objects were published".
3. On start of an acknowledging step, `recover` reads each journal entry's batch: one left in
   `commit`, `sent_to_remote` or `ongoing` is marked `done` with the objects it committed;
   one still `initialized`, or whose entry cannot be read, is marked `fail` (its records
   come back to the queue). The entry is then dropped.

Records that were rejected are acknowledged too, with a `failed_reason_type` (Akinon keeps
an error for them), so they leave the head of the queue and come back only when they change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import orjson

from publisher.diff import PageDiff
from publisher.pages import RecordPage
from publisher.ports import Ack, ChangeSource, StateStore
from publisher.records import Resource

log = logging.getLogger(__name__)

# Akinon's reason for a record the integration itself could not handle (its framework's
# `FailedReasonType.channel_app`).
REJECTED_REASON: Final = "channel_app"

INITIALIZED: Final = "initialized"
COMMIT: Final = "commit"
DONE: Final = "done"
FAIL: Final = "fail"
# Statuses a batch is left in after its commit, until someone marks it done or failed.
COMMITTED: Final = frozenset({COMMIT, "sent_to_remote", "ongoing"})


def acks_of(records: RecordPage, diff: PageDiff) -> list[Ack]:
    """Return what a page acknowledges: each record's version as read, rejected ones with a reason.

    A record without a readable key or `modified_date` cannot be acknowledged (Akinon needs
    both); it stays in the queue and is reported as rejected.
    """
    rejected = {r.key for r in diff.rejections}
    acks: dict[int, Ack] = {}
    for index, key in enumerate(records.keys):
        modified = records.modified(index)
        if key is None or modified is None or not _is_date(modified):
            continue
        reason = REJECTED_REASON if key in rejected else None
        acks[key] = Ack(key, modified, reason)
    return list(acks.values())


def _is_date(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def encode_journal(acks: list[Ack]) -> bytes:
    """Return the journal entry of a batch: its objects, compactly."""
    return orjson.dumps([[a.key, a.version_date, a.failed_reason_type] for a in acks])


def decode_journal(blob: bytes | str | None) -> list[Ack] | None:
    """Return a journal entry's objects, or None when it cannot be read."""
    if blob is None:
        return None
    try:
        rows = orjson.loads(blob)
        return [Ack(int(key), str(version), reason) for key, version, reason in rows]
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Recovery:
    """What `recover` did with the batches a previous step left open."""

    done: int = 0
    failed: int = 0
    gone: int = 0

    @property
    def touched(self) -> int:
        """Return how many batches were marked done or failed."""
        return self.done + self.failed


def acknowledge(
    source: ChangeSource, state: StateStore, channel_id: int, resource: Resource, acks: list[Ack]
) -> None:
    """Acknowledge published (and rejected) record versions; no objects, no request."""
    if not acks:
        return
    pk = source.open_batch(channel_id)
    state.save_batch(channel_id, resource, pk, encode_journal(acks))
    source.move_batch(channel_id, resource, pk, COMMIT, acks)
    source.move_batch(channel_id, resource, pk, DONE, acks)
    state.drop_batch(channel_id, resource, pk)


def recover(
    source: ChangeSource, state: StateStore, channel_id: int, resource: Resource
) -> Recovery:
    """End every batch of ours a previous step left open (see the module docstring)."""
    counts = {DONE: 0, FAIL: 0, "none": 0}
    for pk, blob in state.open_batches(channel_id, resource).items():
        status = source.batch_status(channel_id, pk)
        acks = decode_journal(blob)
        action = _ending(status, acks)
        if action == DONE and acks is not None:
            source.move_batch(channel_id, resource, pk, DONE, acks)
        elif action == FAIL:
            source.move_batch(channel_id, resource, pk, FAIL, [])
        counts[action] += 1
        log.warning(
            "batch recovered channel=%s resource=%s batch=%s status=%s action=%s",
            channel_id,
            resource.value,
            pk,
            status,
            action,
        )
        state.drop_batch(channel_id, resource, pk)
    return Recovery(counts[DONE], counts[FAIL], counts["none"])


def _ending(status: str | None, acks: list[Ack] | None) -> str:
    """Say how to end a batch of ours found in `status`: done, fail, or none (it ended)."""
    if status in COMMITTED:
        return DONE if acks is not None else FAIL
    if status == INITIALIZED:
        return FAIL
    return "none"  # done, failed, or unknown to Akinon
