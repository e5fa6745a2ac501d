"""`_opik.convert`: canonical ⇄ Opik `Trace_Public`/`Span_Public`, driven by the mapping tables.

Every Opik record these tests produce is also checked against the official spec (strict) when
the spec is present (`tests/opik_spec.py`)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.opik_spec import load_spec, require_spec, validate_schema
from tests.strategies import error_infos, json_values, langwatch_traces, typed_values
from tracebridge import IOValue, RecordError, Span, Trace
from tracebridge._hashing import Dumped
from tracebridge._langwatch.convert import trace_from_wire, trace_to_wire
from tracebridge._mapping import Mappings, default_mappings, load_mappings
from tracebridge._models import Provenance, Score
from tracebridge._opik import convert as opik_convert
from tracebridge._opik.convert import (
    OpikTrace,
    SourceTimeIds,
    io_to_json,
    json_to_io,
    trace_from_opik,
    trace_to_opik,
)
from tracebridge._opik.ids import is_uuid7, uuid7_ms
from tracebridge._stash import same

Json = dict[str, Any]
M = default_mappings()
SPEC = load_spec() is not None
START_MS = 1_773_082_931_482  # 2026-03-09T19:02:11.482Z
TRACE_ID = "trace_Qm3vK8pLx2NfR7tYwB4aD"


def _span(span_id: str, kind: str = "span", parent: str | None = None, **fields: Any) -> Json:
    span: Json = {
        "span_id": span_id,
        "trace_id": TRACE_ID,
        "parent_id": parent,
        "name": f"{kind}-{span_id}",
        "type": kind,
        "timestamps": {"started_at": START_MS + 10, "finished_at": START_MS + 900},
        "error": None,
    }
    span.update(fields)
    return span


def _lw(
    spans: list[Json] | None = None, evaluations: list[Json] | None = None, **fields: Any
) -> Json:
    """A LangWatch trace in the read shape."""
    trace: Json = {
        "trace_id": TRACE_ID,
        "project_id": "pRj7bX2kQm9LwT4vZc8Hd",
        "metadata": {"thread_id": "conv_5c1e8d04", "labels": ["web"], "user_id": "cust_88213"},
        "timestamps": {"started_at": START_MS, "inserted_at": START_MS + 5000},
        "input": {"value": "Hi, my internet keeps dropping"},
        "output": {"value": "Switch to 5 GHz"},
        "metrics": {"total_time_ms": 3311},
        "error": None,
        "spans": spans if spans is not None else [_span("span_root", "chain")],
        "evaluations": evaluations or [],
    }
    trace.update(fields)
    return trace


def _validate(record: OpikTrace) -> None:
    """Strict spec validation of every Opik record, when the spec is present."""
    if SPEC:
        validate_schema("Trace_Public", _through_json(record.trace), strict=True)
        for span in record.spans:
            validate_schema("Span_Public", _through_json(span), strict=True)


def _through_json(value: Any) -> Any:
    return json.loads(json.dumps(value, ensure_ascii=False))


def _to_opik(raw: Json, mappings: Mappings = M) -> OpikTrace:
    trace, _ = trace_from_wire(raw)
    record = trace_to_opik(trace, mappings=mappings)
    _validate(record)
    return record


def _back_to_langwatch(record: OpikTrace, mappings: Mappings = M) -> Json:
    """Opik records -> canonical -> LangWatch read shape (through JSON, as over HTTP)."""
    trace = trace_from_opik(
        _through_json(record.trace), _through_json(record.spans), project="p", mappings=mappings
    )
    again, _ = trace_from_wire(_through_json(trace_to_wire(trace)))
    back: Json = _through_json(trace_to_wire(again))
    return back


def _assert_round_trip(raw: Json, mappings: Mappings = M) -> None:
    back = _back_to_langwatch(_to_opik(raw, mappings), mappings)
    assert same(back, raw), (back, raw)


# ----------------------------------------------------------------------------------- ids, times


def test_copy_gets_derived_uuid7_ids_at_source_times() -> None:
    """Trace and span ids are UUID v7 whose time field is the source record's start."""
    raw = _lw([_span("a", "llm"), _span("b", "tool", "a")])
    record = _to_opik(raw)
    assert is_uuid7(record.trace["id"])
    assert uuid7_ms(record.trace["id"]) == START_MS
    for span in record.spans:
        assert is_uuid7(span["id"])
        assert uuid7_ms(span["id"]) == START_MS + 10
        assert span["trace_id"] == record.trace["id"]
    assert record.spans[1]["parent_span_id"] == record.spans[0]["id"]
    assert record.trace["start_time"] == "2026-03-09T19:02:11.482Z"
    assert record.trace["end_time"] == "2026-03-09T19:02:14.793Z"


