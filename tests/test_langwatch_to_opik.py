"""Issue 3 "LangWatch → Opik over the live APIs", done when: a generated project of 500 traces
in 100 threads (a 250-span trace, inputs over 64 KB, unicode, errors, orphan spans, evaluations
of every status) migrates completely; every count matches the generated data; sampled fields
arrive as the mapping says; a rerun changes nothing in either id mode; and an interrupted run,
resumed, ends exactly where an uninterrupted one does.

Rules pinned: DESIGN.md invariants 1 (idempotent writes, v7 ids whose time field is the source
start), 2 (provenance), 3 (checkpoint after acknowledgement: resume), 4 (nothing lost) and the
default mapping table; `reference/opik-api.md` §2–§4, §9; `reference/langwatch-api.md` §3.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest

from tests.factories import EVALUATION_STATUSES, langwatch_project
from tests.fakes.langwatch import LangWatchFake
from tests.fakes.opik import OpikFake, is_uuid7, uuid7_ms
from tests.opik_spec import require_spec, validate_httpx_request
from tracebridge import (
    FatalError,
    Report,
    RetriesExhausted,
    Settings,
    UsageError,
    load_settings,
    migrate,
    run,
)
from tracebridge._http import RetryPolicy
from tracebridge._langwatch.api import LangWatchApiSource, langwatch_api
from tracebridge._mapping import default_mappings
from tracebridge._opik.api import OpikApiSink, opik_api
from tracebridge._opik.ids import MintedIds, OpikIds
from tracebridge._state import StateDir

Json = dict[str, Any]
PROJECT = "support-bot"
START_MS = int(time.time() * 1000) - 10 * 86_400_000
# Fields the server stamps itself: they differ between two runs whatever the client does.
SERVER_FIELDS = frozenset(
    {"created_at", "created_by", "last_updated_at", "last_updated_by", "project_id"}
)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def raws() -> list[Json]:
    """The generated LangWatch project, in start order."""
    return list(
        langwatch_project(
            500, 100, seed=2026, start_ms=START_MS, huge_trace_spans=250, big_input_every=50
        )
    )


def seeded(raws: list[Json]) -> LangWatchFake:
    fake = LangWatchFake()
    for raw in raws:
        fake.add_trace(raw)
    return fake


def settings_for(
    lw: LangWatchFake, opik: OpikFake, state: Path, opik_ids: str = "source-time"
) -> Settings:
    return load_settings(
        None,
        {
            "langwatch_api_key": lw.api_key,
            "langwatch_endpoint": lw.base_url,
            "opik_url": opik.base_url,
            "opik_ids": opik_ids,
            "state_dir": state,
        },
        environ={},
    )


async def migrate_all(
    lw: LangWatchFake, opik: OpikFake, settings: Settings, *, rewrite: bool = False
) -> Report:
    transports: dict[str, httpx.AsyncBaseTransport] = {
        "langwatch": lw.transport,
        "opik": opik.transport,
    }
    return await migrate(
        "langwatch",
        "opik",
        target_project=PROJECT,
        settings=settings,
        transports=transports,
        rewrite=rewrite,
    )


# --- what the generated data says should arrive ----------------------------------------------


def opik_scores(raw: Json) -> dict[str, float]:
    """DESIGN.md mapping: a processed evaluation is a score (`score`, else passed → 1/0), one
    per name; any other evaluation stays in the trace's metadata."""
    out: dict[str, float] = {}
    for evaluation in raw["evaluations"]:
        value = evaluation.get("score")
        if value is None and evaluation.get("passed") is not None:
            value = 1.0 if evaluation["passed"] else 0.0
        if (
            evaluation["status"] == "processed"
            and value is not None
            and evaluation["name"] not in out
        ):
            out[evaluation["name"]] = value
    return out


class Expected:
    """Counts computed from the generated project."""

    def __init__(self, raws: list[Json]) -> None:
        self.threads = len(
            {r["metadata"]["thread_id"] for r in raws if "thread_id" in r["metadata"]}
        )
        self.traces = len(raws)
        self.spans = sum(len(r["spans"]) for r in raws)
        self.evaluations = sum(len(r["evaluations"]) for r in raws)
        self.scores = sum(len(opik_scores(r)) for r in raws)


