"""The one engine behind `migrate`, `sync` and the library: source → sink, page by page.

A reader task pulls pages from the source into a bounded stream (two pages at most, so memory
does not grow with the project); the writer hands each page to the sink, dead-letters what either
side rejected, and only then moves the checkpoint (DESIGN.md invariants 3–5).

**One bad record never stops the run.** When `sink.write(units)` raises, the engine asks
`_failures.is_record_failure` whose problem it is:
- a `TracebridgeError` other than `RecordError` (credentials refused, quota, retries exhausted,
  a lock), an `OSError` (disk full, permission denied: the environment) or a connection error
  stops the run; the checkpoint stays at the last acknowledged page, so a rerun resumes there;
- anything else was provoked by a record (`RecursionError` on a deep value, `UnicodeEncodeError`
  on a lone surrogate, a `RecordError`): the batch is written again in halves until each failing
  unit is alone, and that unit (a whole thread, or a trace) is dead-lettered with the reason
  `could not be written: <Type>: <message>`; the others are written. Writes are idempotent, so
  writing a good unit of a failed batch again is safe, and the bisection costs about
  2·log2(batch) extra writes per bad unit.
The checkpoint moves past a page only once every unit of it was acknowledged or dead-lettered.

**Steps** (`run(steps=[...])`) are plain callables over canonical units, applied in order
between the source and the sink (DESIGN.md, "Sync"): a step returns the unit (changed or not),
or None to leave it out, which counts what the unit held as skipped under the step's rule
(its `rule` attribute, else its `__name__`). A step that raises on one unit makes that unit's
dead letter (`step <rule> failed: <Type>: <message>`) when `is_record_failure` says the
exception is the record's; anything else stops the run as a sink failure would.

**Retrying** a dead letter needs the record: what a step or the sink refused is dead-lettered
with its canonical unit as the source read it (before the steps), so it can be sent again; a
refusal the sink names (`trace <id>`, `thread <id>`, `trace <id>: span ...`) is matched to the
unit of the batch it names. What a source could not read keeps its raw record only.

**Stopping**: with `stop`, setting the event ends the run after the page being written is
acknowledged and its checkpoint saved (or at once when no page is being written); the run is
then `stopped`, not complete, and the next run resumes after that page.
What decoders repaired or left out while the source read a page (`_decoding.collecting`)
travels with that page. A dead letter the file cannot hold as JSON (a lone surrogate, a value
too deep to encode) is stored as escaped JSON text, or without its record, and says so.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._decoding import collecting, drain_into
from ._failures import describe, is_record_failure
from ._gc import quiet_collector
from ._hashing import HashMemo, remembering_hashes
from ._interfaces import Counts, Notes, Page, Rejected, Sink, Source, Unit, Window, WriteResult
from ._models import Thread, Trace
from ._state import DeadLetters, JobCounts, JobState, KeepsJobCounts
from ._unchanged import SkipUnchanged

__all__ = ["Report", "Step", "run", "step_rule"]

#: A step between source and sink: the unit to write (the same or a changed one), or None to
#: leave it out (counted as skipped under the step's rule: its `rule` attribute or `__name__`).
Step = Callable[[Unit], Unit | None]

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
    #: What the source was asked for.
    window: Window | None = None
    #: A stop request ended the run after an acknowledged page: not complete, resumable.
    stopped: bool = False
    #: Units the destination already held unchanged (a `SkipUnchanged` sink): part of `skipped`.
    unchanged: Counts = field(default_factory=Counts)
    #: How many traces the source expects in the window (`Page.expected_traces`), if it said.
    expected_traces: int | None = None
    #: What the earlier runs of a resumed job did (a state that keeps counts); None otherwise.
    job_before: JobCounts | None = None
    #: When `run` began.
    started_at: datetime | None = None

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

    def run_counts(self) -> JobCounts:
        """This run's counts, as one run of its job."""
        return JobCounts(
            runs=1,
            started_at=self.started_at,
            read=replace(self.read),
            written=replace(self.written),
            skipped=replace(self.skipped),
            unchanged=replace(self.unchanged),
            dead_lettered=replace(self.dead_lettered),
            dead_letter_entries=self.dead_letter_entries,
            lost=self.lost,
        )

    @property
    def job(self) -> JobCounts | None:
        """What the whole job did, this run included, when this run resumed it; else None
        (the job is this run)."""
        return self.job_before.plus(self.run_counts()) if self.job_before is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data; a stable schema (fields are only ever added)::

            {"schema": 1, "run_id": str, "source": str, "sink": str, "dry_run": bool,
             "stopped": bool, "resumed_after_pages": int,
             "read" | "written" | "skipped" | "dead_lettered":
                 {"threads": int, "traces": int, "spans": int, "scores": int},
             "skip_reasons": {rule: int}, "warnings": [str], "lost": int,
             "dead_letter_entries": int, "dead_letter_path": str | null,
             "window": {"since": str | null, "until": str | null, "axis": str} | null,
             "lossy": bool, "exit_code": int,
             "unchanged": {kind: int},          # part of "skipped": already in the destination
             "job": {"runs": int, "started_at": str | null, "read" | "written" | "skipped" |
                     "unchanged" | "dead_lettered": {kind: int}, "dead_letter_entries": int,
                     "lost": int} | null}       # a resumed run: the whole job, this run included

        Times are ISO 8601 UTC.
        """
        window = self.window
        job = self.job
        return {
            "schema": 1,
            "run_id": self.run_id,
            "source": self.source_label,
            "sink": self.sink_label,
            "dry_run": self.dry_run,
            "stopped": self.stopped,
            "resumed_after_pages": self.resumed_after_pages,
            "read": asdict(self.read),
            "written": asdict(self.written),
            "skipped": asdict(self.skipped),
            "dead_lettered": asdict(self.dead_lettered),
            "skip_reasons": dict(sorted(self.result.skip_reasons.items())),
            "warnings": list(self.result.warnings),
            "lost": self.lost,
            "dead_letter_entries": self.dead_letter_entries,
            "dead_letter_path": self.dead_letter_path,
            "window": {
                "since": iso(window.since),
                "until": iso(window.until),
                "axis": window.axis,
            }
            if window is not None
            else None,
            "lossy": self.lossy,
            "exit_code": self.exit_code,
            "unchanged": asdict(self.unchanged),
            "job": {**job.model_dump(mode="json"), "started_at": iso(job.started_at)}
            if job is not None
            else None,
        }


def iso(moment: datetime | None) -> str | None:
    """`moment` as ISO 8601 with milliseconds, `Z` for UTC; None stays None."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None


