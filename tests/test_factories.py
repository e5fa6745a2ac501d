"""The data factories and the hand-checked LangWatch sample are well-formed and deterministic."""

from __future__ import annotations

import json
import random
import re
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.factories import (
    EVALUATION_STATUSES,
    SPAN_KINDS,
    langwatch_project,
    langwatch_trace,
    opik_project,
    opik_trace,
    uuid7,
)

START_MS = 1_773_000_000_000  # 2026-03-08
START = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "langwatch-sample.jsonl"
ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
OPIK_SPAN_TYPES = {"general", "llm", "tool", "guardrail"}


def _is_ms(value: object) -> bool:
    return type(value) is int and 10**12 <= value < 10**13


def _check_langwatch(trace: dict[str, Any]) -> bool:
    """Assert the read-shape invariants of one LangWatch trace; True when it has an orphan span."""
    assert all(_is_ms(v) for v in trace["timestamps"].values()), trace["timestamps"]
    assert trace["timestamps"]["started_at"] <= trace["timestamps"]["inserted_at"]
    assert trace["timestamps"]["inserted_at"] <= trace["timestamps"]["updated_at"]
    assert isinstance(trace["input"]["value"], str)
    assert trace["output"] is None or isinstance(trace["output"]["value"], str)
    for key, value in trace["metadata"].items():
        assert isinstance(value, list if key == "labels" else str), (key, value)
    spans = {span["span_id"]: span for span in trace["spans"]}
    assert len(spans) == len(trace["spans"])
    roots = [span for span in trace["spans"] if span["parent_id"] is None]
    assert len(roots) == 1
    assert roots[0]["timestamps"]["started_at"] == trace["timestamps"]["started_at"]
    orphans = 0
    for span in trace["spans"]:
        times = span["timestamps"]
        assert span["trace_id"] == trace["trace_id"]
        assert span["type"] in SPAN_KINDS
        assert all(_is_ms(v) for v in times.values()), times
        assert times["started_at"] <= times.get("first_token_at", times["started_at"])
        assert times.get("first_token_at", times["finished_at"]) <= times["finished_at"]
        assert span["error"] is None or span["error"]["has_error"] is True
        parent = spans.get(span["parent_id"])
        if span["parent_id"] is not None and parent is None:
            orphans += 1
        elif parent is not None:
            assert parent["timestamps"]["started_at"] <= times["started_at"]
            assert times["finished_at"] < parent["timestamps"]["finished_at"]
    for ev in trace["evaluations"]:
        assert ev["status"] in EVALUATION_STATUSES
        assert all(_is_ms(v) for v in ev["timestamps"].values())
        assert ev.get("span_id") is None or ev["span_id"] in spans
        if ev["status"] == "processed":
            assert {"score", "passed", "label"} & ev.keys()
        if ev["status"] == "error":
            assert ev["error"]["has_error"] is True
    assert orphans <= 1
    return orphans == 1


def test_uuid7_time_field_version_and_variant() -> None:
    value = uuid.UUID(uuid7(START_MS, random.Random(1)))
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert value.int >> 80 == START_MS
    assert uuid7(START_MS, random.Random(1)) == str(value)


def test_generators_are_deterministic_for_a_seed() -> None:
    first = list(langwatch_project(40, 8, seed=3, start_ms=START_MS, big_input_every=10))
    assert first == list(langwatch_project(40, 8, seed=3, start_ms=START_MS, big_input_every=10))
    assert first != list(langwatch_project(40, 8, seed=4, start_ms=START_MS, big_input_every=10))
    opik = list(opik_project(40, 8, seed=3, start=START, project_name="p"))
    assert opik == list(opik_project(40, 8, seed=3, start=START, project_name="p"))
    one = langwatch_trace(random.Random(9), trace_id="t", started_at_ms=START_MS, thread_id=None)
    assert one == langwatch_trace(
        random.Random(9), trace_id="t", started_at_ms=START_MS, thread_id=None
    )


def test_langwatch_project_shape() -> None:
    traces = langwatch_project(
        500, 100, seed=11, start_ms=START_MS, huge_trace_spans=250, big_input_every=50
    )
    threads: Counter[str] = Counter()
    last_start: dict[str, int] = {}
    statuses: set[str] = set()
    count = standalone = huge = big = orphans = errors = 0
    for trace in traces:
        count += 1
        orphans += _check_langwatch(trace)
        thread = trace["metadata"].get("thread_id")
        if thread is None:
            standalone += 1
        else:
            threads[thread] += 1
            assert trace["timestamps"]["started_at"] > last_start.get(thread, 0)
            last_start[thread] = trace["timestamps"]["started_at"]
        huge += len(trace["spans"]) > 200
        big += len(trace["input"]["value"].encode()) > 64 * 1024
        errors += trace["error"] is not None
        statuses |= {ev["status"] for ev in trace["evaluations"]}
    assert count == 500
    assert len(threads) >= 100
    assert max(threads.values()) > 1
    assert 50 <= standalone <= 150
    assert huge == 1
    assert big >= 5
    assert orphans > 0
    assert errors > 0
    assert statuses == set(EVALUATION_STATUSES)


