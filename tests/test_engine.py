"""`_engine.run`: counts and verdicts, the checkpoint that moves only after the sink's
acknowledgement, resume after an interruption, dry runs, bounded read-ahead and clean shutdown
(DESIGN.md invariants 3–5). The endpoints are small in-memory classes defined here."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.recorders import counted_content_hashes
from tracebridge import (
    CheckpointError,
    Counts,
    Page,
    Provenance,
    RecordError,
    Rejected,
    Score,
    ServerError,
    Span,
    Thread,
    Trace,
    TracebridgeError,
    Unit,
    Window,
    WriteResult,
    run,
)
from tracebridge._hashing import _REMEMBERED, content_hash
from tracebridge._state import StateDir
from tracebridge._unchanged import SkipUnchanged

START = datetime(2026, 3, 9, 19, 0, tzinfo=UTC)
JOB: dict[str, Any] = {"from": "memory", "to": "memory", "since": None, "until": None}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --------------------------------------------------------------------------- in-memory endpoints


def _trace(trace_id: str, spans: int = 1, scores: int = 0, thread: str | None = None) -> Trace:
    start = START + timedelta(seconds=len(trace_id))
    return Trace(
        id=trace_id,
        source=Provenance(platform="langwatch", project="p", id=trace_id),
        thread_id=thread,
        started_at=start,
        spans=[Span(id=f"{trace_id}-s{i}", started_at=start) for i in range(spans)],
        scores=[Score(name=f"score{i}", value=0.5) for i in range(scores)],
    )


def _pages(n: int, per_page: int = 2) -> list[Page]:
    """`n` pages of standalone traces `p<page>t<i>`, each page's cursor pointing past it."""
    return [
        Page(units=[_trace(f"p{p}t{i}") for i in range(per_page)], cursor={"next": p + 1})
        for p in range(n)
    ]


class MemorySource:
    """Yields fixed pages; resumes at `cursor["next"]`; records what the engine asked."""

    label = "memory-source"

    def __init__(self, pages: list[Page], *, fail_at: int | None = None) -> None:
        self._pages = pages
        self.fail_at = fail_at
        self.resumes: list[dict[str, Any] | None] = []
        self.windows: list[Window] = []
        self.produced = 0
        self.closed = 0

    async def pages(self, window: Window, resume: dict[str, Any] | None) -> AsyncIterator[Page]:
        self.resumes.append(resume)
        self.windows.append(window)
        for index in range(resume["next"] if resume else 0, len(self._pages)):
            if index == self.fail_at:
                raise ServerError("source answered 500 three times")
            self.produced += 1
            yield self._pages[index]

    async def aclose(self) -> None:
        self.closed += 1


class MemorySink:
    """Keeps the ids of each acknowledged batch; can fail on its Nth call or refuse ids."""

    label = "memory-sink"

    def __init__(
        self,
        *,
        fail_on_call: int | None = None,
        reject: frozenset[str] = frozenset(),
        skip_scores: bool = False,
        before_write: Callable[[int], None] | None = None,
        slow: bool = False,
        fail_on_close: bool = False,
        raise_for: dict[str, BaseException] | None = None,
    ) -> None:
        self.fail_on_call = fail_on_call
        self.reject = reject
        self.skip_scores = skip_scores
        self.before_write = before_write
        self.slow = slow
        self.fail_on_close = fail_on_close
        self.raise_for = raise_for or {}
        self.calls = 0
        self.batches: list[list[str]] = []
        self.dry_runs: list[bool] = []
        self.closed = 0

    async def write(self, units: list[Unit], *, dry_run: bool = False) -> WriteResult:
        self.calls += 1
        self.dry_runs.append(dry_run)
        if self.slow:
            await anyio.sleep(0.02)  # the reader gets every chance to run ahead
        if self.before_write is not None:
            self.before_write(self.calls)
        if self.calls == self.fail_on_call:
            raise ServerError("destination answered 500 three times")
        for unit in units:  # a unit that cannot be written fails its whole batch
            if unit.id in self.raise_for:
                raise self.raise_for[unit.id]
        result = WriteResult()
        ids = []
        for unit in units:
            if unit.id in self.reject:
                result.rejected.append(Rejected("trace", f"trace {unit.id}", "refused", None))
                continue
            counts = Counts.of(unit)
            if self.skip_scores:
                result.skip(counts.scores, "scores", "scores kept in metadata")
                counts.scores = 0
            result.written.add(counts)
            ids.append(unit.id)
        if not dry_run:
            self.batches.append(ids)
        return result

    async def aclose(self) -> None:
        self.closed += 1
        if self.fail_on_close:
            raise ServerError("flush failed")


def _written(*sinks: MemorySink) -> list[str]:
    return [unit_id for sink in sinks for batch in sink.batches for unit_id in batch]


async def _failure(source: MemorySource, sink: MemorySink, **kwargs: Any) -> Exception:
    """Run, expecting a failure; return what `run` raised (maybe wrapped by a task group)."""
    try:
        await run(source, sink, **kwargs)
    except Exception as exc:
        return exc
    raise AssertionError("run() did not fail")


def _failed_with(exc: BaseException, kind: type[BaseException]) -> bool:
    """True when `exc` is, or (wrapped by a task group) contains, an error of `kind`."""
    if isinstance(exc, BaseExceptionGroup):
        return any(_failed_with(inner, kind) for inner in exc.exceptions)
    return isinstance(exc, kind)


# ------------------------------------------------------------------------------------- counting


