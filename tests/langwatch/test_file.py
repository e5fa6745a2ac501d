"""`langwatch-file:PATH`: the source (JSONL and JSON-array exports, threads, windows, dead
letters, repeats, warnings, resume) and the JSONL sink (one line per trace, replace on change,
repairs only its own writes, locking, file hygiene, dry runs)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.recorders import recorded_fsyncs
from tracebridge import (
    IOValue,
    LangWatchFileSink,
    LangWatchFileSource,
    LockedError,
    Page,
    Rejected,
    Thread,
    Trace,
    Unit,
    UsageError,
    Window,
    WriteResult,
)
from tracebridge._compact import DigestMap
from tracebridge._engine import run
from tracebridge._langwatch import export_shapes
from tracebridge._langwatch import file as file_module
from tracebridge._langwatch import file_sink as file_sink_module
from tracebridge._langwatch.convert import trace_from_wire
from tracebridge._langwatch.file import REPEATED
from tracebridge._state import StateDir

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


def _array(path: Path, records: Sequence[Json], *, bom: bool = False, crlf: bool = False) -> Path:
    """What `langwatch trace export --format json` writes: `JSON.stringify(traces, null, 2)`."""
    text = json.dumps(list(records), indent=2, ensure_ascii=False)
    if crlf:
        text = text.replace("\n", "\r\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def _skips(pages: list[Page]) -> dict[str, int]:
    reasons: dict[str, int] = {}
    for page in pages:
        for rule, n in page.skip_reasons.items():
            reasons[rule] = reasons.get(rule, 0) + n
    return reasons


def _warnings(pages: list[Page]) -> list[str]:
    return [warning for page in pages for warning in page.warnings]


# --- export shapes


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["traces.json", "traces.jsonl", "export.txt"])
@pytest.mark.parametrize(("bom", "crlf"), [(False, False), (True, True)])
async def test_a_json_array_export_reads_like_the_jsonl_one(
    tmp_path: Path, name: str, bom: bool, crlf: bool
) -> None:
    """`--format json` (one pretty-printed array) gives the same units as `--format jsonl`,
    whatever the file is called, with or without a BOM and CRLF line ends."""
    raws = [
        _trace("t_a2", 2000, "conv_a", input={"value": 'quote " backslash \\ ] } ,'}),
        _trace("solo", 1500, input={"value": "naïve café 🚀 – ünïcödé"}),
        _trace("t_a1", 1000, "conv_a"),
    ]
    as_lines = await _read(_jsonl(tmp_path / "in.jsonl", raws))
    as_array = await _read(_array(tmp_path / name, raws, bom=bom, crlf=crlf))
    assert _rejected(as_array) == []
    assert _units(as_array) == _units(as_lines)


@pytest.mark.anyio
async def test_jsonl_with_a_bom_and_crlf_reads_every_line(tmp_path: Path) -> None:
    """A BOM before the first line and CRLF line ends are not errors."""
    path = tmp_path / "in.jsonl"
    lines = [json.dumps(_trace(n, i)) for i, n in enumerate(["a", "b", "c"])]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    pages = await _read(path)
    assert _rejected(pages) == []
    assert _trace_ids(_units(pages)) == ["a", "b", "c"]


@pytest.mark.anyio
async def test_array_elements_are_located_by_offset_and_read_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index pass streams the array: its read buffer stays near one element however big the
    file, each element is found by (offset, length) and the load pass reads just those bytes."""
    raws = [_trace(f"t{i:03}", i, f"conv_{i % 7}", input={"value": "x" * 2000}) for i in range(300)]
    path = _array(tmp_path / "in.json", raws)
    monkeypatch.setattr(export_shapes, "_CHUNK", 4096)
    largest = 0
    original = export_shapes._ArrayScanner._read

    def spy(self: Any, at_least: int = 0) -> bool:
        nonlocal largest
        more = original(self, at_least)
        largest = max(largest, len(self.buf))
        return more

    monkeypatch.setattr(export_shapes._ArrayScanner, "_read", spy)
    scanned = list(export_shapes.scan(path, "array"))
    assert [item.record for item in scanned] == raws
    assert largest <= 4 * 4096  # a few elements at most, while the file is 200 times that
    assert path.stat().st_size > 200 * 4096
    data = path.read_bytes()
    for item in scanned:
        offset, length, ordinal, line = item.locator
        assert json.loads(data[offset : offset + length]) == raws[ordinal - 1]
        assert data[:offset].count(b"\n") + 1 == line
    pages = await _read(path)
    assert sorted(_trace_ids(_units(pages))) == [r["trace_id"] for r in raws]


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(alphabet=st.sampled_from('ab"\\/[]{},: é🚀\n\t\u2028')),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(st.dictionaries(st.text(max_size=8), _json_values, max_size=5), max_size=8),
    indent=st.sampled_from([None, 0, 2, "\t"]),
    chunk=st.integers(min_value=1, max_value=64),
    bom=st.booleans(),
)
def test_the_array_scanner_finds_every_element_whatever_the_chunking(
    tmp_path_factory: pytest.TempPathFactory,
    records: list[Json],
    indent: int | str | None,
    chunk: int,
    bom: bool,
) -> None:
    """Any JSON array of objects, however laid out and whatever the read size: each element is
    found once, in order, and (offset, length) reads exactly it back."""
    path = tmp_path_factory.mktemp("scan") / "in.json"
    text = json.dumps(records, indent=indent, ensure_ascii=False)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export_shapes, "_CHUNK", chunk)
        scanned = list(export_shapes.scan(path, "array"))
    assert [item.problem for item in scanned] == [None] * len(records)
    assert [item.record for item in scanned] == records
    with path.open("rb") as handle:
        assert [export_shapes.load(handle, i.locator)[0] for i in scanned] == records


