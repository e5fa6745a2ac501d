"""`opik-dir:PATH`: the `opik export` folder layout, as a sink (layout, spec-valid records,
idempotent reruns) and as a source (both layouts, project choice, dead letters, thread data)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.factories import langwatch_project
from tests.opik_spec import require_spec, validate_schema
from tracebridge import (
    LangWatchFileSink,
    LangWatchFileSource,
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
from tracebridge._langwatch.convert import trace_from_wire
from tracebridge._mapping import default_mappings
from tracebridge._stash import same

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
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
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
