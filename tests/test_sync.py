"""`sync` (library and command line): job identity, checkpoint v2 and its high-water mark,
resumed passes, `--every` and stopping, `--reset`, `--retry-dead-letters`, and `status`.

Passes run over in-memory endpoints (the recording `MemorySource` of test_engine, patched in
where `sync` opens its endpoints) when the windows matter, and over files when the outcome does.
A fixed `clock` gives each pass its start moment.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result

import tracebridge._endpoint_specs as open_module
import tracebridge._sync as sync_module
from tests.test_engine import MemorySink, MemorySource, _pages, _trace
from tracebridge import (
    BadCheckpointError,
    LockedError,
    Page,
    Report,
    ServerError,
    Settings,
    Sink,
    Thread,
    Trace,
    Unit,
    Window,
    default_mappings,
    load_mappings,
)
from tracebridge._state import StateDir
from tracebridge._sync import PassResult, SyncJob, mapping_fingerprint, parse_duration, sync
from tracebridge._sync_state import CheckpointV2, SyncState, read_checkpoint
from tracebridge.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "langwatch-sample.jsonl"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
CLEAN_ENV: dict[str, str | None] = dict.fromkeys(
    (
        "LANGWATCH_API_KEY",
        "LANGWATCH_ENDPOINT",
        "OPIK_URL_OVERRIDE",
        "OPIK_API_KEY",
        "OPIK_WORKSPACE",
        "OPIK_PROJECT_NAME",
        "TRACEBRIDGE_PAGE_SIZE",
    )
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in CLEAN_ENV:
        monkeypatch.delenv(name, raising=False)


class Clock:
    """Returns the moments it is given, one per call, then keeps the last."""

    def __init__(self, *moments: datetime) -> None:
        self.moments = list(moments)

    def __call__(self) -> datetime:
        return self.moments.pop(0) if len(self.moments) > 1 else self.moments[0]


class Endpoints:
    """Stands in for `open_source`/`open_sink` in `tracebridge._sync`: every pass gets a fresh
    `MemorySource` over the same pages and the same sink; the sources are kept."""

    def __init__(self, pages: list[Page], sink: MemorySink | None = None) -> None:
        self.pages = pages
        self.sink = sink or MemorySink()
        self.sources: list[MemorySource] = []

    def source(self, *args: Any, **kwargs: Any) -> MemorySource:
        self.sources.append(MemorySource(self.pages))
        return self.sources[-1]

    def open_sink(self, *args: Any, **kwargs: Any) -> MemorySink:
        return self.sink

    @property
    def windows(self) -> list[Window]:
        return [w for s in self.sources for w in s.windows]

    @property
    def resumes(self) -> list[dict[str, Any] | None]:
        return [r for s in self.sources for r in s.resumes]


@pytest.fixture
def memory(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Endpoints]:
    def install(pages: list[Page], sink: MemorySink | None = None) -> Endpoints:
        endpoints = Endpoints(pages, sink)
        monkeypatch.setattr(open_module, "open_source", endpoints.source)
        monkeypatch.setattr(open_module, "open_sink", endpoints.open_sink)
        return endpoints

    return install


def _change(pages: list[Page]) -> None:
    """Give every unit of `pages` new content (a pass writes only what changed)."""
    for page in pages:
        page.units = [u.model_copy(update={"tags": [*u.tags, "changed"]}) for u in page.units]


def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path / "state")


async def one_pass(tmp_path: Path, *moments: datetime, **kwargs: Any) -> Any:
    """A sync pass between the (patched) endpoints, starting at `moments`."""
    return await sync(
        "langwatch-file:in.jsonl",
        "opik-dir:out",
        settings=settings(tmp_path),
        clock=Clock(*moments),
        **kwargs,
    )


def checkpoint_of(tmp_path: Path) -> CheckpointV2:
    (path,) = (tmp_path / "state").glob("checkpoint-*.json")
    checkpoint = read_checkpoint(path)
    assert checkpoint is not None
    return checkpoint


# ----------------------------------------------------------------------------------- the window


@pytest.mark.anyio
async def test_the_first_pass_reads_everything_up_to_its_start_and_sets_the_mark_there(
    tmp_path: Path, memory: Callable[..., Endpoints]
) -> None:
    endpoints = memory(_pages(3))
    report = await one_pass(tmp_path, T0)
    assert endpoints.windows == [Window(since=None, until=T0, axis="updated")]
    assert report.written.traces == 6
    checkpoint = checkpoint_of(tmp_path)
    assert checkpoint.schema_version == 2
    assert checkpoint.kind == "sync"
    assert checkpoint.high_water == T0
    assert checkpoint.current is None
    assert checkpoint.passes == 1
    assert checkpoint.lookback_seconds == 600
    assert checkpoint.last_pass is not None
    assert checkpoint.last_pass.started_at == T0
    assert checkpoint.last_pass.written == {"threads": 0, "traces": 6, "spans": 6, "scores": 0}


@pytest.mark.anyio
async def test_the_next_pass_reads_from_the_mark_minus_the_lookback_to_its_own_start(
    tmp_path: Path, memory: Callable[..., Endpoints]
) -> None:
    endpoints = memory(_pages(1))
    await one_pass(tmp_path, T0)
    t1 = T0 + timedelta(hours=1)
    await one_pass(tmp_path, t1, lookback=timedelta(minutes=5))
    assert endpoints.windows[1] == Window(since=T0 - timedelta(minutes=5), until=t1, axis="updated")
    checkpoint = checkpoint_of(tmp_path)
    assert checkpoint.high_water == t1
    assert checkpoint.lookback_seconds == 300
    assert checkpoint.passes == 2


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        (None, T0 + timedelta(hours=5), T0),  # a mark in the future: never past the pass start
        (None, T0 - timedelta(minutes=3), T0 - timedelta(minutes=3)),  # the source saw less
        (T0 - timedelta(hours=9), None, T0 - timedelta(hours=9)),  # the last mark given counts
        (None, None, T0),  # no mark from the source: the pass's start
    ],
)
@pytest.mark.anyio
async def test_the_mark_moves_to_the_sources_mark_but_never_past_the_pass_start(
    tmp_path: Path,
    memory: Callable[..., Endpoints],
    first: datetime | None,
    last: datetime | None,
    expected: datetime,
) -> None:
    pages = _pages(2)
    pages[0].high_water, pages[1].high_water = first, last
    memory(pages)
    await one_pass(tmp_path, T0)
    assert checkpoint_of(tmp_path).high_water == expected


@pytest.mark.anyio
async def test_the_mark_never_moves_backwards(
    tmp_path: Path, memory: Callable[..., Endpoints]
) -> None:
    """A source that says it saw less than the job already holds does not undo the mark."""
    pages = _pages(1)
    memory(pages)
    await one_pass(tmp_path, T0)
    pages[0].high_water = T0 - timedelta(days=1)
    await one_pass(tmp_path, T0 + timedelta(hours=1))
    assert checkpoint_of(tmp_path).high_water == T0


@pytest.mark.anyio
async def test_the_mark_moves_only_once_the_pass_completed(
    tmp_path: Path, memory: Callable[..., Endpoints]
) -> None:
    """While pass 2 writes, the saved mark is pass 1's and the pass in flight is saved with its
    window and cursor."""
    seen: list[tuple[datetime | None, Any]] = []

    def look(call: int) -> None:
        checkpoint = checkpoint_of(tmp_path)
        seen.append((checkpoint.high_water, checkpoint.current))

    pages = _pages(2)
    memory(pages, MemorySink(before_write=look))
    await one_pass(tmp_path, T0)
    _change(pages)  # unchanged units would cost no write (skip-unchanged), so no look
    t1 = T0 + timedelta(hours=1)
    await one_pass(tmp_path, t1)
    marks = [mark for mark, _ in seen]
    assert marks == [None, None, T0, T0]
    current = seen[3][1]
    assert (current.started_at, current.since, current.cursor) == (
        t1,
        T0 - timedelta(minutes=10),
        {"next": 1},
    )
    assert checkpoint_of(tmp_path).high_water == t1


@pytest.mark.anyio
async def test_an_interrupted_pass_resumes_from_its_cursor_with_the_same_window(
    tmp_path: Path, memory: Callable[..., Endpoints]
) -> None:
    endpoints = memory(_pages(4), MemorySink(fail_on_call=3))
    with pytest.raises(ServerError):
        await one_pass(tmp_path, T0)
    checkpoint = checkpoint_of(tmp_path)
    assert checkpoint.high_water is None
    assert checkpoint.current is not None
    assert checkpoint.current.cursor == {"next": 2}

    endpoints.sink = MemorySink()
    results: list[PassResult] = []
    report = await one_pass(tmp_path, T0 + timedelta(hours=3), on_pass=results.append)
    assert endpoints.windows == [Window(None, T0, "updated")] * 2  # the same window
    assert endpoints.resumes == [None, {"next": 2}]
    assert report.resumed_after_pages == 2
    assert results[0].resumed
    assert checkpoint_of(tmp_path).high_water == T0  # the interrupted pass's start


# ------------------------------------------------------------------------------- the job's key


def _job(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "source": sync_module.parse_endpoint("langwatch-file:in.jsonl"),
        "sink": sync_module.parse_endpoint("opik-dir:out"),
        "source_project": None,
        "target_project": "support",
        "settings": settings(tmp_path),
        "mappings": default_mappings(),
    }
    args.update(changes)
    return SyncJob.of(**args).key()


def test_a_job_is_endpoints_projects_and_mapping_not_a_window(tmp_path: Path) -> None:
    mapping = tmp_path / "m.toml"
    mapping.write_text('[span_types]\n"agent" = "tool"\n')
    base = _job(tmp_path)
    assert set(base) == {
        "kind",
        "from",
        "to",
        "source_project",
        "target_project",
        "from_at",
        "to_at",
        "mapping",
    }
    assert base["from"] == f"langwatch-file:{tmp_path / 'in.jsonl'}"  # absolute: cron-proof
    assert _job(tmp_path) == base
    assert _job(tmp_path, target_project="other") != base
    assert _job(tmp_path, source_project="p") != base
    assert _job(tmp_path, mappings=load_mappings(mapping)) != base
    assert _job(tmp_path, sink=sync_module.parse_endpoint("opik-dir:elsewhere")) != base


def test_api_endpoints_are_told_apart_by_server_and_key_without_secrets(tmp_path: Path) -> None:
    def key(**settings_: Any) -> dict[str, Any]:
        return _job(
            tmp_path,
            source=sync_module.parse_endpoint("langwatch"),
            sink=sync_module.parse_endpoint("opik"),
            target_project=None,
            settings=Settings(**settings_),
        )

    one = key(langwatch_api_key="sk-lw-one", opik_url="https://u:pw@opik.example/api?x=1")
    assert "sk-lw-one" not in json.dumps(one)
    assert "pw" not in one["to_at"]
    assert one["to_at"] == "https://opik.example/api workspace default"
    assert one["target_project"] == "Default Project"
    assert key(langwatch_api_key="sk-lw-two", opik_url="https://opik.example/api") != one
    assert key(langwatch_api_key="sk-lw-one", opik_url="https://opik.example/api") == one


def test_the_mapping_fingerprint_does_not_depend_on_the_hash_seed() -> None:
    """The tables hold sets: their fingerprint must be the same in every process."""
    code = "from tracebridge._sync import *; from tracebridge import *; "
    code += "print(mapping_fingerprint(default_mappings()))"
    found = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert found == {mapping_fingerprint(default_mappings())}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10m", 600), ("30s", 30), ("1h30m", 5400), ("2d", 172800), ("500ms", 0.5), ("45", 45)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


# ------------------------------------------------------------------------ checkpoint files


@pytest.mark.anyio
async def test_a_foreign_or_corrupt_checkpoint_names_the_file_and_reset(
    tmp_path: Path, memory: Callable[..., Endpoints]
) -> None:
    memory(_pages(1))
    await one_pass(tmp_path, T0)
    (path,) = (tmp_path / "state").glob("checkpoint-*.json")
    for text in ("{oops", '{"schema_version": 9}', '{"schema_version": 2, "job": 3}'):
        path.write_text(text)
        with pytest.raises(BadCheckpointError) as info:
            await one_pass(tmp_path, T0)
        assert str(path) in str(info.value)
        assert "--reset" in str(info.value)
        assert info.value.exit_code == 2
    other = CheckpointV2(job={"kind": "sync", "from": "elsewhere"})
    path.write_text(other.model_dump_json())
    with pytest.raises(BadCheckpointError, match="belongs to another sync job"):
        await one_pass(tmp_path, T0)


@pytest.mark.anyio
async def test_reset_starts_the_job_over_and_keeps_the_dead_letters(
    tmp_path: Path, memory: Callable[..., Endpoints]
) -> None:
    endpoints = memory(_pages(2), MemorySink(reject=frozenset({"p0t1"})))
    await one_pass(tmp_path, T0)
    (letters,) = (tmp_path / "state").glob("dead-letters-*.jsonl")
    endpoints.sink = MemorySink()  # refuses nothing now
    (tmp_path / "state" / "checkpoint-x.json").write_text("")  # not this job's: untouched
    await one_pass(tmp_path, T0 + timedelta(hours=1), reset=True)
    assert endpoints.windows[1].since is None  # everything again
    assert len(letters.read_text().splitlines()) == 1  # kept (and not repeated)
    assert (tmp_path / "state" / "checkpoint-x.json").exists()


def test_a_migrate_checkpoint_reads_as_version_2_of_kind_migrate(tmp_path: Path) -> None:
    """The v1 → v2 path: a migrate's file is read, not rewritten, and has no mark."""
    state = StateDir(tmp_path, {"from": "a", "to": "b", "since": None, "until": None})
    state.begin()
    state.acknowledged(Page(cursor={"units_done": 4}))
    state.end()
    before = state.checkpoint_path.read_text()
    checkpoint = read_checkpoint(state.checkpoint_path)
    assert checkpoint is not None
    assert checkpoint.kind == "migrate"
    assert checkpoint.high_water is None
    assert checkpoint.current is not None
    assert (checkpoint.current.cursor, checkpoint.current.pages) == ({"units_done": 4}, 1)
    assert state.checkpoint_path.read_text() == before
    state.begin()
    state.finished()
    state.end()
    done = read_checkpoint(state.checkpoint_path)
    assert done is not None
    assert done.current is None
    assert done.last_pass is not None
    assert done.last_pass.ended_at is not None
    # a sync never adopts it
    sync_state = SyncState(tmp_path, state.job)
    with pytest.raises(BadCheckpointError, match="belongs to a migrate job"):
        sync_state.load()