@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(st.dictionaries(st.text(max_size=8), _json_values, max_size=5), max_size=6),
    cut=st.floats(min_value=0, max_value=1),
    chunk=st.integers(min_value=1, max_value=64),
)
def test_an_array_cut_anywhere_yields_every_whole_element_and_one_reject(
    tmp_path_factory: pytest.TempPathFactory, records: list[Json], cut: float, chunk: int
) -> None:
    """A download cut short at any byte: every element wholly before the cut is read, in order,
    and what follows it is one dead letter, never a crash."""
    parts = [json.dumps(r, ensure_ascii=False) for r in records]
    text = ("[" + ", ".join(parts) + "]").encode()
    at = int(cut * len(text))
    path = tmp_path_factory.mktemp("cut") / "in.json"
    path.write_bytes(text[:at])
    whole = sum(
        1 for i in range(len(parts)) if len(("[" + ", ".join(parts[: i + 1])).encode()) <= at
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export_shapes, "_CHUNK", chunk)
        scanned = list(export_shapes.scan(path, "array")) if at else []
    read = [item.record for item in scanned if item.record is not None]
    assert read == records[: len(read)]
    assert len(read) >= whole
    if 0 < at < len(text):  # an empty file is no array at all
        assert scanned
        assert scanned[-1].problem is not None
        assert sum(item.problem is not None for item in scanned) == 1


@pytest.mark.anyio
async def test_broken_array_elements_are_dead_lettered_by_element_and_line(
    tmp_path: Path,
) -> None:
    """A broken element, a non-object and an export cut short each become one dead letter named
    `file: element N (line L)`; the elements around them are read."""
    good = [_trace("a", 0), _trace("c", 2), _trace("e", 4)]
    text = json.dumps(good, indent=2)
    first, second = (
        text.index('\n  {\n    "trace_id": "c"'),
        text.index('\n  {\n    "trace_id": "e"'),
    )
    text = text[:first] + '\n  {"trace_id": "b", "broken": tru},\n  [1, 2],' + text[first:second]
    text += '\n  {"trace_id": "f", "timestamps": {"started'  # the download stopped here
    path = tmp_path / "in.json"
    path.write_text(text)
    pages = await _read(path)
    assert _trace_ids(_units(pages)) == ["a", "c"]
    rejected = _rejected(pages)
    lines = [text[: text.index(s)].count("\n") + 1 for s in ('"b"', "[1, 2]", '"f"')]
    assert [r.where for r in rejected] == [
        f"{path}: element {n} (line {line})" for n, line in zip((2, 3, 5), lines, strict=True)
    ]
    assert "not JSON" in rejected[0].reason
    assert rejected[0].record == '{"trace_id": "b", "broken": tru}'
    assert "not a trace object" in rejected[1].reason
    assert "cut short" in rejected[2].reason


@pytest.mark.anyio
async def test_an_invalid_trace_in_an_array_is_dead_lettered_with_its_element(
    tmp_path: Path,
) -> None:
    """Validation errors name the element and the trace, like `file:line (trace x)` in JSONL."""
    seconds = _trace("secs", 1)
    seconds["timestamps"]["started_at"] //= 1000
    path = _array(tmp_path / "in.json", [_trace("a", 0), seconds])
    (rejected,) = _rejected(await _read(path))
    assert rejected.where.startswith(f"{path}: element 2 (line ")
    assert rejected.where.endswith("(trace secs)")
    assert "seconds" in rejected.reason


def test_csv_exports_stop_with_the_export_to_use(tmp_path: Path) -> None:
    """`--format csv` (and the web UI's CSV) has no spans, metadata or threads: a UsageError that
    names the JSONL export to use instead, whatever the extension."""
    for header in (
        "trace_id,input,output,started_at,error,prompt_tokens,completion_tokens",
        '"trace_id","timestamp","input","output","labels"',
    ):
        path = tmp_path / "traces.jsonl"
        path.write_text(f"{header}\r\ntr_1,hello,hi,2026-03-09T19:02:11.000Z,\r\n")
        with pytest.raises(UsageError, match="CSV") as caught:
            LangWatchFileSource(path)
        assert "langwatch trace export --format jsonl --include-spans" in str(caught.value)
        assert caught.value.exit_code == 2