def _count_rejected(counts: Counts, rejected: Rejected) -> None:
    if rejected.contains is not None:
        counts.add(rejected.contains)
        return
    attr = {"thread": "threads", "trace": "traces", "span": "spans", "score": "scores"}
    name = attr.get(rejected.kind, "traces")
    setattr(counts, name, getattr(counts, name) + 1)


async def _write_isolating(sink: Sink, units: list[Unit], dry_run: bool) -> WriteResult:
    """`sink.write(units)`; a failure of a record's making is isolated by halving the batch.

    Each unit that fails alone is returned as rejected; fatal failures propagate (module
    docstring).
    """
    try:
        return await sink.write(units, dry_run=dry_run)
    except Exception as exc:
        if not is_record_failure(exc):
            raise
        if len(units) == 1:
            return WriteResult(rejected=[_unwritable(units[0], exc)])
    half = len(units) // 2
    result = await _write_isolating(sink, units[:half], dry_run)
    result.merge(await _write_isolating(sink, units[half:], dry_run))
    return result


async def aenumerate(items: AsyncIterator[Page]) -> AsyncIterator[tuple[int, Page]]:
    """`enumerate` for an async iterator."""
    number = 0
    async for item in items:
        yield number, item
        number += 1


def step_rule(step: Step) -> str:
    """The name a step's skips and failures are reported under."""
    rule = getattr(step, "rule", None)
    if isinstance(rule, str) and rule:
        return rule
    return str(getattr(step, "__name__", None) or type(step).__name__)


def _traces_of(unit: Unit) -> list[Trace]:
    return unit.traces if isinstance(unit, Thread) else [unit]


def _unit_kind(unit: Unit) -> str:
    return "thread" if isinstance(unit, Thread) else "trace"


def _skip_left_out(notes: Notes, before: Unit, after: Unit | None, rule: str) -> None:
    """Count what a step left out of `before` (all of it when `after` is None, else what
    `after` no longer holds: e.g. the traces of a thread it dropped) as skipped: the largest
    records under `rule`, what they held under `rule (<kind> they held)`."""
    held, kept = Counts.of(before), Counts.of(after) if after is not None else Counts()
    top: str | None = None
    for kind in ("threads", "traces", "spans", "scores"):
        n = getattr(held, kind) - getattr(kept, kind)
        if n > 0:
            top = top or kind
            notes.skip(n, kind, rule if kind == top else f"{rule} ({kind} they held)")


