"""Compare one page of records with their stored state (pure: no I/O).

    RecordPage + stored state  ->  PageDiff(changes, rejections, unchanged)

A record whose raw canonical form equals its stored one is unchanged and is not validated
(the fast path: a page's forms are made in C, and since a form holds its key, one set
lookup per record against the stored forms settles it). Any other record is validated
into a typed model: a valid one whose model form still equals the stored one was only
touched (say `modified_date` moved) and counts as unchanged; a valid one that differs is a
`Change`; an invalid one is a `Rejection`, alone, and the rest of the page goes on.

A record is also rejected, changed or not, when its content is bigger than the cap
(`Limits.max_record_bytes`) or its `modified_date` is not a date or is later than the
server's clock allows (`Limits.latest`): the page's newest date, which becomes the
watermark, is taken from the other records only.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import compress
from typing import Any

from pydantic import ValidationError

from publisher.bounds import MAX_RECORD_BYTES, date_problem, reportable
from publisher.events import Operation
from publisher.fingerprint import raw_digest, record_canonical
from publisher.pages import RecordPage, Unreadable, raw_key
from publisher.records import MODELS, Record, describe_errors


@dataclass(frozen=True, slots=True)
class Stored:
    """What the state store keeps per record: its last published version."""

    sequence: int
    canonical: bytes


class StoredPage(Mapping[int, Stored]):
    """The stored versions of one page's keys (key -> `Stored`), and their canonical forms.

    A record whose raw form is in `forms` is unchanged (a form starts with its key, so it
    can only match its own record's version); only the others are looked up in `versions`,
    which a store may parse lazily. `overlay` puts newer, not yet committed versions on top.
    """

    __slots__ = ("_newer", "forms", "versions")

    def __init__(self, versions: Mapping[int, Stored], forms: set[bytes] | None = None) -> None:
        self.versions = versions
        self.forms = {s.canonical for s in versions.values()} if forms is None else forms
        self._newer: dict[int, Stored] = {}

    def __getitem__(self, key: int) -> Stored:
        found = self.current(key)
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[int]:
        yield from self._newer
        yield from (key for key in self.versions if key not in self._newer)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def current(self, key: int) -> Stored | None:
        """Return the current version of a key, or None if it has none."""
        newer = self._newer.get(key)
        return newer if newer is not None else self.versions.get(key)

    def overlay(self, newer: Mapping[int, Stored]) -> None:
        """Make these versions current, replacing what was loaded for their keys."""
        for key, version in newer.items():
            replaced = self.current(key)
            if replaced is not None:
                self.forms.discard(replaced.canonical)
            self.forms.add(version.canonical)
            self._newer[key] = version


@dataclass(frozen=True, slots=True)
class Change:
    """A record whose content differs from what was last published.

    `before` and `after` are canonical forms (see `publisher.fingerprint`); `content` is the
    new content as a field -> value mapping, key included, ready for the event.
    """

    key: int
    operation: Operation
    sequence: int
    before: bytes | None
    after: bytes
    record: Record
    content: dict[str, Any] = field(compare=False, repr=False, default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that failed validation; `digest` identifies its raw content."""

    key: int | None
    reason: str
    raw: Any
    digest: str
    # Whether the record has a stored version (it was valid once): it is still in the list.
    tracked: bool = False


@dataclass(frozen=True, slots=True)
class Deletion:
    """A tracked record a complete scan did not find: it left the channel's list.

    `sequence` is the one its deletion event carries (one more than its last change);
    `before` is the canonical form last published for it.
    """

    key: int
    sequence: int
    before: bytes


@dataclass(frozen=True, slots=True)
class Limits:
    """What a record may be: at most `max_record_bytes` of content, dated at most `latest`."""

    max_record_bytes: int = MAX_RECORD_BYTES
    latest: datetime | None = None


def report_key(rejection: Rejection) -> int | str:
    """Return what a rejection is remembered under: its key, or its digest when it has none.

    A record without an integer key has nothing else that names it; by its digest, the
    same bad content is reported once, as a keyed one is.
    """
    return rejection.key if rejection.key is not None else f"?{rejection.digest}"


@dataclass(slots=True)
class PageDiff:
    """The outcome of comparing one page with the stored state."""

    seen: int = 0
    unchanged: int = 0
    newest_modified: str | None = None
    changes: list[Change] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def diff_page(
    page: RecordPage, stored: StoredPage | Mapping[int, Stored], limits: Limits | None = None
) -> PageDiff:
    """Split a page into changes, rejections and unchanged records."""
    limits = limits or Limits()
    newest, misdated = _dated(page, limits.latest)
    result = PageDiff(seen=len(page), newest_modified=newest)
    versions = stored if isinstance(stored, StoredPage) else StoredPage(stored)
    keys, forms = page.keys, page.forms
    newer: dict[int, Stored] = {}
    for index, problem in misdated.items():
        key = keys[index]
        previous = None if key is None else versions.current(key)
        reason = f"modified_date: {problem} (got {page.modified(index)!r:.60})"
        result.rejections.append(_rejection(page, index, reason, previous, limits))
    for index in _unsettled(forms, versions.forms, keys):
        if index in misdated:
            continue
        key, form = keys[index], forms[index]
        previous = None if key is None else newer.get(key) or versions.current(key)
        if previous is not None and form == previous.canonical:
            continue
        outcome = _classify(page, index, key, previous, limits)
        if isinstance(outcome, Rejection):
            result.rejections.append(outcome)
        elif outcome is not None:
            result.changes.append(outcome)
            newer[outcome.key] = Stored(outcome.sequence, outcome.after)
    result.unchanged = result.seen - len(result.changes) - len(result.rejections)
    return result


def _dated(page: RecordPage, latest: datetime | None) -> tuple[str | None, dict[int, str]]:
    """Return the page's newest acceptable `modified_date`, and the records that have none.

    The newest date is checked first: when it is a date within `latest`, so is every
    other date of the page that could matter (the others are older, or are not dates and
    fail their validation if their record changed). Only otherwise is each record's
    date checked.
    """
    newest = page.newest_modified
    if latest is None or newest is None or date_problem(newest, latest) is None:
        return newest, {}
    misdated: dict[int, str] = {}
    good: list[str] = []
    for index in range(len(page)):
        text = page.modified(index)
        problem = date_problem(text, latest) if text is not None else None
        if problem is not None:
            misdated[index] = problem
        elif text is not None:
            good.append(text)
    return max(good, default=None), misdated


def _rejection(
    page: RecordPage, index: int, reason: str, previous: Stored | None, limits: Limits
) -> Rejection:
    raw = page[index]
    shown = reportable(raw, limits.max_record_bytes)
    return Rejection(page.keys[index], reason, shown, raw_digest(raw), tracked=previous is not None)


def _unsettled(
    forms: Sequence[bytes | None], known: set[bytes], keys: Sequence[int | None]
) -> Sequence[int]:
    """Return the positions of the records the fast path cannot settle, in page order.

    Those are the records whose form is not a stored one: the lookups of a whole page are
    one `map` in C. A page with a key seen twice (or two records without one) takes every
    record the long way, so that a repeated key compares with its newer self, in page
    order; an unchanged record is still found unchanged there, by its stored version.
    """
    if len(set(keys)) != len(keys):
        return range(len(forms))
    return list(compress(range(len(forms)), map(operator.not_, map(known.__contains__, forms))))


def _classify(
    page: RecordPage, index: int, key: int | None, previous: Stored | None, limits: Limits
) -> Change | Rejection | None:
    resource = page.resource
    too_big = _too_big(page.forms[index], limits)
    if too_big is not None:
        return _rejection(page, index, too_big, previous, limits)
    # A typed page's record is validated from its row and decoded only to be reported.
    fields = page.fields(index)
    if type(fields) is Unreadable:
        text = fields.text
        return Rejection(key, fields.reason, text, raw_digest(text), tracked=previous is not None)
    try:
        record = MODELS[resource].model_validate(fields)
    except ValidationError as exc:
        return _rejection(page, index, describe_errors(exc), previous, limits)
    if key is None:
        # Valid once coerced ("12", 12.0), but a key that is not a JSON integer could not be
        # looked up before the diff: taken as is, it would restart the record at sequence 1.
        found = f"{raw_key(resource, page[index])!r:.60}"
        reason = f"{resource.key_field}: the key must be a JSON integer (got {found})"
        return _rejection(page, index, reason, None, limits)
    after, content = record_canonical(record)
    too_big = _too_big(after, limits)
    if too_big is not None:
        return _rejection(page, index, too_big, previous, limits)
    if previous is None:
        return Change(record.key, "created", 1, None, after, record, content)
    if after == previous.canonical:
        return None
    return Change(
        record.key, "updated", previous.sequence + 1, previous.canonical, after, record, content
    )


def _too_big(form: bytes | None, limits: Limits) -> str | None:
    if form is None or len(form) <= limits.max_record_bytes:
        return None
    return (
        f"record: {len(form)} bytes of content, more than the {limits.max_record_bytes} "
        "allowed (MAX_RECORD_BYTES)"
    )


def unreported(
    rejections: Iterable[Rejection], reported: Mapping[int | str, str]
) -> list[Rejection]:
    """Drop rejections whose exact raw content was already reported (see `report_key`)."""
    return [r for r in rejections if reported.get(report_key(r)) != r.digest]