def test_opik_born_records_keep_their_ids() -> None:
    """A trace read from Opik is written back under its own ids."""
    trace = {"id": "0190ca64-4354-7e14-b664-ec7094b9c424", "start_time": "2024-07-19T09:48:06Z"}
    span = {"id": "0190ca64-436f-76ca-b1c6-0a65734e18ef", "start_time": "2024-07-19T09:48:07Z"}
    canonical = trace_from_opik(trace, [span], project="p", mappings=M)
    record = trace_to_opik(canonical, mappings=M)
    assert record.trace["id"] == trace["id"]
    assert record.spans[0]["id"] == span["id"]


def test_thread_labels_metadata_map_to_opik_fields() -> None:
    """thread_id -> thread_id, labels -> tags, other metadata stays metadata."""
    record = _to_opik(_lw())
    assert record.trace["thread_id"] == "conv_5c1e8d04"
    assert record.trace["tags"] == ["web"]
    assert record.trace["metadata"]["user_id"] == "cust_88213"
    assert record.trace["metadata"]["tracebridge"]["source"] == {
        "platform": "langwatch",
        "project": "pRj7bX2kQm9LwT4vZc8Hd",
        "id": TRACE_ID,
    }


def test_absent_fields_are_omitted_not_null() -> None:
    """Opik wants absent fields left out: no key holds None."""
    record = _to_opik(_lw([_span("a", "tool")], input=None, output=None, metrics=None))
    for wire in (record.trace, *record.spans):
        assert None not in wire.values(), wire


# ----------------------------------------------------------------------------------- span kinds


@pytest.mark.parametrize("kind", ["agent", "chain", "rag", "workflow", "span", "module"])
def test_other_kinds_become_general_and_come_back(kind: str) -> None:
    """Kinds Opik lacks are written as `general`; the reverse restores the LangWatch kind."""
    raw = _lw([_span("a", kind)])
    record = _to_opik(raw)
    assert record.spans[0]["type"] == "general"
    trace = trace_from_opik(record.trace, record.spans, project="p", mappings=M)
    assert trace.spans[0].kind == kind
    _assert_round_trip(raw)


@pytest.mark.parametrize("kind", ["llm", "tool", "guardrail"])
def test_shared_kinds_map_one_to_one(kind: str) -> None:
    """llm, tool and guardrail exist on both sides."""
    assert _to_opik(_lw([_span("a", kind)])).spans[0]["type"] == kind


def test_a_user_mapping_of_chain_to_tool_is_honoured(tmp_path: Path) -> None:
    """`chain = "tool"` in a user's file writes chains as Opik tools; the kind comes back."""
    path = tmp_path / "to-opik.toml"
    path.write_text('[span_types]\nchain = "tool"\n')
    mappings = load_mappings(to_opik=path)
    raw = _lw([_span("a", "chain"), _span("b", "agent", "a")])
    record = _to_opik(raw, mappings)
    assert [s["type"] for s in record.spans] == ["tool", "general"]
    _assert_round_trip(raw, mappings)


# -------------------------------------------------------------------------------- models, usage


def test_vendor_prefix_becomes_provider() -> None:
    """`openai/gpt-5` -> model `gpt-5`, provider `openai`; the reverse joins them again."""
    raw = _lw([_span("a", "llm", model="openai/gpt-5")])
    span = _to_opik(raw).spans[0]
    assert span["model"] == "gpt-5"
    assert span["provider"] == "openai"
    _assert_round_trip(raw)


def test_vendor_field_becomes_provider() -> None:
    """A bare model with `vendor` keeps its name; the vendor is the provider."""
    raw = _lw([_span("a", "llm", model="gpt-4.1-mini", vendor="azure")])
    span = _to_opik(raw).spans[0]
    assert (span["model"], span["provider"]) == ("gpt-4.1-mini", "azure")
    _assert_round_trip(raw)


