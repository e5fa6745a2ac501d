"""`opik-dir:PATH`: the `opik export` folder layout, as a sink (layout, spec-valid records,
idempotent reruns) and as a source (both layouts, project choice, dead letters, thread data)."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.factories import langwatch_project
from tests.opik_spec import require_spec, validate_schema
from tests.recorders import recorded_fsyncs
from tracebridge import (
    LangWatchFileSink,
    LangWatchFileSource,
    LockedError,
    OpikDirSink,
    OpikDirSource,
    Page,
    Rejected,
    Report,
    Score,
    Thread,
    Trace,
    Unit,
    UsageError,
    Window,
    run,
)
from tracebridge import _state as state_module
from tracebridge._langwatch.convert import trace_from_wire
from tracebridge._locks import PathLock
from tracebridge._mapping import default_mappings
from tracebridge._opik import folder as folder_module
from tracebridge._opik.convert import trace_from_opik
from tracebridge._opik.folder import LOCK_NAME
from tracebridge._stash import same
from tracebridge.cli import main

Json = dict[str, Any]
M = default_mappings()
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langwatch-sample.jsonl"
START_MS = 1_773_000_000_000  # 2026-03-08


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _sample_lines() -> list[Json]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line]


def _jsonl(path: Path, records: Iterable[Json]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


async def _to_opik_dir(source_file: Path, out: Path, project: str = "support-bot") -> Report:
    """Migrate a LangWatch JSONL file into an opik-dir folder with the engine."""
    sink = OpikDirSink(out, workspace="acme", project=project, mappings=M)
    return await run(LangWatchFileSource(source_file), sink)


async def _read(source: OpikDirSource, window: Window | None = None) -> list[Page]:
    try:
        return [page async for page in source.pages(window or Window(), None)]
    finally:
        await source.aclose()


def _units(pages: list[Page]) -> list[Unit]:
    return [unit for page in pages for unit in page.units]


def _rejected(pages: list[Page]) -> list[Rejected]:
    return [item for page in pages for item in page.rejected]


def _traces(units: list[Unit]) -> list[Trace]:
    return [t for u in units for t in (u.traces if isinstance(u, Thread) else [u])]


def _project_folder(out: Path, workspace: str = "acme") -> Path:
    (folder,) = (out / workspace / "projects").iterdir()
    return folder


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every data file's content and mtime (the sink's lock file is not data)."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(LOCK_NAME)
    }


# ------------------------------------------------------------------------------------------ sink


@pytest.mark.anyio
async def test_sink_writes_the_opik_export_layout(tmp_path: Path) -> None:
    """PATH/<workspace>/projects/<id>/project.json and one trace_<id>.json per trace holding
    trace, spans, attachments, downloaded_at and project_name."""
    report = await _to_opik_dir(SAMPLE, tmp_path / "out")
    folder = _project_folder(tmp_path / "out")
    project = json.loads((folder / "project.json").read_text())
    assert project == {"id": folder.name, "name": "support-bot"}

    trace_files = sorted(folder.glob("trace_*.json"))
    assert len(trace_files) == len(_sample_lines()) == report.written.traces
    for path in trace_files:
        body = json.loads(path.read_text(encoding="utf-8"))
        assert set(body) == {"trace", "spans", "attachments", "downloaded_at", "project_name"}
        assert path.name == f"trace_{body['trace']['id']}.json"
        assert body["project_name"] == "support-bot"
        assert body["attachments"] == []
        assert all(span["trace_id"] == body["trace"]["id"] for span in body["spans"])
    spans = sum(len(json.loads(p.read_text())["spans"]) for p in trace_files)
    assert spans == report.written.spans
    assert report.written.threads == len(
        {line["metadata"].get("thread_id") for line in _sample_lines()} - {None}
    )


@pytest.mark.anyio
async def test_sink_reuses_an_existing_project_folder(tmp_path: Path) -> None:
    """A project already in the folder (by name, any case) is written into, not duplicated."""
    out = tmp_path / "out"
    existing = out / "acme" / "projects" / "0190ca64-0000-7000-8000-000000000001"
    existing.mkdir(parents=True)
    (existing / "project.json").write_text(json.dumps({"id": existing.name, "name": "Support-Bot"}))
    await _to_opik_dir(SAMPLE, out, project="support-bot")
    assert _project_folder(out) == existing
    assert len(list(existing.glob("trace_*.json"))) == len(_sample_lines())


async def _assert_every_record_is_spec_valid(source_file: Path, out: Path) -> int:
    require_spec()  # skips, saying why, when the spec is absent
    report = await _to_opik_dir(source_file, out)
    assert not report.lossy
    checked = 0
    for path in _project_folder(out).glob("trace_*.json"):
        body = json.loads(path.read_text(encoding="utf-8"))
        validate_schema("Trace_Public", body["trace"], strict=True)
        for span in body["spans"]:
            # The file is the export shape plus the span cost where `opik import` reads it.
            if "total_cost" in span:
                assert same(span.pop("total_cost"), span["total_estimated_cost"])
            validate_schema("Span_Public", span, strict=True)
            checked += 1
    assert checked == report.written.spans
    return checked


@pytest.mark.anyio
async def test_every_record_of_the_sample_is_spec_valid(tmp_path: Path) -> None:
    """Every trace and span migrated from the sample fits Trace_Public / Span_Public strictly."""
    assert await _assert_every_record_is_spec_valid(SAMPLE, tmp_path / "out") > 0


@pytest.mark.anyio
async def test_every_record_of_a_generated_project_is_spec_valid(tmp_path: Path) -> None:
    """120 realistic traces over 20 threads (errors, orphans, every evaluation status): every
    written trace and span fits the spec strictly."""
    source = _jsonl(tmp_path / "in.jsonl", langwatch_project(120, 20, seed=7, start_ms=START_MS))
    assert await _assert_every_record_is_spec_valid(source, tmp_path / "out") > 120


@pytest.mark.anyio
async def test_rerun_leaves_every_file_unchanged(tmp_path: Path) -> None:
    """Idempotence: a second run of the same data rewrites nothing (contents and mtimes)."""
    source = _jsonl(tmp_path / "in.jsonl", langwatch_project(30, 6, seed=3, start_ms=START_MS))
    out = tmp_path / "out"
    await _to_opik_dir(source, out)
    before = _snapshot(out)
    await _to_opik_dir(source, out)
    assert _snapshot(out) == before


@pytest.mark.anyio
async def test_a_changed_trace_is_rewritten_in_place(tmp_path: Path) -> None:
    """A changed source trace replaces its file (same id), nothing else changes."""
    lines = _sample_lines()[:3]
    out = tmp_path / "out"
    await _to_opik_dir(_jsonl(tmp_path / "a.jsonl", lines), out)
    before = _snapshot(out)
    lines[1]["output"] = {"value": "A corrected answer."}
    await _to_opik_dir(_jsonl(tmp_path / "b.jsonl", lines), out)
    after = _snapshot(out)
    assert after.keys() == before.keys()
    changed = [name for name in after if after[name] != before[name]]
    assert len(changed) == 1
    body = json.loads((out / changed[0]).read_text())
    assert body["trace"]["output"] == {"text": "A corrected answer."}


@pytest.mark.anyio
async def test_the_folders_a_run_makes_are_made_durable_in_their_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each folder the sink creates (the output, the workspace, `projects`, the project) is
    synced into its parent, so a crash cannot take back the folder its synced files are in."""
    synced: list[Path] = []
    real = state_module.fsync_folder

    def recording(folder: Path) -> None:
        synced.append(Path(folder))
        real(folder)

    monkeypatch.setattr(state_module, "fsync_folder", recording)
    sink = _sink(tmp_path / "out" / "deeper")
    await _write_sample(sink, 1)
    await sink.aclose()
    (trace_file,) = _trace_files(tmp_path / "out" / "deeper")
    made = [p for p in trace_file.parents if tmp_path in p.parents]
    assert {p.parent for p in made} <= set(synced)