@pytest.mark.anyio
async def test_a_second_run_of_the_job_is_refused_naming_the_holder(
    tmp_path: Path, memory: Callable[..., Endpoints]
) -> None:
    memory(_pages(1))
    await one_pass(tmp_path, T0)
    (path,) = (tmp_path / "state").glob("checkpoint-*.json")
    checkpoint = read_checkpoint(path)
    assert checkpoint is not None
    holder = SyncState(tmp_path / "state", checkpoint.job)
    holder.lock()
    try:
        with pytest.raises(LockedError, match=f"pid {os.getpid()}") as info:
            await one_pass(tmp_path, T0)
        assert info.value.exit_code == 2
    finally:
        holder.unlock()


# ------------------------------------------------------------------------ steps, wrapper, dry run


@pytest.mark.anyio
async def test_steps_and_the_sink_wrapper_reach_every_pass(
    tmp_path: Path, memory: Callable[..., Endpoints]
) -> None:
    endpoints = memory(_pages(2))
    wrapped: list[Sink] = []

    def wrap(sink: Sink) -> Sink:
        wrapped.append(sink)
        return sink

    def only_first_traces(unit: Unit) -> Unit | None:
        return unit if unit.id.endswith("t0") else None

    report = await one_pass(tmp_path, T0, steps=[only_first_traces], wrap_sink=wrap)
    assert wrapped == [endpoints.sink]
    assert [u for b in endpoints.sink.batches for u in b] == ["p0t0", "p1t0"]
    assert report.result.skip_reasons["only_first_traces"] == 2