def test_tokens_and_cost_become_usage_and_estimated_cost() -> None:
    """prompt/completion tokens -> usage with total_tokens; cost -> total_estimated_cost;
    first_token_at -> ttft in ms after the start."""
    timestamps = {
        "started_at": START_MS + 10,
        "first_token_at": START_MS + 741,
        "finished_at": START_MS + 3000,
    }
    metrics = {"prompt_tokens": 412, "completion_tokens": 71, "cost": 0.0001044}
    raw = _lw([_span("a", "llm", model="openai/gpt-5", metrics=metrics, timestamps=timestamps)])
    span = _to_opik(raw).spans[0]
    assert span["usage"] == {"prompt_tokens": 412, "completion_tokens": 71, "total_tokens": 483}
    assert span["total_estimated_cost"] == 0.0001044
    assert span["ttft"] == 731.0
    _assert_round_trip(raw)


def test_error_becomes_error_info() -> None:
    """LangWatch `error {message, stacktrace[]}` -> `error_info {exception_type, message,
    traceback}` with the stack joined by lines."""
    stack = ["Traceback (most recent call last):", "openai.APITimeoutError: timeout"]
    error = {"has_error": True, "message": "Request timed out", "stacktrace": stack}
    raw = _lw([_span("a", "llm", error=error)], error=error)
    record = _to_opik(raw)
    info = record.spans[0]["error_info"]
    assert info["message"] == "Request timed out"
    assert info["traceback"] == "\n".join(stack)
    assert info["exception_type"]
    assert record.trace["error_info"]["message"] == "Request timed out"
    _assert_round_trip(raw)


# ---------------------------------------------------------------------------------- evaluations


def _eval(name: str, status: str = "processed", **fields: Any) -> Json:
    return {"evaluation_id": f"check_{name}_{status}", "name": name, "status": status, **fields}


def _scores(raw: Json) -> dict[str, Json]:
    record = _to_opik(raw)
    return {s["name"]: s for s in record.trace.get("feedback_scores", [])}


def test_processed_score_becomes_value_label_category_details_reason() -> None:
    """score -> value, label -> category_name, details -> reason, source sdk."""
    raw = _lw(evaluations=[_eval("relevance", score=0.87, label="good", details="on topic")])
    score = _scores(raw)["relevance"]
    assert score == {
        "name": "relevance",
        "value": 0.87,
        "source": "sdk",
        "category_name": "good",
        "reason": "on topic",
    }
    _assert_round_trip(raw)


@pytest.mark.parametrize(("passed", "value"), [(True, 1.0), (False, 0.0)])
def test_passed_only_becomes_one_or_zero(passed: bool, value: float) -> None:
    """A verdict without a score is stored as 1/0; the reverse restores `passed`, not a score."""
    raw = _lw(evaluations=[_eval("pii_check", passed=passed)])
    assert _scores(raw)["pii_check"]["value"] == value
    _assert_round_trip(raw)


def test_score_wins_over_passed() -> None:
    """With both, the numeric score is the value."""
    raw = _lw(evaluations=[_eval("faithfulness", score=0.42, passed=False)])
    assert _scores(raw)["faithfulness"]["value"] == 0.42
    _assert_round_trip(raw)


@pytest.mark.parametrize("status", ["skipped", "error", "scheduled", "in_progress"])
def test_other_statuses_are_not_scores_but_survive(status: str) -> None:
    """An evaluation that never produced a verdict is not a feedback score; it comes back."""
    raw = _lw(evaluations=[_eval("ragas", status, score=0.5, details="fetch failed")])
    assert "ragas" not in _scores(raw)
    _assert_round_trip(raw)


def test_processed_without_verdict_is_not_a_score_but_survives() -> None:
    """No score and no passed: nothing Opik can store as a value."""
    raw = _lw(evaluations=[_eval("label_only", label="neutral")])
    assert _scores(raw) == {}
    _assert_round_trip(raw)