@pytest.mark.anyio
async def test_counts_read_written_skipped_and_dead_lettered() -> None:
    """Everything read is written, skipped by a rule or dead-lettered, and counted so."""
    thread = Thread(id="conv", traces=[_trace("a", spans=2, scores=1), _trace("b", spans=2)])
    pages = [
        Page(units=[thread, _trace("solo", spans=1, scores=2)], cursor={"next": 1}),
        Page(
            units=[_trace("refused", spans=3)],
            rejected=[Rejected("trace", "in.jsonl:4", "not JSON", "{oops")],
            cursor={"next": 2},
        ),
        Page(rejected=[Rejected("span", "trace x", "bad span", None)], cursor={"next": 3}),
    ]
    sink = MemorySink(reject=frozenset({"refused"}), skip_scores=True)
    report = await run(MemorySource(pages), sink)

    assert report.read == Counts(threads=1, traces=5, spans=9, scores=3)
    assert report.written == Counts(threads=1, traces=3, spans=5, scores=0)
    assert report.skipped == Counts(scores=3)
    assert report.result.skip_reasons == {"scores kept in metadata": 3}
    assert report.dead_lettered == Counts(traces=2, spans=1)
    assert report.lossy
    assert report.exit_code == 1
    assert sink.calls == 2  # a page with nothing to write is not sent to the sink


@pytest.mark.anyio
async def test_a_clean_run_is_not_lossy() -> None:
    """Nothing dead-lettered and nothing lost: exit code 0."""
    sink = MemorySink()
    report = await run(MemorySource(_pages(3)), sink)
    assert report.read.traces == report.written.traces == 6
    assert report.dead_lettered.total() == 0
    assert not report.lossy
    assert report.exit_code == 0
    assert _written(sink) == [f"p{p}t{i}" for p in range(3) for i in range(2)]


@pytest.mark.anyio
async def test_records_lost_at_the_source_make_the_run_lossy() -> None:
    """`pagination.skipped` (records the server skipped) is a loss even when all else is fine."""
    pages = _pages(2)
    pages[1].lost = 3
    report = await run(MemorySource(pages), MemorySink())
    assert report.lost == 3
    assert report.lossy
    assert report.exit_code == 1


@pytest.mark.anyio
async def test_the_window_reaches_the_source() -> None:
    """`run(window=...)` is what the source filters by."""
    source = MemorySource(_pages(1))
    window = Window(since=START, until=START + timedelta(days=1))
    await run(source, MemorySink(), window=window)
    assert source.windows == [window]


@pytest.mark.anyio
async def test_on_page_is_called_once_per_page() -> None:
    """Progress callbacks see each page's running totals."""
    seen: list[int] = []
    await run(MemorySource(_pages(3)), MemorySink(), on_page=lambda r: seen.append(r.read.traces))
    assert seen == [2, 4, 6]


# ----------------------------------------------------------------------------------- checkpoints


@pytest.mark.anyio
async def test_checkpoint_moves_only_after_the_sink_acknowledged(tmp_path: Path) -> None:
    """While the sink writes page N, the saved cursor is page N-1's; when the 3rd write fails,
    the saved cursor is the last acknowledged page's."""
    state = StateDir(tmp_path / "state", JOB)
    on_disk: list[Any] = []

    def look(call: int) -> None:
        path = state.checkpoint_path
        on_disk.append(json.loads(path.read_text())["cursor"] if path.exists() else None)

    sink = MemorySink(fail_on_call=3, before_write=look)
    source = MemorySource(_pages(5))
    error = await _failure(source, sink, state=state)
    assert _failed_with(error, ServerError)
    assert on_disk == [None, {"next": 1}, {"next": 2}]
    checkpoint = StateDir(tmp_path / "state", JOB).load()
    assert checkpoint is not None
    assert checkpoint.cursor == {"next": 2}
    assert checkpoint.pages == 2
    assert not checkpoint.complete
    assert source.produced > 3  # the reader was ahead, yet its pages were not checkpointed


@pytest.mark.anyio
async def test_rerun_after_an_interruption_resumes_and_loses_nothing(tmp_path: Path) -> None:
    """The second run starts after the last acknowledged page; together both runs wrote exactly
    what an uninterrupted run writes."""
    pages = _pages(6)
    uninterrupted = MemorySink()
    await run(MemorySource(pages), uninterrupted)

    first_sink, second_sink = MemorySink(fail_on_call=4), MemorySink()
    error = await _failure(MemorySource(pages), first_sink, state=StateDir(tmp_path, JOB))
    assert _failed_with(error, ServerError)
    source = MemorySource(pages)
    report = await run(source, second_sink, state=StateDir(tmp_path, JOB))

    assert source.resumes == [{"next": 3}]
    assert report.resumed_after_pages == 3
    assert _written(first_sink) + _written(second_sink) == _written(uninterrupted)
    assert _written(second_sink)[0] == "p3t0"
    checkpoint = StateDir(tmp_path, JOB).load()
    assert checkpoint is not None
    assert checkpoint.complete


@pytest.mark.anyio
async def test_a_source_failure_keeps_the_acknowledged_checkpoint(tmp_path: Path) -> None:
    """When the source fails mid-way, the pages already written stay checkpointed."""
    source = MemorySource(_pages(4), fail_at=2)
    error = await _failure(source, MemorySink(), state=StateDir(tmp_path, JOB))
    assert _failed_with(error, ServerError)
    checkpoint = StateDir(tmp_path, JOB).load()
    assert checkpoint is not None
    assert checkpoint.cursor == {"next": 2}


@pytest.mark.anyio
async def test_a_completed_checkpoint_starts_fresh_next_time(tmp_path: Path) -> None:
    """After a complete run, the next run of the job reads everything again (it is a new pass;
    idempotent writes make that safe)."""
    await run(MemorySource(_pages(3)), MemorySink(), state=StateDir(tmp_path, JOB))
    checkpoint = StateDir(tmp_path, JOB).load()
    assert checkpoint is not None
    assert checkpoint.complete
    assert checkpoint.cursor == {"next": 3}

    source, sink = MemorySource(_pages(3)), MemorySink()
    report = await run(source, sink, state=StateDir(tmp_path, JOB))
    assert source.resumes == [None]
    assert report.resumed_after_pages == 0
    assert len(_written(sink)) == 6