def _apply_steps(
    steps: Sequence[Step], units: list[Unit], notes: Notes
) -> tuple[list[tuple[Unit, Unit]], list[Rejected]]:
    """Each unit through `steps`: (as read, as to be written) pairs of the units kept, and the
    dead letters of those a step failed on. Leaving out counts in `notes` (module docstring)."""
    kept: list[tuple[Unit, Unit]] = []
    failed: list[Rejected] = []
    for original in units:
        unit: Unit | None = original
        for step in steps:
            assert unit is not None
            before = unit
            try:
                unit = step(unit)
                if unit is not None and not isinstance(unit, Thread | Trace):
                    raise TypeError(
                        f"returned {type(unit).__name__}, not a Thread, a Trace or None"
                    )
            except Exception as exc:
                if not is_record_failure(exc):
                    raise
                kind = _unit_kind(original)
                reason = f"step {step_rule(step)} failed: {describe(exc)}"
                counts = Counts.of(original)
                failed.append(
                    Rejected(kind, f"{kind} {original.id}", reason, None, counts, original)
                )
                break
            _skip_left_out(notes, before, unit, step_rule(step))
            if unit is None:
                break
        else:
            assert unit is not None
            kept.append((original, unit))
    return kept, failed


def _with_units(items: list[Rejected], pairs: list[tuple[Unit, Unit]]) -> list[Rejected]:
    """`items` (what the sink refused), each with the unit as read that its `where` names:
    `thread <id>` → the thread, `trace <id>` (or `trace <id>: span ...`) → that trace."""
    names: dict[str, Unit] = {}
    for original, sent in pairs:
        names[f"{_unit_kind(sent)} {sent.id}"] = original
        if isinstance(sent, Thread):
            by_id = {t.id: t for t in original.traces} if isinstance(original, Thread) else {}
            for trace in sent.traces:
                names.setdefault(f"trace {trace.id}", by_id.get(trace.id, original))
    out = []
    for item in items:
        if item.unit is None:
            unit = names.get(item.where) or next(
                (u for name, u in names.items() if item.where.startswith((name + ":", name + " "))),
                None,
            )
            if unit is not None:
                item = replace(item, unit=unit)
        out.append(item)
    return out


def _unwritable(unit: Unit, exc: BaseException) -> Rejected:
    kind = "thread" if isinstance(unit, Thread) else "trace"
    reason = f"could not be written: {describe(exc)}"
    return Rejected(kind, f"{kind} {unit.id}", reason, None, Counts.of(unit))


def _note_on_os_errors(exc: BaseException, note: str) -> None:
    """Say on every `OSError` in `exc` what the run was doing (the CLI prints notes)."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            _note_on_os_errors(inner, note)
    elif isinstance(exc, OSError):
        exc.add_note(note)


def _utf8(text: str) -> str:
    """`text` with any lone surrogate written as its escape (`\\ud800`), so UTF-8 can hold it."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _storable(item: Rejected) -> Rejected:
    """`item` as the dead-letter file can hold it (JSON in UTF-8), saying what was changed."""
    where, reason = _utf8(item.where), _utf8(item.reason)
    if (where, reason) != (item.where, item.reason):
        item = replace(item, where=where, reason=reason)
    if item.record is None:
        return item
    try:
        json.dumps(item.record, ensure_ascii=False, default=str).encode()
        return item
    except UnicodeEncodeError:
        text = json.dumps(item.record, ensure_ascii=True, default=str)
        note = "the record is kept as JSON text, escaped: it holds a lone surrogate"
        return replace(item, record=text, reason=f"{item.reason} ({note})")
    except (RecursionError, ValueError, TypeError) as exc:
        note = f"the record is not kept: {describe(exc)}; it is where this entry says"
        return replace(item, record=None, reason=f"{item.reason} ({note})")


