"""What the file sources share: a two-pass read that groups traces into threads.

Pass one indexes every record's thread id and location (not its content), so memory grows with
the number of records, not their size, by a few machine words each (`ThreadIndex` keeps them in
arrays); pass two loads one unit at a time. Units come in the
order their first record appears in the files, which makes `{"units_done": n}` a resumable cursor
for *that* input only: the cursor also carries the input's fingerprint (a digest pass one takes
of what it read) and the number of units, and a resume whose input changed, or whose cursor does
not fit the input, reads it again from the start and says so. Writes are idempotent, so a
restart costs time, never records.

One unit that cannot be loaded never stops the read: an exception the loader raises that is
the unit's problem (`_failures.is_record_failure`: anything but `TracebridgeError`s other than
`RecordError`, `OSError`s and the like) makes that unit one dead letter, `could not be read:
<Type>: <message>`, naming where its records are and counting them; the next unit is loaded.
What the decoders repaired or left out while loading a unit travels with the page that holds
it, and is dropped with a unit that failed (its dead letter already counts its records).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from array import array
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from ._compact import Strings
from ._decoding import collecting, drain_into
from ._failures import describe, is_record_failure
from ._gc import quiet_collector
from ._interfaces import Counts, Notes, Page, Rejected, Unit, Window

__all__ = ["FileSource", "Table", "ThreadIndex", "locate", "paged"]

L = TypeVar("L")

#: Loads one unit from its locators: the unit (None when every record was rejected) and rejects.
#: A locator finds one trace record: a file path, or a tuple whose last item is a line number.
Loader = Callable[[str | None, list[L]], tuple[Unit | None, list[Rejected]]]


class Table(Protocol[L]):
    """Where the index keeps its locators, numbered in the order they were appended: a `list`,
    or a compact table of a source's own (`Strings`, the LangWatch file's locator arrays)."""

    def append(self, locator: L, /) -> None: ...

    def __getitem__(self, number: int, /) -> L: ...


class ThreadIndex(Generic[L]):
    """Locators of every record, grouped by thread id, in order of first appearance.

    Compact: the locators live in `table` (a plain list unless the source gives one of its
    own), and the grouping in arrays of integers; the thread ids met while adding are kept in
    a dict only until the units are first read (`units`), after which `add` is refused. Memory
    is a few machine words per record (measured in tests/test_file_source.py).
    """

    def __init__(self, table: Table[L] | None = None) -> None:
        self._table: Table[L] = table if table is not None else []
        self._unit_of = array("q")  # record number -> its unit, until the units are grouped
        self._unit_thread = array("q")  # unit -> its number in `_thread_ids`, or -1 (a trace)
        self._thread_ids = Strings()
        self._units_of_threads: dict[str, int] | None = {}  # thread id -> unit, while adding
        self._members = array("q")  # record numbers, grouped by unit (once grouped)
        self._starts = array("q")  # unit -> where its records start in `_members` (and the end)
        self._spans = array("q")  # unit -> the spans its records hold, as pass one counted them
        self.rejected: list[Rejected] = []
        #: Records pass one left out by a rule, and warnings about the input: they reach the
        #: first page (skips only when reading from the start, like the rejects; warnings always).
        self.notes = Notes()
        #: A digest of the input as pass one read it; a resume on another input starts over.
        self.fingerprint = ""
        #: Trace records indexed (each locator is one).
        self.records = 0

    def add(self, thread_id: str | None, locator: L, spans: int = 0) -> None:
        """Index one record of `thread_id` (None: a trace of its own) holding `spans` spans (as
        far as pass one can tell: `paged` ends a page before a unit too big for it). Refused
        (RuntimeError) once the units have been read."""
        threads = self._units_of_threads
        if threads is None:
            raise RuntimeError("the index's units were read already: it takes no more records")
        self._table.append(locator)
        self.records += 1
        unit = threads.get(thread_id) if thread_id is not None else None
        if unit is None:
            unit = len(self._unit_thread)
            if thread_id is None:
                self._unit_thread.append(-1)
            else:
                threads[thread_id] = unit
                self._unit_thread.append(len(self._thread_ids))
                self._thread_ids.append(thread_id)
            self._spans.append(0)
        self._spans[unit] += spans
        self._unit_of.append(unit)

    def __len__(self) -> int:
        return len(self._unit_thread)

    def spans(self, unit: int) -> int:
        """The spans the `unit`-th unit's records hold, as added."""
        return self._spans[unit]

    def _group(self) -> None:
        """Each unit's record numbers, in one array (a counting sort: records keep their order)."""
        self._units_of_threads = None
        units = len(self._unit_thread)
        starts = array("q", bytes(8 * (units + 1)))
        for unit in self._unit_of:
            starts[unit + 1] += 1
        for unit in range(units):
            starts[unit + 1] += starts[unit]
        members = array("q", bytes(8 * len(self._unit_of)))
        fill = array("q", starts)
        for record, unit in enumerate(self._unit_of):
            members[fill[unit]] = record
            fill[unit] += 1
        self._members, self._starts, self._unit_of = members, starts, array("q")

    def units(self, start: int = 0) -> Iterator[tuple[str | None, list[L]]]:
        """`(thread id or None, locators)` of each unit from the `start`-th, in order."""
        if self._units_of_threads is not None:
            self._group()
        table, members, starts = self._table, self._members, self._starts
        for unit in range(start, len(self._unit_thread)):
            thread = self._unit_thread[unit]
            locators = [table[r] for r in members[starts[unit] : starts[unit + 1]]]
            yield (self._thread_ids[thread] if thread >= 0 else None), locators