@pytest.mark.anyio
async def test_a_run_without_state_always_starts_at_the_beginning(tmp_path: Path) -> None:
    """No state directory: no resume, nothing written to disk."""
    source = MemorySource(_pages(2))
    await run(source, MemorySink())
    assert source.resumes == [None]


@pytest.mark.anyio
async def test_dead_letters_go_to_the_state_directory(tmp_path: Path) -> None:
    """Rejects from source and sink are lines of dead-letters.jsonl, tagged with the run id."""
    pages = [
        Page(
            units=[_trace("ok"), _trace("refused")],
            rejected=[Rejected("trace", "in.jsonl:2", "not JSON", "{oops")],
            cursor={"next": 1},
        )
    ]
    state = StateDir(tmp_path / "state", JOB)
    report = await run(MemorySource(pages), MemorySink(reject=frozenset({"refused"})), state=state)
    assert report.dead_letter_path == str(state.dead_letter_path)
    lines = [json.loads(line) for line in state.dead_letter_path.read_text().splitlines()]
    assert [line["where"] for line in lines] == ["in.jsonl:2", "trace refused"]
    assert {line["run_id"] for line in lines} == {report.run_id}
    assert lines[0]["record"] == "{oops"


@pytest.mark.anyio
async def test_dry_run_writes_no_state_and_no_dead_letters(tmp_path: Path) -> None:
    """A dry run maps and counts, but leaves no checkpoint, lock or dead-letter file."""
    pages = _pages(2)
    pages[0].rejected.append(Rejected("trace", "in.jsonl:9", "not JSON", None))
    sink = MemorySink()
    root = tmp_path / "state"
    report = await run(MemorySource(pages), sink, state=StateDir(root, JOB), dry_run=True)
    assert not root.exists()
    assert report.dry_run
    assert report.dead_letter_path is None
    assert report.dead_lettered.traces == 1  # still reported
    assert sink.dry_runs == [True, True]
    assert sink.batches == []


@pytest.mark.anyio
async def test_a_second_concurrent_run_of_the_job_is_refused(tmp_path: Path) -> None:
    """The job's lock keeps two runs from moving one checkpoint."""
    holder = StateDir(tmp_path, JOB)
    holder.lock()
    try:
        sink = MemorySink()
        with pytest.raises(CheckpointError):
            await run(MemorySource(_pages(1)), sink, state=StateDir(tmp_path, JOB))
        assert sink.calls == 0
    finally:
        holder.unlock()


# ----------------------------------------------------------------------------------- shutdown


@pytest.mark.anyio
async def test_both_endpoints_are_closed_after_success() -> None:
    """A normal run closes the source and the sink once each."""
    source, sink = MemorySource(_pages(2)), MemorySink()
    await run(source, sink)
    assert (source.closed, sink.closed) == (1, 1)


@pytest.mark.anyio
async def test_both_endpoints_are_closed_when_the_sink_fails() -> None:
    """A failing write still closes both endpoints (connections, file handles)."""
    source, sink = MemorySource(_pages(3)), MemorySink(fail_on_call=2)
    error = await _failure(source, sink)
    assert _failed_with(error, ServerError)
    assert (source.closed, sink.closed) == (1, 1)


@pytest.mark.anyio
async def test_both_endpoints_are_closed_when_the_source_fails() -> None:
    """A failing read still closes both endpoints."""
    source, sink = MemorySource(_pages(3), fail_at=1), MemorySink()
    error = await _failure(source, sink)
    assert _failed_with(error, ServerError)
    assert (source.closed, sink.closed) == (1, 1)


@pytest.mark.anyio
async def test_endpoints_are_closed_when_the_checkpoint_cannot_be_used(tmp_path: Path) -> None:
    """A refused lock is a failure like any other: the endpoints are still closed."""
    holder = StateDir(tmp_path, JOB)
    holder.lock()
    source, sink = MemorySource(_pages(1)), MemorySink()
    try:
        with pytest.raises(CheckpointError):
            await run(source, sink, state=StateDir(tmp_path, JOB))
    finally:
        holder.unlock()
    assert (source.closed, sink.closed) == (1, 1)


@pytest.mark.anyio
async def test_a_corrupt_checkpoint_does_not_leave_the_job_locked(tmp_path: Path) -> None:
    """After a refused checkpoint is moved away, the same process can run the job again."""
    state = StateDir(tmp_path, JOB)
    state.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    state.checkpoint_path.write_text("{corrupt")
    with pytest.raises(CheckpointError):
        await run(MemorySource(_pages(1)), MemorySink(), state=state)
    state.checkpoint_path.unlink()
    report = await run(MemorySource(_pages(1)), MemorySink(), state=StateDir(tmp_path, JOB))
    assert report.written.traces == 2


@pytest.mark.anyio
async def test_an_endpoint_error_reaches_the_caller_as_itself() -> None:
    """`run` raises the TracebridgeError the endpoint raised, so its exit code applies."""
    with pytest.raises(TracebridgeError) as info:
        await run(MemorySource(_pages(2)), MemorySink(fail_on_call=1))
    assert isinstance(info.value, ServerError)


@pytest.mark.anyio
async def test_sink_aclose_is_called_once_even_when_it_fails() -> None:
    """A sink whose final flush fails is not closed twice."""
    sink = MemorySink(fail_on_close=True)
    error = await _failure(MemorySource(_pages(1)), sink)
    assert _failed_with(error, ServerError)
    assert sink.closed == 1


# --------------------------------------------------------------------------------- bounded memory


@pytest.mark.anyio
async def test_the_reader_stays_a_few_pages_ahead_of_a_slow_sink() -> None:
    """Pages flow through a bounded stream: a slow sink holds the source back (invariant 5)."""
    source = MemorySource(_pages(12, per_page=1))
    ahead: list[int] = []

    def measure(call: int) -> None:
        ahead.append(source.produced - (call - 1))

    await run(source, MemorySink(before_write=measure, slow=True))
    assert source.produced == 12
    assert max(ahead) <= 4, ahead