@pytest.mark.parametrize("shape", ["jsonl", "array"])
def test_the_web_ui_export_stops_with_the_export_to_use(tmp_path: Path, shape: str) -> None:
    """The web UI's download (`POST /api/export/traces/download`) is flat JSONL without
    thread_id, user_id, customer_id or labels: refused with the export to use instead."""
    flat = {
        "trace_id": "tr_1",
        "project_id": "pRj7bX2kQm9LwT4vZc8Hd",
        "timestamp": BASE_MS,
        "input": "hello",
        "output": "hi",
        "labels": [],
        "first_token_ms": None,
        "total_time_ms": 1200,
        "metadata": {"plan": "Fibre 500"},
        "error": None,
        "spans": [],
        "evaluations": [],
    }
    path = tmp_path / "export.jsonl"
    if shape == "jsonl":
        _jsonl(path, [flat, flat])
    else:
        _array(path, [flat])
    with pytest.raises(UsageError, match="web-UI export") as caught:
        LangWatchFileSource(path)
    assert "thread_id" in str(caught.value)
    assert "langwatch trace export --format jsonl --include-spans" in str(caught.value)


def test_utf16_text_stops_with_a_clear_message(tmp_path: Path) -> None:
    """PowerShell's `>` writes UTF-16: say so instead of dead-lettering every line."""
    path = tmp_path / "traces.jsonl"
    path.write_bytes("\ufeff".encode("utf-16-le") + json.dumps(_trace("a", 0)).encode("utf-16-le"))
    with pytest.raises(UsageError, match="UTF-16"):
        LangWatchFileSource(path)


@pytest.mark.anyio
async def test_an_empty_file_or_array_has_no_records(tmp_path: Path) -> None:
    """Nothing to read is not an error."""
    for text in ("", "\n\n", "[]", " [\n]\n"):
        path = tmp_path / "in.json"
        path.write_text(text)
        pages = await _read(path)
        assert _units(pages) == []
        assert _rejected(pages) == []
        assert _warnings(pages) == []


@pytest.mark.anyio
@pytest.mark.parametrize("shape", ["jsonl", "array"])
async def test_json_nested_too_deeply_is_one_dead_letter_not_a_crash(
    tmp_path: Path, shape: str
) -> None:
    """A record nested deeper than Python's JSON parser goes is dead-lettered with a clear
    reason; the other records are read."""
    deep = '{"trace_id": "deep", "input": {"value": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    good = [json.dumps(_trace("a", 0)), deep, json.dumps(_trace("b", 1))]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(good) + "\n" if shape == "jsonl" else "[" + ",".join(good) + "]")
    pages = await _read(path)
    assert _trace_ids(_units(pages)) == ["a", "b"]
    (rejected,) = _rejected(pages)
    assert "nested too deeply" in rejected.reason


@pytest.mark.anyio
async def test_a_trace_too_deep_to_convert_is_one_dead_letter_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON that parses but is too deep for the conversion (pydantic, copies) is that trace's
    dead letter, counted with its spans; the others are read."""
    convert = file_module.trace_from_wire

    def shallow_only(raw: Json, **kwargs: Any) -> Any:
        if raw["trace_id"] == "deep":
            raise RecursionError("maximum recursion depth exceeded")
        return convert(raw, **kwargs)

    monkeypatch.setattr(file_module, "trace_from_wire", shallow_only)
    path = _jsonl(tmp_path / "in.jsonl", [_trace("a", 0), _trace("deep", 1), _trace("b", 2)])
    pages = await _read(path)
    assert _trace_ids(_units(pages)) == ["a", "b"]
    (rejected,) = _rejected(pages)
    assert rejected.where == f"{path}:2 (trace deep)"
    assert "nested too deeply to convert" in rejected.reason
    assert rejected.contains is not None
    assert rejected.contains.spans == 1


# --- repeated trace ids


def _exporter_repeats(path: Path, *, array: bool = False) -> tuple[Path, list[Json]]:
    """250 lines holding 200 distinct traces, as `langwatch trace export --limit 250` writes
    when the server drops the cursor of its last, smaller page and starts again from page 1."""
    traces = [
        _trace(f"tr_{i:03}", i * 1000, f"conv_{i % 40}" if i % 5 else None) for i in range(200)
    ]
    lines = traces + traces[:50]
    return (_array(path, lines) if array else _jsonl(path, lines)), traces


@pytest.mark.anyio
@pytest.mark.parametrize("array", [False, True])
async def test_repeated_trace_ids_are_read_once_and_counted_as_skipped(
    tmp_path: Path, array: bool
) -> None:
    """250 lines, 200 distinct traces: 200 traces come through once each; the 50 repeats count
    as read and skipped by the named rule (their spans too) and a warning names the first few
    with their lines and how many more."""
    path, traces = _exporter_repeats(tmp_path / "in.jsonl", array=array)
    pages = await _read(path)
    ids = _trace_ids(_units(pages))
    assert sorted(ids) == sorted(t["trace_id"] for t in traces)
    assert _skips(pages) == {REPEATED: 50, f"{REPEATED} (spans of the copies left out)": 50}
    skipped = sum((page.skipped.traces for page in pages), 0)
    assert skipped == 50
    (warning,) = _warnings(pages)
    unit = "element" if array else "line"
    assert f"holds 50 traces more than once (50 repeated {unit}s" in warning
    assert f"trace tr_000 on {unit}s 1, 201 (kept {unit} 201)" in warning
    assert f"trace tr_004 on {unit}s 5, 205 (kept {unit} 205)" in warning
    assert "tr_005" not in warning
    assert warning.endswith("and 45 more")


@pytest.mark.anyio
async def test_the_most_complete_copy_is_kept(tmp_path: Path) -> None:
    """Most spans wins over position; then most evaluations; then the longest input/output;
    then the last line. Copies far apart and in different threads' units meet in one unit."""
    span = _trace("x", 0)["spans"][0]
    evaluation = {"evaluation_id": "ev1", "evaluator_id": "e", "name": "ok", "status": "processed"}
    more_spans = _trace("spans", 0, "conv_a", spans=[span, {**span, "span_id": "s2"}])
    more_evals = _trace("evals", 1, "conv_a", evaluations=[{**evaluation, "passed": True}])
    longer = _trace("longer", 2, "conv_a", output={"value": "a much longer answer"})
    filler = [_trace(f"f{i}", 10 + i, f"conv_{i}") for i in range(30)]
    lines = [
        more_spans,
        more_evals,
        _trace("longer", 2, "conv_a"),
        _trace("last", 3, "conv_a", output={"value": "first"}),
        *filler,
        _trace("spans", 0, "conv_b"),  # fewer spans, in another thread: left out
        _trace("evals", 1),  # no evaluations, no thread
        longer,
        _trace("last", 3, "conv_a", output={"value": "again"}),  # same size: the last wins
    ]
    pages = await _read(_jsonl(tmp_path / "in.jsonl", lines))
    units = _units(pages)
    (conv_a,) = [u for u in units if u.id == "conv_a"]
    assert isinstance(conv_a, Thread)
    by_id = {t.id: t for t in conv_a.traces}
    assert sorted(by_id) == ["evals", "last", "longer", "spans"]
    assert len(by_id["spans"].spans) == 2
    assert len(by_id["evals"].scores) == 1
    assert by_id["longer"].output is not None
    assert "much longer" in str(by_id["longer"].output.value)
    assert "again" in str(by_id["last"].output.value)
    assert not any(u.id in ("conv_b", "evals") for u in units)  # the left-out copies' units
    assert _skips(pages)[REPEATED] == 4