async def run(
    source: Source,
    sink: Sink,
    *,
    window: Window | None = None,
    state: JobState | None = None,
    steps: Sequence[Step] = (),
    dry_run: bool = False,
    stop: anyio.Event | None = None,
    on_page: Callable[[Report], None] | None = None,
) -> Report:
    """Copy everything `source` yields in `window` through `steps` to `sink`; say what happened.

    With `state` (a `StateDir`, or any `JobState`), the run resumes an unfinished checkpoint of
    the same job, moves it after every acknowledged page, and dead-letters to the state's file.
    With `dry_run`, the sink maps and reports but writes nothing, and no state is written.
    With `stop`, setting the event ends the run early but cleanly (module docstring).
    """
    report = Report(run_id=uuid.uuid4().hex[:12], dry_run=dry_run, started_at=datetime.now(UTC))
    if isinstance(sink, SkipUnchanged):
        sink.unchanged = report.unchanged  # counted afresh for this run, as it goes
    window = window or Window()
    report.window = window
    dead_letters: DeadLetters | None = None
    begun = sink_closed = False
    # A trace is hashed once: the skip-unchanged index and the converter's stash share one
    # hash. Without steps nothing changes a unit between the source and the sink, so one memo
    # serves the whole run, and a hash the source took (a copy read back) is used too; with
    # steps, one memo serves each sink write.
    hashes = HashMemo() if not steps else None
    resume: dict[str, Any] | None = None
    writing = stopping = False

    def reject(items: list[Rejected]) -> None:
        for item in items:
            _count_rejected(report.dead_lettered, item)
            report.dead_letter_entries += 1
            if dead_letters is not None:
                dead_letters.add(_storable(item))

    async def read(send: MemoryObjectSendStream[Page]) -> None:
        async with send:
            with collecting() as notes:
                try:
                    async for page in source.pages(window, resume):
                        drain_into(page, notes)
                        if hashes is not None:
                            hashes.generation += 1  # what comes next is the next page's
                        await send.send(page)
                except anyio.BrokenResourceError:
                    return  # the writer stopped reading: its own end says why
                except Exception as exc:
                    _note_on_os_errors(exc, f"while reading {source.label}")
                    raise

    async def write_page(page: Page) -> None:
        for unit in page.units:
            report.read.add(Counts.of(unit))
        for item in page.rejected:
            _count_rejected(report.read, item)
        report.read.add(page.skipped)
        report.result.merge_notes(page)
        report.lost += page.lost
        if page.expected_traces is not None:
            report.expected_traces = page.expected_traces
        reject(page.rejected)
        pairs, failed = _apply_steps(steps, page.units, report.result)
        reject(failed)
        if pairs:
            try:
                # The steps have run: no unit changes from here on (`remembering_hashes`).
                with remembering_hashes() if hashes is None else nullcontext():
                    result = await _write_isolating(sink, [sent for _, sent in pairs], dry_run)
            except Exception as exc:
                _note_on_os_errors(exc, f"while writing to {sink.label}")
                raise
            reject(_with_units(result.rejected, pairs))
            result.rejected = []
            report.result.merge(result)
        if begun and state is not None:
            if isinstance(state, KeepsJobCounts):
                state.count(report.run_counts())
            state.acknowledged(page)
        if on_page is not None:
            on_page(report)

    async def write(receive: MemoryObjectReceiveStream[Page], scope: anyio.CancelScope) -> None:
        nonlocal writing
        async with receive:
            async for number, page in aenumerate(receive):
                writing = True
                await write_page(page)
                writing = False
                if hashes is not None:
                    hashes.forget_through(number)
                    hashes.forget(t for u in page.units for t in _traces_of(u))
                if stopping:
                    report.stopped = True
                    scope.cancel()  # the reader too, before the stream closes under it
                    break
        scope.cancel()  # the reader is done (or must stop); so is the stop watcher

    async def watch(scope: anyio.CancelScope) -> None:
        nonlocal stopping
        assert stop is not None
        await stop.wait()
        stopping = True
        if not writing:  # nothing in flight: stop at once
            report.stopped = True
            scope.cancel()

    try:
        if state is not None and not dry_run:
            resume, report.resumed_after_pages = state.begin()
            begun = True
            if isinstance(state, KeepsJobCounts):
                report.job_before = state.job_counts()
            dead_letters = state.dead_letters(report.run_id)
            report.dead_letter_path = str(dead_letters.path)
        send, receive = anyio.create_memory_object_stream[Page](_PAGES_IN_FLIGHT)
        try:
            with (
                quiet_collector(),  # records by the hundred thousand (`_gc`)
                remembering_hashes(hashes) if hashes is not None else nullcontext(),
            ):
                async with anyio.create_task_group() as group:
                    group.start_soon(read, send)
                    group.start_soon(write, receive, group.cancel_scope)
                    if stop is not None:
                        group.start_soon(watch, group.cancel_scope)
        except BaseExceptionGroup as errors:
            raise first_cause(errors) from None
        sink_closed = True
        await sink.aclose()
        if begun and state is not None and not report.stopped:
            if isinstance(state, KeepsJobCounts):
                state.count(report.run_counts())
            state.finished()
    finally:
        with anyio.CancelScope(shield=True):
            if not sink_closed:
                await sink.aclose()
            await source.aclose()
        if dead_letters is not None:
            dead_letters.close()
        if begun and state is not None:
            state.end()
    return report


def first_cause(errors: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that stopped the run: not the other task's broken stream or cancellation, and
    of several, one that is fatal by itself (an `OSError` beside a record's failure)."""
    leaves: list[BaseException] = []

    def walk(group: BaseExceptionGroup[BaseException]) -> None:
        for error in group.exceptions:
            if isinstance(error, BaseExceptionGroup):
                walk(error)
            else:
                leaves.append(error)

    walk(errors)
    noise = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.get_cancelled_exc_class())
    causes = [e for e in leaves if not isinstance(e, noise)] or leaves
    return next((e for e in causes if not is_record_failure(e)), causes[0])
