"""`SkipUnchanged`: a sink wrapper that writes a unit only when its content changed since the
destination last acknowledged it; the index lives in the state directory."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.factories import langwatch_project, langwatch_trace
from tracebridge import (
    CheckpointError,
    Counts,
    LangWatchFileSource,
    OpikDirSink,
    Rejected,
    Thread,
    Trace,
    Unit,
    WriteResult,
    default_mappings,
    run,
)
from tracebridge._langwatch.convert import trace_from_wire
from tracebridge._state import StateDir
from tracebridge._unchanged import INDEX_FILE, UNCHANGED_RULE, SkipUnchanged


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RecordingSink:
    """An inner sink that acknowledges everything except what `refuse` names."""

    label = "recording"

    def __init__(self, refuse: Callable[[Unit], Rejected | None] = lambda u: None) -> None:
        self.batches: list[list[str]] = []
        self.refuse = refuse
        self.fail: Exception | None = None
        self.closed = False

    async def write(self, units: list[Unit], *, dry_run: bool = False) -> WriteResult:
        if self.fail is not None:
            raise self.fail
        self.batches.append([u.id for u in units])
        result = WriteResult()
        for unit in units:
            rejected = self.refuse(unit)
            if rejected is None:
                result.written.add(Counts.of(unit))
            else:
                result.rejected.append(rejected)
        if dry_run:
            result.plan = [u.id for u in units]
        return result

    async def aclose(self) -> None:
        self.closed = True


def _trace(n: int, thread_id: str | None = None) -> Trace:
    raw = langwatch_trace(
        random.Random(n),
        trace_id=f"trace_{n}",
        started_at_ms=1_767_225_600_000 + n * 1000,
        thread_id=thread_id,
        evaluation_statuses=("processed",),
    )
    return trace_from_wire(raw)[0]


def _units() -> list[Unit]:
    return [Thread(id="th", traces=[_trace(1, "th"), _trace(2, "th")]), _trace(3), _trace(4)]


def _written(sink: RecordingSink) -> list[str]:
    return [unit_id for batch in sink.batches for unit_id in batch]


@pytest.mark.anyio
async def test_a_second_pass_over_the_same_units_writes_nothing(tmp_path: Path) -> None:
    inner = RecordingSink()
    sink = SkipUnchanged(inner, tmp_path)
    units = _units()
    first = await sink.write(units)
    assert _written(inner) == ["th", "trace_3", "trace_4"]
    assert first.skipped == Counts()
    second = await sink.write(_units())  # equal units, built again
    assert len(inner.batches) == 1  # zero inner writes
    expected = Counts()
    for unit in units:
        expected.add(Counts.of(unit))
    assert second.skipped == expected
    assert second.skip_reasons == {UNCHANGED_RULE: expected.total()}
    assert second.written == Counts()
    await sink.aclose()
    assert inner.closed
    # the index persists: a new wrapper over the same state directory knows it
    again = SkipUnchanged(inner, tmp_path)
    await again.write(_units())
    assert len(inner.batches) == 1
    assert (tmp_path / INDEX_FILE).is_file()


@pytest.mark.anyio
async def test_a_changed_trace_in_a_thread_writes_that_thread_again(tmp_path: Path) -> None:
    inner = RecordingSink()
    sink = SkipUnchanged(inner, tmp_path)
    await sink.write(_units())
    units = _units()
    thread = units[0]
    assert isinstance(thread, Thread)
    thread.traces[1] = thread.traces[1].model_copy(update={"tags": ["reviewed"]})
    result = await sink.write(units)
    assert inner.batches[-1] == ["th"]
    assert result.skipped.traces == 2  # trace_3 and trace_4
    await sink.write(units)
    assert len(inner.batches) == 2  # recorded: unchanged now


@pytest.mark.anyio
async def test_a_change_inside_the_settle_window_is_sent_again_until_it_has_passed(
    tmp_path: Path,
) -> None:
    """LangWatch ignores span changes re-sent within an hour of the last write: a changed unit
    that soon is sent (evaluations and metadata land) but not recorded, so every pass sends it
    again until one comes after the window; then it is recorded and skipped as unchanged."""
    clock = [datetime(2026, 11, 30, 12, 0, tzinfo=UTC)]
    inner = RecordingSink()
    sink = SkipUnchanged(inner, tmp_path, settle=timedelta(hours=1), now=lambda: clock[0])
    await sink.write([_trace(3)])
    changed = _trace(3).model_copy(update={"tags": ["reviewed"]})

    clock[0] += timedelta(minutes=10)
    soon = await sink.write([changed])
    assert inner.batches[-1] == ["trace_3"]
    assert any("less than 1:00:00 ago" in w for w in soon.warnings), soon.warnings
    clock[0] += timedelta(minutes=10)
    await sink.write([changed])
    assert len(inner.batches) == 3  # sent again: the first re-send may have been ignored

    clock[0] += timedelta(minutes=45)  # 65 minutes after the last recorded write
    late = await sink.write([changed])
    assert len(inner.batches) == 4
    assert late.warnings == []
    await sink.write([changed])
    assert len(inner.batches) == 4  # recorded: unchanged now
    await sink.aclose()


@pytest.mark.anyio
async def test_a_rejected_unit_is_not_recorded_and_is_retried(tmp_path: Path) -> None:
    """Whole or in part (a span of a trace of the thread), a unit the sink refused is written
    again on the next pass; the others are not."""

    def refuse(unit: Unit) -> Rejected | None:
        if unit.id == "trace_3":
            return Rejected("trace", "trace trace_3", "refused", None, Counts.of(unit))
        if unit.id == "th":
            return Rejected("span", "trace trace_2: span s1", "dropped", None, Counts(spans=1))
        return None

    inner = RecordingSink(refuse)
    sink = SkipUnchanged(inner, tmp_path)
    await sink.write(_units())
    inner.refuse = lambda u: None
    await sink.write(_units())
    assert inner.batches[-1] == ["th", "trace_3"]
    await sink.write(_units())
    assert len(inner.batches) == 2


@pytest.mark.anyio
async def test_a_rejection_naming_no_unit_records_nothing(tmp_path: Path) -> None:
    inner = RecordingSink(
        lambda u: Rejected("trace", "somewhere.json", "?") if u.id == "trace_4" else None
    )
    sink = SkipUnchanged(inner, tmp_path)
    await sink.write(_units())
    inner.refuse = lambda u: None
    await sink.write(_units())
    assert inner.batches[-1] == ["th", "trace_3", "trace_4"]


@pytest.mark.anyio
async def test_a_failed_write_records_nothing(tmp_path: Path) -> None:
    inner = RecordingSink()
    inner.fail = ConnectionError("reset")
    sink = SkipUnchanged(inner, tmp_path)
    with pytest.raises(ConnectionError):
        await sink.write(_units())
    inner.fail = None
    await sink.write(_units())
    assert _written(inner) == ["th", "trace_3", "trace_4"]


@pytest.mark.anyio
async def test_a_dry_run_skips_what_is_unchanged_and_records_nothing(tmp_path: Path) -> None:
    inner = RecordingSink()
    sink = SkipUnchanged(inner, tmp_path)
    await sink.write(_units()[:1])
    dry = await sink.write(_units(), dry_run=True)
    assert dry.plan == ["trace_3", "trace_4"]
    assert dry.skipped.threads == 1
    await sink.write(_units())
    assert inner.batches[-1] == ["trace_3", "trace_4"]  # the dry run recorded nothing


@pytest.mark.anyio
async def test_destinations_and_fingerprints_are_kept_apart(tmp_path: Path) -> None:
    """Another destination, or another mapping fingerprint, writes everything once more."""
    inner = RecordingSink()
    await SkipUnchanged(inner, tmp_path).write(_units())
    await SkipUnchanged(inner, tmp_path, destination="other").write(_units())
    assert len(inner.batches) == 2
    await SkipUnchanged(inner, tmp_path, fingerprint="mapping v2").write(_units())
    assert len(inner.batches) == 3
    await SkipUnchanged(inner, tmp_path, fingerprint="mapping v2").write(_units())
    assert len(inner.batches) == 3


@pytest.mark.anyio
async def test_through_the_engine_a_second_run_skips_everything(tmp_path: Path) -> None:
    """`run` with a file source and the Opik folder sink: the second run writes nothing and
    says why, and is not lossy."""
    source_file = tmp_path / "traces.jsonl"
    traces = list(langwatch_project(12, 3, seed=5, start_ms=1_767_225_600_000))
    source_file.write_text("".join(json.dumps(t) + "\n" for t in traces))
    state = tmp_path / "state"

    async def once(job: str) -> tuple[Counts, Counts, dict[str, int]]:
        sink = SkipUnchanged(
            OpikDirSink(tmp_path / "out", workspace="w", project="p", mappings=default_mappings()),
            state,
        )
        report = await run(
            LangWatchFileSource(source_file), sink, state=StateDir(state, {"job": job})
        )
        assert report.exit_code == 0
        return report.written, report.skipped, report.result.skip_reasons

    written, _, _ = await once("first")
    assert written.traces == 12
    written, skipped, reasons = await once("second")
    assert written.traces == 0
    assert skipped.traces == 12
    assert reasons[UNCHANGED_RULE] == skipped.total()


def test_an_index_that_is_not_one_is_named(tmp_path: Path) -> None:
    """A damaged index, or one from a newer tracebridge: a CheckpointError naming the file."""
    (tmp_path / INDEX_FILE).write_bytes(b"this is not a database" * 100)
    with pytest.raises(CheckpointError, match=f"{INDEX_FILE} is not an index .* move it away"):
        SkipUnchanged(RecordingSink(), tmp_path)
    (tmp_path / INDEX_FILE).unlink()
    db = sqlite3.connect(tmp_path / INDEX_FILE)
    db.execute("PRAGMA user_version = 9")
    db.close()
    with pytest.raises(CheckpointError, match="newer tracebridge"):
        SkipUnchanged(RecordingSink(), tmp_path)