@pytest.mark.anyio
@pytest.mark.parametrize("array", [False, True])
async def test_a_tie_on_spans_and_evaluations_is_decided_by_the_text_read_again(
    tmp_path: Path, array: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pass one counts a copy's input/output only when a repeat ties on spans and evaluations:
    the earlier copy's text is then read again from the file (a JSONL line or an array
    element), and the longer copy wins wherever it is; a file without repeats counts none."""
    counted: list[str] = []
    text = file_module._text

    def counting(record: Json) -> int:
        counted.append(record["trace_id"])
        return text(record)

    monkeypatch.setattr(file_module, "_text", counting)
    filler = [_trace(f"f{i}", 10 + i, f"conv_{i % 3}") for i in range(20)]
    lines = [
        _trace("t", 0, "conv_a", output={"value": "the longer, whole answer"}),
        *filler,
        _trace("t", 0, "conv_a", output={"value": "cut"}),
        _trace("u", 1, output={"value": "short"}),
        _trace("u", 1, output={"value": "longer again"}),
    ]
    write = _array if array else _jsonl
    pages = await _read(write(tmp_path / "in.json", lines))
    by_id = {t.id: t for u in _units(pages) for t in (u.traces if isinstance(u, Thread) else [u])}
    assert "whole answer" in str(by_id["t"].output)
    assert "longer again" in str(by_id["u"].output)
    assert sorted(counted) == ["t", "t", "u", "u"]
    counted.clear()
    await _read(write(tmp_path / "once.json", filler))
    assert counted == []


@pytest.mark.anyio
async def test_repeats_are_skipped_once_not_again_on_resume(tmp_path: Path) -> None:
    """Like index rejects, the repeats are counted on the first page of a read from the start."""
    path, _ = _exporter_repeats(tmp_path / "in.jsonl")
    first = await _read(path, page_size=10)
    cursor = first[2].cursor
    assert cursor is not None
    resumed = await _read(path, resume=cursor, page_size=10)
    assert _skips(resumed) == {}
    assert sum(page.skipped.traces for page in resumed) == 0


# --- warnings: no spans, 64 KB previews


@pytest.mark.anyio
async def test_a_file_without_spans_is_warned_about_once(tmp_path: Path) -> None:
    """Exported without `--include-spans`: one loud warning naming the option."""
    path = _jsonl(tmp_path / "in.jsonl", [_trace(f"t{i}", i, spans=[]) for i in range(250)])
    pages = await _read(path, page_size=10)
    (warning,) = _warnings(pages)
    assert "holds no spans at all" in warning
    assert "`--include-spans`" in warning
    assert len(_units(pages)) == 250
    with_one_span = [_trace("a", 0), _trace("b", 1, spans=[])]
    assert _warnings(await _read(_jsonl(tmp_path / "some.jsonl", with_one_span))) == []


def _cut(text: str, limit: int) -> str:
    """LangWatch's `utf8Preview`: at most `limit` bytes, backed off to a code point, then …"""
    raw = text.encode()
    end = limit
    while end > 0 and raw[end] & 0xC0 == 0x80:
        end -= 1
    return raw[:end].decode() + "…"


