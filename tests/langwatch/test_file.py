"""`langwatch-file:PATH`: the JSONL source (threads, windows, dead letters, resume) and the
idempotent JSONL sink (one line per trace, replace on change, compaction, dry runs)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from tracebridge import (
    LangWatchFileSink,
    LangWatchFileSource,
    Page,
    Rejected,
    Thread,
    Trace,
    Unit,
    UsageError,
    Window,
)
from tracebridge._langwatch.convert import trace_from_wire

Json = dict[str, Any]
BASE_MS = 1_773_082_931_000  # 2026-03-09T19:02:11Z


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _ms(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def _trace(trace_id: str, offset_ms: int, thread: str | None = None, **fields: Any) -> Json:
    """A small LangWatch trace in the read shape, started `offset_ms` after BASE_MS."""
    start = BASE_MS + offset_ms
    metadata: Json = {"user_id": "cust_88213"}
    if thread is not None:
        metadata["thread_id"] = thread
    record: Json = {
        "trace_id": trace_id,
        "project_id": "pRj7bX2kQm9LwT4vZc8Hd",
        "metadata": metadata,
        "timestamps": {"started_at": start, "inserted_at": start + 4000},
        "input": {"value": f"question {trace_id}"},
        "output": {"value": f"answer {trace_id}"},
        "metrics": {"total_time_ms": 1200},
        "error": None,
        "spans": [
            {
                "span_id": f"span_{trace_id}",
                "trace_id": trace_id,
                "parent_id": None,
                "name": "ChatOpenAI",
                "type": "llm",
                "model": "openai/gpt-5",
                "timestamps": {"started_at": start + 5, "finished_at": start + 1100},
                "error": None,
            }
        ],
        "evaluations": [],
    }
    record.update(fields)
    return record


def _jsonl(path: Path, lines: Sequence[Json | str]) -> Path:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


async def _read(
    path: Path,
    window: Window | None = None,
    resume: dict[str, Any] | None = None,
    page_size: int = 100,
) -> list[Page]:
    source = LangWatchFileSource(path, project="support-bot", page_size=page_size)
    try:
        return [page async for page in source.pages(window or Window(), resume)]
    finally:
        await source.aclose()


def _units(pages: list[Page]) -> list[Unit]:
    return [unit for page in pages for unit in page.units]


def _rejected(pages: list[Page]) -> list[Rejected]:
    return [item for page in pages for item in page.rejected]


def _trace_ids(units: list[Unit]) -> list[str]:
    return [t.id for u in units for t in (u.traces if isinstance(u, Thread) else [u])]


def _canonical(*raws: Json) -> list[Trace]:
    return [trace_from_wire(raw, project="support-bot")[0] for raw in raws]


# ---------------------------------------------------------------------------------------- source


@pytest.mark.anyio
async def test_source_groups_by_thread_and_orders_turns_by_start(tmp_path: Path) -> None:
    """Traces sharing `metadata.thread_id` are one Thread, turns sorted by start time; units
    come in the order their first line appears."""
    path = _jsonl(
        tmp_path / "in.jsonl",
        [
            _trace("t_a2", 2000, "conv_a"),
            _trace("solo", 1500),
            _trace("t_a1", 1000, "conv_a"),
            _trace("t_b1", 3000, "conv_b"),
            _trace("t_a3", 2500, "conv_a"),
        ],
    )
    units = _units(await _read(path))
    assert [type(u).__name__ for u in units] == ["Thread", "Trace", "Thread"]
    thread_a, solo, thread_b = units
    assert isinstance(thread_a, Thread)
    assert isinstance(thread_b, Thread)
    assert thread_a.id == "conv_a"
    assert [t.id for t in thread_a.traces] == ["t_a1", "t_a2", "t_a3"]
    assert all(t.thread_id == "conv_a" for t in thread_a.traces)
    assert isinstance(solo, Trace)
    assert solo.id == "solo"
    assert [t.id for t in thread_b.traces] == ["t_b1"]
    assert solo.source.project == "support-bot"


@pytest.mark.anyio
async def test_standalone_traces_are_units_of_their_own(tmp_path: Path) -> None:
    """Traces without a thread id (or with an empty one) are never merged."""
    path = _jsonl(
        tmp_path / "in.jsonl",
        [_trace("one", 0), _trace("two", 10), _trace("three", 20, thread="")],
    )
    units = _units(await _read(path))
    assert [u.id for u in units] == ["one", "two", "three"]
    assert all(isinstance(u, Trace) for u in units)


@pytest.mark.anyio
async def test_source_reads_the_example_sample(tmp_path: Path) -> None:
    """The realistic sample reads without a single reject; its traces are all there."""
    sample = Path(__file__).resolve().parents[2] / "examples" / "langwatch-sample.jsonl"
    lines = [json.loads(line) for line in sample.read_text().splitlines() if line.strip()]
    pages = await _read(sample)
    assert _rejected(pages) == []
    assert sorted(_trace_ids(_units(pages))) == sorted(line["trace_id"] for line in lines)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        (1000, None, ["t1000", "t2000"]),
        (None, 1000, ["t0", "t1000"]),
        (1000, 1000, ["t1000"]),  # both bounds inclusive
        (1, 1999, ["t1000"]),
        (None, 999, ["t0"]),
        (2001, None, []),
    ],
)
async def test_window_filters_by_trace_start_inclusive(
    tmp_path: Path, since: int | None, until: int | None, expected: list[str]
) -> None:
    """--since/--until keep traces whose start lies in the window, bounds included (the window
    is given in ms after BASE_MS, like the trace names)."""
    path = _jsonl(
        tmp_path / "in.jsonl", [_trace("t0", 0), _trace("t1000", 1000), _trace("t2000", 2000)]
    )
    window = Window(
        since=None if since is None else _ms(BASE_MS + since),
        until=None if until is None else _ms(BASE_MS + until),
    )
    assert _trace_ids(_units(await _read(path, window))) == expected


@pytest.mark.anyio
async def test_window_filters_turns_of_a_thread(tmp_path: Path) -> None:
    """The window applies per trace: a thread brings only its turns inside the window."""
    path = _jsonl(tmp_path / "in.jsonl", [_trace("old", 0, "conv"), _trace("new", 5000, "conv")])
    units = _units(await _read(path, Window(since=_ms(BASE_MS + 1000))))
    assert _trace_ids(units) == ["new"]


@pytest.mark.anyio
async def test_bad_lines_are_dead_lettered_with_file_line_and_reason(tmp_path: Path) -> None:
    """Malformed JSON, a non-object, a missing required field and a seconds timestamp each
    become a Rejected naming file:line and why; the good records still come through."""
    no_timestamps = _trace("no_ts", 300)
    del no_timestamps["timestamps"]
    seconds = _trace("secs", 400)
    seconds["timestamps"]["started_at"] = (BASE_MS + 400) // 1000
    path = _jsonl(
        tmp_path / "in.jsonl",
        [
            _trace("good_1", 0, "conv"),
            '{"trace_id": "broken", "metadata": {',
            "[1, 2, 3]",
            no_timestamps,
            seconds,
            _trace("good_2", 500, "conv"),
            _trace("good_3", 600),
        ],
    )
    pages = await _read(path)
    assert _trace_ids(_units(pages)) == ["good_1", "good_2", "good_3"]
    rejected = {r.where.split(" ")[0]: r for r in _rejected(pages)}
    assert set(rejected) == {f"{path}:{n}" for n in (2, 3, 4, 5)}
    assert "not JSON" in rejected[f"{path}:2"].reason
    assert "list" in rejected[f"{path}:3"].reason
    assert "not a trace object" in rejected[f"{path}:3"].reason
    assert "timestamps" in rejected[f"{path}:4"].reason
    assert "seconds" in rejected[f"{path}:5"].reason
    assert "timestamps.started_at" in rejected[f"{path}:5"].reason
    assert "trace secs" in rejected[f"{path}:5"].where
    assert rejected[f"{path}:5"].record == seconds  # the raw record, for the dead-letter file
    assert all(r.kind == "trace" for r in rejected.values())


@pytest.mark.anyio
async def test_blank_lines_are_skipped_silently(tmp_path: Path) -> None:
    """An empty line is not a record (and not a reject)."""
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(_trace("a", 0)) + "\n\n  \n" + json.dumps(_trace("b", 1)) + "\n")
    pages = await _read(path)
    assert _rejected(pages) == []
    assert _trace_ids(_units(pages)) == ["a", "b"]


@pytest.mark.anyio
async def test_non_object_metadata_is_dead_lettered(tmp_path: Path) -> None:
    """`"metadata": "oops"` is one bad record, not a crash."""
    path = _jsonl(tmp_path / "in.jsonl", [_trace("bad", 0, metadata="oops"), _trace("good", 1)])
    pages = await _read(path)
    assert _trace_ids(_units(pages)) == ["good"]
    assert [r.where.split(" ")[0] for r in _rejected(pages)] == [f"{path}:1"]


@pytest.mark.anyio
async def test_numeric_thread_id_is_dead_lettered(tmp_path: Path) -> None:
    """A hand-made JSONL with `"thread_id": 42` loses that record only."""
    bad = _trace("bad", 0)
    bad["metadata"]["thread_id"] = 42
    path = _jsonl(tmp_path / "in.jsonl", [bad, _trace("good", 1)])
    pages = await _read(path)
    assert _trace_ids(_units(pages)) == ["good"]
    assert len(_rejected(pages)) == 1


@pytest.mark.anyio
async def test_pages_carry_a_cursor_and_resume_skips_done_units(tmp_path: Path) -> None:
    """Each page's cursor resumes after it: a resumed read yields exactly the remaining units."""
    path = _jsonl(
        tmp_path / "in.jsonl",
        [
            _trace("t0", 0),
            _trace("t1", 1, "c"),
            _trace("t2", 2),
            _trace("t3", 3, "c"),
            _trace("t4", 4),
        ],
    )
    pages = await _read(path, page_size=1)
    all_ids = _trace_ids(_units(pages))
    assert all_ids == ["t0", "t1", "t3", "t2", "t4"]
    assert all(page.cursor is not None for page in pages)
    for done, page in enumerate(pages[:-1]):
        assert page.cursor is not None
        resumed = await _read(path, resume=page.cursor, page_size=1)
        already = _trace_ids(_units(pages[: done + 1]))
        assert _trace_ids(_units(resumed)) == all_ids[len(already) :]