def test_two_evaluations_with_one_name_give_one_score_and_both_survive() -> None:
    """Opik upserts scores by name: the first is written, both come back on the reverse."""
    raw = _lw(
        evaluations=[
            _eval("toxicity", score=0.1, evaluation_id="check_a"),
            _eval("toxicity", score=0.9, evaluation_id="check_b"),
        ]
    )
    record = _to_opik(raw)
    names = [s["name"] for s in record.trace["feedback_scores"]]
    assert names == ["toxicity"]
    assert record.trace["feedback_scores"][0]["value"] == 0.1
    back = _back_to_langwatch(record)
    assert [e["evaluation_id"] for e in back["evaluations"]] == ["check_a", "check_b"]
    assert same(back, raw)


# ----------------------------------------------------------------------------------------- names


def test_a_nameless_span_is_named_after_its_kind_and_comes_back_nameless() -> None:
    """`opik import` names a span without `name` `imported_span`: the LangWatch type reads
    better; the reverse restores the missing name."""
    raw = _lw([_span("root", "chain"), _span("a", "llm", "root", name=None)])
    record = _to_opik(raw)
    assert [s["name"] for s in record.spans] == ["chain-root", "llm"]
    back = _back_to_langwatch(record)
    assert back["spans"][1]["name"] is None
    _assert_round_trip(raw)


def test_a_trace_is_named_after_its_root_span_and_comes_back_nameless() -> None:
    """A LangWatch trace has no name: Opik lists it by its root span's name."""
    raw = _lw([_span("a", "tool", "root"), _span("root", "agent")])
    record = _to_opik(raw)
    assert record.trace["name"] == "agent-root"
    _assert_round_trip(raw)


@pytest.mark.parametrize(
    ("spans", "name"),
    [
        ([_span("root", "workflow", name=None), _span("a", "llm", "root")], "workflow"),
        ([], "trace"),
    ],
    ids=["nameless root: its kind", "no spans"],
)
def test_a_trace_without_a_named_root_is_never_nameless(spans: list[Json], name: str) -> None:
    """No root name to borrow: the root's kind, else `trace` (never `imported_trace`)."""
    raw = _lw(spans)
    record = _to_opik(raw)
    assert record.trace["name"] == name
    _assert_round_trip(raw)


def test_named_records_keep_their_names() -> None:
    """The fallback is only for missing names."""
    record = _to_opik(_lw([_span("root", "chain", name="pipeline")]))
    assert record.trace["name"] == "pipeline"
    assert record.spans[0]["name"] == "pipeline"
    stash = record.spans[0].get("metadata", {}).get("tracebridge", {})
    assert "name" not in stash.get("patch", {})


# ------------------------------------------------------------------------------ duplicate spans


def test_a_span_id_twice_in_one_trace_is_refused_naming_it() -> None:
    """Two spans under one Opik id would leave one: trace_to_opik refuses (the sink
    dead-letters the trace) and names the span. The readers already resolve repeated ids
    (`_trees`), so such a trace can only come from a library building records itself."""
    trace, _ = trace_from_wire(_lw([_span("a", "chain"), _span("b", "llm")]))
    trace = trace.model_copy(update={"spans": [trace.spans[0], trace.spans[0].model_copy()]})
    with pytest.raises(ValueError, match="span 'a' appears twice") as info:
        trace_to_opik(trace, mappings=M)
    assert "Opik span id" in str(info.value)


def test_two_spans_given_one_opik_id_are_refused_naming_both() -> None:
    """Whatever the id policy does, two spans never share an Opik id."""

    class OneId(SourceTimeIds):
        def span_id(self, trace: Trace, span: Span) -> str:
            return "0190ca64-436f-76ca-b1c6-0a65734e18ef"

    trace, _ = trace_from_wire(_lw([_span("a", "chain"), _span("b", "llm", "a")]))
    with pytest.raises(ValueError, match="spans 'a' and 'b' would share one Opik id"):
        trace_to_opik(trace, mappings=M, ids=OneId())


def test_an_opik_trace_with_a_repeated_span_id_is_refused() -> None:
    """Records born in Opik keep their ids: a repeated one is refused on the way out too."""
    trace = {"id": "0190ca64-4354-7e14-b664-ec7094b9c424", "start_time": "2024-07-19T09:48:06Z"}
    span = {"id": "0190ca64-436f-76ca-b1c6-0a65734e18ef", "start_time": "2024-07-19T09:48:07Z"}
    canonical = trace_from_opik(trace, [span], project="p", mappings=M)
    canonical = canonical.model_copy(
        update={"spans": [canonical.spans[0], canonical.spans[0].model_copy()]}
    )
    with pytest.raises(ValueError, match=span["id"]):
        trace_to_opik(canonical, mappings=M)


