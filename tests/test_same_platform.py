"""Issue 10, same-platform copies: an `opik export` folder loaded into Opik, a LangWatch export
loaded into LangWatch, and the backups the other way, with every record arriving as itself
(same ids, no stash, its provenance); a rerun adds nothing. An endpoint copied onto itself is
refused (exit 2).

Rules pinned: DESIGN.md invariants 1 (idempotent writes) and 2 (provenance; Opik-born records
keep their Opik ids, `SourceTimeIds`/`MintedIds`); `reference/opik-api.md` §3.3 (one id in two
projects of a workspace is a second row).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tracebridge import Report, Settings, UsageError, load_settings, migrate
from tracebridge._stash import STASH_KEY
from tracebridge._time import to_ms

from .factories import langwatch_project, opik_project
from .fakes.langwatch import LangWatchFake
from .fakes.opik import OpikFake
from .opik_spec import require_spec, validate_httpx_request
from .test_cli import LW_KEY, RECORDS, api_env, assert_no_traceback, invoke
from .test_opik_to_langwatch import THREAD_SCORES, _comparable

Json = dict[str, Any]
PROJECT = "support-bot"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's default `.tracebridge` and relative paths land in tmp."""
    monkeypatch.chdir(tmp_path)


def _settings(lw: LangWatchFake, opik: OpikFake, state: Path, **extra: Any) -> Settings:
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


async def _migrate(
    from_: str, to: str, lw: LangWatchFake, opik: OpikFake, state: Path, **kw: Any
) -> Report:
    extra = {k: kw.pop(k) for k in ("opik_ids",) if k in kw}
    return await migrate(
        from_,
        to,
        settings=_settings(lw, opik, state, **extra),
        transports={"langwatch": lw.transport, "opik": opik.transport},
        **kw,
    )


# --- Opik ------------------------------------------------------------------------------------


def _seed_opik(opik: OpikFake) -> None:
    start = datetime.now(UTC) - timedelta(days=40)  # older than any ingestion window
    for trace, spans, scores, span_scores in opik_project(
        60, 12, seed=10, start=start, project_name=PROJECT, huge_trace_spans=120
    ):
        opik.add_trace(PROJECT, trace, spans, scores, span_scores)
    thread_id = sorted(t for (_, t) in opik.threads)[0]
    opik.add_thread_data(PROJECT, thread_id, scores=THREAD_SCORES, tags=["vip"], status="inactive")


#: Row fields the server sets when it stores a row (or that name the project's server id).
_SERVER = frozenset(
    {"created_at", "created_by", "last_updated_at", "last_updated_by", "project_id"}
)


def _row(row: Json) -> Json:
    out = {k: v for k, v in row.items() if k not in _SERVER}
    if isinstance(out.get("value_by_author"), dict):  # a score's authors: stamped per write
        out["value_by_author"] = {
            author: {k: v for k, v in entry.items() if k not in _SERVER}
            for author, entry in out["value_by_author"].items()
        }
    return out


def _rows(opik: OpikFake) -> Json:
    """Every trace, span and score row, keyed by its id, without the server's own fields."""

    def clean(table: dict[Any, Json]) -> dict[str, Json]:
        return {str(key): _row(row) for key, row in table.items()}

    return {
        "traces": clean(opik.traces),
        "spans": clean(opik.spans),
        "trace_scores": clean(opik.trace_scores),
        "span_scores": clean(opik.span_scores),
        "thread_scores": {str(key[1:]): _row(row) for key, row in opik.thread_scores.items()},
    }


def _no_stash(opik: OpikFake) -> None:
    for row in [*opik.traces.values(), *opik.spans.values()]:
        assert STASH_KEY not in (row.get("metadata") or {}), row["id"]