@pytest.mark.anyio
async def test_a_dry_run_reads_the_next_window_and_saves_nothing(
    tmp_path: Path, memory: Callable[..., Endpoints]
) -> None:
    pages = _pages(2)
    endpoints = memory(pages)
    await one_pass(tmp_path, T0)
    before = checkpoint_of(tmp_path)
    _change(pages)
    report = await one_pass(tmp_path, T0 + timedelta(hours=1), dry_run=True)
    assert report.dry_run
    assert endpoints.windows[1] == Window(
        T0 - timedelta(minutes=10), T0 + timedelta(hours=1), "updated"
    )
    assert checkpoint_of(tmp_path) == before
    assert endpoints.sink.dry_runs[-1] is True


# ----------------------------------------------------------------------------- every and stop


@pytest.mark.anyio
async def test_every_runs_a_pass_per_interval_until_stopped(
    tmp_path: Path, memory: Callable[..., Endpoints]
) -> None:
    """Passes repeat; between them the remainder of the interval is slept; a stop during that
    sleep ends the command at once."""
    memory(_pages(1))
    stop = anyio.Event()
    ends: list[float] = []

    def on_pass(result: PassResult) -> None:
        ends.append(anyio.current_time())
        if len(ends) == 3:
            stop.set()

    with anyio.fail_after(10):
        await one_pass(tmp_path, T0, every=timedelta(seconds=0.2), stop=stop, on_pass=on_pass)
    assert len(ends) == 3
    gaps = [b - a for a, b in itertools.pairwise(ends)]
    assert all(gap >= 0.15 for gap in gaps), gaps
    assert checkpoint_of(tmp_path).passes == 3