# --------------------------------------------------------------------------------------- orphans


def test_orphan_span_is_written_top_level_with_a_warning_and_restored() -> None:
    """A span whose parent is not in the trace has no parent_span_id in Opik (Opik would hide
    it), a warning names it, and the reverse restores the parent id."""
    raw = _lw([_span("root", "chain"), _span("lost", "llm", "span_missing_parent")])
    record = _to_opik(raw)
    orphan = record.spans[1]
    assert "parent_span_id" not in orphan
    (warning,) = record.warnings
    assert "lost" in warning
    assert "span_missing_parent" in warning
    trace = trace_from_opik(record.trace, record.spans, project="p", mappings=M)
    assert trace.spans[1].parent_id == "span_missing_parent"
    _assert_round_trip(raw)


def test_a_tree_without_orphans_has_no_warnings() -> None:
    """Warnings are for real problems only."""
    assert _to_opik(_lw([_span("a", "chain"), _span("b", "llm", "a")])).warnings == []


# ------------------------------------------------------------------------------------ IO values

CHAT = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hey 👋"}]
IO_CASES: list[tuple[str, IOValue, Any]] = [
    ("chat_messages", IOValue(type="chat_messages", value=CHAT), {"messages": CHAT}),
    ("text", IOValue(type="text", value="hi there"), {"text": "hi there"}),
    ("raw", IOValue(type="raw", value="<xml/>"), {"raw": "<xml/>"}),
    ("json object", IOValue(type="json", value={"a": 1, "b": [1]}), {"a": 1, "b": [1]}),
    ("json string", IOValue(type="json", value="plain"), "plain"),
    ("json list of objects", IOValue(type="json", value=[{"a": 1}]), [{"a": 1}]),
    (
        "json that looks like text",
        IOValue(type="json", value={"text": "x"}),
        {"json": {"text": "x"}},
    ),
    ("json number", IOValue(type="json", value=42), {"json": 42}),
    ("json null", IOValue(type="json", value=None), {"json": None}),
    ("json list of numbers", IOValue(type="json", value=[1, 2]), {"json": [1, 2]}),
    ("json looks escaped", IOValue(type="json", value={"json": 5}), {"json": {"json": 5}}),
    ("json bool", IOValue(type="json", value=True), {"json": True}),
]


@pytest.mark.parametrize(("value", "opik"), [c[1:] for c in IO_CASES], ids=[c[0] for c in IO_CASES])
def test_io_to_json_and_back_is_a_bijection(value: IOValue, opik: Any) -> None:
    """Each typed value has one Opik JSON form, and that form reads back as the same value."""
    assert io_to_json(value, M) == opik
    back = json_to_io(_through_json(opik), M)
    assert back == value
    assert same(back.model_dump() if back else None, value.model_dump())


@pytest.mark.parametrize("value", [c[1] for c in IO_CASES], ids=[c[0] for c in IO_CASES])
def test_io_json_is_what_opik_accepts(value: IOValue) -> None:
    """Opik input/output is an object, an array of objects or a string — never a bare number."""
    opik = io_to_json(value, M)
    assert isinstance(opik, dict | str) or (
        isinstance(opik, list) and all(isinstance(item, dict) for item in opik)
    )


@pytest.mark.parametrize(
    ("opik", "expected"),
    [
        ({"messages": CHAT}, IOValue(type="chat_messages", value=CHAT)),
        ({"prompt": "hi"}, IOValue(type="json", value={"prompt": "hi"})),
        ({"messages": "not a list"}, IOValue(type="json", value={"messages": "not a list"})),
        ({"text": "a", "extra": 1}, IOValue(type="json", value={"text": "a", "extra": 1})),
        ("hello", IOValue(type="json", value="hello")),
    ],
)
def test_opik_json_reads_as_typed_values(opik: Any, expected: IOValue) -> None:
    """Opik-born JSON: one known key with a fitting value is that type; anything else is json;
    and writing it again gives the same JSON."""
    assert json_to_io(opik, M) == expected
    assert io_to_json(expected, M) == opik