@pytest.mark.anyio
async def test_resume_does_not_repeat_index_rejects(tmp_path: Path) -> None:
    """Lines refused while indexing are reported once, on the first page, not again on resume."""
    path = _jsonl(tmp_path / "in.jsonl", [_trace("a", 0), "garbage", _trace("b", 1)])
    first = await _read(path, page_size=1)
    assert len(_rejected(first)) == 1
    cursor = first[0].cursor
    assert cursor is not None
    assert _rejected(await _read(path, resume=cursor, page_size=1)) == []


def test_source_on_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    """A typo in the path is reported before anything runs."""
    with pytest.raises(UsageError, match="no such file"):
        LangWatchFileSource(tmp_path / "nope.jsonl")


# ------------------------------------------------------------------------------------------ sink


async def _write(path: Path, units: list[Unit], *, dry_run: bool = False) -> None:
    sink = LangWatchFileSink(path)
    try:
        await sink.write(units, dry_run=dry_run)
    finally:
        await sink.aclose()


def _lines(path: Path) -> list[Json]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _units_of(*raws: Json) -> list[Unit]:
    """Standalone traces plus one thread of the traces that name `conv`."""
    traces = _canonical(*raws)
    threaded = [t for t in traces if t.thread_id == "conv"]
    units: list[Unit] = [t for t in traces if t.thread_id != "conv"]
    if threaded:
        units.append(Thread(id="conv", traces=threaded))
    return units


