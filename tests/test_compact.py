"""`_compact`: the containers file endpoints keep an entry per record in. They must answer as
the dict or list they replace, in a fraction of the memory, and `DigestMap` must keep its one
documented inexactness (two strings with one digest share an entry)."""

from __future__ import annotations

import random
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracebridge._compact import DigestMap, Strings


@given(st.lists(st.text()))
def test_strings_give_back_every_string(values: list[str]) -> None:
    table = Strings()
    for value in values:
        table.append(value)
    assert len(table) == len(values)
    assert [table[n] for n in range(len(values))] == values


def test_strings_keep_lone_surrogates_and_empty_strings() -> None:
    table = Strings()
    for value in ["", "\ud800", "é…", ""]:
        table.append(value)
    assert [table[n] for n in range(4)] == ["", "\ud800", "é…", ""]


def test_a_digest_map_answers_as_a_dict_across_merges() -> None:
    """Entries added, overwritten in the sorted arrays and in the recent dict, and looked up,
    across several merges (more than `_MERGE_AT` entries), agree with a dict."""
    rng = random.Random(5)
    compact, plain = DigestMap(), dict[str, int]()
    for n in range(20_000):
        key = f"trace-{rng.randrange(15_000)}"
        value = rng.randrange(1 << 64)
        compact[key] = value
        plain[key] = value
        if n % 7 == 0:
            probe = f"trace-{rng.randrange(16_000)}"
            assert compact.get(probe) == plain.get(probe)
            assert (probe in compact) == (probe in plain)
    assert len(compact) == len(plain)
    assert all(compact.get(key) == value for key, value in plain.items())
    assert compact.get("never") is None


def test_a_digest_map_holds_an_entry_in_a_few_dozen_bytes() -> None:
    """50,000 entries: under 40 bytes each (a dict of the strings and ints holds ~150)."""
    keys = [f"{n:032x}" for n in range(50_000)]
    tracemalloc.start()
    try:
        compact = DigestMap()
        for n, key in enumerate(keys):
            compact[key] = n
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held / len(keys) < 40
    assert compact.get(keys[123]) == 123


def test_strings_sharing_a_digest_share_an_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented inexactness, and only that: one digest, one entry."""
    monkeypatch.setattr(DigestMap, "_key", staticmethod(lambda text: 42))
    compact = DigestMap()
    compact["a"] = 1
    assert compact.get("b") == 1
    compact["b"] = 2
    assert compact.get("a") == 2
    assert len(compact) == 1