@pytest.mark.anyio
async def test_traces_cut_to_the_64_kb_preview_are_named_with_the_way_to_get_them_whole(
    tmp_path: Path,
) -> None:
    """A value cut at 64 KiB (or a long string inside a structured preview cut at 8 KiB), in the
    trace's or a span's input/output, is counted and named in a warning that says how to get
    the whole value; a longer, whole value is not."""
    big = "é" * 40_000  # 80,000 bytes: the cut backs off to a code point boundary
    span = _trace("x", 0)["spans"][0]
    chat = {"type": "chat_messages", "value": [{"role": "user", "content": _cut("y" * 9000, 8192)}]}
    lines = [
        _trace("cut_input", 0, input={"value": _cut(big, 65_536)}),
        _trace(
            "cut_span", 1, spans=[{**span, "output": {"type": "text", "value": _cut(big, 65_536)}}]
        ),
        _trace("cut_chat", 2, spans=[{**span, "input": chat}]),
        _trace("plain_cut", 3, output={"value": "z" * 65_536}),  # older servers: no …
        _trace("whole", 4, input={"value": big}),
        _trace("short", 5, input={"value": "short…"}),
        *[_trace(f"more_{i}", 10 + i, input={"value": _cut(big, 65_536)}) for i in range(3)],
    ]
    pages = await _read(_jsonl(tmp_path / "in.jsonl", lines))
    assert len(_units(pages)) == len(lines)
    (warning,) = _warnings(pages)
    assert warning.startswith(f"7 traces in langwatch-file:{tmp_path / 'in.jsonl'} hold")
    assert "64 KB search preview" in warning
    for name in ("cut_input", "cut_span", "cut_chat", "plain_cut", "more_0"):
        assert f"trace {name}" in warning
    assert "and 2 more" in warning
    assert "trace whole" not in warning
    assert "trace short" not in warning
    assert "--from langwatch" in warning
    assert "GET /api/traces/{id}" in warning


@pytest.mark.anyio
async def test_a_preview_is_found_beside_an_integer_json_cannot_hold_in_64_bits(
    tmp_path: Path,
) -> None:
    """Pass one skips a structure whose JSON text is too short to hold a preview; a structure
    `orjson` cannot write (an integer beyond 64 bits) is walked all the same."""
    span = _trace("x", 0)["spans"][0]
    cut = _cut("y" * 9000, 8192)
    lines = [
        _trace("big_int", 0, spans=[{**span, "input": {"n": 2**70, "value": [{"t": cut}]}}]),
        _trace("small", 1, spans=[{**span, "input": {"n": 2**70, "value": "short…"}}]),
    ]
    pages = await _read(_jsonl(tmp_path / "in.jsonl", lines))
    (warning,) = _warnings(pages)
    assert warning.startswith("1 traces in ")
    assert "trace big_int" in warning


# --- checkpoints


class Killed(BaseException):
    """Stands for a kill: nothing in the engine may swallow it."""


class _FailingSink:
    """Writes to a LangWatch JSONL file and dies after `pages` batches (a crash mid-run).

    It raises `Killed`, a BaseException: the engine treats an ordinary exception in a write
    as the batch's records' problem and isolates them, but a kill stops the run."""

    def __init__(self, path: Path, pages: int) -> None:
        self.inner, self.pages, self.label = LangWatchFileSink(path), pages, "failing"

    async def write(self, units: list[Unit], *, dry_run: bool = False) -> WriteResult:
        if self.pages == 0:
            raise Killed("killed")
        self.pages -= 1
        return await self.inner.write(units, dry_run=dry_run)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("array", [False, True])
async def test_a_reordered_input_restarts_an_interrupted_read_and_loses_nothing(
    tmp_path: Path, array: bool
) -> None:
    """The cursor carries a fingerprint of the content: a run interrupted after some pages,
    then resumed on a re-export of the same traces in another order, reads from the start, and
    the output ends with every trace exactly once."""
    traces = [_trace(f"t{i:02}", i, f"conv_{i % 3}" if i % 2 else None) for i in range(30)]
    write = _array if array else _jsonl
    path = write(tmp_path / "in.json", traces)
    out, state = tmp_path / "out.jsonl", StateDir(tmp_path / "state", {"job": "fingerprint"})
    source = LangWatchFileSource(path, project="support-bot", page_size=4)
    with pytest.raises(Killed, match="killed"):
        await run(source, _FailingSink(out, pages=2), state=state)
    assert 0 < len(_lines(out)) < len(traces)
    write(path, list(reversed(traces)))
    source = LangWatchFileSource(path, project="support-bot", page_size=4)
    report = await run(source, LangWatchFileSink(out), state=state)
    assert any("input changed" in w for w in report.result.warnings)
    assert sorted(line["trace_id"] for line in _lines(out)) == sorted(t["trace_id"] for t in traces)


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
async def test_trace_ids_sharing_a_digest_cost_no_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sink remembers each trace id as a 64-bit digest (`DigestMap`). Were every id's
    digest the same, each trace would still be written once, with its last content: a line
    is written whenever its own digest differs, and the file is compacted at close."""
    monkeypatch.setattr(DigestMap, "_key", staticmethod(lambda text: 7))
    path = tmp_path / "traces.jsonl"
    sink = LangWatchFileSink(path)
    await sink.write(_units_of(_trace("a", 0), _trace("b", 1)))
    await sink.write(_units_of(_trace("c", 2), _trace("a", 0)))
    await sink.write(_units_of(_trace("b", 1, output={"value": "changed"})))
    await sink.aclose()
    by_id = {line["trace_id"]: line for line in _lines(path)}
    assert len(_lines(path)) == 3
    assert sorted(by_id) == ["a", "b", "c"]
    assert by_id["b"]["output"]["value"] == "changed"


@pytest.mark.anyio
async def test_compaction_parses_each_line_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing after a replaced trace compacts in two passes over the file; only the first
    parses (each line once), the second copies what it decided to keep."""
    path = _jsonl(tmp_path / "traces.jsonl", [_trace("a", 0), _trace("b", 1)])
    sink = LangWatchFileSink(path)
    await sink.write(_units_of(_trace("a", 0, output={"value": "changed"})))
    parsed: list[int] = []
    key = file_sink_module._key

    def counted(raw: bytes, number: int) -> str:
        parsed.append(number)
        return key(raw, number)

    monkeypatch.setattr(file_sink_module, "_key", counted)
    await sink.aclose()
    assert sorted(parsed) == [1, 2, 3]
    assert [(line["trace_id"], line["output"]["value"]) for line in _lines(path)] == [
        ("b", "answer b"),
        ("a", "changed"),
    ]