# ------------------------------------------------------------- one bad record never stops the run


def _surrogate_error() -> UnicodeEncodeError:
    return UnicodeEncodeError("utf-8", "bad\ud800name", 3, 4, "surrogates not allowed")


def _dead_letters(state: StateDir) -> list[dict[str, Any]]:
    text = state.dead_letter_path.read_bytes().decode("utf-8")  # the file is valid UTF-8
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.anyio
async def test_a_unit_the_sink_cannot_write_is_dead_lettered_and_the_rest_written(
    tmp_path: Path,
) -> None:
    """A record-level exception from `sink.write` is isolated by halving the batch: the failing
    unit becomes one dead letter naming the exception, every other unit is written, the
    checkpoint moves, the run ends lossy."""
    pages = [Page(units=[_trace(f"t{i}", spans=2) for i in range(7)], cursor={"next": 1})]
    sink = MemorySink(raise_for={"t4": _surrogate_error()})
    state = StateDir(tmp_path, JOB)
    report = await run(MemorySource(pages), sink, state=state)

    assert sorted(_written(sink)) == ["t0", "t1", "t2", "t3", "t5", "t6"]
    assert report.dead_lettered == Counts(traces=1, spans=2)
    assert report.read == Counts(traces=7, spans=14)
    assert report.written == Counts(traces=6, spans=12)
    assert report.exit_code == 1
    (letter,) = _dead_letters(state)
    assert letter["where"] == "trace t4"
    assert letter["reason"].startswith(
        "could not be written: UnicodeEncodeError: 'utf-8' codec can't encode character "
    )
    assert "lone surrogate" in letter["reason"]
    checkpoint = state.load()
    assert checkpoint is not None
    assert checkpoint.complete
    assert checkpoint.cursor == {"next": 1}
    assert sink.calls <= 1 + 2 * 3  # bisection, not one write per unit


@pytest.mark.anyio
async def test_several_bad_units_in_one_batch_are_each_isolated() -> None:
    """Two failing units (different exceptions) in one batch: two dead letters, the rest
    written, across pages."""
    pages = _pages(3, per_page=4)
    sink = MemorySink(
        raise_for={
            "p0t1": RecursionError("maximum recursion depth exceeded"),
            "p0t2": ValueError("Out of range float values are not JSON compliant"),
            "p2t3": TypeError("unhashable type: 'dict'"),
        }
    )
    report = await run(MemorySource(pages), sink)
    assert sorted(_written(sink)) == sorted(
        f"p{p}t{i}" for p in range(3) for i in range(4) if (p, i) not in {(0, 1), (0, 2), (2, 3)}
    )
    assert report.dead_lettered == Counts(traces=3, spans=3)
    assert report.read.traces == report.written.traces + report.dead_lettered.traces


@pytest.mark.anyio
async def test_the_reasons_name_the_exception_type_and_message(tmp_path: Path) -> None:
    state = StateDir(tmp_path, JOB)
    pages = [Page(units=[_trace("deep"), _trace("fine")], cursor={"next": 1})]
    sink = MemorySink(raise_for={"deep": RecursionError("maximum recursion depth exceeded")})
    await run(MemorySource(pages), sink, state=state)
    (letter,) = _dead_letters(state)
    assert letter["reason"] == (
        "could not be written: RecursionError: maximum recursion depth exceeded "
        "(a value is nested too deeply to handle)"
    )


@pytest.mark.anyio
async def test_a_record_error_from_the_sink_is_dead_lettered_with_its_reason(
    tmp_path: Path,
) -> None:
    state = StateDir(tmp_path, JOB)
    pages = [Page(units=[_trace("a"), _trace("b")], cursor={"next": 1})]
    sink = MemorySink(raise_for={"b": RecordError("field 'x' is too long")})
    report = await run(MemorySource(pages), sink, state=state)
    assert _written(sink) == ["a"]
    assert report.dead_lettered == Counts(traces=1, spans=1)
    assert _dead_letters(state)[0]["reason"] == "could not be written: field 'x' is too long"


@pytest.mark.anyio
async def test_a_thread_that_cannot_be_written_is_one_dead_letter_counting_all_it_holds() -> None:
    thread = Thread(id="conv", traces=[_trace("a", spans=2, scores=1), _trace("bb", spans=3)])
    pages = [Page(units=[thread, _trace("solo")], cursor={"next": 1})]
    sink = MemorySink(raise_for={"conv": RecursionError("deep")})
    report = await run(MemorySource(pages), sink)
    assert _written(sink) == ["solo"]
    assert report.dead_lettered == Counts(threads=1, traces=2, spans=5, scores=1)


@pytest.mark.anyio
async def test_an_exception_group_of_record_failures_is_isolated() -> None:
    """A sink writing in a task group raises an ExceptionGroup: still the unit's problem."""
    group = ExceptionGroup("writes failed", [_surrogate_error()])
    pages = [Page(units=[_trace("a"), _trace("b"), _trace("c")], cursor={"next": 1})]
    sink = MemorySink(raise_for={"b": group})
    report = await run(MemorySource(pages), sink)
    assert sorted(_written(sink)) == ["a", "c"]
    assert report.dead_lettered.traces == 1


@pytest.mark.parametrize(
    "error",
    [
        ServerError("Opik answered 500"),
        OSError(28, "No space left on device"),
        PermissionError(13, "Permission denied", "/out/x.json"),
        ExceptionGroup("writes failed", [_surrogate_error(), OSError(28, "No space")]),
    ],
    ids=["tracebridge-error", "disk-full", "permission", "group-with-an-os-error"],
)
@pytest.mark.anyio
async def test_fatal_and_environment_errors_stop_the_run_without_bisecting(
    tmp_path: Path, error: Exception
) -> None:
    """TracebridgeErrors and OSErrors are not a record's problem: the first write's error ends
    the run, nothing is dead-lettered, the checkpoint keeps the last acknowledged page."""
    pages = [
        Page(units=[_trace("a")], cursor={"next": 1}),
        Page(units=[_trace("b"), _trace("c")], cursor={"next": 2}),
    ]
    sink = MemorySink(raise_for={"c": error})
    state = StateDir(tmp_path, JOB)
    raised = await _failure(MemorySource(pages), sink, state=state)
    assert sink.calls == 2
    kind = OSError if not isinstance(error, TracebridgeError) else ServerError
    assert _failed_with(raised, kind)
    assert not state.dead_letter_path.exists()
    checkpoint = state.load()
    assert checkpoint is not None
    assert checkpoint.cursor == {"next": 1}