# --- the Opik side, looked up through provenance ---------------------------------------------


def by_source(opik: OpikFake) -> dict[str, Json]:
    """Opik traces by the LangWatch id their provenance names (DESIGN.md invariant 2)."""
    out: dict[str, Json] = {}
    for row in opik.traces.values():
        source = row["metadata"]["tracebridge"]["source"]
        assert source["platform"] == "langwatch"
        assert source["project"] == "project_test"
        out[source["id"]] = row
    return out


def iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def spans_of(opik: OpikFake, trace_id: str) -> list[Json]:
    return [s for s in opik.spans.values() if s["trace_id"] == trace_id]


def opik_span(opik: OpikFake, trace_row: Json, raw_span: Json) -> Json:
    """The Opik span of a LangWatch span: same trace, start time and name (unique here).

    A nameless span is named after its type (what `opik import` would otherwise call it is
    `imported_span`)."""
    start = iso(raw_span["timestamps"]["started_at"])
    name = raw_span.get("name") or raw_span["type"]
    found = [
        s
        for s in spans_of(opik, trace_row["id"])
        if s["start_time"] == start and s.get("name") == name
    ]
    assert len(found) == 1, f"span {raw_span['span_id']}: {len(found)} candidates"
    return found[0]


def all_spans(raws: list[Json]) -> Iterator[tuple[Json, Json]]:
    for raw in raws:
        for span in raw["spans"]:
            yield raw, span


# --- the migration, once ----------------------------------------------------------------------


@pytest.fixture(scope="module")
async def migrated(
    raws: list[Json], tmp_path_factory: pytest.TempPathFactory
) -> tuple[LangWatchFake, OpikFake, Report]:
    lw, opik = seeded(raws), OpikFake()
    report = await migrate_all(lw, opik, settings_for(lw, opik, tmp_path_factory.mktemp("state")))
    return lw, opik, report


@pytest.mark.anyio
async def test_the_generated_project_has_what_the_issue_asks_for(raws: list[Json]) -> None:
    """The issue's data: ≥500 traces in ≥100 threads, a >200-span trace, >64 KB inputs,
    unicode, errors, orphan spans, evaluations of every status."""
    expected = Expected(raws)
    assert expected.traces >= 500
    assert expected.threads >= 100
    assert max(len(r["spans"]) for r in raws) > 200
    assert sum(len(r["input"]["value"].encode()) > 65_536 for r in raws) >= 5
    assert any(not r["input"]["value"].isascii() for r in raws)
    assert sum(r["error"] is not None for r in raws) >= 20
    span_ids = [{s["span_id"] for s in r["spans"]} for r in raws]
    assert any(
        s["parent_id"] is not None and s["parent_id"] not in ids
        for r, ids in zip(raws, span_ids, strict=True)
        for s in r["spans"]
    )
    statuses = {e["status"] for r in raws for e in r["evaluations"]}
    assert statuses == set(EVALUATION_STATUSES)


@pytest.mark.anyio
async def test_every_count_matches_the_generated_data(
    raws: list[Json], migrated: tuple[LangWatchFake, OpikFake, Report]
) -> None:
    """DESIGN.md invariant 4: every record read is written or skipped by a documented rule
    (evaluations that are not processed verdicts stay in metadata); nothing dead-lettered."""
    _, opik, report = migrated
    expected = Expected(raws)
    assert (report.read.threads, report.read.traces) == (expected.threads, expected.traces)
    assert (report.read.spans, report.read.scores) == (expected.spans, expected.evaluations)
    assert report.written.threads == expected.threads
    assert report.written.traces == expected.traces
    assert report.written.spans == expected.spans
    assert report.written.scores == expected.scores
    assert report.skipped.scores == expected.evaluations - expected.scores
    assert (report.skipped.traces, report.skipped.spans) == (0, 0)
    assert report.dead_lettered.total() == 0
    assert report.lost == 0
    assert report.exit_code == 0
    assert len(opik.traces) == expected.traces
    assert len(opik.spans) == expected.spans
    assert len(opik.trace_scores) == expected.scores
    assert opik.span_scores == {}
    assert len(opik.threads) == expected.threads
    assert opik.duplicate_rows == {}
    assert [p["name"] for p in opik.projects.values()] == [PROJECT]


