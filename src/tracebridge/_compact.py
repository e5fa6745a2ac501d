"""Compact containers for what a file endpoint keeps about every record of a large input.

A file source's index and a file sink's memory of what it wrote hold an entry per record: as
Python objects (a string, a tuple, a dict entry each) that is ~150-300 bytes a record, scattered
over the heap, where they also keep the allocator from reusing the memory around them. These
keep the same in a few contiguous buffers, 8-16 bytes a record.
"""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_left

__all__ = ["DigestMap", "Strings"]


class Strings:
    """Strings kept as one UTF-8 buffer and its ends, not one object each: a large index holds
    a few buffers instead of tens of thousands of small objects scattered over the heap (which
    keep the allocator's memory from being reused). Any `str` round-trips (lone surrogates too)."""

    def __init__(self) -> None:
        self._text = bytearray()
        self._ends = array("q")

    def append(self, value: str, /) -> None:
        self._text += value.encode("utf-8", "surrogatepass")
        self._ends.append(len(self._text))

    def __getitem__(self, number: int, /) -> str:
        start = self._ends[number - 1] if number > 0 else 0
        return self._text[start : self._ends[number]].decode("utf-8", "surrogatepass")

    def __len__(self) -> int:
        return len(self._ends)


class DigestMap:
    """A map of strings to 64-bit integers in 16 bytes an entry (a dict of strings and ints
    holds ~150): each string is kept as a 64-bit digest of itself, in a sorted array beside the
    values, and what was added since the last merge in a small dict (merged once it holds half
    as many as the arrays: linear merges of two sorted runs, amortised).

    Not exact: two strings with the same digest (a 1 in 2**64 chance for a pair) share one
    entry. A user must stay correct when a lookup answers for another string (each use says
    why it does).
    """

    _MERGE_AT = 4096

    def __init__(self) -> None:
        self._keys = array("Q")  # sorted
        self._values = array("Q")
        self._recent: dict[int, int] = {}  # keys not in `_keys`

    @staticmethod
    def _key(text: str) -> int:
        raw = text.encode("utf-8", "surrogatepass")
        return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest())

    def _find(self, key: int) -> int:
        """Where `key` is in `_keys`, or -1."""
        at = bisect_left(self._keys, key)
        return at if at < len(self._keys) and self._keys[at] == key else -1

    def get(self, text: str) -> int | None:
        key = self._key(text)
        if key in self._recent:
            return self._recent[key]
        at = self._find(key)
        return self._values[at] if at >= 0 else None

    def __contains__(self, text: str) -> bool:
        return self.get(text) is not None

    def __setitem__(self, text: str, digest: int) -> None:
        key = self._key(text)
        at = self._find(key)
        if at >= 0:
            self._values[at] = digest
            return
        self._recent[key] = digest
        if len(self._recent) >= max(self._MERGE_AT, len(self._keys) // 2):
            self._merge()

    def __len__(self) -> int:
        return len(self._keys) + len(self._recent)

    def _merge(self) -> None:
        packed = [k << 64 | v for k, v in zip(self._keys, self._values, strict=True)]
        packed += sorted(k << 64 | v for k, v in self._recent.items())
        packed.sort()  # two sorted runs: merged in one linear pass
        mask = (1 << 64) - 1
        self._keys = array("Q", [p >> 64 for p in packed])
        self._values = array("Q", [p & mask for p in packed])
        self._recent = {}
