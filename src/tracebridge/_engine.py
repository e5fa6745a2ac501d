"""The one engine behind `migrate`, `sync` and the library: source → sink, page by page.

A reader task pulls pages from the source into a bounded stream (two pages at most, so memory
does not grow with the project); the writer hands each page to the sink, dead-letters what either
side rejected, and only then moves the checkpoint (DESIGN.md invariants 3–5).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._endpoints import Counts, Page, Rejected, Sink, Source, Window, WriteResult
from ._state import Checkpoint, DeadLetters, StateDir

__all__ = ["Report", "run"]

_PAGES_IN_FLIGHT = 2


@dataclass
class Report:
    """What a run did. `lossy` runs end with exit code 1."""

    run_id: str
    read: Counts = field(default_factory=Counts)
    result: WriteResult = field(default_factory=WriteResult)
    dead_lettered: Counts = field(default_factory=Counts)
    #: Entries in the dead-letter file (one per rejected record, which may hold others).
    dead_letter_entries: int = 0
    #: Records the source lost without naming them (LangWatch `pagination.skipped`).
    lost: int = 0
    resumed_after_pages: int = 0
    dry_run: bool = False
    dead_letter_path: str | None = None
    source_label: str = ""
    sink_label: str = ""

    @property
    def written(self) -> Counts:
        return self.result.written

    @property
    def skipped(self) -> Counts:
        return self.result.skipped

    @property
    def lossy(self) -> bool:
        return bool(self.lost or self.dead_lettered.total())

    @property
    def exit_code(self) -> int:
        return 1 if self.lossy else 0


def _count_rejected(counts: Counts, rejected: Rejected) -> None:
    if rejected.contains is not None:
        counts.add(rejected.contains)
        return
    attr = {"thread": "threads", "trace": "traces", "span": "spans", "score": "scores"}
    name = attr.get(rejected.kind, "traces")
    setattr(counts, name, getattr(counts, name) + 1)


async def run(
    source: Source,
    sink: Sink,
    *,
    window: Window | None = None,
    state: StateDir | None = None,
    dry_run: bool = False,
    on_page: Callable[[Report], None] | None = None,
) -> Report:
    """Copy everything `source` yields in `window` to `sink`; return what happened.

    With `state`, the run resumes an unfinished checkpoint of the same job, moves it after every
    acknowledged page, and dead-letters to the state directory. With `dry_run`, the sink maps
    and reports but writes nothing, and no state is written.
    """
    report = Report(run_id=uuid.uuid4().hex[:12], dry_run=dry_run)
    window = window or Window()
    checkpoint: Checkpoint | None = None
    dead_letters: DeadLetters | None = None
    locked = sink_closed = False

    def reject(items: list[Rejected]) -> None:
        for item in items:
            _count_rejected(report.dead_lettered, item)
            report.dead_letter_entries += 1
            if dead_letters is not None:
                dead_letters.add(item)

    async def read(send: MemoryObjectSendStream[Page]) -> None:
        async with send:
            resume = checkpoint.cursor if checkpoint else None
            async for page in source.pages(window, resume):
                await send.send(page)

    async def write(receive: MemoryObjectReceiveStream[Page]) -> None:
        async with receive:
            async for page in receive:
                for unit in page.units:
                    report.read.add(Counts.of(unit))
                for item in page.rejected:
                    _count_rejected(report.read, item)
                report.read.add(page.skipped)
                report.result.merge_notes(page)
                report.lost += page.lost
                reject(page.rejected)
                if page.units:
                    result = await sink.write(page.units, dry_run=dry_run)
                    reject(result.rejected)
                    result.rejected = []
                    report.result.merge(result)
                if checkpoint is not None and state is not None:
                    checkpoint.cursor = page.cursor
                    checkpoint.pages += 1
                    state.save(checkpoint)
                if on_page is not None:
                    on_page(report)

    try:
        if state is not None and not dry_run:
            state.lock()
            locked = True
            checkpoint = state.load()
            if checkpoint is None or checkpoint.complete:
                checkpoint = Checkpoint(job=state.job)
            else:
                report.resumed_after_pages = checkpoint.pages
            dead_letters = DeadLetters(state.dead_letter_path, report.run_id)
            report.dead_letter_path = str(state.dead_letter_path)
        send, receive = anyio.create_memory_object_stream[Page](_PAGES_IN_FLIGHT)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(read, send)
                group.start_soon(write, receive)
        except BaseExceptionGroup as errors:
            raise _cause(errors) from None
        sink_closed = True
        await sink.aclose()
        if checkpoint is not None and state is not None:
            checkpoint.complete = True
            state.save(checkpoint)
    finally:
        with anyio.CancelScope(shield=True):
            if not sink_closed:
                await sink.aclose()
            await source.aclose()
        if dead_letters is not None:
            dead_letters.close()
        if state is not None and locked:
            state.unlock()
    return report


def _cause(errors: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that stopped the run: not the other task's broken stream or cancellation."""
    leaves: list[BaseException] = []

    def walk(group: BaseExceptionGroup[BaseException]) -> None:
        for error in group.exceptions:
            if isinstance(error, BaseExceptionGroup):
                walk(error)
            else:
                leaves.append(error)

    walk(errors)
    noise = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.get_cancelled_exc_class())
    return next((e for e in leaves if not isinstance(e, noise)), leaves[0])