@pytest.mark.anyio
async def test_a_trace_twice_in_one_page_leaves_the_later_copy(tmp_path: Path) -> None:
    """A page holding one trace twice (a library pipeline's) leaves the later copy in its
    file, also when that copy is what the file held before the page (the earlier, changed
    copy was once what stayed)."""
    line = _sample_lines()[0]
    trace, _ = trace_from_wire(line)
    changed, _ = trace_from_wire({**line, "output": {"value": "A corrected answer."}})
    sink = _sink(tmp_path / "out")
    await sink.write([trace])
    await sink.write([changed, trace])
    await sink.write([trace, changed])
    await sink.aclose()
    (path,) = _trace_files(tmp_path / "out")
    assert json.loads(path.read_text())["trace"]["output"] == {"text": "A corrected answer."}
    sink = _sink(tmp_path / "out")
    await sink.write([changed, trace])
    await sink.aclose()
    assert json.loads(path.read_text())["trace"]["output"] != {"text": "A corrected answer."}


@pytest.mark.anyio
async def test_a_fresh_folder_is_written_without_looking_for_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sink lists its folder once, at the first write: a trace file it knows is not there
    is neither looked for nor read back (only project.json is, once)."""
    looked: list[str] = []
    exists = Path.exists

    def watched(path: Path, **kwargs: Any) -> bool:
        looked.append(path.name)
        return exists(path, **kwargs)

    monkeypatch.setattr(Path, "exists", watched)
    monkeypatch.setattr(folder_module, "_read", _never_read)
    source = _jsonl(tmp_path / "in.jsonl", langwatch_project(30, 6, seed=3, start_ms=START_MS))
    report = await _to_opik_dir(source, tmp_path / "out")
    assert report.written.traces == 30
    assert not [name for name in looked if name.startswith(("trace_", "thread_"))]


def _never_read(path: object) -> None:
    raise AssertionError(f"read back {path}")


@pytest.mark.anyio
async def test_files_present_at_the_start_or_written_in_the_run_are_compared_as_before(
    tmp_path: Path,
) -> None:
    """What the folder held at the start, and what this run wrote, is read and compared before
    each write: the same trace (whatever its `downloaded_at`) is left alone, a file that
    differs is replaced by the trace's text, also when it changed during the run."""
    lines = _sample_lines()[:2]
    source, out = _jsonl(tmp_path / "in.jsonl", lines), tmp_path / "out"
    await _to_opik_dir(source, out)
    first, second = sorted(out.rglob("trace_*.json"))
    same_trace = json.loads(first.read_text())
    same_trace["downloaded_at"] = "2020-01-01T00:00:00.000+00:00"
    first.write_text(json.dumps(same_trace) + "\n")
    kept = first.read_bytes(), first.stat().st_mtime_ns
    theirs = json.loads(second.read_text())
    second.write_text(json.dumps({**theirs, "trace": {**theirs["trace"], "name": "theirs"}}))
    await _to_opik_dir(source, out)
    assert (first.read_bytes(), first.stat().st_mtime_ns) == kept
    assert json.loads(second.read_text())["trace"] == theirs["trace"]

    trace = trace_from_wire(lines[0])[0]
    sink = OpikDirSink(tmp_path / "fresh", workspace="acme", project="p", mappings=M)
    try:
        await sink.write([trace])
        (written,) = (tmp_path / "fresh").rglob("trace_*.json")
        body = json.loads(written.read_text())
        written.write_text(json.dumps({**body, "trace": {**body["trace"], "name": "changed"}}))
        await sink.write([trace])  # written earlier in this run: compared, and replaced
        assert json.loads(written.read_text())["trace"] == body["trace"]
        unchanged = written.read_bytes(), written.stat().st_mtime_ns
        await sink.write([trace])
        assert (written.read_bytes(), written.stat().st_mtime_ns) == unchanged
    finally:
        await sink.aclose()


