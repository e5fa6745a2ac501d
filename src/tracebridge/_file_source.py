"""What the file sources share: a two-pass read that groups traces into threads.

Pass one indexes every record's thread id and location (not its content), so memory grows with
the number of records, not their size; pass two loads one unit at a time. Units come in the
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

import gc
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from ._decoding import collecting, drain_into
from ._failures import describe, is_record_failure
from ._interfaces import Counts, Notes, Page, Rejected, Unit, Window

__all__ = ["FileSource", "ThreadIndex", "locate", "paged", "quiet_collector"]

L = TypeVar("L")

#: Loads one unit from its locators: the unit (None when every record was rejected) and rejects.
#: A locator finds one trace record: a file path, or a tuple whose last item is a line number.
Loader = Callable[[str | None, list[L]], tuple[Unit | None, list[Rejected]]]


class ThreadIndex(Generic[L]):
    """Locators of every record, grouped by thread id, in order of first appearance."""

    def __init__(self) -> None:
        # (thread id, None) for a thread, (None, locator) for a standalone trace.
        self._order: list[tuple[str | None, L | None]] = []
        self._threads: dict[str, list[L]] = {}
        self.rejected: list[Rejected] = []
        #: Records pass one left out by a rule, and warnings about the input: they reach the
        #: first page (skips only when reading from the start, like the rejects; warnings always).
        self.notes = Notes()
        #: A digest of the input as pass one read it; a resume on another input starts over.
        self.fingerprint = ""
        #: Trace records indexed (each locator is one).
        self.records = 0

    def add(self, thread_id: str | None, locator: L) -> None:
        self.records += 1
        if thread_id is None:
            self._order.append((None, locator))
        elif thread_id in self._threads:
            self._threads[thread_id].append(locator)
        else:
            self._threads[thread_id] = [locator]
            self._order.append((thread_id, None))

    def __len__(self) -> int:
        return len(self._order)

    def units(self, start: int = 0) -> Iterator[tuple[str | None, list[L]]]:
        for thread_id, locator in self._order[start:]:
            if thread_id is not None:
                yield thread_id, self._threads[thread_id]
            elif locator is not None:
                yield None, [locator]


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
    for thread_id, locators in index.units(done):
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


#: The collector's thresholds while a file is read (`quiet_collector`).
QUIET_THRESHOLDS = (50_000, 20, 100)
_quiet = 0


@contextmanager
def quiet_collector() -> Iterator[None]:
    """Run the cyclic garbage collector rarely for the duration (nested uses share one).

    A file source allocates records by the hundred thousand, nearly all freed by reference
    counting once their page is written; with the default thresholds they survive enough young
    collections to trigger full ones, each walking every page in flight (a third of the CPU on
    a large file, measured). A first generation of 50,000 objects keeps collections rare and
    short; the thresholds before are restored when the last reader ends.
    """
    global _quiet
    before = gc.get_threshold()
    if _quiet == 0:
        gc.set_threshold(*QUIET_THRESHOLDS)
    _quiet += 1
    try:
        yield
    finally:
        _quiet -= 1
        if _quiet == 0:
            gc.set_threshold(*before)


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