def _assert_no_nulls(record: dict[str, Any]) -> None:
    """No optional field is sent as null (payload objects may hold nulls of their own)."""
    for key, value in record.items():
        assert value is not None, key
        if key in ("usage", "error_info"):
            assert all(v is not None for v in value.values()), key


def _v7_ms(value: str) -> int:
    parsed = uuid.UUID(value)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    return parsed.int >> 80


def _iso_ms(value: str) -> int:
    assert ISO_MS_Z.match(value), value
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return int(moment.timestamp() * 1000 + 0.5)


def test_opik_project_shape() -> None:
    records = opik_project(
        200, 40, seed=5, start=START, project_name="shop-bot", huge_trace_spans=250
    )
    n_traces = threaded = huge = failed = scored = 0
    for trace, spans, scores, span_scores in records:
        n_traces += 1
        _assert_no_nulls(trace)
        assert trace["project_name"] == "shop-bot"
        assert _v7_ms(trace["id"]) == _iso_ms(trace["start_time"])
        assert _iso_ms(trace["start_time"]) <= _iso_ms(trace["end_time"])
        assert isinstance(trace["input"], dict)
        threaded += "thread_id" in trace
        failed += "error_info" in trace
        huge += len(spans) > 200
        ids = {span["id"] for span in spans}
        roots = [span for span in spans if "parent_span_id" not in span]
        assert len(roots) == 1
        assert roots[0]["start_time"] == trace["start_time"]
        for span in spans:
            _assert_no_nulls(span)
            assert span["trace_id"] == trace["id"]
            assert span["type"] in OPIK_SPAN_TYPES
            assert _v7_ms(span["id"]) == _iso_ms(span["start_time"])
            assert span.get("parent_span_id", next(iter(ids))) in ids
            if span["type"] == "llm":
                assert all(type(v) is int for v in span["usage"].values())
                assert span["total_estimated_cost"] >= 0
            if "error_info" in span:
                assert span["error_info"]["exception_type"]
                assert span["error_info"]["traceback"]
        for score in [*scores, *(s for group in span_scores.values() for s in group)]:
            _assert_no_nulls(score)
            assert score["source"] == "sdk"
            assert isinstance(score["value"], int | float)
        assert span_scores.keys() <= ids
        scored += bool(scores)
    assert n_traces == 200
    assert huge == 1
    assert 0 < failed < n_traces
    assert 100 <= threaded < n_traces
    assert scored > 0


def test_opik_trace_without_thread_or_error_omits_those_fields() -> None:
    trace_id = uuid7(START_MS, random.Random(2))
    trace, spans, _, _ = opik_trace(
        random.Random(2),
        trace_id=trace_id,
        start=datetime.fromtimestamp(START_MS / 1000, UTC),
        thread_id=None,
        project_name="p",
        n_spans=1,
    )
    assert "thread_id" not in trace
    assert "error_info" not in trace
    assert len(spans) == 1
    assert "parent_span_id" not in spans[0]
    assert spans[0]["type"] == "llm"


def test_sample_file_is_valid_and_covers_the_shapes() -> None:
    raw = SAMPLE.read_text(encoding="utf-8")
    assert "\\u" not in raw, "write UTF-8, not ASCII escapes"
    traces = [json.loads(line) for line in raw.splitlines()]
    assert all(isinstance(trace, dict) for trace in traces)
    assert 10 <= len(traces) <= 14
    for trace in traces:
        assert not _check_langwatch(trace)
        assert str(trace["timestamps"]["started_at"]).startswith("17")  # 2026 in epoch ms
        assert datetime.fromtimestamp(trace["timestamps"]["started_at"] / 1000, UTC).year == 2026
    threads = Counter(t["metadata"]["thread_id"] for t in traces if "thread_id" in t["metadata"])
    assert len(threads) == 3
    assert all(2 <= turns <= 4 for turns in threads.values())
    assert sum("thread_id" not in t["metadata"] for t in traces) == 3

    spans = [span for trace in traces for span in trace["spans"]]
    assert {span["type"] for span in spans} >= set(SPAN_KINDS)
    llms = [span for span in spans if span["type"] == "llm"]
    assert all(span["input"]["type"] == "chat_messages" and span["model"] for span in llms)
    assert any(m.get("tool_calls") for s in llms for m in s["input"]["value"])
    assert any("first_token_at" in span["timestamps"] for span in llms)
    assert all(span["metrics"]["prompt_tokens"] > 0 for span in llms)
    assert all(span["contexts"] for span in spans if span["type"] == "rag")
    guards = [span for span in spans if span["type"] == "guardrail"]
    assert all(span["output"]["type"] == "guardrail_result" for span in guards)
    assert any(trace["error"] for trace in traces)
    assert any(span["error"] for span in spans if span["parent_id"] is not None)

    evaluations = [ev for trace in traces for ev in trace["evaluations"]]
    assert {ev["status"] for ev in evaluations} == set(EVALUATION_STATUSES)
    processed = [ev for ev in evaluations if ev["status"] == "processed"]
    assert any("score" in ev for ev in processed)
    assert any("passed" in ev and not {"score", "label"} & ev.keys() for ev in processed)
    assert any("label" in ev for ev in processed)
    assert any(not text.isascii() for text in (t["input"]["value"] for t in traces))
