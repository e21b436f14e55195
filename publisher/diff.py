"""Compare one page of decoded records with their stored state (pure: no I/O).

    raw page + stored state  ->  PageDiff(changes, rejections, unchanged)

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
from typing import Any, Final

from pydantic import ValidationError

from publisher.events import Operation
from publisher.fingerprint import page_canonicals, raw_digest, record_canonical
from publisher.pages import RecordPage
from publisher.records import MODELS, Record, Resource, describe_errors


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


@dataclass(slots=True)
class PageDiff:
    """The outcome of comparing one page with the stored state."""

    seen: int = 0
    unchanged: int = 0
    newest_modified: str | None = None
    changes: list[Change] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


_KEY_GETTERS: Final = {r: operator.itemgetter(r.key_field) for r in Resource}
_MODIFIED: Final = operator.itemgetter("modified_date")


def record_key(resource: Resource, raw: Any) -> int | None:
    """Return a raw record's integer key, or None when it has none."""
    key = _raw_key(resource, raw)
    return key if type(key) is int else None


def _raw_key(resource: Resource, raw: Any) -> Any:
    # The key field if the record has one, else `pk` (prices are also seen keyed by `pk`):
    # the same choice the model's alias and the canonical form make.
    if type(raw) is not dict:
        return None
    name = resource.key_field
    return raw[name] if name in raw else raw.get("pk")


def page_keys(resource: Resource, raws: Sequence[Any]) -> list[int | None]:
    """Return each record's key (None where it has none), in page order."""
    if isinstance(raws, RecordPage) and raws.resource is resource:
        return list(raws.keys)
    try:  # the common case, in C: every record is a dict with an integer key
        found: list[int | None] = list(map(_KEY_GETTERS[resource], raws))
        if set(map(type, found)) == {int}:
            return found
    except (KeyError, TypeError):
        pass
    return [record_key(resource, raw) for raw in raws]


def newest_modified(raws: Sequence[Any]) -> str | None:
    """Return the latest `modified_date` text of a page (ISO text sorts as time does)."""
    if isinstance(raws, RecordPage):
        return raws.newest_modified
    try:  # the common case, in C
        newest: str | None = max(map(_MODIFIED, raws), default=None)
        if newest is None or type(newest) is str:
            return newest
    except (KeyError, TypeError):
        pass
    dates = (r.get("modified_date") for r in raws if type(r) is dict)
    return max((d for d in dates if type(d) is str), default=None)


def diff_page(
    resource: Resource,
    raws: Sequence[Any],
    stored: StoredPage | Mapping[int, Stored],
    keys: Sequence[int | None] | None = None,
) -> PageDiff:
    """Split a page into changes, rejections and unchanged records.

    `keys` are the records' keys from `page_keys`, when the caller already has them.
    """
    result = PageDiff(seen=len(raws), newest_modified=newest_modified(raws))
    page = stored if isinstance(stored, StoredPage) else StoredPage(stored)
    if keys is None:
        keys = page_keys(resource, raws)
    forms = page_canonicals(resource, raws)
    newer: dict[int, Stored] = {}
    for index in _unsettled(forms, page.forms, keys):
        key, form = keys[index], forms[index]
        previous = None if key is None else newer.get(key) or page.current(key)
        if previous is not None and form == previous.canonical:
            continue
        outcome = _classify(resource, raws, index, key, previous)
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
    resource: Resource, raws: Sequence[Any], index: int, key: int | None, previous: Stored | None
) -> Change | Rejection | None:
    # A typed page's record is validated from its row and decoded only to be reported.
    fields = raws.fields(index) if isinstance(raws, RecordPage) else raws[index]
    try:
        record = MODELS[resource].model_validate(fields)
    except ValidationError as exc:
        raw = raws[index]
        return Rejection(key=key, reason=describe_errors(exc), raw=raw, digest=raw_digest(raw))
    if key is None:
        raw = raws[index]
        # Valid once coerced ("12", 12.0), but a key that is not a JSON integer could not be
        # looked up before the diff: taken as is, it would restart the record at sequence 1.
        found = f"{_raw_key(resource, raw)!r:.60}"
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
