"""Issue 4, "Opik → LangWatch over the live APIs", done when: a generated Opik project (≥ 500
traces, ≥ 100 threads, thread scores and tags, traces of more than 200 spans) lands in LangWatch
whole, and LangWatch → Opik → LangWatch through the two live-API paths returns the original
LangWatch records, ids included; a rerun duplicates nothing.

Facts: `reference/langwatch-api.md` §4 (read shape), §5.1 (collector); `reference/opik-api.md`
§2.4–§2.6 (reads); DESIGN.md invariants 1, 2 and 4 and its mapping table.
"""

from __future__ import annotations

import copy
import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tracebridge import Report, Settings, load_settings, migrate
from tracebridge._langwatch.convert import evaluation_id
from tracebridge._time import from_iso, to_ms

from .factories import langwatch_project, opik_project, opik_trace, uuid7
from .fakes.langwatch import LangWatchFake
from .fakes.opik import OpikFake

Json = dict[str, Any]
PROJECT = "support-bot"
N_TRACES, N_THREADS = 520, 110
THREAD_SCORES = [
    {"name": "resolved", "value": 1, "reason": "customer confirmed the fix", "source": "ui"},
    {"name": "csat", "value": 4, "category_name": "good"},
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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


async def _migrate(
    from_: str, to: str, lw: LangWatchFake, opik: OpikFake, state: Path, **kw: Any
) -> Report:
    return await migrate(
        from_,
        to,
        settings=_settings(lw, opik, state),
        transports={"langwatch": lw.transport, "opik": opik.transport},
        **kw,
    )


# ------------------------------------------------------------------------ Opik → LangWatch


def _seed_opik(opik: OpikFake) -> tuple[list[Json], dict[str, Json]]:
    """The generated project: returns its traces (write shape, with "spans", "scores" and
    "span_scores") and the thread-level data added to some threads, by thread id."""
    start = datetime.now(UTC) - timedelta(days=5)
    rows: list[Json] = []

    def add(records: tuple[Json, list[Json], list[Json], dict[str, list[Json]]]) -> None:
        trace, spans, scores, span_scores = records
        opik.add_trace(PROJECT, trace, spans, scores, span_scores)
        rows.append({**trace, "spans": spans, "scores": scores, "span_scores": span_scores})

    for records in opik_project(
        N_TRACES, N_THREADS, seed=4, start=start, project_name=PROJECT, huge_trace_spans=260
    ):
        add(records)
    rng = random.Random(4)
    big_start = start + timedelta(days=2)
    add(  # a second trace of more than 200 spans, in no thread: three collector requests
        opik_trace(
            rng,
            trace_id=uuid7(to_ms(big_start), rng),
            start=big_start,
            thread_id=None,
            project_name=PROJECT,
            n_spans=430,
        )
    )
    thread_ids = sorted({r["thread_id"] for r in rows if "thread_id" in r})
    data: dict[str, Json] = {}
    for i, thread_id in enumerate(thread_ids[::9]):
        data[thread_id] = {
            "scores": THREAD_SCORES[: 1 + i % 2],
            "tags": ["vip", "refund"] if i % 2 else ["escalated"],
            "status": "inactive" if i % 3 == 0 else None,
        }
        opik.add_thread_data(PROJECT, thread_id, **data[thread_id])
    return rows, data


def _last_traces(rows: list[Json]) -> dict[str, str]:
    """thread id → id of its last trace by start time."""
    last: dict[str, Json] = {}
    for row in rows:
        thread = row.get("thread_id")
        if thread and (thread not in last or row["start_time"] > last[thread]["start_time"]):
            last[thread] = row
    return {thread: row["id"] for thread, row in last.items()}


@pytest.mark.anyio
async def test_a_generated_opik_project_lands_in_langwatch_whole(tmp_path: Path) -> None:
    """Every thread, trace, span and score of the Opik project is in LangWatch, mapped."""
    opik, lw = OpikFake(), LangWatchFake()
    rows, thread_data = _seed_opik(opik)
    n_threads = len({r["thread_id"] for r in rows if "thread_id" in r})
    n_spans = sum(len(r["spans"]) for r in rows)
    n_trace_scores = sum(len(r["scores"]) for r in rows)
    n_span_scores = sum(len(v) for r in rows for v in r["span_scores"].values())
    n_thread_scores = sum(len(d["scores"]) for d in thread_data.values())
    n_scores = n_trace_scores + n_span_scores + n_thread_scores
    assert len(rows) >= 500
    assert n_threads >= 100
    assert sum(len(r["spans"]) > 200 for r in rows) == 2
    assert len(thread_data) >= 10
    assert n_thread_scores > 0

    report = await _migrate("opik", "langwatch", lw, opik, tmp_path, source_project=PROJECT)

    assert report.exit_code == 0
    for counts in (report.read, report.written):
        assert (counts.threads, counts.traces, counts.spans, counts.scores) == (
            n_threads,
            len(rows),
            n_spans,
            n_scores,
        )
    assert report.dead_lettered.total() == 0
    assert report.skipped.total() == 0

    # the fake holds every trace, its spans plus the synthetic root, and every score
    assert set(lw.traces) == {r["id"] for r in rows}
    assert sum(len(t["spans"]) for t in lw.traces.values()) == n_spans + len(rows)
    assert sum(len(t["evaluations"]) for t in lw.traces.values()) == n_scores
    bodies = lw.collected_requests()
    assert len(bodies) == len(lw.requests)  # nothing refused, nothing resent
    assert max(len(b["spans"]) for b in bodies) <= 200

    last_of = _last_traces(rows)
    span_types: Counter[tuple[str, str]] = Counter()
    for row in rows:
        stored = lw.traces[row["id"]]
        spans = {s["span_id"]: s for s in stored["spans"]}
        assert len(spans) == len(row["spans"]) + 1
        assert spans[row["id"]]["parent_id"] is None  # the synthetic root span
        assert stored["metadata"].get("thread_id") == row.get("thread_id")
        assert stored["metadata"].get("labels") == row["tags"]
        assert stored["timestamps"]["started_at"] == to_ms(from_iso(row["start_time"]))
        for span in row["spans"]:
            got = spans[span["id"]]
            span_types[span["type"], got["type"]] += 1
            assert got["parent_id"] == span.get("parent_span_id", row["id"])
            assert got["name"] == span["name"]
            assert got["timestamps"]["started_at"] == to_ms(from_iso(span["start_time"]))
            assert got["timestamps"]["finished_at"] == to_ms(from_iso(span["end_time"]))
            for value in got["timestamps"].values():
                assert 10**12 <= value < 10**13
            if "ttft" in span:
                first = got["timestamps"]["first_token_at"]
                assert first - got["timestamps"]["started_at"] == span["ttft"]
            if span["type"] == "llm":
                assert got["model"] == f"{span['provider']}/{span['model']}"
                assert got["metrics"]["prompt_tokens"] == span["usage"]["prompt_tokens"]
                assert got["metrics"]["completion_tokens"] == span["usage"]["completion_tokens"]
                assert got["metrics"]["cost"] == span["total_estimated_cost"]
            if "error_info" in span:
                assert got["error"]["message"] == span["error_info"]["message"]

        evaluations = {e["evaluation_id"]: e for e in stored["evaluations"]}
        expected = [(evaluation_id(row["id"], s["name"]), s) for s in row["scores"]]
        expected += [
            (evaluation_id(row["id"], s["name"], span_id), s)
            for span_id, scores in row["span_scores"].items()
            for s in scores
        ]
        thread = row.get("thread_id")
        is_last = thread is not None and last_of[thread] == row["id"]
        if is_last and thread in thread_data:
            expected += [
                (evaluation_id(row["id"], s["name"], thread=True), {**s, "thread": True})
                for s in thread_data[thread]["scores"]
            ]
            tags = json.loads(stored["metadata"]["thread_tags"])
            assert tags == thread_data[thread]["tags"]
        else:
            assert "thread_tags" not in stored["metadata"]
        assert set(evaluations) == {eid for eid, _ in expected}
        for eid, score in expected:
            got = evaluations[eid]
            prefix = "thread: " if score.get("thread") else ""
            assert got["name"] == prefix + score["name"]
            assert got["score"] == score["value"]
            assert got["label"] == score.get("category_name")
            assert got["details"] == score.get("reason")
            assert got["status"] == "processed"

    # Opik's four span types, LangWatch's names (mappings/opik_to_langwatch.toml)
    assert set(span_types) == {
        ("general", "span"),
        ("llm", "llm"),
        ("tool", "tool"),
        ("guardrail", "guardrail"),
    }


def _without_ingest_times(trace: Json) -> Json:
    """A stored trace without the times the server sets when it (re)stores something."""
    out = copy.deepcopy(trace)
    out["timestamps"].pop("updated_at")
    for span in out["spans"]:
        span["timestamps"].pop("updated_at")
    for evaluation in out["evaluations"]:
        evaluation.pop("timestamps")
    return out


@pytest.mark.anyio
async def test_a_rerun_of_an_opik_project_duplicates_nothing(tmp_path: Path) -> None:
    """DESIGN invariant 1 on the LangWatch side: trace, span and evaluation ids are stable
    (synthetic root = trace id, derived `evaluation_id`s, thread scores on the same last
    trace), so a rerun, split requests included, leaves the same records."""
    opik, lw = OpikFake(), LangWatchFake()
    start = datetime.now(UTC) - timedelta(days=2)
    for trace, spans, scores, span_scores in opik_project(
        90, 20, seed=6, start=start, project_name=PROJECT, huge_trace_spans=250
    ):
        opik.add_trace(PROJECT, trace, spans, scores, span_scores)
    thread_id = next(t for (_, t) in opik.threads)
    opik.add_thread_data(PROJECT, thread_id, scores=THREAD_SCORES, tags=["vip"])
    first = await _migrate("opik", "langwatch", lw, opik, tmp_path, source_project=PROJECT)
    assert first.exit_code == 0
    before = {tid: _without_ingest_times(t) for tid, t in lw.traces.items()}
    n_requests = len(lw.requests)
    second = await _migrate(
        "opik", "langwatch", lw, opik, tmp_path, source_project=PROJECT, rewrite=True
    )
    assert second.exit_code == 0
    assert second.written == first.written
    assert len(lw.requests) == 2 * n_requests  # the same requests again, none extra
    assert {tid: _without_ingest_times(t) for tid, t in lw.traces.items()} == before
    assert sum(len(t["evaluations"]) for t in lw.traces.values()) == first.written.scores
    assert sum(len(t["spans"]) for t in lw.traces.values()) == (
        first.written.spans + first.written.traces
    )


# ------------------------------------------------------- LangWatch → Opik → LangWatch


def _seed_langwatch(lw: LangWatchFake) -> None:
    """Traces started within the last few days (inside the 31-day cutoff, §5.1)."""
    start_ms = to_ms(datetime.now(UTC) - timedelta(days=3))
    for trace in langwatch_project(
        160, 32, seed=8, start_ms=start_ms, huge_trace_spans=230, big_input_every=40
    ):
        # LangWatch runs its own evaluators: `scheduled` and `in_progress` are states of those
        # runs, which the collector refuses (status ∈ processed|skipped|error, §5.1), so no
        # path back into LangWatch can recreate them. The sink tests pin that they are
        # reported; here the project holds only evaluations a client can write.
        trace["evaluations"] = [
            e for e in trace["evaluations"] if e["status"] not in ("scheduled", "in_progress")
        ]
        lw.add_trace(trace)


def _comparable(trace: Json) -> Json:
    """A stored LangWatch trace without what the server sets itself on ingestion.

    Left out, and why:
    - `project_id`: the project the API key belongs to, not part of the record;
    - `inserted_at` / `updated_at` (trace and spans): when this server stored the record;
    - evaluation `timestamps`: the collector stamps evaluations with ingestion time (§5.1);
    - trace `input`, `output`, `metrics`, `error`: derived by the server from the spans (§4,
      "not independently settable"); the seeded values follow the factory, not the fake's
      derivation, and the spans they come from are compared field by field;
    - an evaluation's `details` unless it is `processed`, `error.stacktrace` and `trace_id`: the
      collector nulls verdict fields of other statuses, empties stacktraces (§4, §5.1) and adds
      the trace id.
    Absent span `metrics`/`params` are compared as `{}`, which is what the collector stores.
    """
    out = copy.deepcopy(trace)
    for key in ("project_id", "input", "output", "metrics", "error", "platformUrl"):
        out.pop(key, None)
    out["timestamps"] = {k: v for k, v in out["timestamps"].items() if k == "started_at"}
    spans = []
    for span in out["spans"]:
        span.pop("project_id", None)
        span["timestamps"] = {
            k: v for k, v in span["timestamps"].items() if k not in ("inserted_at", "updated_at")
        }
        span["metrics"] = span.get("metrics") or {}
        span["params"] = span.get("params") or {}
        spans.append(span)
    out["spans"] = sorted(spans, key=lambda s: s["span_id"])
    fields = ("evaluation_id", "evaluator_id", "name", "type", "is_guardrail", "status")
    evaluations = []
    for evaluation in out["evaluations"]:
        kept = {k: evaluation.get(k) for k in (*fields, "score", "label", "passed")}
        if evaluation["status"] == "processed":
            kept["details"] = evaluation.get("details")
        if evaluation["status"] == "error":
            kept["error"] = (evaluation.get("error") or {}).get("message")
        evaluations.append(kept)
    out["evaluations"] = sorted(evaluations, key=lambda e: e["evaluation_id"])
    return out


def _same_traces(original: LangWatchFake, copy_: LangWatchFake) -> None:
    assert set(copy_.traces) == set(original.traces)
    for trace_id, trace in original.traces.items():
        assert _comparable(copy_.traces[trace_id]) == _comparable(trace), trace_id


def _counts(lw: LangWatchFake) -> tuple[int, int, int]:
    traces = lw.traces.values()
    return (
        len(traces),
        sum(len(t["spans"]) for t in traces),
        sum(len(t["evaluations"]) for t in traces),
    )


@pytest.mark.anyio
async def test_langwatch_to_opik_to_langwatch_returns_the_original_records(
    tmp_path: Path,
) -> None:
    """DESIGN invariant 2: LangWatch → Opik → LangWatch is the identity on content and ids,
    through `LangWatchApiSource` → `OpikApiSink` and `OpikApiSource` → `LangWatchApiSink`; a
    rerun of either leg duplicates nothing (invariant 1)."""
    original, opik, back = LangWatchFake(), OpikFake(), LangWatchFake()
    _seed_langwatch(original)
    assert any(len(t["spans"]) > 200 for t in original.traces.values())
    assert any(
        len(t["input"]["value"].encode()) > 65_536
        for t in original.traces.values()
        if t.get("input")
    )

    there = await _migrate(
        "langwatch", "opik", original, opik, tmp_path / "a", target_project="mirror"
    )
    assert there.exit_code == 0
    assert there.read.traces == len(original.traces)
    rows = opik.row_count()
    home = await _migrate("opik", "langwatch", back, opik, tmp_path / "b", source_project="mirror")
    assert home.exit_code == 0
    assert home.read.traces == home.written.traces == len(original.traces)
    assert not any(
        s["span_id"] == trace_id for trace_id, t in back.traces.items() for s in t["spans"]
    )  # LangWatch-born: no synthetic root span on the way home
    _same_traces(original, back)

    # reruns: the same Opik rows, the same LangWatch traces, spans and evaluations
    counts = _counts(back)
    again = await _migrate(
        "langwatch", "opik", original, opik, tmp_path / "a", target_project="mirror"
    )
    assert again.exit_code == 0
    assert opik.row_count() == rows
    assert opik.duplicate_rows == {}
    again = await _migrate(
        "opik", "langwatch", back, opik, tmp_path / "b", source_project="mirror", rewrite=True
    )
    assert again.exit_code == 0
    assert again.written.traces == len(original.traces)
    assert _counts(back) == counts
    _same_traces(original, back)