@pytest.mark.anyio
async def test_sink_writes_one_line_per_trace(tmp_path: Path) -> None:
    """A thread of two traces and a standalone trace: three lines, each a full LangWatch trace."""
    raws = [_trace("solo", 0), _trace("t1", 10, "conv"), _trace("t2", 20, "conv")]
    path = tmp_path / "out" / "traces.jsonl"
    await _write(path, _units_of(*raws))
    lines = _lines(path)
    assert sorted(line["trace_id"] for line in lines) == ["solo", "t1", "t2"]
    by_id = {line["trace_id"]: line for line in lines}
    for raw in raws:
        assert by_id[raw["trace_id"]] == raw  # LangWatch-born: written back as it was read


@pytest.mark.anyio
async def test_rerun_with_the_same_data_leaves_the_file_byte_identical(tmp_path: Path) -> None:
    """Idempotence (invariant 1): writing the same records again does not touch the file."""
    raws = [_trace("solo", 0), _trace("t1", 10, "conv"), _trace("t2", 20, "conv")]
    path = tmp_path / "traces.jsonl"
    await _write(path, _units_of(*raws))
    stat = path.stat()
    first = path.read_bytes()
    await _write(path, _units_of(*raws))
    await _write(path, _units_of(*reversed(raws)))
    assert path.read_bytes() == first
    # Not even rewritten to the same bytes: the file was left alone.
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)


@pytest.mark.anyio
async def test_a_changed_trace_replaces_its_line(tmp_path: Path) -> None:
    """A later version of a trace replaces the earlier one: one line per trace id after close."""
    path = tmp_path / "traces.jsonl"
    await _write(path, _units_of(_trace("a", 0), _trace("b", 1)))
    changed = _trace("a", 0, output={"value": "a better answer"})
    await _write(path, _units_of(changed))
    lines = _lines(path)
    assert sorted(line["trace_id"] for line in lines) == ["a", "b"]
    assert {line["trace_id"]: line for line in lines}["a"]["output"]["value"] == "a better answer"