@pytest.mark.anyio
@pytest.mark.parametrize("opik_ids", ["source-time", "write-time"])
async def test_an_opik_project_round_trips_through_a_folder_as_itself(
    tmp_path: Path, opik_ids: str
) -> None:
    """opik → opik-dir → opik (another server, another project name): every trace, span and
    score keeps its id and content, in either id mode (neither derives nor mints an id for an
    Opik-born record), nothing is stashed, every request is in the spec; a rerun of the load
    adds no row."""
    require_spec()
    lw, original, restored = LangWatchFake(), OpikFake(), OpikFake(base_url="http://opik2.test/api")
    _seed_opik(original)
    folder = tmp_path / "export"
    out = await _migrate(
        "opik", f"opik-dir:{folder}", lw, original, tmp_path / "s1", source_project=PROJECT
    )
    assert out.exit_code == 0
    assert out.read.traces == out.written.traces == len(original.traces)

    load = await _migrate(
        f"opik-dir:{folder}",
        "opik",
        lw,
        restored,
        tmp_path / "s2",
        target_project="restored",
        opik_ids=opik_ids,
    )
    assert load.exit_code == 0, load
    assert load.written == out.written
    want, got = _rows(original), _rows(restored)
    for table in want:
        assert set(got[table]) == set(want[table]), table
        for key, row in want[table].items():
            assert got[table][key] == row, (table, key)
    assert restored.threads.keys() != set()  # thread tags and status arrived
    (thread,) = [t for t in restored.threads.values() if t.get("tags")]
    assert thread["tags"] == ["vip"]
    assert thread["status"] == "inactive"
    _no_stash(restored)
    assert restored.duplicate_rows == {}
    operations = {validate_httpx_request(r, strict=True) for r in restored.requests}
    assert "createTraces" in operations

    rows = restored.row_count()
    again = await _migrate(
        f"opik-dir:{folder}",
        "opik",
        lw,
        restored,
        tmp_path / "s2",
        target_project="restored",
        opik_ids=opik_ids,
        rewrite=True,  # unchanged ones too
    )
    assert again.exit_code == 0
    assert again.written == load.written  # everything sent again...
    assert restored.row_count() == rows  # ...and no row added
    assert restored.duplicate_rows == {}
    assert _rows(restored) == got


@pytest.mark.anyio
async def test_an_export_loaded_back_into_its_own_project_changes_nothing(
    tmp_path: Path,
) -> None:
    """The restore use: an export loaded into the very project it came from upserts every
    record onto itself (no second row, nothing renamed), which `opik import` cannot do."""
    lw, opik = LangWatchFake(), OpikFake()
    _seed_opik(opik)
    before, rows = _rows(opik), opik.row_count()
    folder = tmp_path / "export"
    out = await _migrate(
        "opik", f"opik-dir:{folder}", lw, opik, tmp_path / "s", source_project=PROJECT
    )
    assert out.exit_code == 0
    back = await _migrate(
        f"opik-dir:{folder}", "opik", lw, opik, tmp_path / "s", target_project=PROJECT
    )
    assert back.exit_code == 0
    assert back.written.traces == len(opik.traces)
    assert opik.row_count() == rows
    assert opik.duplicate_rows == {}
    assert _rows(opik) == before


@pytest.mark.anyio
@pytest.mark.parametrize("opik_ids", ["source-time", "write-time", None])
async def test_old_opik_ids_on_a_window_server_stop_the_load_saying_why(
    tmp_path: Path, opik_ids: str | None
) -> None:
    """Opik-born records keep their ids in every mode, so a server enforcing the UUID v7
    window refuses old ones: the run stops (exit 2) naming that, not advising a mode switch
    that cannot help."""
    lw, opik = LangWatchFake(), OpikFake()
    _seed_opik(opik)
    folder = tmp_path / "export"
    out = await _migrate(
        "opik", f"opik-dir:{folder}", lw, opik, tmp_path / "s", source_project=PROJECT
    )
    assert out.exit_code == 0
    window = OpikFake(base_url="http://opik2.test/api", enforce_time_window=True)
    extra = {"opik_ids": opik_ids} if opik_ids else {}
    with pytest.raises(UsageError, match="born in Opik and keep their own ids"):
        await _migrate(
            f"opik-dir:{folder}", "opik", lw, window, tmp_path / "s2", target_project="t", **extra
        )
    assert window.traces == {}


@pytest.mark.anyio
async def test_folder_to_folder_on_opik_is_a_copy(tmp_path: Path) -> None:
    lw, opik = LangWatchFake(), OpikFake()
    _seed_opik(opik)
    a, b = tmp_path / "a", tmp_path / "b"
    assert (
        await _migrate("opik", f"opik-dir:{a}", lw, opik, tmp_path / "s", source_project=PROJECT)
    ).exit_code == 0
    copied = await _migrate(f"opik-dir:{a}", f"opik-dir:{b}", lw, opik, tmp_path / "s")
    assert copied.exit_code == 0
    names = sorted(p.name for p in a.rglob("trace_*.json"))
    assert names == sorted(p.name for p in b.rglob("trace_*.json"))
    assert len(names) == len(opik.traces)