@pytest.mark.anyio
async def test_appended_batches_are_on_disk_before_close(tmp_path: Path) -> None:
    """`write` returns only once the batch is in the file (the engine acks on return)."""
    path = tmp_path / "traces.jsonl"
    sink = LangWatchFileSink(path)
    await sink.write(_units_of(_trace("a", 0)))
    assert [line["trace_id"] for line in _lines(path)] == ["a"]
    await sink.aclose()


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
async def test_dry_run_plans_a_trace_whose_record_has_no_evaluations_or_spans(
    tmp_path: Path,
) -> None:
    """A trace read without an `evaluations` (or `spans`) key is written back without it; the
    dry run plans it as the run writes it (it once failed on the missing key)."""
    bare = _trace("bare", 0)
    del bare["evaluations"], bare["spans"]
    sink = LangWatchFileSink(tmp_path / "traces.jsonl")
    result = await sink.write(_units_of(bare, _trace("full", 1)), dry_run=True)
    await sink.aclose()
    assert result.rejected == []
    assert result.plan == [
        "trace bare: 0 spans, 0 evaluations",
        "trace full: 1 spans, 0 evaluations",
    ]


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


# --- sink: repair only what tracebridge wrote

_CRASH = """
import json, os, sys
from pathlib import Path
import anyio
from tracebridge import LangWatchFileSink
from tracebridge._langwatch.convert import trace_from_wire

async def main() -> None:
    path, torn = Path(sys.argv[1]), sys.argv[3]
    sink = LangWatchFileSink(path)
    for raw in json.loads(sys.argv[2]):
        await sink.write([trace_from_wire(raw, project="support-bot")[0]])
    if torn:
        with path.open("ab") as handle:  # a batch that was being appended when the run died
            handle.write(torn.encode())
    os._exit(0)  # killed: no aclose, no compaction

anyio.run(main)
"""


def _crash_after(path: Path, raws: list[Json], torn: str = "") -> None:
    """A tracebridge process that writes `raws` batch by batch, then dies mid-run."""
    args = [sys.executable, "-c", _CRASH, str(path), json.dumps(raws), torn]
    subprocess.run(args, check=True, timeout=60)


@pytest.mark.anyio
async def test_a_user_s_valid_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    """A file whose last line lacks its newline is not a torn write: the line is kept and the
    next trace starts on a line of its own."""
    path = tmp_path / "traces.jsonl"
    path.write_text(json.dumps(_trace("a", 0)) + "\n" + json.dumps(_trace("mine", 1)))
    await _write(path, _units_of(_trace("b", 2)))
    assert [line["trace_id"] for line in _lines(path)] == ["a", "mine", "b"]


@pytest.mark.anyio
async def test_a_user_s_broken_last_line_is_kept_and_named(tmp_path: Path) -> None:
    """An incomplete last line tracebridge did not write is never deleted: kept as it is, a
    warning says so, and new traces start on the next line."""
    path = tmp_path / "traces.jsonl"
    user = json.dumps(_trace("a", 0)) + "\n" + '{"trace_id": "half'
    path.write_text(user)
    sink = LangWatchFileSink(path)
    result = await sink.write(_units_of(_trace("b", 1)))
    await sink.aclose()
    text = path.read_text()
    assert text.startswith(user + "\n")
    assert json.loads(text.splitlines()[-1])["trace_id"] == "b"
    (warning,) = result.warnings
    assert "last line is incomplete" in warning
    assert "kept" in warning


@pytest.mark.anyio
async def test_an_interrupted_write_of_ours_is_cut_at_the_next_run(tmp_path: Path) -> None:
    """A run killed while appending leaves a partial line after its last acknowledged write;
    the next run knows (from the sidecar) that it was ours and removes it."""
    path = tmp_path / "traces.jsonl"
    _crash_after(path, [_trace("a", 0)], torn='{"trace_id":"b","metadata":{"thr')
    assert (tmp_path / ".traces.jsonl.tracebridge.json").is_file()
    sink = LangWatchFileSink(path)
    result = await sink.write(_units_of(_trace("b", 1)))
    await sink.aclose()
    assert [line["trace_id"] for line in _lines(path)] == ["a", "b"]  # every line valid
    assert any("removed an incomplete last line" in w for w in result.warnings)
    assert not (tmp_path / ".traces.jsonl.tracebridge.json").exists()  # a clean close