def test_none_stays_none() -> None:
    """No input is no input on both sides."""
    assert io_to_json(None, M) is None
    assert json_to_io(None, M) is None


def test_span_io_is_mapped_and_restored() -> None:
    """Typed span IO goes through the same bijection inside a trace."""
    raw = _lw(
        [
            _span(
                "a",
                "llm",
                input={"type": "chat_messages", "value": CHAT},
                output={"type": "json", "value": {"text": "looks like text"}},
            ),
            _span("b", "tool", "a", input={"type": "json", "value": 7}),
        ]
    )
    record = _to_opik(raw)
    assert record.spans[0]["input"] == {"messages": CHAT}
    assert record.spans[0]["output"] == {"json": {"text": "looks like text"}}
    assert record.spans[1]["input"] == {"json": 7}
    _assert_round_trip(raw)


# -------------------------------------------------------------------------------------- the spec


def test_a_rich_trace_validates_against_the_spec_strictly() -> None:
    """Everything the converter can emit fits `Trace_Public` / `Span_Public` with no extra key."""
    require_spec()
    error = {"has_error": True, "message": "boom", "stacktrace": ["line 1", "line 2"]}
    spans = [
        _span("a", "agent", params={"temperature": 0.2}, contexts=[{"document_id": "kb-1"}]),
        _span(
            "b",
            "llm",
            "a",
            model="openai/gpt-5",
            metrics={"prompt_tokens": 5, "completion_tokens": 3, "cost": 0.01},
            timestamps={"started_at": START_MS + 10, "first_token_at": START_MS + 20},
            input={"type": "chat_messages", "value": CHAT},
            output={"type": "json", "value": 3.5},
            error=error,
        ),
        _span("c", "guardrail", "missing", output={"type": "guardrail_result", "value": {}}),
    ]
    evaluations = [_eval("relevance", score=0.5, label="ok"), _eval("pii", passed=True)]
    record = trace_to_opik(trace_from_wire(_lw(spans, evaluations, error=error))[0], mappings=M)
    validate_schema("Trace_Public", _through_json(record.trace), strict=True)
    for span in record.spans:
        validate_schema("Span_Public", _through_json(span), strict=True)


# ----------------------------------------------------------------------------------- bad records


def test_opik_record_without_start_time_is_a_record_error_naming_it() -> None:
    """An Opik trace without `start_time` is refused by field name."""
    with pytest.raises(RecordError) as info:
        trace_from_opik({"id": "x"}, [], project="p", mappings=M, where="trace_x.json")
    assert "start_time" in info.value.reason
    assert info.value.where == "trace_x.json"


def test_opik_span_with_a_naive_time_is_a_record_error() -> None:
    """Span timestamps need a timezone; the reason points at the field."""
    trace = {"id": "x", "start_time": "2024-07-19T09:48:06Z"}
    span = {"id": "s", "start_time": "2024-07-19T09:48:06"}
    with pytest.raises(RecordError, match="start_time"):
        trace_from_opik(trace, [span], project="p", mappings=M)


def test_conversion_does_not_change_its_input() -> None:
    """Converting is pure: the canonical trace is not modified by writing it."""
    trace, _ = trace_from_wire(_lw([_span("a", "chain"), _span("b", "llm", "gone")]))
    before = copy.deepcopy(trace)
    trace_to_opik(trace, mappings=M)
    assert trace == before
    assert isinstance(trace, Trace)


# ------------------------------------------------- the stash told from the mapping (fast path)