@pytest.mark.anyio
async def test_ids_are_v7_with_the_source_start_time(
    raws: list[Json], migrated: tuple[LangWatchFake, OpikFake, Report]
) -> None:
    """DESIGN.md invariant 1: the id's 48-bit time field is the source record's start."""
    _, opik, _ = migrated
    rows = by_source(opik)
    assert set(rows) == {r["trace_id"] for r in raws}
    for raw in raws:
        row = rows[raw["trace_id"]]
        assert is_uuid7(row["id"])
        assert uuid7_ms(row["id"]) == raw["timestamps"]["started_at"]
        assert row["start_time"] == iso(raw["timestamps"]["started_at"])
    for span in opik.spans.values():
        assert is_uuid7(span["id"])
        assert iso(uuid7_ms(span["id"])) == span["start_time"]
        assert span["trace_id"] in opik.traces
        if "parent_span_id" in span:  # parents exist and belong to the same trace
            assert opik.spans[span["parent_span_id"]]["trace_id"] == span["trace_id"]


@pytest.mark.anyio
async def test_sampled_fields_arrive_as_the_mapping_says(
    raws: list[Json], migrated: tuple[LangWatchFake, OpikFake, Report]
) -> None:
    """DESIGN.md default mapping: thread_id, chat input as {"messages"}, model/provider split,
    usage and cost, error_info, big and unicode inputs intact, the huge trace whole."""
    _, opik, _ = migrated
    rows = by_source(opik)
    for raw in raws:  # thread_id on every trace, absent on standalone ones
        assert rows[raw["trace_id"]].get("thread_id") == raw["metadata"].get("thread_id")
    llm = [(r, s) for r, s in all_spans(raws) if s["type"] == "llm"]
    chat_raw, chat_span = llm[0]
    chat = opik_span(opik, rows[chat_raw["trace_id"]], chat_span)
    assert chat["type"] == "llm"
    assert chat["input"] == {"messages": chat_span["input"]["value"]}
    gpt5 = [(r, s) for r, s in llm if s["model"] == "openai/gpt-5"]
    assert gpt5
    for raw, span in gpt5[:20]:
        row = opik_span(opik, rows[raw["trace_id"]], span)
        assert (row["model"], row["provider"]) == ("gpt-5", "openai")
        prompt, completion = span["metrics"]["prompt_tokens"], span["metrics"]["completion_tokens"]
        assert row["usage"] == {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        assert row["total_estimated_cost"] == pytest.approx(span["metrics"]["cost"])
    vendored = next((r, s) for r, s in llm if s.get("vendor") == "azure")
    row = opik_span(opik, rows[vendored[0]["trace_id"]], vendored[1])
    assert (row["model"], row["provider"]) == (vendored[1]["model"], "azure")
    others = [(r, s) for r, s in all_spans(raws) if s["type"] in ("agent", "chain", "rag")]
    assert all(opik_span(opik, rows[r["trace_id"]], s)["type"] == "general" for r, s in others[:20])

    big = [r for r in raws if len(r["input"]["value"].encode()) > 65_536]
    assert len(big) >= 5
    for raw in big:
        assert rows[raw["trace_id"]]["input"] == {"text": raw["input"]["value"]}
    unicode = next(r for r in raws if "東京" in r["input"]["value"])
    assert rows[unicode["trace_id"]]["input"] == {"text": unicode["input"]["value"]}

    failed = [(r, s) for r, s in all_spans(raws) if s["error"] is not None]
    assert len(failed) >= 20
    for raw, span in failed:
        info = opik_span(opik, rows[raw["trace_id"]], span)["error_info"]
        assert info["message"] == span["error"]["message"]
        assert span["error"]["stacktrace"][-1] in info["traceback"]
        assert info["exception_type"]

    huge = max(raws, key=lambda r: len(r["spans"]))
    assert len(spans_of(opik, rows[huge["trace_id"]]["id"])) == len(huge["spans"]) > 200


@pytest.mark.anyio
async def test_evaluations_become_scores_on_the_right_trace(
    raws: list[Json], migrated: tuple[LangWatchFake, OpikFake, Report]
) -> None:
    """DESIGN.md mapping: processed evaluation → feedback score (value = score, else passed →
    1/0, reason = details), written on its own trace; evaluations arrive for thread traces
    too, although LangWatch's thread endpoint has none (langwatch-api.md §3.4)."""
    _, opik, _ = migrated
    rows = by_source(opik)
    seen_passed = seen_score = 0
    for raw in raws:
        trace_id = rows[raw["trace_id"]]["id"]
        got = {name: s["value"] for (tid, name), s in opik.trace_scores.items() if tid == trace_id}
        assert got == pytest.approx(opik_scores(raw))
        for evaluation in raw["evaluations"]:
            if evaluation["status"] != "processed":
                continue
            score = opik.trace_scores.get((trace_id, evaluation["name"]))
            if evaluation.get("score") is not None:
                assert score is not None
                assert score["reason"] == evaluation["details"]
                assert score["source"] == "sdk"
                seen_score += 1
            elif evaluation.get("passed") is not None:
                assert score is not None
                seen_passed += 1
    assert seen_score > 20
    assert seen_passed > 20
    threaded = [r for r in raws if "thread_id" in r["metadata"] and opik_scores(r)]
    assert len(threaded) > 50


@pytest.mark.anyio
async def test_every_request_of_the_migration_matches_the_opik_spec(
    migrated: tuple[LangWatchFake, OpikFake, Report],
) -> None:
    """opik-api.md §1/§10: every request of the whole migration validates against the official
    spec, strictly (no undeclared property, no null, formats checked)."""
    require_spec()
    _, opik, _ = migrated
    operations = {validate_httpx_request(r, strict=True) for r in opik.requests}
    assert operations == {"createTraces", "createSpans", "scoreBatchOfTraces"}


# --- reruns -----------------------------------------------------------------------------------


def _ids(opik: OpikFake) -> tuple[set[str], set[str], set[tuple[str, str]]]:
    return set(opik.traces), set(opik.spans), set(opik.trace_scores)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("opik_ids", "enforce"),
    [("source-time", False), ("write-time", True)],
    ids=["source-time", "write-time+window"],
)
async def test_a_rerun_changes_nothing(
    raws: list[Json], tmp_path: Path, opik_ids: str, enforce: bool
) -> None:
    """DESIGN.md invariant 1: rerunning the same migration leaves Opik unchanged — same rows,
    same ids, no second rows — with derived ids and with write-time ids (whose map in the state
    directory is what makes them idempotent) on a server enforcing the UUID v7 window."""
    lw, opik = seeded(raws), OpikFake(enforce_time_window=enforce)
    settings = settings_for(lw, opik, tmp_path / "state", opik_ids)
    first = await migrate_all(lw, opik, settings)
    assert first.exit_code == 0
    assert len(opik.traces) == len(raws)
    rows, ids = opik.row_count(), _ids(opik)
    if opik_ids == "write-time":
        now_ms = int(time.time() * 1000)
        assert all(abs(uuid7_ms(t) - now_ms) < 3_600_000 for t in opik.traces)
        assert list((tmp_path / "state").glob("opik-ids-*.sqlite"))
    requests = len(opik.requests)

    again = await migrate_all(lw, opik, settings, rewrite=True)  # unchanged ones too
    assert again.exit_code == 0
    assert again.written.traces == len(raws)  # everything was sent again...
    assert len(opik.requests) > requests
    assert opik.row_count() == rows  # ...and nothing changed
    assert opik.duplicate_rows == {}
    assert _ids(opik) == ids