@pytest.mark.anyio
async def test_an_environment_error_says_which_endpoint_it_met() -> None:
    pages = [Page(units=[_trace("a")], cursor={"next": 1})]
    sink = MemorySink(raise_for={"a": OSError(28, "No space left on device")})
    raised = await _failure(MemorySource(pages), sink)
    assert isinstance(raised, OSError)
    assert raised.__notes__ == ["while writing to memory-sink"]


@pytest.mark.anyio
async def test_memory_errors_are_never_taken_for_a_record_problem() -> None:
    pages = [Page(units=[_trace("a"), _trace("b")], cursor={"next": 1})]
    sink = MemorySink(raise_for={"b": MemoryError()})
    raised = await _failure(MemorySource(pages), sink)
    assert _failed_with(raised, MemoryError)
    assert sink.calls == 1


@pytest.mark.anyio
async def test_a_dry_run_isolates_unmappable_units_too() -> None:
    pages = [Page(units=[_trace("a"), _trace("b")], cursor={"next": 1})]
    sink = MemorySink(raise_for={"a": RecursionError("deep")})
    report = await run(MemorySource(pages), sink, dry_run=True)
    assert report.dead_lettered.traces == 1
    assert report.written.traces == 1


@pytest.mark.anyio
async def test_dead_letters_the_file_cannot_hold_as_is_are_kept_safely(tmp_path: Path) -> None:
    """A rejected record with a lone surrogate is kept as escaped JSON text (exact); one too
    deep to encode is left out, the reason saying so; the run and the file survive both."""
    deep: Any = "x"
    for _ in range(100_000):
        deep = [deep]
    surrogate = {"trace_id": "s", "name": "bad\ud800"}
    pages = [
        Page(
            rejected=[
                Rejected("trace", "in.jsonl:1", "not valid", surrogate),
                Rejected("trace", "in.jsonl:2", "not valid", {"deep": deep}),
            ],
            cursor={"next": 1},
        )
    ]
    state = StateDir(tmp_path, JOB)
    report = await run(MemorySource(pages), MemorySink(), state=state)
    assert report.dead_letter_entries == 2
    first, second = _dead_letters(state)
    assert json.loads(first["record"]) == surrogate
    assert "kept as JSON text, escaped: it holds a lone surrogate" in first["reason"]
    assert second["record"] is None
    assert second["reason"].startswith("not valid (the record is not kept: RecursionError")


@pytest.mark.anyio
async def test_a_dead_letter_naming_a_lone_surrogate_is_written_escaped(tmp_path: Path) -> None:
    """The id in `where` comes from the record: a lone surrogate there is escaped, not fatal."""
    pages = [Page(rejected=[Rejected("trace", "trace bad\ud800id", "why \udc00", None)])]
    state = StateDir(tmp_path, JOB)
    await run(MemorySource(pages), MemorySink(), state=state)
    (letter,) = _dead_letters(state)
    assert (letter["where"], letter["reason"]) == ("trace bad\\ud800id", "why \\udc00")


@pytest.mark.anyio
async def test_what_decoders_notice_while_a_page_is_read_travels_with_it() -> None:
    """A source converting records in `pages` (as the API sources do): the skip and the span
    dead letter of a repeated span id reach the report, and the counts add up."""
    from tracebridge._langwatch.convert import trace_from_wire

    def raw(trace_id: str) -> dict[str, Any]:
        span = {"span_id": "s1", "type": "llm", "timestamps": {"started_at": 1773082931482}}
        changed = {**span, "name": "other"}
        return {
            "trace_id": trace_id,
            "timestamps": {"started_at": 1773082931482},
            "spans": [span, dict(span), changed],
        }

    class ConvertingSource(MemorySource):
        async def pages(self, window: Window, resume: dict[str, Any] | None) -> Any:
            for n in range(2):
                trace, _ = trace_from_wire(raw(f"t{n}"))
                yield Page(units=[trace], cursor={"next": n + 1})

    report = await run(ConvertingSource([]), MemorySink())
    assert report.read == Counts(traces=2, spans=6)
    assert report.written == Counts(traces=2, spans=2)
    assert report.skipped == Counts(spans=2)
    assert report.dead_lettered == Counts(spans=2)
    assert report.read.spans == sum(
        c.spans for c in (report.written, report.skipped, report.dead_lettered)
    )


@pytest.mark.anyio
async def test_a_failed_batch_to_an_opik_folder_loses_nothing(tmp_path: Path) -> None:
    """The real opik-dir sink: a trace it cannot encode (a lone surrogate that reached it
    without a decoder) is dead-lettered, its batch mates are on disk."""
    from tracebridge import OpikDirSink, default_mappings

    traces = [_trace("a"), _trace("bad"), _trace("ccc")]
    traces[1] = traces[1].model_copy(update={"name": "bad\ud800"})
    sink = OpikDirSink(tmp_path, workspace="w", project="p", mappings=default_mappings())
    report = await run(MemorySource([Page(units=list(traces), cursor={"next": 1})]), sink)
    assert report.dead_lettered == Counts(traces=1, spans=1)
    assert report.written == Counts(traces=2, spans=2)
    files = list(tmp_path.glob("w/projects/*/trace_*.json"))
    names = sorted(
        json.loads(f.read_text())["trace"]["metadata"]["tracebridge"]["source"]["id"] for f in files
    )
    assert names == ["a", "ccc"]