@pytest.mark.anyio
async def test_a_pass_longer_than_the_interval_starts_the_next_at_once(
    tmp_path: Path, memory: Callable[..., Endpoints]
) -> None:
    memory(_pages(1), MemorySink(before_write=lambda call: time.sleep(0.3)))
    stop = anyio.Event()
    ends: list[float] = []

    def on_pass(result: PassResult) -> None:
        ends.append(anyio.current_time())
        if len(ends) == 2:
            stop.set()

    await one_pass(tmp_path, T0, every=timedelta(seconds=0.1), stop=stop, on_pass=on_pass)
    assert ends[1] - ends[0] < 0.3 + 0.1 + 0.05  # no sleep added after the long pass


# ------------------------------------------------------------------------ retrying dead letters


def _failing_once(ids: set[str]) -> Callable[[Unit], Unit]:
    def flaky(unit: Unit) -> Unit:
        if unit.id in ids:
            raise ValueError(f"cannot handle {unit.id}")
        return unit

    return flaky


def _letters(tmp_path: Path) -> list[dict[str, Any]]:
    (path,) = (tmp_path / "state").glob("dead-letters-*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.anyio
async def test_retry_sends_dead_letters_again_and_removes_those_that_landed(
    tmp_path: Path, memory: Callable[..., Endpoints]
) -> None:
    thread = Thread(id="conv", traces=[_trace("a", thread="conv"), _trace("b", thread="conv")])
    pages = [Page(units=[thread, _trace("solo"), _trace("ok")], cursor={"next": 1})]
    endpoints = memory(pages)
    report = await one_pass(tmp_path, T0, steps=[_failing_once({"conv", "solo"})])
    assert report.dead_letter_entries == 2
    assert {letter["unit"]["type"] for letter in _letters(tmp_path)} == {"thread", "trace"}

    # the step is fixed for the thread, not for "solo": the thread lands, "solo" stays
    endpoints.sink = MemorySink()
    results: list[PassResult] = []
    await one_pass(
        tmp_path,
        T0 + timedelta(hours=1),
        steps=[_failing_once({"solo"})],
        retry_dead_letters=True,
        on_pass=results.append,
    )
    retry, _ = results
    assert retry.kind == "retry"
    assert retry.report.written.threads == 1
    assert retry.report.written.traces == 2
    assert retry.report.dead_lettered.traces == 1
    assert endpoints.sink.batches[0] == ["conv"]
    (left,) = _letters(tmp_path)[:1]
    assert left["where"] == "trace solo"
    assert left["run_id"] == retry.report.run_id  # written again, by the retry
    assert Trace.model_validate(left["unit"]["data"]) == _trace("solo")


def _write_input(path: Path, records: list[dict[str, Any]], extra: list[str] = ()) -> None:
    lines = [json.dumps(r) for r in records] + list(extra)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _sample() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]


