"""`verify` (library and `tracebridge verify`): both sides compared by provenance and content
hash; a planted difference (a changed span, a missing trace, an extra trace) is found, counted
exactly and shown; matching sides exit 0, differing ones 1."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result

from tests.factories import langwatch_project, opik_project, opik_trace, uuid7
from tests.fakes.langwatch import LangWatchFake
from tests.fakes.opik import OpikFake
from tracebridge import OpikDirSink, Settings, default_mappings, load_settings, migrate
from tracebridge._opik.convert import trace_from_opik
from tracebridge._time import to_ms
from tracebridge._verify import VerifyReport, format_verify, verify_endpoints
from tracebridge.cli import main

START_MS = 1_767_225_600_000  # 2026-01-01
CLEAN_ENV: dict[str, str | None] = dict.fromkeys(
    (
        "LANGWATCH_API_KEY",
        "LANGWATCH_ENDPOINT",
        "OPIK_URL_OVERRIDE",
        "OPIK_API_KEY",
        "OPIK_WORKSPACE",
        "OPIK_PROJECT_NAME",
    )
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _cli(*args: str) -> Result:
    return CliRunner().invoke(main, ["verify", *args], env=CLEAN_ENV)


def _opik_born(rng: random.Random, start: datetime, project: str) -> Any:
    """An Opik trace as canonical, born in Opik (no stash)."""
    trace, spans, scores, span_scores = opik_trace(
        rng,
        trace_id=uuid7(to_ms(start), rng),
        start=start,
        thread_id=None,
        project_name=project,
        n_spans=3,
    )
    trace["feedback_scores"] = scores
    for span in spans:
        span["feedback_scores"] = span_scores.get(span["id"], [])
    return trace_from_opik(trace, spans, project=project, mappings=default_mappings())


# ------------------------------------------------------------------------- file endpoints


@pytest.fixture
def copied(tmp_path: Path) -> tuple[str, str, Path]:
    """A LangWatch export copied to an Opik folder by `migrate`: (SRC, DST, project folder)."""
    source = tmp_path / "traces.jsonl"
    traces = list(langwatch_project(24, 5, seed=5, start_ms=START_MS))
    source.write_text("".join(json.dumps(t) + "\n" for t in traces), encoding="utf-8")
    settings = load_settings(None, {"state_dir": tmp_path / "state"}, environ={})
    src, dst = f"langwatch-file:{source}", f"opik-dir:{tmp_path / 'out'}"
    report = anyio.run(lambda: migrate(src, dst, target_project="mirror", settings=settings))
    assert report.exit_code == 0
    (folder,) = (tmp_path / "out").glob("*/projects/*")
    return src, dst, folder


def test_a_faithful_copy_verifies(copied: tuple[str, str, Path]) -> None:
    src, dst, _ = copied
    result = _cli("--from", src, "--to", dst, "--target-project", "mirror")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "OK: both sides hold the same 24 traces (exit 0)"
    assert "24 traces in the source, 24 in the target, 24 compared" in result.output


def _source_id(record: dict[str, Any]) -> str:
    """The original's id a copy's stash names (an Opik folder file)."""
    return str(record["trace"]["metadata"]["tracebridge"]["source"]["id"])


def _plant(folder: Path) -> tuple[str, str, str]:
    """A changed span, a deleted trace and an extra (Opik-born) trace in the Opik folder;
    returns how verify names each."""
    files = sorted(folder.glob("trace_*.json"))
    changed = json.loads(files[0].read_text(encoding="utf-8"))
    changed["spans"][0]["output"] = {"text": "edited by hand"}
    files[0].write_text(json.dumps(changed), encoding="utf-8")
    gone = json.loads(files[1].read_text(encoding="utf-8"))
    files[1].unlink()
    extra = _opik_born(random.Random(1), datetime(2026, 1, 1, 6, tzinfo=UTC), "mirror")
    sink = OpikDirSink(
        folder.parents[2], workspace=folder.parts[-3], project="mirror", mappings=default_mappings()
    )

    async def write() -> None:
        await sink.write([extra])
        await sink.aclose()

    anyio.run(write)
    return (
        f"langwatch trace {_source_id(changed)}",
        f"langwatch trace {_source_id(gone)}",
        f"opik trace {extra.id}",
    )


def test_planted_differences_are_found_and_counted(copied: tuple[str, str, Path]) -> None:
    src, dst, folder = copied
    different, missing, extra = _plant(folder)
    result = _cli("--from", src, "--to", dst, "--target-project", "mirror")
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0].endswith("24 traces in the source, 24 in the target, 23 compared")
    assert lines[1:] == [
        "missing in the target: 1",
        f"  {missing}",
        "extra in the target (not from the source): 1",
        f"  {extra}",
        "different: 1",
        f"  {different}",
        "MISMATCH: 1 missing, 1 extra, 1 different (exit 1)",
    ]
    result = _cli("--from", src, "--to", dst, "--target-project", "mirror", "--json")
    assert result.exit_code == 1
    body = json.loads(result.output)
    assert body["ok"] is False
    assert body["counts"] == {
        "source_traces": 24,
        "target_traces": 24,
        "compared": 23,
        "missing": 1,
        "extra": 1,
        "different": 1,
        "unreadable": 0,
        "lost": 0,
    }
    assert (body["missing"], body["extra"], body["different"]) == ([missing], [extra], [different])


def test_lists_are_cut_and_counts_stay_exact(copied: tuple[str, str, Path]) -> None:
    """With more than `--limit` records, the first ones are shown and the rest counted."""
    src, dst, folder = copied
    for path in sorted(folder.glob("trace_*.json"))[:5]:
        path.unlink()
    result = _cli("--from", src, "--to", dst, "--target-project", "mirror", "--limit", "2")
    assert result.exit_code == 1
    assert "missing in the target: 5" in result.output
    assert "  ... and 3 more" in result.output
    body = json.loads(
        _cli(
            "--from", src, "--to", dst, "--target-project", "mirror", "--json", "--limit", "0"
        ).output
    )
    assert body["counts"]["missing"] == 5
    assert body["missing"] == []


def test_an_unreadable_record_means_no_match(copied: tuple[str, str, Path]) -> None:
    """A record a side cannot read is not provably the same: listed, exit 1."""
    src, dst, folder = copied
    (folder / "trace_broken.json").write_text("{not json", encoding="utf-8")
    result = _cli("--from", src, "--to", dst, "--target-project", "mirror")
    assert result.exit_code == 1
    assert "could not be read: 1" in result.output
    assert "MISMATCH: 1 unreadable (exit 1)" in result.output


def test_usage_errors_exit_2(copied: tuple[str, str, Path], tmp_path: Path) -> None:
    src, dst, _ = copied
    result = _cli("--from", src, "--to", dst, "--since", "2026-02-01", "--until", "2026-01-01")
    assert result.exit_code == 2
    assert "--since is after --until" in result.output
    result = _cli("--from", "nowhere:x", "--to", dst)
    assert result.exit_code == 2
    result = _cli("--from", f"langwatch-file:{tmp_path / 'missing.jsonl'}", "--to", dst)
    assert result.exit_code == 2


def test_the_window_bounds_both_sides(copied: tuple[str, str, Path]) -> None:
    """Only traces that started in the window are compared, on both sides."""
    src, dst, folder = copied
    files = sorted(
        folder.glob("trace_*.json"),
        key=lambda p: json.loads(p.read_text(encoding="utf-8"))["trace"]["start_time"],
    )
    files[-1].unlink()  # the newest trace is missing in the target
    last = json.loads(files[-2].read_text(encoding="utf-8"))["trace"]["start_time"]
    result = _cli("--from", src, "--to", dst, "--target-project", "mirror", "--until", last)
    assert result.exit_code == 0, result.output
    assert "23 compared" in result.output


# ------------------------------------------------------------------------------- API fakes


def _settings(lw: LangWatchFake, opik: OpikFake, state: Path) -> Settings:
    return load_settings(
        None,
        {
            "langwatch_api_key": lw.api_key,
            "langwatch_endpoint": lw.base_url,
            "opik_url": opik.base_url,
            "state_dir": state,
        },
        environ={},
    )


@pytest.mark.anyio
async def test_langwatch_to_opik_over_the_apis(tmp_path: Path) -> None:
    """Through `LangWatchApiSource` and `OpikApiSource`: a faithful copy matches; a changed
    span, a deleted trace and an Opik-born trace are found."""
    lw, opik = LangWatchFake(), OpikFake()
    start_ms = to_ms(datetime.now(UTC) - timedelta(days=3))
    for trace in langwatch_project(16, 4, seed=8, start_ms=start_ms):
        trace["evaluations"] = [
            e for e in trace["evaluations"] if e["status"] not in ("scheduled", "in_progress")
        ]
        lw.add_trace(trace)
    settings = _settings(lw, opik, tmp_path)
    transports = {"langwatch": lw.transport, "opik": opik.transport}
    report = await migrate(
        "langwatch", "opik", target_project="mirror", settings=settings, transports=transports
    )
    assert report.exit_code == 0

    async def check() -> VerifyReport:
        return await verify_endpoints(
            "langwatch", "opik", target_project="mirror", settings=settings, transports=transports
        )

    first = await check()
    assert first.ok, format_verify(first)
    assert first.compared == 16

    rows = sorted(opik.traces.values(), key=lambda r: r["start_time"])
    changed, gone = rows[0], rows[1]
    span = next(s for s in opik.spans.values() if s["trace_id"] == changed["id"])
    span["output"] = {"text": "edited on Opik"}
    del opik.traces[gone["id"]]
    for span_id in [k for k, s in opik.spans.items() if s["trace_id"] == gone["id"]]:
        del opik.spans[span_id]
    rng = random.Random(2)
    extra_start = datetime.now(UTC) - timedelta(days=1)
    trace, spans, scores, span_scores = opik_trace(
        rng,
        trace_id=uuid7(to_ms(extra_start), rng),
        start=extra_start,
        thread_id=None,
        project_name="mirror",
    )
    opik.add_trace("mirror", trace, spans, scores, span_scores)

    found = await check()
    stash = "tracebridge"
    assert found.missing == [f"langwatch trace {gone['metadata'][stash]['source']['id']}"]
    assert found.extra == [f"opik trace {trace['id']}"]
    assert found.different == [f"langwatch trace {changed['metadata'][stash]['source']['id']}"]
    assert (found.source_traces, found.target_traces, found.compared) == (16, 16, 15)
    assert found.exit_code == 1


@pytest.mark.anyio
async def test_opik_to_langwatch_over_the_apis_thread_data_included(tmp_path: Path) -> None:
    """Opik → LangWatch with thread scores and tags: matches; a thread tag added on the Opik
    side afterwards is a difference of that thread."""
    opik, lw = OpikFake(), LangWatchFake()
    start = datetime.now(UTC) - timedelta(days=2)
    for trace, spans, scores, span_scores in opik_project(
        16, 4, seed=4, start=start, project_name="sb"
    ):
        opik.add_trace("sb", trace, spans, scores, span_scores)
    thread_id = sorted({t["thread_id"] for t in opik.traces.values() if t.get("thread_id")})[0]
    opik.add_thread_data(
        "sb", thread_id, scores=[{"name": "csat", "value": 4, "source": "ui"}], tags=["vip"]
    )
    settings = _settings(lw, opik, tmp_path)
    transports = {"langwatch": lw.transport, "opik": opik.transport}
    report = await migrate(
        "opik", "langwatch", source_project="sb", settings=settings, transports=transports
    )
    assert report.exit_code == 0

    async def check() -> VerifyReport:
        return await verify_endpoints(
            "opik", "langwatch", source_project="sb", settings=settings, transports=transports
        )

    first = await check()
    assert first.ok, format_verify(first)
    assert first.compared == 16
    opik.add_thread_data("sb", thread_id, tags=["vip", "refund"])
    found = await check()
    assert found.different == [f"thread {thread_id}"]
    assert (found.missing, found.extra) == ([], [])