# --- LangWatch -------------------------------------------------------------------------------


def _seed_langwatch(lw: LangWatchFake, *, days_ago: int = 3) -> None:
    start_ms = to_ms(datetime.now(UTC) - timedelta(days=days_ago))
    for trace in langwatch_project(60, 12, seed=11, start_ms=start_ms, huge_trace_spans=120):
        # `scheduled` / `in_progress` are LangWatch's own evaluator runs: no client can write
        # them (test_opik_to_langwatch.py, `_seed_langwatch`).
        trace["evaluations"] = [
            e for e in trace["evaluations"] if e["status"] not in ("scheduled", "in_progress")
        ]
        lw.add_trace(trace)


def _langwatch_counts(lw: LangWatchFake) -> tuple[int, int, int]:
    traces = lw.traces.values()
    return (
        len(traces),
        sum(len(t["spans"]) for t in traces),
        sum(len(t["evaluations"]) for t in traces),
    )


def _without_stash(trace: Json) -> None:
    assert STASH_KEY not in trace["metadata"], trace["trace_id"]
    for span in trace["spans"]:
        assert STASH_KEY not in (span.get("params") or {}), span["span_id"]


@pytest.mark.anyio
async def test_a_langwatch_export_loads_into_langwatch_as_itself(tmp_path: Path) -> None:
    """langwatch → langwatch-file → langwatch (another project's key): traces keep their ids,
    spans and evaluations, no synthetic root span, no stash; a rerun writes the same and
    adds nothing."""
    opik = OpikFake()
    original = LangWatchFake()
    _seed_langwatch(original)
    path = tmp_path / "backup.jsonl"
    out = await _migrate("langwatch", f"langwatch-file:{path}", original, opik, tmp_path / "s1")
    assert out.exit_code == 0
    assert out.read.traces == out.written.traces == len(original.traces)

    other = LangWatchFake(api_key="sk-lw-other", project_id="project_other")
    load = await _migrate(f"langwatch-file:{path}", "langwatch", other, opik, tmp_path / "s2")
    assert load.exit_code == 0, load
    assert load.written.traces == len(original.traces)
    assert set(other.traces) == set(original.traces)
    for trace_id, trace in original.traces.items():
        assert _comparable(other.traces[trace_id]) == _comparable(trace), trace_id
        _without_stash(other.traces[trace_id])
    assert not any(
        s["span_id"] == trace_id for trace_id, t in other.traces.items() for s in t["spans"]
    )  # LangWatch-born: no synthetic root span

    counts = _langwatch_counts(other)
    snapshot = {tid: _comparable(t) for tid, t in other.traces.items()}
    again = await _migrate(
        f"langwatch-file:{path}", "langwatch", other, opik, tmp_path / "s2", rewrite=True
    )
    assert again.exit_code == 0
    assert again.written == load.written
    assert _langwatch_counts(other) == counts
    assert {tid: _comparable(t) for tid, t in other.traces.items()} == snapshot


@pytest.mark.anyio
async def test_a_langwatch_backup_reads_back_as_the_records(tmp_path: Path) -> None:
    """langwatch → langwatch-file, then langwatch-file → langwatch-file: the file holds the
    records as LangWatch-born (same ids, no stash), and a copy of the file holds the same."""
    opik, lw = OpikFake(), LangWatchFake()
    _seed_langwatch(lw)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert (
        await _migrate("langwatch", f"langwatch-file:{a}", lw, opik, tmp_path / "s")
    ).exit_code == 0
    assert (
        await _migrate(f"langwatch-file:{a}", f"langwatch-file:{b}", lw, opik, tmp_path / "s")
    ).exit_code == 0
    from .test_cli import lines_by_trace_id

    first, second = lines_by_trace_id(a), lines_by_trace_id(b)
    assert set(first) == set(second) == set(lw.traces)
    for trace_id, line in first.items():
        assert second[trace_id] == line
        assert STASH_KEY not in line["metadata"]
        assert {s["span_id"] for s in line["spans"]} == {
            s["span_id"] for s in lw.traces[trace_id]["spans"]
        }