@pytest.mark.anyio
async def test_a_trace_changed_twice_in_one_session_keeps_one_line(tmp_path: Path) -> None:
    """Within one sink, the last version wins and duplicates are gone at close."""
    path = tmp_path / "traces.jsonl"
    sink = LangWatchFileSink(path)
    for answer in ("v1", "v2", "v3"):
        await sink.write(_units_of(_trace("a", 0, output={"value": answer})))
    await sink.aclose()
    (line,) = _lines(path)
    assert line["output"]["value"] == "v3"


@pytest.mark.anyio
async def test_appended_batches_are_on_disk_before_close(tmp_path: Path) -> None:
    """`write` returns only once the batch is in the file (the engine acks on return)."""
    path = tmp_path / "traces.jsonl"
    sink = LangWatchFileSink(path)
    await sink.write(_units_of(_trace("a", 0)))
    assert [line["trace_id"] for line in _lines(path)] == ["a"]
    await sink.aclose()


def test_a_duplicated_trace_is_compacted_before_the_first_write(tmp_path: Path) -> None:
    """After a crash between append and compaction, the next write keeps the last version."""
    path = _jsonl(
        tmp_path / "traces.jsonl",
        [
            _trace("a", 0, output={"value": "old"}),
            _trace("b", 1),
            _trace("a", 0, output={"value": "new"}),
        ],
    )
    sink = LangWatchFileSink(path)
    anyio.run(lambda: sink.write([]))  # the first real write mends the file
    lines = _lines(path)
    assert sorted(line["trace_id"] for line in lines) == ["a", "b"]
    assert {line["trace_id"]: line for line in lines}["a"]["output"]["value"] == "new"


def test_a_file_without_duplicates_is_not_rewritten_on_open(tmp_path: Path) -> None:
    """Opening is read-only when there is nothing to compact."""
    path = _jsonl(tmp_path / "traces.jsonl", [_trace("a", 0), _trace("b", 1)])
    before = path.read_bytes(), path.stat().st_mtime_ns
    LangWatchFileSink(path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


@pytest.mark.anyio
async def test_a_torn_last_line_does_not_swallow_the_next_trace(tmp_path: Path) -> None:
    """A crash mid-append can leave a partial last line; the next write must stay readable."""
    path = tmp_path / "traces.jsonl"
    whole = json.dumps(_trace("a", 0))
    path.write_text(whole + "\n" + whole[:40], encoding="utf-8")
    await _write(path, _units_of(_trace("b", 1)))
    readable = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            readable.append(json.loads(line)["trace_id"])
        except ValueError:
            continue  # the torn line itself may stay unreadable
    assert readable == ["a", "b"]


@pytest.mark.anyio
async def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    """A dry run plans every trace and leaves no file behind."""
    path = tmp_path / "out" / "traces.jsonl"
    sink = LangWatchFileSink(path)
    result = await sink.write(_units_of(_trace("solo", 0), _trace("t1", 1, "conv")), dry_run=True)
    await sink.aclose()
    assert not path.exists()
    assert not path.parent.exists()
    assert len(result.plan) == 2
    assert any("trace solo" in line for line in result.plan)
    assert result.written.traces == 2


@pytest.mark.anyio
async def test_dry_run_leaves_an_existing_file_untouched(tmp_path: Path) -> None:
    """Dry-running changed data against an existing file changes nothing."""
    path = _jsonl(tmp_path / "traces.jsonl", [_trace("a", 0)])
    before = path.read_bytes()
    await _write(path, _units_of(_trace("a", 0, output={"value": "changed"})), dry_run=True)
    assert path.read_bytes() == before


@pytest.mark.anyio
async def test_dry_run_does_not_compact_an_existing_file(tmp_path: Path) -> None:
    """A dry run must not rewrite the destination, not even to compact it."""
    path = _jsonl(
        tmp_path / "traces.jsonl",
        [_trace("a", 0, output={"value": "old"}), _trace("a", 0, output={"value": "new"})],
    )
    before = path.read_bytes()
    await _write(path, _units_of(_trace("b", 1)), dry_run=True)
    assert path.read_bytes() == before


@pytest.mark.anyio
async def test_file_round_trip_source_to_sink(tmp_path: Path) -> None:
    """Reading a JSONL file and writing it again gives the same set of lines."""
    raws = [_trace("solo", 0), _trace("t2", 20, "conv"), _trace("t1", 10, "conv")]
    source = _jsonl(tmp_path / "in.jsonl", raws)
    units = _units(await _read(source))
    await _write(tmp_path / "out.jsonl", units)
    out = {line["trace_id"]: line for line in _lines(tmp_path / "out.jsonl")}
    assert out == {raw["trace_id"]: raw for raw in raws}