def _general(trace: Trace, mappings: Mappings = M) -> OpikTrace:
    """`trace_to_opik` by decoding the record again (the general path), never told."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(opik_convert, "_read_back", lambda *_: None)
        return trace_to_opik(trace, mappings=mappings)


def _assert_told_as_decoded(trace: Trace, mappings: Mappings = M) -> bool:
    """The record `trace_to_opik` writes is byte for byte the general path's; True when the
    stash was told from the mapping (not decoded)."""
    told = opik_convert._read_back(
        trace,
        opik_convert._encode(trace, mappings, SourceTimeIds()),
        Dumped.of(trace),
        mappings,
    )
    fast, general = trace_to_opik(trace, mappings=mappings), _general(trace, mappings)
    assert json.dumps(fast.trace) == json.dumps(general.trace)
    assert [json.dumps(s) for s in fast.spans] == [json.dumps(s) for s in general.spans]
    assert fast.warnings == general.warnings
    return told is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(langwatch_traces())
def test_the_told_stash_is_the_decoded_one_for_langwatch_traces(raw: Json) -> None:
    trace, _ = trace_from_wire(raw)
    assert _assert_told_as_decoded(trace)


#: Mappings that rename metadata keys onto each other and onto the stash key, keep vendor
#: prefixes and join no providers.
RENAMING = Mappings(
    to_opik=M.to_opik.model_copy(
        update={
            "metadata": M.to_opik.metadata.model_copy(
                update={"rename": {"user_id": "k", "k": "tracebridge", "labels": "user_id"}}
            ),
            "model": M.to_opik.model.model_copy(update={"split_vendor_prefix": False}),
        }
    ),
    to_langwatch=M.to_langwatch.model_copy(
        update={
            "metadata": M.to_langwatch.metadata.model_copy(
                update={"rename": {"k": "user_id", "user_id": "params"}}
            ),
            "model": M.to_langwatch.model.model_copy(update={"join_provider": False}),
        }
    ),
)


@st.composite
def _canonical_traces(draw: st.DrawFn) -> Trace:
    """Canonical traces with what the mapping loses or moves: stash and params/contexts keys
    in metadata, repeated tags, given totals, negative costs, every kind of score, residuals."""
    start = datetime(2026, 3, 9, 19, 2, 11, 482000, tzinfo=UTC)
    # Half the traces also hold what sends `trace_to_opik` to the decoder: residuals for Opik,
    # a stash key in a span's metadata, parent cycles.
    odd = draw(st.booleans())

    def extras(residual: Json) -> Json:
        return draw(st.sampled_from([{}, {"langwatch": {"k": [1]}}, *([residual] if odd else [])]))

    def when() -> datetime:
        return start + timedelta(milliseconds=draw(st.integers(-5, 10_000)))

    def metadata() -> Json:
        keys = _meta_key if odd else _meta_key.filter(lambda k: k != "tracebridge")
        out: Json = draw(st.dictionaries(keys, json_values, max_size=3))
        return out

    def scores() -> list[Score]:
        return draw(
            st.lists(
                st.builds(
                    Score,
                    name=st.sampled_from(["a", "b", " ", "c"]),
                    value=st.none() | st.floats(-2e9, 2e9, allow_nan=False),
                    passed=st.none() | st.booleans(),
                    label=st.none() | st.text(max_size=3),
                    reason=st.none() | st.text(max_size=3),
                    status=st.sampled_from(["processed", "skipped", "error"]),
                    id=st.none() | st.just("eval_1"),
                    source=st.none() | st.sampled_from(["sdk", "ui", "online_scoring"]),
                    extras=st.sampled_from(
                        [
                            {},
                            {"langwatch": {"x": 1}},
                            *([{"opik": {"y": {"set": 2}}}] if odd else []),
                        ]
                    ),
                ),
                max_size=3,
            )
        )

    def io() -> IOValue | None:
        value = draw(st.none() | typed_values())
        if value is not None and draw(st.booleans()):
            value = {"type": "json", "value": {draw(st.sampled_from(["text", "json", "k"])): value}}
        return None if value is None else IOValue.model_validate(value)

    tags = st.lists(st.sampled_from(["x", "y", "z"]), max_size=4)
    n = draw(st.integers(0, 4))
    ids = [f"s{i}" for i in range(n)]
    spans = []
    for i in range(n):
        started = when()
        spans.append(
            Span(
                id=ids[i],
                parent_id=draw(
                    st.none()
                    | st.sampled_from((ids if odd else ids[:i]) or ["gone"])
                    | st.just("gone")
                ),
                name=draw(st.none() | st.sampled_from(["", "n"])),
                kind=draw(st.sampled_from(["llm", "tool", "agent", "span", ""])),
                started_at=started,
                ended_at=draw(st.none() | st.just(started + timedelta(milliseconds=7))),
                first_token_at=draw(st.none() | st.just(started + timedelta(milliseconds=3))),
                input=io(),
                output=io(),
                model=draw(st.none() | st.sampled_from(["openai/gpt-5", "gpt-5", "", "a/b"])),
                provider=draw(st.none() | st.sampled_from(["openai", "azure"])),
                usage=draw(
                    st.dictionaries(
                        st.sampled_from(["prompt_tokens", "completion_tokens", "total_tokens"]),
                        st.integers(0, 3),
                    )
                ),
                cost=draw(st.none() | st.floats(-1, 1, allow_nan=False)),
                params=draw(st.sampled_from([{}, {"temperature": 0.5}])),
                metadata=metadata(),
                tags=draw(tags),
                contexts=draw(st.none() | st.just([]) | st.just([{"content": "c"}])),
                error=draw(error_infos),
                scores=scores(),
                extras=extras({"opik": {"name": {"set": "o"}}}),
            )
        )
    return Trace(
        id="t1",
        source=Provenance(platform="langwatch", project="p", id="t1"),
        name=draw(st.none() | st.just("named")),
        thread_id=draw(st.none() | st.just("th")),
        started_at=start,
        ended_at=draw(st.none() | st.just(start + timedelta(seconds=1))),
        input=io(),
        output=io(),
        metadata=metadata(),
        tags=draw(tags),
        error=draw(error_infos),
        spans=spans,
        scores=scores(),
        extras=extras({"opik": {"tags": {"set": ["o"]}}}),
    )


_meta_key = st.sampled_from(["user_id", "params", "contexts", "tracebridge", "labels", "k"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_canonical_traces(), st.booleans())
def test_the_told_stash_is_the_decoded_one_where_the_mapping_loses_most(
    trace: Trace, renamed: bool
) -> None:
    _assert_told_as_decoded(trace, RENAMING if renamed else M)


def test_the_common_cases_are_told_not_decoded() -> None:
    """Traces that lose ids, names, kinds, providers, totals, repeated tags and scores are told
    from the mapping; a residual for Opik, a stash key in a span's metadata, a parent cycle and
    a time before the year 1000 are decoded."""
    raw = _lw(
        spans=[
            _span("s1", "agent", model="openai/gpt-5", metrics={"prompt_tokens": 3}),
            _span("s2", "llm", "s1", params={"temperature": 0.1}, name=None),
        ],
        evaluations=[_eval("helpful", score=0.5), _eval("pending", status="scheduled")],
        labels=["a", "a"],
    )
    trace, _ = trace_from_wire(raw)
    assert _assert_told_as_decoded(trace)
    span = trace.spans[0]
    assert not _assert_told_as_decoded(
        trace.model_copy(update={"extras": {"opik": {"x": {"set": 1}}}})
    )
    stashed = span.model_copy(update={"metadata": {"tracebridge": {"v": 2}}})
    assert not _assert_told_as_decoded(trace.model_copy(update={"spans": [stashed]}))
    cycle = [span.model_copy(update={"parent_id": span.id})]
    assert not _assert_told_as_decoded(trace.model_copy(update={"spans": cycle}))
    old = trace.model_copy(update={"started_at": trace.started_at.replace(year=999)})
    record = opik_convert._encode(old, M, _PlainIds())  # (a UUID v7 cannot hold the year 999)
    assert opik_convert._read_back(old, record, Dumped.of(old), M) is None


def test_ids_opik_would_refuse_are_left_to_the_decoder_to_refuse() -> None:
    """An `OpikIds` giving an empty id: the stash is not told, and the write fails as before."""
    trace, _ = trace_from_wire(_lw())
    record = opik_convert._encode(trace, M, _EmptyIds())
    assert opik_convert._read_back(trace, record, Dumped.of(trace), M) is None
    with pytest.raises(ValidationError, match="at least 1 character"):
        trace_to_opik(trace, mappings=M, ids=_EmptyIds())


class _EmptyIds:
    """Opik ids that are empty: no valid Opik record has one."""

    def trace_id(self, trace: Trace) -> str:
        return ""

    def span_id(self, trace: Trace, span: Span) -> str:
        return f"o-{span.id}"


class _PlainIds:
    """Opik ids that are the canonical ids with a prefix."""

    def trace_id(self, trace: Trace) -> str:
        return f"o-{trace.id}"

    def span_id(self, trace: Trace, span: Span) -> str:
        return f"o-{span.id}"