@pytest.mark.anyio
async def test_replaced_traces_of_a_killed_run_are_compacted_at_the_next_run(
    tmp_path: Path,
) -> None:
    """A run killed between appending a changed trace and compacting: the next run keeps the
    last version of each trace it wrote."""
    path = tmp_path / "traces.jsonl"
    old, new = _trace("a", 0, output={"value": "old"}), _trace("a", 0, output={"value": "new"})
    _crash_after(path, [old, _trace("b", 1), new])
    assert [line["trace_id"] for line in _lines(path)] == ["a", "b", "a"]
    await _write(path, [])
    lines = _lines(path)
    assert sorted(line["trace_id"] for line in lines) == ["a", "b"]
    assert {line["trace_id"]: line for line in lines}["a"]["output"]["value"] == "new"


@pytest.mark.anyio
async def test_a_user_s_repeated_lines_stay_unless_tracebridge_writes_that_trace(
    tmp_path: Path,
) -> None:
    """Lines tracebridge did not write are not compacted away, not even when it compacts the
    file for a trace it replaced; a trace it writes replaces every earlier line of its id."""
    path = _jsonl(
        tmp_path / "traces.jsonl",
        [
            _trace("a", 0, output={"value": "v1"}),
            _trace("a", 0, output={"value": "v2"}),
            _trace("b", 1),
        ],
    )
    await _write(path, _units_of(_trace("c", 2)))
    assert [line["trace_id"] for line in _lines(path)] == ["a", "a", "b", "c"]
    await _write(path, _units_of(_trace("b", 1, output={"value": "changed"})))  # compacts
    assert [line["trace_id"] for line in _lines(path)] == ["a", "a", "c", "b"]
    await _write(path, _units_of(_trace("a", 0, output={"value": "v3"})))
    assert [(line["trace_id"], line["output"]["value"]) for line in _lines(path)] == [
        ("c", "answer c"),
        ("b", "changed"),
        ("a", "v3"),
    ]


# --- sink: one run per output file


@pytest.mark.anyio
async def test_a_second_sink_on_the_same_file_is_refused_with_exit_2(tmp_path: Path) -> None:
    """Two runs writing one output (with different state dirs) would interleave their lines:
    the second fails with LockedError naming the file and the holder, before writing."""
    path = tmp_path / "traces.jsonl"
    first = LangWatchFileSink(path)
    await first.write(_units_of(_trace("a", 0)))
    second = LangWatchFileSink(path)
    with pytest.raises(LockedError) as caught:
        await second.write(_units_of(_trace("b", 1)))
    assert caught.value.exit_code == 2
    assert str(path) in str(caught.value)
    assert f"pid {os.getpid()}" in str(caught.value)
    await second.aclose()
    await first.aclose()
    assert [line["trace_id"] for line in _lines(path)] == ["a"]
    await _write(path, _units_of(_trace("b", 1)))  # released at close
    assert [line["trace_id"] for line in _lines(path)] == ["a", "b"]


# --- sink: what JSON can carry


@pytest.mark.anyio
async def test_a_lone_surrogate_is_written_escaped_and_refused_by_name_on_read(
    tmp_path: Path,
) -> None:
    """`"\\ud800"` cannot be UTF-8. The reader refuses such a record by name (`_decoding`: no
    platform stores half a character), but a library may hand the sink one: that line is
    written with escapes (as JSON.stringify does), other lines keep their UTF-8 text, and
    reading it back is that trace's dead letter, naming the field, not a crash."""
    odd = _canonical(_trace("odd", 0))[0]
    odd = odd.model_copy(update={"input": IOValue(type="text", value="broken \ud800 pair")})
    path = tmp_path / "traces.jsonl"
    await _write(path, [odd, *_canonical(_trace("b", 1, input={"value": "café"}))])
    raw = path.read_bytes()
    assert b"\\ud800" in raw
    assert "café".encode() in raw
    pages = await _read(path)
    assert [t.id for t in _trace_ids_to_traces(_units(pages))] == ["b"]
    (refused,) = [r for p in pages for r in p.rejected]
    assert "lone surrogate" in refused.reason
    assert "input" in refused.reason


def _trace_ids_to_traces(units: list[Unit]) -> list[Trace]:
    return [t for u in units for t in (u.traces if isinstance(u, Thread) else [u])]


@pytest.mark.anyio
async def test_a_trace_too_deep_to_write_is_dead_lettered_and_the_rest_written(
    tmp_path: Path,
) -> None:
    """A value nested deeper than `json.dumps` goes is that trace's dead letter, with its spans
    counted; its thread's other traces and the other units are written."""
    deep: Any = "leaf"
    for _ in range(5000):
        deep = [deep]
    deep_trace = _canonical(_trace("deep", 1, "conv"))[0]
    deep_trace = deep_trace.model_copy(update={"metadata": {"nested": deep}})
    units: list[Unit] = [
        Thread(id="conv", traces=[*_canonical(_trace("t0", 0, "conv")), deep_trace]),
        *_canonical(_trace("solo", 2)),
    ]
    path = tmp_path / "traces.jsonl"
    sink = LangWatchFileSink(path)
    result = await sink.write(units)
    await sink.aclose()
    assert sorted(line["trace_id"] for line in _lines(path)) == ["solo", "t0"]
    (rejected,) = result.rejected
    assert rejected.where == "trace deep"
    assert "nested too deeply" in rejected.reason
    assert rejected.contains is not None
    assert (rejected.contains.traces, rejected.contains.spans) == (1, 1)
    assert (result.written.threads, result.written.traces, result.written.spans) == (1, 2, 2)