@pytest.mark.anyio
async def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    """A dry run plans the traces and creates no folder, not even for thread data."""
    sink = OpikDirSink(tmp_path / "out", workspace="acme", project="p", mappings=M)
    traces = [trace_from_wire(line)[0] for line in _sample_lines()[:3]]
    thread = Thread(id="conv", traces=traces[1:], scores=[Score(name="csat", value=1)])
    result = await sink.write([traces[0], thread], dry_run=True)
    await sink.aclose()
    assert not (tmp_path / "out").exists()
    assert len(result.plan) == 3
    assert result.written.traces == 3


# ---------------------------------------------------------------------------------------- source


def _opik_export(root: Path, workspace: str, folder_name: str, name: str | None) -> Path:
    """A project folder (current layout with project.json when `name` is given) with one trace."""
    folder = root / workspace / "projects" / folder_name
    folder.mkdir(parents=True)
    if name is not None:
        (folder / "project.json").write_text(json.dumps({"id": folder_name, "name": name}))
    trace_id = "0190ca64-4354-7e14-b664-ec7094b9c424"
    body = {
        "trace": {
            "id": trace_id,
            "name": "chat_turn",
            "start_time": "2024-07-19T09:48:06.868Z",
            "input": {"messages": [{"role": "user", "content": "hi"}]},
            "output": {"output": "Hey there!"},
            "feedback_scores": [{"name": "hallucination", "value": 0.1, "source": "sdk"}],
        },
        "spans": [
            {
                "id": "0190ca64-436f-76ca-b1c6-0a65734e18ef",
                "trace_id": trace_id,
                "type": "llm",
                "start_time": "2024-07-19T09:48:06.895Z",
                "model": "gpt-5",
                "provider": "openai",
            }
        ],
        "attachments": [],
        "downloaded_at": "2026-03-09T10:00:00.000+00:00",
        "project_name": name or folder_name,
    }
    (folder / f"trace_{trace_id}.json").write_text(json.dumps(body))
    return folder


@pytest.mark.anyio
async def test_source_reads_the_current_layout(tmp_path: Path) -> None:
    """A folder with project.json is found by the project name inside it."""
    _opik_export(tmp_path, "acme", "0190ca64-0000-7000-8000-000000000001", "Support Bot")
    source = OpikDirSource(tmp_path, project="Support Bot", mappings=M)
    assert source.project == "Support Bot"
    (trace,) = _units(await _read(source))
    assert isinstance(trace, Trace)
    assert trace.id == "0190ca64-4354-7e14-b664-ec7094b9c424"
    assert trace.source.platform == "opik"
    assert trace.source.project == "Support Bot"
    assert trace.spans[0].model == "openai/gpt-5"
    assert [s.name for s in trace.scores] == ["hallucination"]


@pytest.mark.anyio
async def test_source_reads_the_older_layout(tmp_path: Path) -> None:
    """Older exports name the folder after the project and have no project.json."""
    _opik_export(tmp_path, "acme", "support-bot", None)
    source = OpikDirSource(tmp_path, project="support-bot", mappings=M)
    assert len(_units(await _read(source))) == 1


def test_source_picks_the_project_case_insensitively(tmp_path: Path) -> None:
    """`--source-project support-BOT` finds "Support-Bot"; other projects are ignored."""
    wanted = _opik_export(tmp_path, "acme", "0190ca64-0000-7000-8000-000000000001", "Support-Bot")
    _opik_export(tmp_path, "acme", "0190ca64-0000-7000-8000-000000000002", "billing")
    source = OpikDirSource(tmp_path, project="support-BOT", mappings=M)
    assert source.folder == wanted
    assert source.project == "Support-Bot"


def test_source_with_one_project_needs_no_name(tmp_path: Path) -> None:
    """A single-project export is read without naming the project."""
    _opik_export(tmp_path, "acme", "0190ca64-0000-7000-8000-000000000001", "only")
    assert OpikDirSource(tmp_path, project=None, mappings=M).project == "only"


def test_ambiguous_project_is_a_usage_error_listing_projects(tmp_path: Path) -> None:
    """Several projects and no name: UsageError naming every project found."""
    _opik_export(tmp_path, "acme", "0190ca64-0000-7000-8000-000000000001", "support-bot")
    _opik_export(tmp_path, "acme", "billing", None)
    with pytest.raises(UsageError) as info:
        OpikDirSource(tmp_path, project=None, mappings=M)
    assert "support-bot" in str(info.value)
    assert "billing" in str(info.value)


def test_same_name_in_two_workspaces_is_ambiguous(tmp_path: Path) -> None:
    """Two folders answering to one name are not silently merged or picked at random..."""
    _opik_export(tmp_path, "acme", "0190ca64-0000-7000-8000-000000000001", "support-bot")
    _opik_export(tmp_path, "other", "Support-Bot", None)
    with pytest.raises(UsageError, match="support-bot"):
        OpikDirSource(tmp_path, project="support-bot", mappings=M)
    # ...unless the workspace tells them apart.
    source = OpikDirSource(tmp_path, project="support-bot", mappings=M, workspace="other")
    assert source.folder.name == "Support-Bot"


