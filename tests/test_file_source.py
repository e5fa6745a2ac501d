"""`_file_source.ThreadIndex`: units in order of first appearance, a thread's records from
anywhere in the input, kept in a few machine words a record."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime
from typing import Any

import pytest

from tracebridge import Counts, Provenance, Span, Trace
from tracebridge._compact import Strings
from tracebridge._file_source import ThreadIndex, paged

START = datetime(2026, 3, 9, tzinfo=UTC)


def test_threads_gather_their_records_from_anywhere_in_order_of_first_appearance() -> None:
    index: ThreadIndex[str] = ThreadIndex()
    for thread, locator in [
        ("conv_b", "l1"),
        (None, "l2"),
        ("conv_a", "l3"),
        ("conv_b", "l4"),
        (None, "l5"),
        ("conv_a", "l6"),
        ("conv_b", "l7"),
    ]:
        index.add(thread, locator)
    assert (len(index), index.records) == (4, 7)
    assert list(index.units()) == [
        ("conv_b", ["l1", "l4", "l7"]),
        (None, ["l2"]),
        ("conv_a", ["l3", "l6"]),
        (None, ["l5"]),
    ]
    assert list(index.units(3)) == [(None, ["l5"])]
    assert list(index.units(4)) == []


def test_an_empty_index_has_no_units() -> None:
    index: ThreadIndex[str] = ThreadIndex()
    assert (len(index), list(index.units())) == (0, [])


def test_records_after_the_units_were_read_are_refused() -> None:
    """The grouping is built once; a record added later would be lost, so it is refused."""
    index: ThreadIndex[str] = ThreadIndex()
    index.add("t", "a")
    assert list(index.units()) == [("t", ["a"])]
    with pytest.raises(RuntimeError):
        index.add("t", "b")


def test_thread_ids_keep_any_text() -> None:
    index: ThreadIndex[str] = ThreadIndex(Strings())
    index.add("\ud800 é", "a")
    index.add("", "b")  # a source passes None for an empty thread id; kept apart if it does not
    index.add("\ud800 é", "c")
    assert list(index.units()) == [("\ud800 é", ["a", "c"]), ("", ["b"])]


def test_a_large_index_holds_a_few_dozen_bytes_a_record() -> None:
    """50,000 records in 10,000 threads and 10,000 standalone traces, each file name (47
    characters) a new string as a listing gives it, kept in a `Strings` table: under 100 bytes
    a record once grouped, name included (a str, a tuple and list slots each held ~200)."""
    names = [f"trace_{n:032x}.json" for n in range(50_000)]
    threads = [f"thread-{n:06}" for n in range(10_000)]
    tracemalloc.start()
    try:
        index: ThreadIndex[str] = ThreadIndex(Strings())
        for n in range(50_000):
            index.add(threads[n % 10_000] if n % 5 else None, f"trace_{n:032x}.json")
        first = next(index.units())
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first == (None, [names[0]])
    assert held / len(names) < 100
    assert sum(len(locators) for _, locators in index.units()) == 50_000


def _trace(name: str, spans: int) -> Trace:
    return Trace(
        id=name,
        source=Provenance(platform="langwatch", project="p", id=name),
        started_at=START,
        spans=[Span(id=f"{name}-{n}", started_at=START) for n in range(spans)],
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_page_ends_before_a_unit_that_would_take_it_past_its_spans() -> None:
    """Spans as the index counted them: 100 + 100 fit a page of 250; the 300-span unit gets
    a page of its own (it ends that page too); then the rest. Nothing is lost or reordered."""
    sizes = {"a": 100, "b": 100, "big": 300, "c": 10, "d": 200}
    index: ThreadIndex[str] = ThreadIndex()
    for name, spans in sizes.items():
        index.add(None, name, spans)

    def load(thread_id: str | None, names: list[str]) -> tuple[Trace, list[Any]]:
        return _trace(names[0], sizes[names[0]]), []

    pages = [page async for page in paged(index, load, None, 100, "in", page_spans=250)]
    assert [[u.id for u in page.units] for page in pages] == [["a", "b"], ["big"], ["c", "d"]]
    assert [page.cursor["units_done"] for page in pages if page.cursor] == [2, 3, 5]
    assert sum((Counts.of(u).spans for p in pages for u in p.units), 0) == 710