@pytest.mark.anyio
async def test_retry_decodes_raw_records_again_and_keeps_what_it_cannot_replay(
    tmp_path: Path,
) -> None:
    """A record the source could not read is decoded again with today's code (here: the entry
    was fixed by hand, as a mapping fix would); a line that was never JSON stays in the file,
    and the retry says why."""
    records = _sample()[:3]
    broken = json.loads(json.dumps(records[2]))
    broken["timestamps"]["started_at"] = "yesterday"
    _write_input(tmp_path / "in.jsonl", [*records[:2], broken], ["{not json"])
    report = await sync(
        "langwatch-file:in.jsonl", "opik-dir:out", settings=settings(tmp_path), clock=Clock(T0)
    )
    assert report.dead_letter_entries == 2
    letters = _letters(tmp_path)
    fixed = next(letter for letter in letters if isinstance(letter["record"], dict))
    fixed["record"]["timestamps"]["started_at"] = records[2]["timestamps"]["started_at"]
    (path,) = (tmp_path / "state").glob("dead-letters-*.jsonl")
    path.write_text("".join(json.dumps(letter) + "\n" for letter in letters))

    results: list[PassResult] = []
    await sync(
        "langwatch-file:in.jsonl",
        "opik-dir:out",
        settings=settings(tmp_path),
        clock=Clock(T0 + timedelta(hours=1)),
        retry_dead_letters=True,
        on_pass=results.append,
    )
    retry = results[0]
    assert retry.report.written.traces == 1
    assert retry.kept == {
        "no record to rebuild it from (the source could not read it as a record)": 1
    }
    assert retry.lossy
    remaining = _letters(tmp_path)
    assert [r["where"] for r in remaining[:1]] == [letters[0]["where"]]
    # the re-sent trace is the one the source reads once fixed: same file, same id
    assert len(list((tmp_path / "out").rglob("trace_*.json"))) == 3


@pytest.mark.anyio
async def test_a_retry_that_fails_leaves_the_file_as_it_was(
    tmp_path: Path, memory: Callable[..., Endpoints]
) -> None:
    endpoints = memory(_pages(1))
    await one_pass(tmp_path, T0, steps=[_failing_once({"p0t0"})])
    (path,) = (tmp_path / "state").glob("dead-letters-*.jsonl")
    before = path.read_text()
    endpoints.sink = MemorySink(fail_on_call=1)
    with pytest.raises(ServerError):
        await one_pass(tmp_path, T0, retry_dead_letters=True)
    assert path.read_text() == before
    assert not list((tmp_path / "state").glob(".*retry*"))