def test_unknown_project_lists_the_projects(tmp_path: Path) -> None:
    """A name that matches nothing says what there is."""
    _opik_export(tmp_path, "acme", "0190ca64-0000-7000-8000-000000000001", "support-bot")
    with pytest.raises(UsageError, match="projects found: support-bot"):
        OpikDirSource(tmp_path, project="billing", mappings=M)


def test_source_on_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    """A typo in the path is reported before anything runs."""
    with pytest.raises(UsageError, match="no such folder"):
        OpikDirSource(tmp_path / "nope", project=None, mappings=M)


@pytest.mark.anyio
async def test_bad_files_are_dead_lettered_and_the_rest_is_read(tmp_path: Path) -> None:
    """A non-JSON file, a broken trace_x.json and a trace without `trace` are dead-lettered with
    their path; the good trace still comes through; project.json and SQLite files are skipped."""
    folder = _opik_export(tmp_path, "acme", "0190ca64-0000-7000-8000-000000000001", "p")
    (folder / "notes.txt").write_text("exported on Monday, see ticket OPS-1234\n")
    (folder / "trace_x.json").write_text('{"trace": {"id": "x", ')
    (folder / "trace_y.json").write_text('{"spans": []}')
    (folder / "state.db").write_bytes(b"SQLite format 3\x00")
    pages = await _read(OpikDirSource(tmp_path, project="p", mappings=M))
    assert [t.id for t in _traces(_units(pages))] == ["0190ca64-4354-7e14-b664-ec7094b9c424"]
    rejected = {Path(r.where).name: r for r in _rejected(pages)}
    assert set(rejected) == {"notes.txt", "trace_x.json", "trace_y.json"}
    assert rejected["trace_x.json"].where == str(folder / "trace_x.json")
    assert "not JSON" in rejected["trace_x.json"].reason
    assert "not JSON" in rejected["notes.txt"].reason
    assert "trace" in rejected["trace_y.json"].reason


@pytest.mark.anyio
@pytest.mark.skipif(os.name != "posix", reason="file names as bytes")
async def test_a_file_name_that_is_not_utf8_is_read_like_any_other(tmp_path: Path) -> None:
    """A name the filesystem holds as bytes that are not UTF-8 (a copy from another system)
    is read by its content, as any other file; it once stopped the whole read (a traceback,
    exit 3) while the folder's fingerprint was taken."""
    folder = _opik_export(tmp_path, "acme", "0190ca64-0000-7000-8000-000000000001", "p")
    (good,) = folder.glob("trace_*.json")
    body = json.loads(good.read_text())
    body["trace"]["id"] = "0190ca64-4354-7e14-b664-ec7094b9c999"
    for span in body["spans"]:
        span["trace_id"] = body["trace"]["id"]
        span["id"] = span["id"][:-3] + "999"
    with open(os.fsencode(folder) + b"/trace_caf\xe9.json", "w") as handle:
        handle.write(json.dumps(body))
    pages = await _read(OpikDirSource(tmp_path, project="p", mappings=M))
    assert sorted(t.id for t in _traces(_units(pages))) == [
        "0190ca64-4354-7e14-b664-ec7094b9c424",
        "0190ca64-4354-7e14-b664-ec7094b9c999",
    ]
    assert _rejected(pages) == []


@pytest.mark.anyio
async def test_an_invalid_trace_record_is_dead_lettered_by_field(tmp_path: Path) -> None:
    """A trace file whose record does not validate names the field."""
    folder = _opik_export(tmp_path, "acme", "0190ca64-0000-7000-8000-000000000001", "p")
    (folder / "trace_z.json").write_text(json.dumps({"trace": {"id": "z"}, "spans": []}))
    pages = await _read(OpikDirSource(tmp_path, project="p", mappings=M))
    (rejected,) = _rejected(pages)
    assert "start_time" in rejected.reason
    assert len(_units(pages)) == 1


@pytest.mark.anyio
async def test_source_window_filters_by_start(tmp_path: Path) -> None:
    """The window applies to each trace's start_time."""
    from datetime import UTC, datetime

    _opik_export(tmp_path, "acme", "0190ca64-0000-7000-8000-000000000001", "p")
    after = Window(since=datetime(2024, 7, 19, 9, 48, 6, 869_000, tzinfo=UTC))
    at = Window(since=datetime(2024, 7, 19, 9, 48, 6, 868_000, tzinfo=UTC))
    assert _units(await _read(OpikDirSource(tmp_path, project="p", mappings=M), after)) == []
    assert len(_units(await _read(OpikDirSource(tmp_path, project="p", mappings=M), at))) == 1


# ------------------------------------------------------------------------------- threads, trips