@pytest.mark.anyio
async def test_a_failed_batch_to_a_langwatch_file_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose second unit fails unexpectedly is written again in parts: the file sink
    must not take the first unit's line as written before the batch reached the file."""
    from tracebridge import LangWatchFileSink
    from tracebridge._langwatch import file_sink

    real = file_sink.trace_to_wire

    def failing(trace: Trace, **kwargs: Any) -> dict[str, Any]:
        if trace.id == "bad":
            raise RuntimeError("the mapping broke on this record")
        return real(trace, **kwargs)

    monkeypatch.setattr(file_sink, "trace_to_wire", failing)

    traces = [_trace("a"), _trace("bad"), _trace("ccc")]
    traces = [
        t.model_copy(update={"source": Provenance(platform="opik", project="p", id=t.id)})
        for t in traces
    ]
    path = tmp_path / "out.jsonl"
    report = await run(
        MemorySource([Page(units=list(traces), cursor={"next": 1})]), LangWatchFileSink(path)
    )
    assert report.dead_lettered.traces == 1
    written = [json.loads(line)["trace_id"] for line in path.read_text().splitlines()]
    assert sorted(written) == ["a", "ccc"]


# ---------------------------------------------------------------------------------------- steps


def _redact(key: str) -> Callable[[Unit], Unit]:
    """A step that removes `key` from every trace's metadata (a redaction)."""

    def redact(unit: Unit) -> Unit:
        def clean(trace: Trace) -> Trace:
            metadata = {k: v for k, v in trace.metadata.items() if k != key}
            return trace.model_copy(update={"metadata": metadata})

        if isinstance(unit, Thread):
            return unit.model_copy(update={"traces": [clean(t) for t in unit.traces]})
        return clean(unit)

    redact.rule = f"redact {key}"  # type: ignore[attr-defined]
    return redact


class RecordingSink(MemorySink):
    """A MemorySink that also keeps the units it was given."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units: list[Unit] = []

    async def write(self, units: list[Unit], *, dry_run: bool = False) -> WriteResult:
        self.units += units
        return await super().write(units, dry_run=dry_run)


@pytest.mark.anyio
async def test_a_filter_step_leaves_units_out_and_counts_them_under_its_name() -> None:
    """A step returning None drops the unit: not written, counted as skipped (with what it
    held) under the step's `__name__`, not lossy."""
    thread = Thread(id="conv", traces=[_trace("dev-a", spans=2, scores=1), _trace("ok", spans=1)])
    pages = [Page(units=[thread, _trace("dev-b", spans=3), _trace("keep")], cursor={"next": 1})]

    def no_dev(unit: Unit) -> Unit | None:
        return None if unit.id.startswith("dev") or unit.id == "conv" else unit

    sink = MemorySink()
    report = await run(MemorySource(pages), sink, steps=[no_dev])
    assert _written(sink) == ["keep"]
    assert report.skipped == Counts(threads=1, traces=3, spans=6, scores=1)
    assert report.result.skip_reasons == {
        "no_dev": 2,  # one thread, one trace
        "no_dev (traces they held)": 2,
        "no_dev (spans they held)": 6,
        "no_dev (scores they held)": 1,
    }
    assert report.read == Counts(threads=1, traces=4, spans=7, scores=1)
    assert not report.lossy


@pytest.mark.anyio
async def test_what_a_step_leaves_out_of_a_thread_is_counted_as_skipped() -> None:
    """A step that keeps a thread but drops some of its traces (echo suppression does): the
    dropped traces and what they held are skipped under its rule, and the counts add up."""
    thread = Thread(id="conv", traces=[_trace("echo", spans=2, scores=1), _trace("new", spans=1)])

    def drop_echoes(unit: Unit) -> Unit | None:
        assert isinstance(unit, Thread)
        return unit.model_copy(update={"traces": [t for t in unit.traces if t.id != "echo"]})

    sink = RecordingSink()
    report = await run(
        MemorySource([Page(units=[thread], cursor={"next": 1})]), sink, steps=[drop_echoes]
    )
    assert report.written == Counts(threads=1, traces=1, spans=1)
    assert report.skipped == Counts(traces=1, spans=2, scores=1)
    assert report.result.skip_reasons == {
        "drop_echoes": 1,
        "drop_echoes (spans they held)": 2,
        "drop_echoes (scores they held)": 1,
    }
    assert report.read == Counts(threads=1, traces=2, spans=3, scores=1)


@pytest.mark.anyio
async def test_steps_run_in_order_and_a_transform_reaches_the_sink() -> None:
    """A redaction step changes what the sink gets; the next step sees its result; the `rule`
    attribute names a step."""
    trace = _trace("t1").model_copy(update={"metadata": {"api_key": "x", "env": "prod"}})
    seen: list[dict[str, Any]] = []

    def look(unit: Unit) -> Unit:
        assert isinstance(unit, Trace)
        seen.append(dict(unit.metadata))
        return unit

    sink = RecordingSink()
    report = await run(
        MemorySource([Page(units=[trace], cursor={"next": 1})]),
        sink,
        steps=[_redact("api_key"), look],
    )
    assert seen == [{"env": "prod"}]
    (written,) = sink.units
    assert isinstance(written, Trace)
    assert written.metadata == {"env": "prod"}
    assert report.written.traces == 1
    assert report.skipped.total() == 0