# -------------------------------------------------------------------------------- files


@pytest.mark.anyio
async def test_a_file_source_reads_everything_on_the_update_axis(tmp_path: Path) -> None:
    """A file has no change axis: the second pass (a window far after every start time) reads
    the whole file again, and the destination is unchanged."""
    _write_input(tmp_path / "in.jsonl", _sample())

    async def a_pass(at: datetime) -> Any:
        return await sync(
            "langwatch-file:in.jsonl", "opik-dir:out", settings=settings(tmp_path), clock=Clock(at)
        )

    first = await a_pass(datetime(2030, 1, 1, tzinfo=UTC))
    files = {p: p.read_text() for p in (tmp_path / "out").rglob("*.json")}
    second = await a_pass(datetime(2030, 1, 2, tzinfo=UTC))
    assert second.read == first.read
    assert second.read.traces == 12
    assert {p: p.read_text() for p in (tmp_path / "out").rglob("*.json")} == files


@pytest.mark.anyio
async def test_an_unchanged_pass_writes_nothing_and_a_change_is_written(tmp_path: Path) -> None:
    """Skip-unchanged is built in: a second pass over the same file makes no write (every
    unit counted under its rule); a trace edited in the source is written again, alone."""
    sample = _sample()
    _write_input(tmp_path / "in.jsonl", sample)

    async def a_pass(day: int) -> Report:
        return await sync(
            "langwatch-file:in.jsonl",
            "opik-dir:out",
            settings=settings(tmp_path),
            clock=Clock(datetime(2030, 1, day, tzinfo=UTC)),
        )

    await a_pass(1)
    second = await a_pass(2)
    assert second.written.total() == 0
    assert second.skipped.traces == 12
    assert "unchanged since the last pass" in second.result.skip_reasons
    standalone = next(r for r in sample if "thread_id" not in r["metadata"])
    standalone["output"] = {"value": "a better answer"}
    _write_input(tmp_path / "in.jsonl", sample)
    third = await a_pass(3)
    assert third.written.traces == 1
    assert third.skipped.traces == 11


@pytest.mark.anyio
async def test_a_copy_synced_back_to_its_origin_is_an_echo_and_not_written(
    tmp_path: Path,
) -> None:
    """LangWatch file → Opik folder, then the Opik folder → a LangWatch file of the origin
    project (`--target-project` its id): every trace came from there unchanged, so none is
    written back (echo suppression is built in). Into a file of unknown project the same
    copies are written: a copy in another project is no echo."""
    _write_input(tmp_path / "in.jsonl", _sample())
    origin = _sample()[0]["project_id"]
    config = settings(tmp_path)
    clock = Clock(datetime(2030, 1, 1, tzinfo=UTC))
    await sync("langwatch-file:in.jsonl", "opik-dir:out", settings=config, clock=clock)
    back = await sync(
        "opik-dir:out",
        "langwatch-file:back.jsonl",
        target_project=origin,
        settings=config,
        clock=Clock(datetime(2030, 1, 1, tzinfo=UTC)),
    )
    assert back.read.traces == 12
    assert back.written.total() == 0
    assert back.skipped.traces == 12
    assert "echo: came from langwatch unchanged" in back.result.skip_reasons
    assert not (tmp_path / "back.jsonl").exists() or not (tmp_path / "back.jsonl").read_text()
    elsewhere = await sync(
        "opik-dir:out",
        "langwatch-file:other.jsonl",
        settings=config,
        clock=Clock(datetime(2030, 1, 1, tzinfo=UTC)),
    )
    assert elsewhere.written.traces == 12


@pytest.mark.anyio
async def test_reset_after_the_destination_was_lost_copies_everything_again(
    tmp_path: Path,
) -> None:
    """The destination folder is deleted (a new disk, a cleaned-up project); the README's way
    to "start the job over" is `--reset`. The pass must write the records again, not skip
    every one as `unchanged since the last pass` and exit 0 with an empty destination."""
    _write_input(tmp_path / "in.jsonl", _sample())
    config = settings(tmp_path)
    await sync("langwatch-file:in.jsonl", "opik-dir:out", settings=config, clock=Clock(T0))
    assert list((tmp_path / "out").rglob("trace_*.json"))
    shutil.rmtree(tmp_path / "out")
    again = await sync(
        "langwatch-file:in.jsonl",
        "opik-dir:out",
        settings=config,
        reset=True,
        clock=Clock(T0 + timedelta(hours=1)),
    )
    assert again.exit_code == 0
    assert len(list((tmp_path / "out").rglob("trace_*.json"))) == again.read.traces == 12