@pytest.mark.anyio
async def test_thread_data_is_written_beside_the_traces_and_reads_back(tmp_path: Path) -> None:
    """Thread scores, tags and status (no place in `opik export`) go to thread_*.json and come
    back on the Thread; the traces are grouped again by thread id."""
    raws = [line for line in _sample_lines() if line["metadata"].get("thread_id")][:2]
    raws = [{**raw, "metadata": {**raw["metadata"], "thread_id": "conv_1"}} for raw in raws]
    traces = [trace_from_wire(raw)[0] for raw in raws]
    thread = Thread(
        id="conv_1",
        traces=traces,
        scores=[Score(name="user_frustration", value=0.8, label="high", reason="asked twice")],
        tags=["escalated", "vip"],
        status="inactive",
    )
    for attempt in range(2):
        sink = OpikDirSink(tmp_path, workspace="acme", project="p", mappings=M)
        result = await sink.write([thread])
        await sink.aclose()
        assert result.written.threads == 1
        if attempt == 0:
            before = _snapshot(tmp_path)
    assert _snapshot(tmp_path) == before  # the thread file is idempotent too
    folder = _project_folder(tmp_path)
    (thread_file,) = folder.glob("thread_*.json")
    assert json.loads(thread_file.read_text())["thread_id"] == "conv_1"

    (unit,) = _units(await _read(OpikDirSource(tmp_path, project="p", mappings=M)))
    assert isinstance(unit, Thread)
    assert unit.id == "conv_1"
    assert unit.scores == thread.scores
    assert unit.tags == ["escalated", "vip"]
    assert unit.status == "inactive"
    assert [t.id for t in unit.traces] == [t.id for t in sorted(traces, key=lambda t: t.started_at)]


@pytest.mark.anyio
async def test_langwatch_file_to_opik_dir_and_back_is_the_identity(tmp_path: Path) -> None:
    """LangWatch JSONL -> opik-dir -> LangWatch JSONL gives every original line back
    (DESIGN.md invariant 2: content and ids)."""
    lines = _sample_lines()
    out = tmp_path / "out"
    report = await _to_opik_dir(SAMPLE, out)
    assert not report.lossy
    back_file = tmp_path / "back.jsonl"
    source = OpikDirSource(out, project="support-bot", mappings=M)
    back_report = await run(source, LangWatchFileSink(back_file))
    assert not back_report.lossy
    back = {
        record["trace_id"]: record
        for record in map(json.loads, back_file.read_text(encoding="utf-8").splitlines())
    }
    assert back.keys() == {line["trace_id"] for line in lines}
    for line in lines:
        assert same(back[line["trace_id"]], line), line["trace_id"]


@pytest.mark.anyio
async def test_copying_an_export_folder_keeps_it_readable(tmp_path: Path) -> None:
    """What the sink wrote is a self-contained export (can be moved and read elsewhere)."""
    await _to_opik_dir(SAMPLE, tmp_path / "out")
    shutil.copytree(tmp_path / "out", tmp_path / "moved")
    pages = await _read(OpikDirSource(tmp_path / "moved", project="SUPPORT-BOT", mappings=M))
    assert _rejected(pages) == []
    assert len(_traces(_units(pages))) == len(_sample_lines())


# ------------------------------------------------------------------ what `opik import` reads


def _file_spans(out: Path) -> list[Json]:
    folder = _project_folder(out)
    return [s for p in folder.glob("trace_*.json") for s in json.loads(p.read_text())["spans"]]


@pytest.mark.anyio
async def test_span_costs_are_written_where_opik_import_reads_them(tmp_path: Path) -> None:
    """`opik import` reads a span's cost from `total_cost` (the export writes
    `total_estimated_cost`): both are written, equal; reading the folder back gives the
    original records (the identity test above) and ignores the copy."""
    await _to_opik_dir(SAMPLE, tmp_path / "out")
    costly = [s for s in _file_spans(tmp_path / "out") if "total_estimated_cost" in s]
    assert costly
    assert all(same(s["total_cost"], s["total_estimated_cost"]) for s in costly)
    assert all("total_cost" not in s for s in _file_spans(tmp_path / "out") if s not in costly)
    pages = await _read(OpikDirSource(tmp_path / "out", project="support-bot", mappings=M))
    spans = [s for t in _traces(_units(pages)) for s in t.spans]
    assert sorted(s.cost for s in spans if s.cost is not None) == sorted(
        s["total_estimated_cost"] for s in costly
    )


def _export_folder(root: Path, trace: Json, spans: list[Json], project: str = "p") -> Path:
    """A one-trace folder in the `opik export` layout."""
    folder = root / "acme" / "projects" / "0190ca64-0000-7000-8000-000000000001"
    folder.mkdir(parents=True)
    (folder / "project.json").write_text(json.dumps({"id": folder.name, "name": project}))
    body = {"trace": trace, "spans": spans, "attachments": [], "project_name": project}
    (folder / f"trace_{trace['id']}.json").write_text(json.dumps(body))
    return folder


OPIK_TRACE: Json = {"id": "0190ca64-4354-7e14-b664-ec7094b9c424", "name": "t",
                    "start_time": "2024-07-19T09:48:06Z"}  # fmt: skip
OPIK_SPAN: Json = {"id": "0190ca64-436f-76ca-b1c6-0a65734e18ef", "name": "s", "type": "llm",
                   "trace_id": OPIK_TRACE["id"], "start_time": "2024-07-19T09:48:07Z"}  # fmt: skip


@pytest.mark.anyio
async def test_a_total_cost_alone_is_read_as_the_span_cost(tmp_path: Path) -> None:
    """A file written for `opik import` by another tool may carry only `total_cost`."""
    _export_folder(tmp_path / "in", OPIK_TRACE, [{**OPIK_SPAN, "total_cost": 0.25}])
    pages = await _read(OpikDirSource(tmp_path / "in", project="p", mappings=M))
    ((span,),) = [t.spans for t in _traces(_units(pages))]
    assert span.cost == 0.25


@pytest.mark.anyio
async def test_opik_dir_to_opik_dir_keeps_costs_that_differ(tmp_path: Path) -> None:
    """Two different costs on one span are both kept as they were (no silent choice)."""
    span = {**OPIK_SPAN, "total_estimated_cost": 0.5, "total_cost": 0.25}
    _export_folder(tmp_path / "in", OPIK_TRACE, [span])
    report = await run(
        OpikDirSource(tmp_path / "in", project="p", mappings=M),
        OpikDirSink(tmp_path / "out", workspace="acme", project="p", mappings=M),
    )
    assert not report.lossy
    ((written,),) = [json.loads(p.read_text())["spans"] for p in _trace_files(tmp_path / "out")]
    assert (written["total_estimated_cost"], written["total_cost"]) == (0.5, 0.25)