@pytest.mark.anyio
async def test_old_langwatch_traces_written_back_to_their_own_project_are_skipped(
    tmp_path: Path,
) -> None:
    """The 31-day rule is unchanged: a backup of traces older than the cutoff, loaded into the
    project they were born in, is skipped as "the original is still there", not refused."""
    opik, lw = OpikFake(), LangWatchFake()
    _seed_langwatch(lw, days_ago=60)
    path = tmp_path / "old.jsonl"
    assert (
        await _migrate("langwatch", f"langwatch-file:{path}", lw, opik, tmp_path / "s")
    ).exit_code == 0
    counts = _langwatch_counts(lw)
    back = await _migrate(f"langwatch-file:{path}", "langwatch", lw, opik, tmp_path / "s")
    assert back.exit_code == 0, back
    assert back.written.traces == 0
    assert back.skipped.traces == len(lw.traces)
    assert _langwatch_counts(lw) == counts


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["--from", "langwatch-file:a.jsonl", "--to", "langwatch-file:./a.jsonl"],
            "langwatch-file:a.jsonl is both --from and --to: a copy onto itself",
        ),
        (
            ["--from", "opik-dir:out", "--to", "opik-dir:out/"],
            "opik-dir:out is both --from and --to: a copy onto itself",
        ),
        (
            ["--from", "opik", "--to", "opik", "--source-project", "p", "--target-project", "p"],
            "--from opik and --to opik are the same Opik project ('p'",
        ),
        (
            ["--from", "opik", "--to", "opik", "--source-project", "p", "--target-project", "P"],
            "are the same Opik project ('P'",
        ),
        (
            ["--from", "opik", "--to", "opik", "--source-project", "a", "--target-project", "b"],
            "are the same Opik workspace",
        ),
        (["--from", "langwatch", "--to", "langwatch"], "are the same LangWatch project"),
    ],
)
@pytest.mark.parametrize("command", ["migrate", "sync"])
def test_a_copy_onto_itself_exits_2(
    tmp_path: Path, command: str, args: list[str], needle: str
) -> None:
    (tmp_path / "a.jsonl").write_text("")
    (tmp_path / "out").mkdir()
    env = {"LANGWATCH_API_KEY": LW_KEY, "OPIK_URL_OVERRIDE": "http://opik.test/api"}
    result = invoke([command, *args], env)
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert_no_traceback(result)


def test_without_projects_opik_to_opik_is_the_same_project(tmp_path: Path) -> None:
    result = invoke(["migrate", "--from", "opik", "--to", "opik"], {"OPIK_PROJECT_NAME": "x"})
    assert result.exit_code == 2
    assert "the same Opik project ('x'" in result.output
    assert "OPIK_PROJECT_NAME" in result.output


def test_sync_still_follows_changes_between_the_platforms_only(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text("")
    result = invoke(["sync", "--from", "langwatch-file:a.jsonl", "--to", "langwatch-file:b"])
    assert result.exit_code == 2
    assert "for a copy on one platform use migrate" in result.output


def test_the_cli_restores_a_langwatch_backup_into_its_project(tmp_path: Path) -> None:
    """The sample is older than 31 days: loaded back into the project it was born in, each
    trace is skipped (the original is still there); into another project it is a dead letter
    that names --shift-old-timestamps (the existing rules, unchanged for a same-platform copy).
    """
    lw, op = LangWatchFake(project_id=RECORDS[0]["project_id"]), OpikFake()
    for record in RECORDS:
        lw.add_trace(record)
    before = copy.deepcopy(lw.traces)
    with lw.router, op.router:
        backup = invoke(
            ["migrate", "--from", "langwatch", "--to", "langwatch-file:b.jsonl"], api_env(lw, op)
        )
        assert backup.exit_code == 0, backup.output
        home = invoke(
            ["migrate", "--from", "langwatch-file:b.jsonl", "--to", "langwatch"], api_env(lw, op)
        )
        assert home.exit_code == 0, home.output
        assert lw.traces == before
        other = LangWatchFake(base_url="http://lw2.test", api_key="sk-2", project_id="p2")
        with other.router:
            away = invoke(
                ["migrate", "--from", "langwatch-file:b.jsonl", "--to", "langwatch"],
                api_env(other, op),
            )
    assert away.exit_code == 1, away.output
    assert other.traces == {}
    letters = (tmp_path / ".tracebridge" / "dead-letters.jsonl").read_text()
    assert "--shift-old-timestamps" in letters
