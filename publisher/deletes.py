"""Find the records a complete scan no longer saw: deletes, and the guard against a bad read.

A record removed from a channel's list is simply absent from it: only a scan that read the
whole list, every page, without failing, can tell. Such a scan remembers every key it saw
(`Scan`: a bit per key, in a mask per bucket of `BUCKET_SIZE` keys, as the state store
groups them); afterwards a tracked key it did not see has left the list.

Finding them costs nothing in the usual case: the state store keeps a count of tracked
records, and when every tracked record was seen again (the seen keys that have a stored
version number as many as the count) nothing vanished. Otherwise, and once in a while
anyway (the count could have drifted, say a Redis failover lost an increment), the whole
state's keys are read and compared (`vanished`).

A state lost (a Redis without persistence restarted) takes the tracked keys with it: the
deletes of that time cannot be told. The load that follows ends with the keys it saw
(`reload_parts`), so a consumer drops what it holds that the list no longer has.

A share of the tracked records vanishing at once that is implausible (an API glitch, a
list filter changed by mistake) is held back by `DeleteGuard`: nothing is published or
forgotten until an operator releases it, so a bad read cannot wipe a downstream catalog.

A record can also be held downstream without a stored version: a step sent its page and
failed before committing it (the broker took the events, Redis did not take the commit).
So before a page is sent, its versions are written down as `Pending` (a journal the state
store keeps beside the state, emptied by the commit); a pending key a complete scan did
not see has vanished too, and its deletion follows the pending version, the newest one
published (`deletions`), dated after it (`newest_published`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from publisher.diff import Change, Deletion, PageDiff, Stored, StoredPage
from publisher.pages import RecordPage
from publisher.topology import BUCKET_SIZE

# A deletion is dated after every version of the record that was published: at least this
# much later than the newest `modified_date` the publisher ever committed for the list.
AFTER_NEWEST = timedelta(microseconds=1)


@dataclass(slots=True)
class Scan:
    """What a complete scan saw: every key, the keys without a stored version, its end."""

    # Bucket number -> a bit per key of the bucket that was seen.
    masks: dict[int, int] = field(default_factory=dict)
    # Keys seen only as rejected records without a stored version: in the list, not tracked.
    untracked: set[int] = field(default_factory=set)
    cut_short: bool = False

    def add(self, page: RecordPage, diff: PageDiff) -> None:
        """Count one page of the scan."""
        masks = self.masks
        for key in page.keys:
            if key is not None:
                number, bit = divmod(key, BUCKET_SIZE)
                masks[number] = masks.get(number, 0) | 1 << bit
        self.untracked.update(r.key for r in diff.rejections if r.key is not None and not r.tracked)
        self.cut_short = self.cut_short or page.cut_short

    def __contains__(self, key: int) -> bool:
        number, bit = divmod(key, BUCKET_SIZE)
        return bool(self.masks.get(number, 0) >> bit & 1)

    def seen(self) -> Iterator[int]:
        """Yield every key seen, ascending."""
        for number in sorted(self.masks):
            mask, base = self.masks[number], number * BUCKET_SIZE
            while mask:
                low = mask & -mask
                yield base + low.bit_length() - 1
                mask ^= low

    def tracked_seen(self) -> int:
        """Return how many distinct keys seen have a stored version now.

        A key seen twice, once rejected and once valid, is undercounted: that can only make
        the count disagree with the store's, which then reads the whole state (never a wrong
        delete).
        """
        return sum(mask.bit_count() for mask in self.masks.values()) - len(self.untracked)


@dataclass(frozen=True, slots=True)
class DeleteGuard:
    """How many vanished records at once are plausible.

    More than `share` of the tracked records, and at least `minimum` of them, vanishing in
    one scan are held: nothing is published or forgotten, and the step says so. `released`
    lets one scan publish them anyway (an operator looked and agreed).
    """

    share: float = 0.2
    minimum: int = 10
    released: bool = False

    def holds(self, vanished: int, tracked: int) -> bool:
        """Say whether this many vanished records of `tracked` must be held back."""
        if self.released or vanished < self.minimum:
            return False
        return vanished > self.share * tracked


# A reload event lists at most this many keys (about 20 bytes each as JSON).
RELOAD_PART_KEYS = 2000


@dataclass(frozen=True, slots=True)
class ReloadPart:
    """A span of keys, bounds included (None: unbounded), and the keys a load saw in it."""

    lowest: int | None
    highest: int | None
    keys: list[int]


def reload_parts(seen: Iterator[int], size: int = RELOAD_PART_KEYS) -> list[ReloadPart]:
    """Split the keys a load saw (ascending) into parts whose spans cover every key.

    Each part ends at its last key, the next begins right after it; the first has no lower
    bound and the last no upper one, so a key anywhere falls in exactly one part.
    """
    chunks: list[list[int]] = [[]]
    for key in seen:
        if len(chunks[-1]) == size:
            chunks.append([])
        chunks[-1].append(key)
    parts, lowest = [], None
    for number, keys in enumerate(chunks, start=1):
        highest = keys[-1] if number < len(chunks) else None
        parts.append(ReloadPart(lowest, highest, keys))
        lowest = None if highest is None else highest + 1
    return parts


@dataclass(frozen=True, slots=True)
class Pending:
    """A version published (or about to be) but not committed: consumers may hold it.

    Written down for every change of a page before the page is sent, removed when a commit
    stores the key (or forgets it); one that remains was sent by a step that failed before
    its commit. `modified` is its page's newest `modified_date`: a deletion is dated after.
    """

    sequence: int
    canonical: bytes
    modified: datetime

    @classmethod
    def decode(cls, entry: bytes) -> Pending:
        """Read an entry as `journal_entries` writes it: `<sequence>|<modified>|<canonical>`."""
        sequence, modified, canonical = entry.split(b"|", 2)
        moment = datetime.fromisoformat(modified.decode())
        # A date without an offset is UTC, as the watermark reads it (`publisher.plan`).
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        return cls(int(sequence), canonical, aware)


def sent_instead(
    sent: Mapping[int, Pending], stored: StoredPage, unchanged: Iterable[int]
) -> dict[int, Stored]:
    """Return the versions to diff against instead of the stored ones, for unchanged records.

    A record sent at a newer version that was never committed, and back at its stored
    content since, reads as unchanged against the store; its consumers may hold the newer
    version, so it is compared with that one and goes out again (one sequence later).
    """
    found = {}
    for key in unchanged:
        entry, current = sent.get(key), stored.current(key)
        if entry is None or current is None or entry.sequence <= current.sequence:
            continue
        if entry.canonical != current.canonical:
            found[key] = Stored(entry.sequence, entry.canonical)
    return found


def journal_entries(changes: Sequence[Change], newest_modified: str | None) -> dict[int, bytes]:
    """Return the journal entries of a page's changes: key -> `Pending`, encoded.

    Dated with the page's newest `modified_date` (a valid date, not later than any that
    becomes the watermark), not each record's: one text a page, as cheap as the watermark.
    """
    if not changes:
        return {}
    if newest_modified is None:  # a change has a valid date, so the page has one: not seen
        newest_modified = max(c.record.modified_date for c in changes).isoformat()
    when = newest_modified.encode()
    return {c.key: b"%d|%s|%s" % (c.sequence, when, c.after) for c in changes}


def missing(tracked_keys: Sequence[int], scan: Scan) -> list[int]:
    """Return the tracked keys the scan did not see."""
    return [key for key in tracked_keys if key not in scan]


def deletions(
    keys: Sequence[int], stored: StoredPage, pending: Mapping[int, Pending] | None = None
) -> list[Deletion]:
    """Return the deletion of each vanished key that has a stored or a pending version.

    Of the two, the one with the higher sequence was published last (a pending one on a
    tie: a commit removes the entry of what it stored); the deletion comes one after it.
    """
    pending = pending or {}
    found = []
    for key in keys:
        version, sent = stored.current(key), pending.get(key)
        if sent is not None and (version is None or sent.sequence >= version.sequence):
            found.append(Deletion(key, sent.sequence + 1, sent.canonical))
        elif version is not None:
            found.append(Deletion(key, version.sequence + 1, version.canonical))
    return found


def newest_published(newest_seen: datetime | None, pending: Iterable[Pending]) -> datetime | None:
    """Return the newest `modified_date` published: committed (`newest_seen`) or pending."""
    dates = [p.modified for p in pending]
    if newest_seen is not None:
        dates.append(newest_seen)
    return max(dates, default=None)


def deleted_at(observed_at: datetime, newest_seen: datetime | None) -> datetime:
    """Date a deletion: now, but never before the newest version published for the list."""
    if newest_seen is None:
        return observed_at
    return max(observed_at, newest_seen + AFTER_NEWEST)