def _trace_files(out: Path) -> list[Path]:
    return sorted(out.glob("*/projects/*/trace_*.json"))


@pytest.mark.anyio
async def test_no_trace_or_span_is_written_without_a_name(tmp_path: Path) -> None:
    """`opik import` calls a nameless trace `imported_trace` and a nameless span
    `imported_span`: every record in the folder has a readable name."""
    raws = [line for line in _sample_lines() if any(not s.get("name") for s in line["spans"])]
    assert raws  # the sample has nameless spans
    await _to_opik_dir(SAMPLE, tmp_path / "out")
    for path in _trace_files(tmp_path / "out"):
        body = json.loads(path.read_text())
        assert body["trace"]["name"]
        assert all(span["name"] for span in body["spans"])
    kinds = {s["type"] for raw in raws for s in raw["spans"] if not s.get("name")}
    assert kinds & {s["name"] for s in _file_spans(tmp_path / "out")}


def test_a_csv_export_is_one_usage_error(tmp_path: Path) -> None:
    """`opik export --format csv` writes trace_<id>.csv files (flattened rows, no tree): the
    source stops with one clear error instead of a parse error per file."""
    folder = _export_folder(tmp_path / "in", OPIK_TRACE, [])
    (folder / f"trace_{OPIK_TRACE['id']}.json").unlink()
    for n in range(3):
        (folder / f"trace_0190ca64-0000-7000-8000-00000000000{n}.csv").write_text("trace_id\nx\n")
    with pytest.raises(UsageError, match=r"opik export --format csv.*3 trace_\*\.csv") as info:
        OpikDirSource(tmp_path / "in", project="p", mappings=M)
    assert str(folder) in str(info.value)
    assert info.value.exit_code == 2


# --------------------------------------------------------------------------------- hardening


async def _write_sample(sink: OpikDirSink, n: int = 2) -> None:
    traces = [trace_from_wire(line)[0] for line in _sample_lines()[:n]]
    await sink.write(traces)


def _sink(root: Path, workspace: str = "acme") -> OpikDirSink:
    return OpikDirSink(root, workspace=workspace, project="p", mappings=M)


@pytest.mark.anyio
async def test_two_runs_cannot_write_one_folder(tmp_path: Path) -> None:
    """The first writer holds `<root>/.tracebridge.lock` until it closes; a second one fails
    with LockedError (exit 2) naming the folder and the holder, and writes nothing."""
    first, second = _sink(tmp_path / "out"), _sink(tmp_path / "out")
    await _write_sample(first, 1)
    before = _snapshot(tmp_path / "out")
    with pytest.raises(LockedError) as info:
        await _write_sample(second)
    assert info.value.exit_code == 2
    assert f"opik-dir:{tmp_path / 'out'}" in str(info.value)
    assert f"pid {os.getpid()}" in str(info.value)
    assert _snapshot(tmp_path / "out") == before
    await first.aclose()
    await _write_sample(second)  # free again once the first run is over
    await second.aclose()


@pytest.mark.anyio
async def test_a_dry_run_takes_no_lock(tmp_path: Path) -> None:
    """Planning writes nothing, so it does not wait for (or block) a real run."""
    first = _sink(tmp_path / "out")
    await _write_sample(first, 1)
    traces = [trace_from_wire(line)[0] for line in _sample_lines()[:2]]
    assert len((await _sink(tmp_path / "out").write(traces, dry_run=True)).plan) == 2
    await first.aclose()