@pytest.mark.anyio
async def test_other_steps_make_another_job_that_writes_through_them(tmp_path: Path) -> None:
    """A step changes what is written, as a mapping does: adding one starts another job, whose
    first pass writes every unit again through the step (not skipped as unchanged)."""
    _write_input(tmp_path / "in.jsonl", _sample())
    config = settings(tmp_path)

    def tag_all(unit: Unit) -> Unit:
        return unit.model_copy(update={"tags": [*unit.tags, "synced"]})

    first = await sync("langwatch-file:in.jsonl", "opik-dir:out", settings=config, clock=Clock(T0))
    stepped = await sync(
        "langwatch-file:in.jsonl",
        "opik-dir:out",
        settings=config,
        steps=[tag_all],
        clock=Clock(T0 + timedelta(hours=1)),
    )
    assert first.written.traces == stepped.written.traces == 12
    assert len(list((tmp_path / "state").glob("checkpoint-*.json"))) == 2


# --------------------------------------------------------------------------------- the CLI


def invoke(args: list[str], env: Mapping[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, args, env={**CLEAN_ENV, **(env or {})})


def test_sync_help_documents_every_option() -> None:
    result = invoke(["sync", "--help"])
    assert result.exit_code == 0
    for option in (
        "--from",
        "--to",
        "--source-project",
        "--target-project",
        "--lookback",
        "--every",
        "--reset",
        "--retry-dead-letters",
        "--dry-run",
        "--json",
        "--verbose",
        "--quiet",
        "--state-dir",
        "--config",
        "--mapping",
        "--debug",
        "Exit codes",
    ):
        assert option in result.stdout
    assert "--since" not in result.stdout
    top = invoke(["--help"])
    assert "sync" in top.stdout
    assert "status" in top.stdout


def test_sync_command_one_pass_then_status(tmp_path: Path) -> None:
    _write_input(tmp_path / "in.jsonl", _sample())
    result = invoke(["sync", "--from", "langwatch-file:in.jsonl", "--to", "opik-dir:out"])
    assert result.exit_code == 0, result.output
    assert "pass over the changes from the beginning (first pass) through " in result.stdout
    assert "high-water mark: 20" in result.stdout
    assert "OK: " in result.stdout

    status = invoke(["status"])
    assert status.exit_code == 0
    assert "1 job in .tracebridge" in status.stdout
    assert f"sync langwatch-file:{tmp_path / 'in.jsonl'} -> opik-dir:{tmp_path / 'out'}" in (
        status.stdout
    )
    assert "checkpoint      complete" in status.stdout
    assert "dead letters    0 in " in status.stdout

    document = json.loads(invoke(["status", "--json"]).stdout)
    assert document["schema"] == 1
    (job,) = document["jobs"]
    assert job["kind"] == "sync"
    assert job["state"] == "complete"
    assert job["high_water"].endswith("Z")
    assert job["last_pass"]["read"]["traces"] == 12
    assert job["dead_letters"] == {
        "file": str(Path(".tracebridge") / f"dead-letters-{job['id']}.jsonl"),
        "entries": 0,
        "shared": False,
    }


def test_sync_command_lossy_pass_exits_1_and_status_counts_the_dead_letters(
    tmp_path: Path,
) -> None:
    _write_input(tmp_path / "in.jsonl", _sample()[:2], ["{not json"])
    args = ["sync", "--from", "langwatch-file:in.jsonl", "--to", "opik-dir:out"]
    result = invoke(args)
    assert result.exit_code == 1
    assert "LOSSY: 1 record dead-lettered" in result.stderr
    again = invoke([*args, "--retry-dead-letters"])
    assert again.exit_code == 1
    assert "retry of the dead letters in " in again.stdout
    assert "kept 1 dead letters that cannot be sent again: no record to rebuild it from" in (
        again.stdout
    )
    (job,) = json.loads(invoke(["status", "--json"]).stdout)["jobs"]
    assert job["dead_letters"]["entries"] == 1  # kept by the retry; the pass met it again


def test_passes_over_a_file_do_not_repeat_its_dead_letters(tmp_path: Path) -> None:
    """A file is re-read whole by every pass: its bad line is one entry, not one per pass, and
    every pass that meets it is still lossy."""
    _write_input(tmp_path / "in.jsonl", _sample()[:2], ["{not json", "[1]"])
    args = ["sync", "--from", "langwatch-file:in.jsonl", "--to", "opik-dir:out"]
    for _ in range(3):
        result = invoke(args)
        assert result.exit_code == 1
        assert "LOSSY: 2 records dead-lettered" in result.stderr
    (path,) = (tmp_path / ".tracebridge").glob("dead-letters-*.jsonl")
    assert len(path.read_text().splitlines()) == 2


def test_status_shows_migrate_jobs_and_unreadable_checkpoints(tmp_path: Path) -> None:
    _write_input(tmp_path / "in.jsonl", _sample()[:2])
    assert (
        invoke(["migrate", "--from", "langwatch-file:in.jsonl", "--to", "opik-dir:m"]).exit_code
        == 0
    )
    (tmp_path / ".tracebridge" / "checkpoint-0000000000000000.json").write_text("{oops")
    result = invoke(["status"])
    assert result.exit_code == 0
    assert "2 jobs in .tracebridge" in result.stdout
    assert "migrate langwatch-file:in.jsonl -> opik-dir:m" in result.stdout
    assert "(shared by the migrate jobs)" in result.stdout
    assert "job 0000000000000000: unreadable checkpoint" in result.stdout
    assert "--reset" in result.stdout
    jobs = json.loads(invoke(["status", "--json"]).stdout)["jobs"]
    assert {j["kind"] for j in jobs} == {None, "migrate"}
    assert next(j for j in jobs if j["kind"] is None)["state"] == "unreadable"


def test_status_of_an_empty_state_dir_and_of_a_file(tmp_path: Path) -> None:
    assert invoke(["status"]).stdout.strip() == "no jobs in .tracebridge (no checkpoint files)"
    (tmp_path / "file").write_text("")
    result = invoke(["status", "--state-dir", "file"])
    assert result.exit_code == 2
    assert "state directory file" in result.stderr


def test_status_never_shows_a_secret(tmp_path: Path) -> None:
    _write_input(tmp_path / "in.jsonl", _sample()[:2])
    env = {"LANGWATCH_API_KEY": "sk-secret-lw", "OPIK_API_KEY": "sk-secret-opik"}
    invoke(["sync", "--from", "langwatch-file:in.jsonl", "--to", "opik-dir:out"], env)
    for args in (["status"], ["status", "--json"]):
        assert "sk-secret" not in invoke(args, env).output
    assert list((tmp_path / ".tracebridge" / "runs").glob("*.json"))  # the run report too
    for path in (tmp_path / ".tracebridge").rglob("*"):
        if path.is_file():
            assert "sk-secret" not in path.read_text(errors="replace")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lookback", "ten minutes"], "is not a duration"),
        (["--every", "0s"], "--every must be longer than 0s"),
        (["--dry-run", "--every", "5m"], "--dry-run is one pass"),
        (["--to", "langwatch-file:x.jsonl"], "are both langwatch"),
    ],
)
def test_sync_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    _write_input(tmp_path / "in.jsonl", _sample()[:1])
    result = invoke(["sync", "--from", "langwatch-file:in.jsonl", "--to", "opik-dir:out", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_sync_command_bad_checkpoint_exits_2_and_reset_recovers(tmp_path: Path) -> None:
    _write_input(tmp_path / "in.jsonl", _sample()[:1])
    args = ["sync", "--from", "langwatch-file:in.jsonl", "--to", "opik-dir:out"]
    assert invoke(args).exit_code == 0
    (path,) = (tmp_path / ".tracebridge").glob("checkpoint-*.json")
    path.write_bytes(b"\xff\xfe")
    result = invoke(args)
    assert result.exit_code == 2
    assert str(Path(".tracebridge") / path.name) in result.stderr
    assert "--reset" in result.stderr
    assert invoke([*args, "--reset"]).exit_code == 0
    checkpoint = read_checkpoint(path)
    assert checkpoint is not None
    assert checkpoint.passes == 1


def test_sync_command_while_the_job_runs_exits_2_naming_the_holder(tmp_path: Path) -> None:
    _write_input(tmp_path / "in.jsonl", _sample()[:1])
    args = ["sync", "--from", "langwatch-file:in.jsonl", "--to", "opik-dir:out"]
    assert invoke(args).exit_code == 0
    (path,) = (tmp_path / ".tracebridge").glob("checkpoint-*.json")
    checkpoint = read_checkpoint(path)
    assert checkpoint is not None
    holder = SyncState(tmp_path / ".tracebridge", checkpoint.job)
    holder.lock()
    try:
        result = invoke(args)
    finally:
        holder.unlock()
    assert result.exit_code == 2
    assert f"in use by another tracebridge run (pid {os.getpid()}" in result.stderr
