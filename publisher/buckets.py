"""Encode and decode the state store's bucket strings: pure, no server.

Records are grouped in buckets of `topology.BUCKET_SIZE` consecutive keys; each bucket is
one LZ4-compressed string of lines: a header ``=<sequence> <sequence> …``, then each
record's canonical form (compact JSON, key first, never a newline), in header order.
Splitting a bucket into lines, in C, gives the set of stored forms the diff checks
unchanged records against, and a record's sequence is only looked up when it changed. A
hundred similar records compress to a few dozen bytes each.
Buckets of earlier versions still read: zlib-compressed ones (they are written as LZ4 the
next time they change), and those written before the key moved into the form, as lines
``<key % size> <sequence> <form without key>``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping
from typing import Final

import lz4.block

from publisher import topology
from publisher.diff import Stored

# A bucket string is this mark, then an LZ4 block (with its size). LZ4 compresses and
# decompresses a bucket about four times faster than zlib's fastest level, which matters
# since every scanned page decodes about ten buckets and a page with changes rewrites
# them; it keeps about a third of the text (zlib about a quarter). zlib streams, which
# earlier versions wrote, start with 0x78, never with the mark.
_LZ4: Final = b"L"

_HEADER: Final = b"="
_FORM_KEY: Final = re.compile(rb"^\[(-?\d+)[,\]]", re.MULTILINE)
_LEGACY_LINE: Final = re.compile(rb"^(\d+) (\d+) \[(.*)$", re.MULTILINE)


def encode_bucket(entries: Iterable[Stored]) -> bytes:
    """Encode one bucket's versions as the string Redis keeps."""
    versions = list(entries)
    return Bucket.of(
        [b"%d" % v.sequence for v in versions], [v.canonical for v in versions]
    ).encoded()


class Bucket:
    """One bucket's text: every stored form at once, a version parsed only when asked for."""

    __slots__ = ("_sequences", "forms", "text")

    def __init__(self, text: bytes, lines: tuple[list[bytes], list[bytes]] | None = None) -> None:
        """Hold a bucket's text; `lines` are its sequences and forms, when already split."""
        self.text = text
        if lines is None:
            header, *forms = text.split(b"\n")
            lines = (header[len(_HEADER) :].split(), forms)
        self._sequences, self.forms = lines

    @classmethod
    def of(cls, sequences: list[bytes], forms: list[bytes]) -> Bucket:
        """Return the bucket of these versions (sequence and form of each, in one order)."""
        return cls(b"\n".join([_HEADER + b" ".join(sequences), *forms]), (sequences, forms))

    @classmethod
    def decode(cls, blob: bytes | str | None, number: int) -> Bucket:
        """Decompress a bucket string (None: an empty bucket); `number` places legacy ones."""
        if not blob:
            return cls(_HEADER)
        raw = blob if isinstance(blob, bytes) else blob.encode()
        text = (
            lz4.block.decompress(memoryview(raw)[1:]) if raw[:1] == _LZ4 else zlib.decompress(raw)
        )
        return cls(text if text.startswith(_HEADER) else _upgrade(text, number))

    def find(self, key: int) -> Stored | None:
        """Return the version of one key, or None if the bucket has none."""
        index = self._index(key)
        if index is None:
            return None
        return Stored(int(self._sequences[index]), self.forms[index])

    def merged(self, newer: Mapping[int, Stored | None]) -> Bucket:
        """Return the bucket with these versions put in (replaced or added; None: removed).

        A version never replaces one with a higher sequence: a writer merging what it read
        before another moved the record on (it lost its lock, say) cannot move it back.
        """
        sequences, forms = list(self._sequences), list(self.forms)
        gone: set[int] = set()
        for key, version in newer.items():
            index = self._index(key)
            if version is None:
                if index is not None:
                    gone.add(index)
            elif index is None:
                sequences.append(b"%d" % version.sequence)
                forms.append(version.canonical)
            elif int(sequences[index]) <= version.sequence:
                sequences[index] = b"%d" % version.sequence
                forms[index] = version.canonical
        if gone:
            kept = [i for i in range(len(forms)) if i not in gone]
            sequences, forms = [sequences[i] for i in kept], [forms[i] for i in kept]
        return Bucket.of(sequences, forms)

    def __len__(self) -> int:
        return len(self.forms)

    def encoded(self) -> bytes:
        """Return the string Redis keeps for this bucket (empty: the bucket is deleted)."""
        if not self.forms:
            return b""
        block: bytes = lz4.block.compress(self.text)
        return _LZ4 + block

    def _index(self, key: int) -> int | None:
        at = self.text.find(b"\n[%d," % key)
        if at < 0:
            return None
        return self.text.count(b"\n", 0, at)  # the header's line break comes first

    def versions(self) -> dict[int, Stored]:
        """Return every version in the bucket, by key."""
        record_keys = map(int, _FORM_KEY.findall(self.text))
        return {
            key: Stored(int(sequence), form)
            for key, sequence, form in zip(record_keys, self._sequences, self.forms, strict=True)
        }


def _upgrade(legacy: bytes, number: int) -> bytes:
    """Rewrite a bucket of ``<key % size> <sequence> <form without key>`` lines."""
    base = number * topology.BUCKET_SIZE
    lines = _LEGACY_LINE.findall(legacy)
    header = _HEADER + b" ".join(sequence for _, sequence, _ in lines)
    forms = (b"[%d,%s" % (base + int(field), rest) for field, _, rest in lines)
    return b"\n".join([header, *forms])