@pytest.mark.parametrize(
    ("workspace", "why"),
    [
        ("../../x", "path separator"),
        ("..", "not a folder of its own"),
        (".", "not a folder of its own"),
        ("", "empty"),
        ("  ", "empty"),
        ("/etc", "absolute path"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("C:x", "absolute path"),
    ],
)
def test_a_workspace_that_is_not_a_folder_name_is_refused(
    tmp_path: Path, workspace: str, why: str
) -> None:
    """The workspace becomes a folder under the output: it cannot point outside it."""
    with pytest.raises(UsageError, match="OPIK_WORKSPACE") as info:
        _sink(tmp_path / "deep" / "out", workspace)
    assert why in str(info.value)
    assert repr(workspace) in str(info.value)
    assert not (tmp_path / "deep").exists()


def _cli(tmp_path: Path, to: str, env: dict[str, str] | None = None) -> Result:
    """`tracebridge migrate` of the sample to `to`, run in `tmp_path`."""
    args = ["migrate", "--from", f"langwatch-file:{SAMPLE}", "--to", to]
    args += ["--state-dir", "run/state"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        return CliRunner().invoke(main, args, env={"OPIK_WORKSPACE": None, **(env or {})})


def test_opik_workspace_from_the_environment_cannot_escape_the_output(tmp_path: Path) -> None:
    """Through the command line: exit 2, a message naming the setting, nothing written."""
    (tmp_path / "run").mkdir()
    result = _cli(tmp_path, "opik-dir:run/out", {"OPIK_WORKSPACE": "../../x"})
    assert result.exit_code == 2, result.output
    assert "OPIK_WORKSPACE" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["run"]


def test_a_locked_output_folder_stops_the_command_with_exit_2(tmp_path: Path) -> None:
    """Another run holds the folder: exit 2 naming it and the holder, no traceback, and the
    folder is as that run left it."""
    (tmp_path / "out").mkdir()
    holder = PathLock(tmp_path / "out" / LOCK_NAME, "another run's folder")
    holder.acquire()
    try:
        result = _cli(tmp_path, "opik-dir:out")
    finally:
        holder.release()
    assert result.exit_code == 2, result.output
    assert "opik-dir:out is in use by another tracebridge run" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [LOCK_NAME]
    assert _cli(tmp_path, "opik-dir:out").exit_code == 0  # free once the holder is gone


def test_an_output_path_that_is_a_file_stops_the_command_with_exit_2(tmp_path: Path) -> None:
    """An environment problem is a usage error naming the path, not a traceback."""
    (tmp_path / "out").write_text("a file")
    result = _cli(tmp_path, "opik-dir:out")
    assert result.exit_code == 2, result.output
    assert "opik-dir:out: not a folder" in result.output
    assert "Traceback" not in result.output


@pytest.mark.anyio
async def test_an_opik_trace_id_that_is_not_a_file_name_is_dead_lettered(tmp_path: Path) -> None:
    """A trace read from Opik keeps its id, which names its file: an id with a path in it is
    refused (dead-lettered), never written elsewhere."""
    trace = trace_from_opik(
        {**OPIK_TRACE, "id": "../../evil"}, [], project="p", mappings=M, where="x"
    )
    sink = _sink(tmp_path / "out")
    result = await sink.write([trace])
    await sink.aclose()
    (rejected,) = result.rejected
    assert "cannot name a file" in rejected.reason
    assert "../../evil" in rejected.reason
    assert result.written.traces == 0
    assert not list(tmp_path.rglob("*evil*"))


@pytest.mark.anyio
async def test_an_opik_trace_id_too_long_for_a_file_name_is_dead_lettered_alone(
    tmp_path: Path,
) -> None:
    """An id too long to name its file (with its temp file's affixes, within the 255 bytes a
    file name has) is that trace's dead letter; the other traces of the page are written (it
    once stopped the whole run: "File name too long", exit 2)."""
    long_id = "0190ca64-" + "x" * 240
    traces = [
        trace_from_opik({**OPIK_TRACE, "id": trace_id}, [], project="p", mappings=M, where="x")
        for trace_id in (long_id, OPIK_TRACE["id"])
    ]
    sink = _sink(tmp_path / "out")
    result = await sink.write(traces)
    await sink.aclose()
    (rejected,) = result.rejected
    assert "cannot name a file" in rejected.reason
    assert "bytes long" in rejected.reason
    assert result.written.traces == 1
    assert [p.name for p in _trace_files(tmp_path / "out")] == [f"trace_{OPIK_TRACE['id']}.json"]


@pytest.mark.anyio
async def test_a_trace_with_a_span_id_twice_is_dead_lettered(tmp_path: Path) -> None:
    """Two spans under one Opik id are never written: the trace is rejected naming the span.
    (The readers resolve repeated ids first; such a trace comes from a library's own records.)"""
    raw = _sample_lines()[0]
    good = trace_from_wire(raw)[0]
    twice = good.model_copy(update={"spans": [*good.spans, good.spans[0].model_copy()]})
    sink = _sink(tmp_path / "out")
    result = await sink.write([twice, trace_from_wire(_sample_lines()[1])[0]])
    await sink.aclose()
    (rejected,) = result.rejected
    assert raw["spans"][0]["span_id"] in rejected.reason
    assert rejected.contains is not None
    assert rejected.contains.spans == len(twice.spans)
    assert len(_trace_files(tmp_path / "out")) == 1


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.anyio
async def test_output_files_get_the_users_umask(tmp_path: Path) -> None:
    """Readable by `opik import` run as another user (0o644 under umask 022), not 0o600."""
    old = os.umask(0o022)
    try:
        sink = _sink(tmp_path / "out")
        await _write_sample(sink, 3)
        await sink.aclose()
    finally:
        os.umask(old)
    files = [p for p in _project_folder(tmp_path / "out").iterdir() if p.is_file()]
    assert len(files) == 4  # project.json and three traces
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}


@pytest.mark.anyio
async def test_a_killed_runs_temp_files_are_removed_at_start(tmp_path: Path) -> None:
    """Only the temp files tracebridge makes for its own files; nothing else is touched, and
    no temp file outlives a run."""
    sink = _sink(tmp_path / "out")
    await _write_sample(sink, 1)
    await sink.aclose()
    folder = _project_folder(tmp_path / "out")
    ours = [".trace_0190ca64-4354-7e14-b664-ec7094b9c424.json.k2_x9qa0.tmp",
            ".project.json.a1b2c3d4.tmp", ".thread_0123456789abcdef.json.00ff00ff.tmp"]  # fmt: skip
    theirs = [".notes.txt.a1b2c3d4.tmp", ".trace_1.json.tmp", "x.tmp", ".trace_1.json.abc.tmp"]
    for name in ours + theirs:
        (folder / name).write_text("partial")
    sink = _sink(tmp_path / "out")
    await _write_sample(sink, 2)
    await sink.aclose()
    left = {p.name for p in folder.iterdir() if p.name.endswith(".tmp")}
    assert left == set(theirs)


@pytest.mark.anyio
async def test_an_output_path_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    """Named, with exit 2, before anything is read."""
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(UsageError, match="not a folder") as info:
        _sink(tmp_path / "out")
    assert str(tmp_path / "out") in str(info.value)


@pytest.mark.anyio
async def test_a_file_in_the_way_inside_the_output_is_a_usage_error(tmp_path: Path) -> None:
    """`<root>/<workspace>` is a file: the error names it (no traceback)."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "acme").write_text("in the way")
    sink = _sink(tmp_path / "out")
    with pytest.raises(UsageError, match="Not a directory") as info:
        await _write_sample(sink)
    await sink.aclose()
    assert f"cannot write {tmp_path / 'out' / 'acme'}" in str(info.value)


@pytest.mark.anyio
async def test_a_file_that_cannot_be_written_is_a_usage_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Permission denied (simulated: the tests may run as root) names the file."""
    sink = _sink(tmp_path / "out")
    await _write_sample(sink, 1)

    def denied(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", denied)
    traces = [trace_from_wire(line)[0] for line in _sample_lines()[1:3]]
    with pytest.raises(UsageError, match="Permission denied") as info:
        await sink.write(traces)
    await sink.aclose()
    assert "trace_" in str(info.value)
    assert str(_project_folder(tmp_path / "out")) in str(info.value)
    assert not [p for p in (tmp_path / "out").rglob("*.tmp")]


@pytest.mark.anyio
async def test_a_page_that_stops_halfway_leaves_no_file_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files are written as their records are mapped; a page that stops before it is done
    (here the mapping of its third trace raises) puts none of them in place, and leaves no
    temp file: the page is written again on resume."""
    sink = _sink(tmp_path / "out")
    mapped: list[str] = []
    real = folder_module.trace_to_opik

    def failing_at_the_third(trace: Any, **kwargs: Any) -> Any:
        mapped.append(trace.id)
        if len(mapped) == 3:
            raise RuntimeError("the process is stopping")
        return real(trace, **kwargs)

    monkeypatch.setattr(folder_module, "trace_to_opik", failing_at_the_third)
    traces = [trace_from_wire(line)[0] for line in _sample_lines()[:4]]
    with pytest.raises(RuntimeError):
        await sink.write(traces)
    await sink.aclose()
    folder = _project_folder(tmp_path / "out")
    assert len(mapped) == 3
    assert sorted(p.name for p in folder.iterdir()) == ["project.json"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
@pytest.mark.anyio
async def test_an_unwritable_output_folder_is_a_usage_error(tmp_path: Path) -> None:
    """A real permission problem on the output folder: UsageError naming the path."""
    (tmp_path / "ro").mkdir(mode=0o500)
    try:
        sink = _sink(tmp_path / "ro" / "out")
        with pytest.raises(UsageError, match="Permission denied") as info:
            await _write_sample(sink)
        await sink.aclose()
    finally:
        (tmp_path / "ro").chmod(0o700)
    assert str(tmp_path / "ro" / "out") in str(info.value)


@pytest.mark.anyio
async def test_a_trace_file_nested_too_deeply_is_one_dead_letter(tmp_path: Path) -> None:
    """JSON deeper than Python's parser goes is that file's dead letter, not a crash."""
    folder = _opik_export(tmp_path, "acme", "0190ca64-0000-7000-8000-000000000001", "Support Bot")
    (folder / "trace_0190ca64-0000-7000-8000-00000000dead.json").write_text(
        '{"trace": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    pages = await _read(OpikDirSource(tmp_path, project="Support Bot", mappings=M))
    (rejected,) = [r for page in pages for r in page.rejected]
    assert rejected.reason == "JSON nested too deeply to read"
    assert len(_units(pages)) == 1


@pytest.mark.anyio
async def test_a_nan_a_library_hands_the_sink_fails_alone(tmp_path: Path) -> None:
    """The readers refuse NaN by name; a record built by a library may still carry one. It is
    never written as the literal `NaN` (not JSON, which `opik import` cannot read): the write
    fails for that record, and the engine dead-letters it alone."""
    good, other = (trace_from_wire(raw)[0] for raw in _sample_lines()[:2])
    odd = good.model_copy(update={"metadata": {"score": float("nan")}})

    class OnePage:
        label = "memory"

        async def pages(self, window: Window, resume: Any) -> AsyncIterator[Page]:
            yield Page(units=[odd, other])

        async def aclose(self) -> None:
            return None

    report = await run(OnePage(), _sink(tmp_path / "out"))
    assert report.dead_lettered.traces == 1
    assert report.written.traces == 1
    (kept,) = _trace_files(tmp_path / "out")
    assert "NaN" not in kept.read_text()


@pytest.mark.anyio
async def test_files_a_killed_run_put_in_place_are_made_durable_before_a_rerun_counts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed after renaming a page's files into place, before fsyncing their folder,
    leaves renames the filesystem may not have committed yet. The rerun finds the files
    holding its text and writes none of them; so it fsyncs the folder before acknowledging
    them, else a power cut after the checkpoint moved could take the files back."""

    class Killed(Exception):
        pass

    t0, t1, t2 = (trace_from_wire(raw)[0] for raw in _sample_lines()[:3])
    sink = _sink(tmp_path / "out")
    await sink.write([t0])
    await sink.aclose()

    def killed(folder: Path) -> None:
        raise Killed  # the run dies between the renames and the folder's fsync

    with monkeypatch.context() as patch:
        patch.setattr(state_module, "fsync_folder", killed)
        sink = _sink(tmp_path / "out")
        with pytest.raises(Killed):
            await sink.write([t1, t2])
        await sink.aclose()
    assert len(_trace_files(tmp_path / "out")) == 3  # in place, the folder not synced
    synced = recorded_fsyncs(monkeypatch)
    sink = _sink(tmp_path / "out")
    await sink.write([t1, t2])
    (folder,) = {path.parent for path in _trace_files(tmp_path / "out")}
    assert folder.stat().st_ino in synced
    await sink.aclose()