@pytest.mark.anyio
async def test_a_step_that_raises_dead_letters_that_unit_only(tmp_path: Path) -> None:
    """A step failing on one unit makes that unit's dead letter (naming the step and the
    exception, and keeping the unit as read so it can be retried); the others are written and
    the checkpoint completes."""

    def picky(unit: Unit) -> Unit:
        if unit.id == "p0t1":
            raise ValueError("cannot parse the customer id")
        return unit

    state = StateDir(tmp_path, JOB)
    sink = MemorySink()
    report = await run(
        MemorySource(_pages(2)), sink, state=state, steps=[_redact("api_key"), picky]
    )
    assert _written(sink) == ["p0t0", "p1t0", "p1t1"]
    assert report.dead_lettered == Counts(traces=1, spans=1)
    assert report.exit_code == 1
    (letter,) = _dead_letters(state)
    assert letter["where"] == "trace p0t1"
    assert letter["reason"] == "step picky failed: ValueError: cannot parse the customer id"
    assert letter["unit"]["type"] == "trace"
    assert Trace.model_validate(letter["unit"]["data"]) == _trace("p0t1")
    checkpoint = state.load()
    assert checkpoint is not None
    assert checkpoint.complete


@pytest.mark.anyio
async def test_a_step_returning_something_else_is_that_units_failure() -> None:
    def broken(unit: Unit) -> Any:
        return {"id": unit.id}

    report = await run(MemorySource(_pages(1)), MemorySink(), steps=[broken])
    assert report.dead_lettered.traces == 2
    assert report.written.total() == 0


@pytest.mark.anyio
async def test_a_fatal_error_in_a_step_stops_the_run(tmp_path: Path) -> None:
    """An environment error in a step is not one record's problem: the run stops, the
    checkpoint stays before the page."""

    def disk_full(unit: Unit) -> Unit:
        raise OSError(28, "No space left on device")

    state = StateDir(tmp_path, JOB)
    with pytest.raises(OSError, match="No space left"):
        await run(MemorySource(_pages(2)), MemorySink(), state=state, steps=[disk_full])
    assert state.load() is None  # no page was acknowledged


@pytest.mark.anyio
async def test_what_the_sink_refuses_is_dead_lettered_with_the_unit_as_read(
    tmp_path: Path,
) -> None:
    """A sink refusal names `trace <id>`: its dead letter carries that unit as the source read
    it (before the steps), so a retry sends it through the steps again."""
    trace = _trace("refused").model_copy(update={"metadata": {"api_key": "x"}})
    pages = [Page(units=[trace, _trace("ok")], cursor={"next": 1})]
    state = StateDir(tmp_path, JOB)
    sink = MemorySink(reject=frozenset({"refused"}), raise_for={"ok": RecordError("too big")})
    await run(MemorySource(pages), sink, state=state, steps=[_redact("api_key")])
    letters = {letter["where"]: letter for letter in _dead_letters(state)}
    assert Trace.model_validate(letters["trace refused"]["unit"]["data"]) == trace
    assert Trace.model_validate(letters["trace ok"]["unit"]["data"]) == _trace("ok")


# -------------------------------------------------------------------------------------- stopping


@pytest.mark.anyio
async def test_stop_finishes_the_page_in_flight_and_saves_its_checkpoint(tmp_path: Path) -> None:
    """Setting `stop` while page 2 is written: page 2 is acknowledged and checkpointed, page 3
    is not written, the run is stopped (not complete) and the next run resumes after page 2."""
    stop = anyio.Event()

    def stop_on_second(call: int) -> None:
        if call == 2:
            stop.set()

    state = StateDir(tmp_path, JOB)
    sink = MemorySink(before_write=stop_on_second)
    source = MemorySource(_pages(30))  # the reader is ahead, blocked on the full stream
    report = await run(source, sink, state=state, stop=stop)
    assert source.produced > 2
    assert report.stopped
    assert _written(sink) == ["p0t0", "p0t1", "p1t0", "p1t1"]
    checkpoint = state.load()
    assert checkpoint is not None
    assert (checkpoint.cursor, checkpoint.complete) == ({"next": 2}, False)
    assert sink.closed == 1

    source = MemorySource(_pages(30))
    again = await run(source, MemorySink(), state=StateDir(tmp_path, JOB), stop=anyio.Event())
    assert source.resumes == [{"next": 2}]
    assert not again.stopped
    assert again.written.traces == 56


@pytest.mark.anyio
async def test_stop_while_the_source_is_slow_ends_the_run_at_once(tmp_path: Path) -> None:
    """No page in flight (the writer waits for the source): a stop request ends the run at
    once, without waiting for the source's next page."""
    stop, acknowledged = anyio.Event(), anyio.Event()

    class Stuck(MemorySource):
        async def pages(self, window: Window, resume: dict[str, Any] | None) -> AsyncIterator[Page]:
            yield _pages(1)[0]
            await acknowledged.wait()
            stop.set()  # the signal arrives while the next request is under way
            await anyio.sleep(60)
            yield _pages(2)[1]

    state = StateDir(tmp_path, JOB)
    with anyio.fail_after(5):
        report = await run(
            Stuck([]), MemorySink(), state=state, stop=stop, on_page=lambda r: acknowledged.set()
        )
    assert report.stopped
    assert report.written.traces == 2
    checkpoint = state.load()
    assert checkpoint is not None
    assert (checkpoint.cursor, checkpoint.complete) == ({"next": 1}, False)


# ------------------------------------------------------------------------- the whole job's counts


@pytest.mark.anyio
async def test_a_resumed_run_reports_this_run_and_the_whole_job(tmp_path: Path) -> None:
    """The checkpoint keeps what the job's runs did through the last acknowledged page; a
    resumed run reports its own counts and, as `job`, the whole job's: together exactly what
    an uninterrupted run counts (the unacknowledged page is counted once, by the run that
    wrote it)."""
    pages = _pages(6)
    uninterrupted = await run(MemorySource(pages), MemorySink())
    error = await _failure(
        MemorySource(pages), MemorySink(fail_on_call=4), state=StateDir(tmp_path, JOB)
    )
    assert _failed_with(error, ServerError)
    saved = StateDir(tmp_path, JOB).load()
    assert saved is not None
    assert saved.counts is not None
    assert (saved.counts.runs, saved.counts.read.traces, saved.counts.written.traces) == (1, 6, 6)

    report = await run(MemorySource(pages), MemorySink(), state=StateDir(tmp_path, JOB))
    assert report.read.traces == report.written.traces == 6
    job = report.job
    assert job is not None
    assert job.runs == 2
    assert job.read == uninterrupted.read
    assert job.written == uninterrupted.written
    assert job.started_at is not None
    assert report.started_at is not None
    assert job.started_at < report.started_at
    document = report.to_dict()
    assert document["job"]["runs"] == 2
    assert document["job"]["read"]["traces"] == 12
    assert document["job"]["started_at"].endswith("Z")

    fresh = await run(MemorySource(pages), MemorySink(), state=StateDir(tmp_path, JOB))
    assert fresh.job is None  # the job was complete: this run starts it over
    assert fresh.to_dict()["job"] is None


