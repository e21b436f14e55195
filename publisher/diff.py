"""Compare one page of records with their stored state (pure: no I/O).

    RecordPage + stored state  ->  PageDiff(changes, rejections, unchanged)

A record whose raw canonical form equals its stored one is unchanged and is not validated
(the fast path: a page's forms are made in C, and since a form holds its key, one set
lookup per record against the stored forms settles it). Any other record is validated
into a typed model: a valid one whose model form still equals the stored one was only
touched (say `modified_date` moved) and counts as unchanged; a valid one that differs is a
`Change`; an invalid one is a `Rejection`, alone, and the rest of the page goes on.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

from pydantic import ValidationError

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


@dataclass(slots=True)
class PageDiff:
    """The outcome of comparing one page with the stored state."""

    seen: int = 0
    unchanged: int = 0
    newest_modified: str | None = None
    changes: list[Change] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def diff_page(page: RecordPage, stored: StoredPage | Mapping[int, Stored]) -> PageDiff:
    """Split a page into changes, rejections and unchanged records."""
    result = PageDiff(seen=len(page), newest_modified=page.newest_modified)
    versions = stored if isinstance(stored, StoredPage) else StoredPage(stored)
    keys, forms = page.keys, page.forms
    newer: dict[int, Stored] = {}
    for index in _unsettled(forms, versions.forms, keys):
        key, form = keys[index], forms[index]
        previous = None if key is None else newer.get(key) or versions.current(key)
        if previous is not None and form == previous.canonical:
            continue
        outcome = _classify(page, index, key, previous)
        if isinstance(outcome, Rejection):
            result.rejections.append(outcome)
        elif outcome is not None:
            result.changes.append(outcome)
            newer[outcome.key] = Stored(outcome.sequence, outcome.after)
    result.unchanged = result.seen - len(result.changes) - len(result.rejections)
    return result


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
    page: RecordPage, index: int, key: int | None, previous: Stored | None
) -> Change | Rejection | None:
    resource = page.resource
    # A typed page's record is validated from its row and decoded only to be reported.
    fields = page.fields(index)
    if type(fields) is Unreadable:
        text = fields.text
        return Rejection(key, fields.reason, text, raw_digest(text), tracked=previous is not None)
    try:
        record = MODELS[resource].model_validate(fields)
    except ValidationError as exc:
        raw = page[index]
        reason = describe_errors(exc)
        return Rejection(key, reason, raw, raw_digest(raw), tracked=previous is not None)
    if key is None:
        raw = page[index]
        # Valid once coerced ("12", 12.0), but a key that is not a JSON integer could not be
        # looked up before the diff: taken as is, it would restart the record at sequence 1.
        found = f"{raw_key(resource, raw)!r:.60}"
        reason = f"{resource.key_field}: the key must be a JSON integer (got {found})"
        return Rejection(key=None, reason=reason, raw=raw, digest=raw_digest(raw))
    after, content = record_canonical(record)
    if previous is None:
        return Change(record.key, "created", 1, None, after, record, content)
    if after == previous.canonical:
        return None
    return Change(
        record.key, "updated", previous.sequence + 1, previous.canonical, after, record, content
    )


def unreported(rejections: Iterable[Rejection], reported: Mapping[int, str]) -> list[Rejection]:
    """Drop rejections whose exact raw content was already reported for that key."""
    return [r for r in rejections if r.key is None or reported.get(r.key) != r.digest]