# --- sink: file hygiene


@pytest.mark.anyio
async def test_output_files_keep_the_user_s_umask_through_compaction(tmp_path: Path) -> None:
    """The file is created with the umask's mode, and a compaction (which goes through a
    mkstemp temp file, 0600) keeps it."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "traces.jsonl"
        await _write(path, _units_of(_trace("a", 0)))
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        await _write(path, _units_of(_trace("a", 0, output={"value": "changed"})))  # compacts
        assert len(_lines(path)) == 1
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    finally:
        os.umask(old)


@pytest.mark.anyio
async def test_no_temp_file_outlives_a_run(tmp_path: Path) -> None:
    """Temp files a killed compaction left next to the output are removed at the next start;
    files that merely look alike are not touched; after a run only the lock file is left."""
    path = tmp_path / "traces.jsonl"
    stale = [tmp_path / ".traces.jsonl.k3j_x9q2.tmp", tmp_path / ".traces.jsonl.abcdefgh.tmp"]
    keep = [tmp_path / ".traces.jsonl.my-notes.tmp", tmp_path / ".other.jsonl.abcdefgh.tmp"]
    for file in stale + keep:
        file.write_text("partial")
    await _write(path, _units_of(_trace("a", 0)))
    await _write(path, _units_of(_trace("a", 0, output={"value": "changed"})))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [path.name, ".traces.jsonl.tracebridge.lock", *(k.name for k in keep)]
    )


def test_an_output_path_that_is_a_directory_is_a_usage_error(tmp_path: Path) -> None:
    """Named at once, not a traceback from open()."""
    with pytest.raises(UsageError, match="is a directory") as caught:
        LangWatchFileSink(tmp_path)
    assert str(tmp_path) in str(caught.value)


@pytest.mark.anyio
async def test_an_output_that_cannot_be_written_is_a_usage_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parent that is a file, or a permission refused, is a UsageError naming the path."""
    (tmp_path / "file").write_text("")
    sink = LangWatchFileSink(tmp_path / "file" / "traces.jsonl")
    with pytest.raises(UsageError, match="cannot write there") as caught:
        await sink.write(_units_of(_trace("a", 0)))
    assert "file/traces.jsonl" in str(caught.value)
    await sink.aclose()

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    path = tmp_path / "traces.jsonl"
    sink = LangWatchFileSink(path)
    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(UsageError, match="Permission denied") as caught:
        await sink.write(_units_of(_trace("a", 0)))
    assert str(path) in str(caught.value)
    await sink.aclose()


@pytest.mark.anyio
async def test_an_append_that_fails_half_way_takes_back_its_bytes(tmp_path: Path) -> None:
    """A batch the file takes only part of (a full disk; here a file size limit) is taken
    back to the acknowledged length, and closing the sink afterwards writes none of it: the
    batch was never acknowledged, and a line left past the sidecar's `acked` that the sidecar
    no longer covers (it is removed at close) would stay as the user's, a second copy of the
    trace once the rerun writes it."""
    resource = pytest.importorskip("resource")
    path = tmp_path / "traces.jsonl"
    sink = LangWatchFileSink(path)
    await sink.write(_units_of(_trace("a", 0)))
    acknowledged = path.read_bytes()
    batch = [_trace(f"b{i}", i, output={"value": "x" * 3000}) for i in range(20)]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    signal_was = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # (as Python sets it anyway)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(acknowledged) + 20_000, hard))
    try:
        with pytest.raises(UsageError, match="cannot write to it"):
            await sink.write(_units_of(*batch))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, signal_was)
    assert path.read_bytes() == acknowledged
    await sink.aclose()
    assert path.read_bytes() == acknowledged


@pytest.mark.anyio
async def test_a_killed_run_s_unacknowledged_lines_are_made_durable_before_a_rerun_counts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed after appending a batch, before its fsync (the sidecar still holds the
    length before it), leaves whole lines that may be in the page cache only. The rerun finds
    them holding its traces and appends nothing; so it fsyncs the file before acknowledging
    them, else a power cut after the checkpoint moved would lose them."""
    path = tmp_path / "traces.jsonl"
    _crash_after(path, [_trace("a", 0), _trace("b", 1)])
    sidecar = tmp_path / ".traces.jsonl.tracebridge.json"
    state = json.loads(sidecar.read_text())
    first_line = len(path.read_bytes().splitlines(keepends=True)[0])
    sidecar.write_text(json.dumps({**state, "acked": first_line}))  # killed before b's fsync
    synced = recorded_fsyncs(monkeypatch)
    sink = LangWatchFileSink(path)
    await sink.write(_units_of(_trace("b", 1)))
    assert path.stat().st_ino in synced
    await sink.aclose()
    assert [line["trace_id"] for line in _lines(path)] == ["a", "b"]