@pytest.mark.anyio
async def test_the_whole_job_counts_dead_letters_of_earlier_runs(tmp_path: Path) -> None:
    pages = _pages(4)
    error = await _failure(
        MemorySource(pages),
        MemorySink(fail_on_call=3, reject=frozenset({"p0t1"})),
        state=StateDir(tmp_path, JOB),
    )
    assert _failed_with(error, ServerError)
    report = await run(MemorySource(pages), MemorySink(), state=StateDir(tmp_path, JOB))
    assert not report.lossy  # this run's own verdict
    assert report.job is not None
    assert report.job.dead_lettered.traces == 1
    assert report.job.dead_letter_entries == 1


@pytest.mark.anyio
async def test_the_latest_expected_total_a_page_gives_reaches_the_report() -> None:
    pages = _pages(3)
    pages[0].expected_traces = 7
    pages[2].expected_traces = 6
    seen: list[int | None] = []
    report = await run(
        MemorySource(pages), MemorySink(), on_page=lambda r: seen.append(r.expected_traces)
    )
    assert seen == [7, 7, 6]
    assert report.expected_traces == 6


@pytest.mark.anyio
async def test_a_skip_unchanged_sink_fills_the_reports_unchanged_counts(tmp_path: Path) -> None:
    from tracebridge import SkipUnchanged

    first = await run(MemorySource(_pages(2)), SkipUnchanged(MemorySink(), tmp_path))
    assert first.unchanged == Counts()
    sink = MemorySink()
    again = await run(MemorySource(_pages(2)), SkipUnchanged(sink, tmp_path))
    assert again.unchanged == Counts(traces=4, spans=4)
    assert again.skipped == again.unchanged
    assert again.to_dict()["unchanged"] == {"threads": 0, "traces": 4, "spans": 4, "scores": 0}
    assert sink.calls == 0


class HashingSource(MemorySource):
    """A `MemorySource` that hashes each trace as it reads it, as a reader of copies does
    (`_stash.CopyReader` tells a changed copy by its content hash)."""

    async def pages(self, window: Window, resume: dict[str, Any] | None) -> AsyncIterator[Page]:
        async for page in super().pages(window, resume):
            for unit in page.units:
                assert isinstance(unit, Trace)
                content_hash(unit)
            yield page


@pytest.mark.anyio
async def test_without_steps_a_trace_the_source_hashed_is_not_hashed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The skip-unchanged index takes the source's hash; the memo holds a few pages at most."""
    dumps = counted_content_hashes(monkeypatch)
    held: list[int] = []
    inner = MemorySink(before_write=lambda _: held.append(len(_REMEMBERED.get() or ())))
    report = await run(HashingSource(_pages(6, per_page=3)), SkipUnchanged(inner, tmp_path))
    assert report.written.traces == 18
    assert sorted(dumps) == sorted(f"p{p}t{i}" for p in range(6) for i in range(3))
    assert max(held) <= 3 * 4  # the page written, and what the reader got ahead by


@pytest.mark.anyio
async def test_with_steps_the_index_hashes_the_unit_as_the_steps_left_it(tmp_path: Path) -> None:
    """A step may change a unit in place: the hash the source took is not the unit's any more,
    so a run with steps hashes again, and a changed unit is written, not skipped."""
    first = MemorySink()
    await run(HashingSource(_pages(1)), SkipUnchanged(first, tmp_path))

    def tag_in_place(unit: Unit) -> Unit:
        assert isinstance(unit, Trace)
        unit.tags.append("added in place")
        return unit

    again = MemorySink()
    report = await run(
        HashingSource(_pages(1)), SkipUnchanged(again, tmp_path), steps=[tag_in_place]
    )
    assert _written(again) == ["p0t0", "p0t1"]
    assert report.written.traces == 2


class RefreshingSource(MemorySource):
    """Yields one trace object again on a later page, changed in place in between, once the
    sink has written the page it first came in (a library source that keeps its records and
    refreshes them: an object the engine gets again is not the content it hashed before)."""

    def __init__(self, written: anyio.Event) -> None:
        super().__init__(_pages(2, per_page=1))
        self.written = written

    async def pages(self, window: Window, resume: dict[str, Any] | None) -> AsyncIterator[Page]:
        first = self._pages[0].units[0]
        assert isinstance(first, Trace)
        yield self._pages[0]
        yield self._pages[1]
        await self.written.wait()  # the first page is written: its traces were hashed
        first.name = "renamed since"  # the same object, changed
        yield Page(units=[first], cursor={"next": 3})


@pytest.mark.anyio
async def test_a_trace_yielded_again_changed_in_place_is_written_again_not_skipped(
    tmp_path: Path,
) -> None:
    """Without steps the run shares one hash per trace object; a page's hashes are forgotten
    once it is written, so a trace object a later page brings again is hashed again: changed
    since, it is written (as 78d3469 did), not skipped as unchanged with its old hash."""
    written = anyio.Event()
    inner = MemorySink(before_write=lambda _: written.set())  # (after the index hashed)
    report = await run(RefreshingSource(written), SkipUnchanged(inner, tmp_path))
    assert _written(inner) == ["p0t0", "p1t0", "p0t0"]
    assert report.unchanged.traces == 0