def _resume_at(index: ThreadIndex[L], resume: dict[str, object] | None) -> tuple[int, str | None]:
    """Where to resume in `index`, and a warning when the cursor cannot be trusted."""
    if not resume:
        return 0, None
    done, fingerprint, units = (resume.get(k) for k in ("units_done", "input", "units"))
    if fingerprint != index.fingerprint or units != len(index):
        return 0, (
            "the input changed since the interrupted run (its checkpoint describes other "
            "content): reading it again from the start; writes are idempotent"
        )
    if type(done) is not int or not 0 <= done <= len(index):
        return 0, (
            f"the checkpoint's cursor (units_done={done!r}) does not fit this input of "
            f"{len(index)} units: reading it again from the start; writes are idempotent"
        )
    return done, None


def locate(locator: object) -> str:
    """Where a locator points, for a person: the path, or `line N`."""
    if isinstance(locator, tuple) and locator and isinstance(locator[-1], int):
        return f"line {locator[-1]}"
    return str(locator)


def _unloadable(
    label: str, thread_id: str | None, locators: list[L], exc: BaseException
) -> Rejected:
    places = ", ".join(locate(x) for x in locators)
    where = f"{label}: thread {thread_id} ({places})" if thread_id else f"{label}: {places}"
    counts = Counts(threads=1 if thread_id else 0, traces=len(locators))
    kind = "thread" if thread_id else "trace"
    return Rejected(kind, where, f"could not be read: {describe(exc)}", None, counts)


def _load_unit(
    load: Loader[L], thread_id: str | None, locators: list[L], label: str
) -> tuple[Unit | None, list[Rejected], Page]:
    """One unit, its rejects and the decoders' notes; a failure is the unit's dead letter."""
    with collecting() as notes:
        try:
            unit, rejected = load(thread_id, locators)
        except Exception as exc:
            if not is_record_failure(exc):
                raise
            return None, [_unloadable(label, thread_id, locators, exc)], Page()
    return unit, rejected, notes


#: A page also ends once its units hold this many spans: the pages in flight are most of a
#: file read's memory, and a unit (a thread) can be large. Measured on 5,000 traces (4.4 spans
#: each), `langwatch-file -> opik-dir`: 100 units a page peak at 155 MiB, 1,000 spans at 104,
#: 500 at 89, 250 at 77-91, at the same speed; the cost is one checkpoint and one durable
#: batch write per page. An API sink's batches are at most a page big, so an API sink asks for
#: larger pages (`page_spans` on the sink, applied by `open_endpoints`): each page's write costs
#: a few round trips, and at 250 spans `opik-dir -> opik` sent 54 requests per 1,000 traces
#: against 15 at 2,000 (3.4 s against 3.0 s).
PAGE_SPANS = 250


async def paged(
    index: ThreadIndex[L],
    load: Loader[L],
    resume: dict[str, object] | None,
    page_size: int,
    label: str = "",
    page_spans: int = PAGE_SPANS,
) -> AsyncIterator[Page]:
    """Pages of loaded units (at most `page_size` units and rejects, or `page_spans` spans);
    the first page also carries the index pass's rejects and notes.

    A page also ends before a unit whose spans (as the index counted them) would take it past
    `page_spans`: a large thread then shares its page with no other units, so that the pages
    in flight are no larger than they must be (the largest unit sets a read's peak memory).

    `label` names the input in the dead letter of a unit that cannot be loaded.
    """
    done, warning = _resume_at(index, resume)
    page = Page(rejected=list(index.rejected) if done == 0 else [])
    page.expected_traces = index.records + index.notes.skipped.traces  # for progress only
    if warning:
        page.warnings.append(warning)
    if done == 0:
        page.merge_notes(index.notes)
    else:
        page.warnings += index.notes.warnings

    def cursor() -> dict[str, object]:
        return {"units_done": done, "units": len(index), "input": index.fingerprint}

    spans = 0
    for number, (thread_id, locators) in enumerate(index.units(done), start=done):
        if page.units and spans + index.spans(number) > page_spans:
            spans = 0
            page.cursor = cursor()
            yield page
            page = Page()
        unit, rejected, notes = _load_unit(load, thread_id, locators, label)
        done += 1
        if unit is not None:
            page.units.append(unit)
            spans += Counts.of(unit).spans
        page.rejected += rejected
        drain_into(page, notes)
        if len(page.units) + len(page.rejected) >= page_size or spans >= page_spans:
            spans = 0
            page.cursor = cursor()
            yield page
            page = Page()
    page.cursor = cursor()
    yield page


class FileSource(ABC, Generic[L]):
    """A source that reads files in two passes: `_index` them, then `_load` unit by unit."""

    label: str
    page_size: int
    #: A page ends at this many spans too (`PAGE_SPANS`; an API sink asks for more).
    page_spans: int = PAGE_SPANS

    @abstractmethod
    def _index(self, window: Window) -> ThreadIndex[L]:
        """Pass one: where every record in the window is, grouped by thread."""

    @abstractmethod
    def _load(self, thread_id: str | None, locators: list[L]) -> tuple[Unit | None, list[Rejected]]:
        """Pass two: one unit (a thread or a standalone trace) and what could not be read."""

    async def pages(self, window: Window, resume: dict[str, Any] | None) -> AsyncIterator[Page]:
        """Pages of the units in `window`. A file has no change axis: a window on the update
        axis (what `sync` asks for) reads everything, and unchanged records cost no write.
        While it reads, the garbage collector runs rarely (`quiet_collector`)."""
        if window.axis == "updated":
            window = Window()
        with quiet_collector():
            index = self._index(window)
            async for page in paged(
                index, self._load, resume, self.page_size, self.label, self.page_spans
            ):
                yield page

    async def aclose(self) -> None:
        return None