# --- an interrupted run -----------------------------------------------------------------------


async def _no_sleep(seconds: float) -> None:
    return None


async def run_direct(
    lw: LangWatchFake,
    opik: OpikFake,
    state: Path,
    ids: OpikIds | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Report:
    """The migration with endpoints built here: a tiny retry budget, pages of 50 traces."""
    settings = settings_for(lw, opik, state)
    policy = RetryPolicy(attempts=2, sleep=_no_sleep)
    source = LangWatchApiSource(langwatch_api(settings, lw.transport, policy), page_size=50)
    sink = OpikApiSink(
        opik_api(settings, transport or opik.transport, policy),
        project=PROJECT,
        mappings=default_mappings(),
        ids=ids,
    )
    return await run(source, sink, state=StateDir(state, {"job": "lw-to-opik"}))


class LosesAnswers(httpx.AsyncBaseTransport):
    """After `n` writes the server still stores every write, but its answers are lost (the
    client times out): the worst case for write-time ids, sent but never acknowledged."""

    def __init__(self, inner: httpx.AsyncBaseTransport, n: int) -> None:
        self.inner, self.left = inner, n

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method in ("POST", "PUT", "PATCH"):
            self.left -= 1
            if self.left < 0:
                raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


def content(opik: OpikFake) -> Json:
    """What Opik holds, minus what the server stamps (times, authors, project ids)."""

    def clean(row: Json) -> Json:
        out = {k: v for k, v in row.items() if k not in SERVER_FIELDS}
        if "value_by_author" in out:
            out["value_by_author"] = {
                a: {k: v for k, v in e.items() if k not in SERVER_FIELDS}
                for a, e in out["value_by_author"].items()
            }
        return out

    return {
        "traces": {k: clean(v) for k, v in opik.traces.items()},
        "spans": {k: clean(v) for k, v in opik.spans.items()},
        "trace_scores": {k: clean(v) for k, v in opik.trace_scores.items()},
        "span_scores": {k: clean(v) for k, v in opik.span_scores.items()},
        "threads": sorted(thread_id for _, thread_id in opik.threads),
        "duplicate_rows": len(opik.duplicate_rows),
    }


@pytest.mark.anyio
async def test_an_interrupted_run_resumes_to_the_same_end_state(
    raws: list[Json], tmp_path: Path
) -> None:
    """DESIGN.md invariant 3: the checkpoint moves only after the acknowledgement, so a run
    that dies half-way and is rerun ends exactly where an uninterrupted run does."""
    lw, opik = seeded(raws), OpikFake()
    opik.fail_after_writes(15)
    with pytest.raises(FatalError) as caught:
        await run_direct(lw, opik, tmp_path / "state")
    assert isinstance(caught.value, RetriesExhausted)
    assert 0 < len(opik.traces) < len(raws)  # it really stopped half-way
    opik.clear_faults()
    resumed = await run_direct(lw, opik, tmp_path / "state")
    assert resumed.resumed_after_pages > 0
    assert resumed.exit_code == 0

    fresh = OpikFake()
    complete = await run_direct(seeded(raws), fresh, tmp_path / "fresh")
    assert complete.exit_code == 0
    assert content(opik) == content(fresh)
    assert len(opik.traces) == len(raws)


@pytest.mark.anyio
@pytest.mark.parametrize("failure", ["refused", "answers lost"])
async def test_an_interrupted_write_time_run_resumes_without_duplicates(
    raws: list[Json], tmp_path: Path, failure: str
) -> None:
    """DESIGN.md invariants 1 + 3 in write-time mode (`_opik/ids.py`): ids are saved before
    their batch is sent and reused on resume, also when the server stored a batch whose answer
    never came: every record once, no orphan spans."""
    lw, opik = seeded(raws), OpikFake(enforce_time_window=True)
    map_file = tmp_path / "state" / "ids.sqlite"
    transport: httpx.AsyncBaseTransport | None = None
    if failure == "refused":
        opik.fail_after_writes(15)
    else:
        transport = LosesAnswers(opik.transport, 15)
    with pytest.raises(RetriesExhausted):
        await run_direct(lw, opik, tmp_path / "state", MintedIds(map_file), transport)
    written = set(opik.traces)
    assert 0 < len(written) < len(raws)
    opik.clear_faults()
    resumed = await run_direct(lw, opik, tmp_path / "state", MintedIds(map_file))
    assert resumed.exit_code == 0
    expected = Expected(raws)
    assert len(opik.traces) == expected.traces
    assert len(opik.spans) == expected.spans
    assert len(opik.trace_scores) == expected.scores
    assert opik.duplicate_rows == {}
    assert written <= set(opik.traces)
    assert all(s["trace_id"] in opik.traces for s in opik.spans.values())
    sources = by_source(opik)
    assert set(sources) == {r["trace_id"] for r in raws}


# --- the UUID v7 window with no id mode chosen, and a lost state directory ----------------------


def unchosen_settings(lw: LangWatchFake, opik: OpikFake, state: Path, **extra: Any) -> Settings:
    """Settings that name no id mode (`opik_ids` unset): the target decides."""
    return load_settings(
        None,
        {
            "langwatch_api_key": lw.api_key,
            "langwatch_endpoint": lw.base_url,
            "opik_url": opik.base_url,
            "state_dir": state,
            **extra,
        },
        environ={},
    )


@pytest.mark.anyio
async def test_a_window_server_gets_everything_once_without_a_chosen_mode(
    raws: list[Json], tmp_path: Path
) -> None:
    """§3.1/§10 on a server that enforces the UUID v7 window, with no `--opik-ids`: the first
    `too_old` switches the run to write-time (a warning says so), nothing is lost and nothing
    doubled; a rerun follows the map and adds no row. With the state directory lost, the next
    run stops (exit 2) instead of duplicating the project; `force` goes on, with a warning."""
    raws = raws[:150]
    lw, opik = seeded(raws), OpikFake(enforce_time_window=True)
    state = tmp_path / "state"
    report = await migrate_all(lw, opik, unchosen_settings(lw, opik, state))
    assert report.exit_code == 0
    expected = Expected(raws)
    assert report.written.traces == expected.traces
    assert len(opik.traces) == expected.traces
    assert len(opik.spans) == expected.spans
    assert len(opik.trace_scores) == expected.scores
    assert opik.duplicate_rows == {}
    assert [w for w in report.result.warnings if "switched to --opik-ids write-time" in w]
    assert set(by_source(opik)) == {r["trace_id"] for r in raws}

    rows = opik.row_count()
    again = await migrate_all(lw, opik, unchosen_settings(lw, opik, state))
    assert again.exit_code == 0
    assert not [w for w in again.result.warnings if "switched" in w]
    assert opik.row_count() == rows
    assert opik.duplicate_rows == {}

    lost = tmp_path / "lost"
    with pytest.raises(UsageError) as caught:
        await migrate_all(lw, opik, unchosen_settings(lw, opik, lost))
    assert caught.value.exit_code == 2
    assert f"already holds {expected.traces} traces" in str(caught.value)
    assert opik.row_count() == rows

    forced = await migrate_all(lw, opik, unchosen_settings(lw, opik, lost, force=True))
    assert forced.exit_code == 0
    assert [w for w in forced.result.warnings if w.startswith("--force: ")]
    assert len(opik.traces) == 2 * expected.traces  # the duplicates --force warned about


@pytest.mark.anyio
async def test_the_force_flag_reaches_the_sink(tmp_path: Path, raws: list[Json]) -> None:
    """`migrate --force` (cli.py) sets `force`: a run the new-map check stops (exit 2, the
    message naming --force) goes on with the flag (exit 0, the warning in the summary).

    The CLI runs its own event loop, so it runs in a worker thread: this module's async
    fixtures keep one running in the test's thread."""
    from click.testing import CliRunner, Result

    from tracebridge.cli import main

    lw, opik = seeded(raws[:40]), OpikFake()
    env = {
        "LANGWATCH_API_KEY": lw.api_key,
        "LANGWATCH_ENDPOINT": lw.base_url,
        "OPIK_URL_OVERRIDE": opik.base_url,
    }
    args = ["migrate", "--from", "langwatch", "--to", "opik", "--target-project", PROJECT]
    args += ["--opik-ids", "write-time"]
    runner = CliRunner()

    def invoke(*extra: str) -> Result:
        return runner.invoke(main, [*args, *extra], env=env)

    with lw.router, opik.router:
        first = await anyio.to_thread.run_sync(invoke, "--state-dir", str(tmp_path / "a"))
        assert first.exit_code == 0, first.output
        stopped = await anyio.to_thread.run_sync(invoke, "--state-dir", str(tmp_path / "b"))
        assert stopped.exit_code == 2, stopped.output
        assert "--force" in stopped.stderr
        forced = await anyio.to_thread.run_sync(
            invoke, "--state-dir", str(tmp_path / "c"), "--force"
        )
    assert forced.exit_code == 0, forced.output
    assert "warning: --force: " in forced.stdout
