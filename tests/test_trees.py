"""`_trees.py`: one span per id and no parent cycles, in canonical traces from either platform.

Unit tests of the two rules, then through both decoders (warnings, skips and span dead letters
reach the collector; the original parent comes back when the trace returns to its origin),
property tests over random parent links, and size tests (20,000 spans, no recursion).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.strategies import langwatch_traces, opik_traces
from tracebridge import Counts, Notes, RecordError, Rejected, Span
from tracebridge._decoding import collecting
from tracebridge._langwatch.convert import trace_from_wire, trace_to_wire
from tracebridge._mapping import default_mappings
from tracebridge._opik.convert import trace_from_opik, trace_to_opik
from tracebridge._stash import same
from tracebridge._trees import REPEATED_SPAN, break_cycles, unique_spans

M = default_mappings()
T0 = datetime(2026, 3, 9, 19, 0, tzinfo=UTC)
MS0 = 1_773_082_800_000
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _span(span_id: str, parent: str | None, second: int = 0) -> Span:
    return Span(id=span_id, parent_id=parent, started_at=T0 + timedelta(seconds=second))


def _parents(spans: list[Span]) -> dict[str, str | None]:
    return {s.id: s.parent_id for s in spans}


def _assert_acyclic(parents: dict[str, str | None]) -> None:
    """Every span reaches a root or an orphan without meeting itself (iteratively)."""
    settled: set[str] = set()
    for start in parents:
        walk: set[str] = set()
        node: str | None = start
        while node is not None and node in parents and node not in settled:
            assert node not in walk, f"cycle through {node}"
            walk.add(node)
            node = parents[node]
        settled |= walk


# ------------------------------------------------------------------------------ break_cycles


def test_a_tree_without_cycles_is_returned_as_it_is() -> None:
    spans = [_span("root", None), _span("a", "root"), _span("orphan", "not-here")]
    repaired, warnings = break_cycles(spans, trace_id="t")
    assert repaired is spans
    assert warnings == []


def test_a_span_that_is_its_own_parent_becomes_a_root() -> None:
    spans = [_span("root", None), _span("self", "self", 1), _span("child", "self", 2)]
    repaired, (warning,) = break_cycles(spans, trace_id="t")
    assert _parents(repaired) == {"root": None, "self": None, "child": "self"}
    assert warning == (
        "trace t: span self names itself as its parent; read as a top-level span "
        "(the parent is remembered)"
    )


def test_two_spans_naming_each_other_break_at_the_one_that_started_first() -> None:
    spans = [_span("root", None), _span("late", "early", 5), _span("early", "late", 3)]
    repaired, (warning,) = break_cycles(spans, trace_id="t")
    assert _parents(repaired) == {"root": None, "late": "early", "early": None}
    assert warning == (
        "trace t: spans early -> late -> early form a parent cycle (2 spans, each naming the "
        "next as its parent); span early, the first of them to start, is read as a top-level "
        "span (the parent is remembered: 'late')"
    )
    assert [s.id for s in repaired] == ["root", "late", "early"]  # order kept


def test_a_tie_in_start_time_breaks_at_the_smaller_id() -> None:
    spans = [_span("b", "a"), _span("a", "c"), _span("c", "b")]
    repaired, _ = break_cycles(spans, trace_id="t")
    assert _parents(repaired) == {"b": "a", "a": None, "c": "b"}


def test_a_longer_cycle_is_broken_once_and_named_shortly() -> None:
    ids = [f"s{i}" for i in range(7)]
    spans = [_span(ids[i], ids[(i + 1) % 7], second=10 - i) for i in range(7)]
    repaired, (warning,) = break_cycles(spans, trace_id="t")
    assert [s.id for s in repaired if s.parent_id is None] == ["s6"]  # started first
    assert "spans s6 -> s0 -> s1 -> s2 -> … form a parent cycle (7 spans" in warning
    _assert_acyclic(_parents(repaired))


def test_a_cycle_through_the_root_gives_the_trace_a_root_again() -> None:
    """The root names a descendant as parent: no root at all until the cycle is broken."""
    spans = [_span("root", "leaf", 0), _span("mid", "root", 1), _span("leaf", "mid", 2)]
    spans += [_span("side", "mid", 3)]
    repaired, warnings = break_cycles(spans, trace_id="t")
    assert len(warnings) == 1
    assert [s.id for s in repaired if s.parent_id is None] == ["root"]
    _assert_acyclic(_parents(repaired))


def test_every_cycle_of_a_trace_is_broken_and_warned_about() -> None:
    spans = [_span("a", "b", 1), _span("b", "a", 2), _span("c", "c", 3), _span("d", "a", 4)]
    spans += [_span("e", "f", 5), _span("f", "g", 6), _span("g", "e", 7)]
    repaired, warnings = break_cycles(spans, trace_id="t")
    assert len(warnings) == 3
    assert sorted(s.id for s in repaired if s.parent_id is None) == ["a", "c", "e"]


def test_a_copy_says_the_parent_is_dropped() -> None:
    _, (warning,) = break_cycles([_span("x", "x")], trace_id="t", remembered=False)
    assert warning.endswith("(the parent is dropped)")


def test_twenty_thousand_spans_in_one_deep_chain_and_one_ring_take_linear_time() -> None:
    """No recursion and no quadratic walk: a chain as deep as the trace, and a ring of all."""
    n = 20_000
    chain = [_span(f"c{i}", f"c{i - 1}" if i else None) for i in range(n)]
    ring = [_span(f"r{i}", f"r{(i + 1) % n}", second=i) for i in range(n)]
    began = time.perf_counter()
    same_chain, no_warnings = break_cycles(chain, trace_id="t")
    repaired, (warning,) = break_cycles(ring, trace_id="t")
    assert time.perf_counter() - began < 2
    assert same_chain is chain
    assert no_warnings == []
    assert [s.id for s in repaired if s.parent_id is None] == ["r0"]
    assert f"({n} spans" in warning


# ------------------------------------------------------------------------------ unique_spans


def test_identical_repeats_are_kept_once_and_counted_as_skipped() -> None:
    raw = [{"span_id": "a", "x": 1}, {"span_id": "b"}, {"span_id": "a", "x": 1}]
    notes, rejected = Notes(), list[Rejected]()
    kept = unique_spans(raw, id_key="span_id", where="f:1", notes=notes, rejected=rejected)
    assert kept == raw[:2]
    assert notes.skipped == Counts(spans=1)
    assert notes.skip_reasons == {REPEATED_SPAN: 1}
    assert rejected == []


def test_a_repeat_with_other_content_is_dead_lettered_on_its_own() -> None:
    """`1` and `1.0` differ as JSON; the repeat's scores are counted with it."""
    raw = [
        {"id": "a", "x": 1},
        {"id": "a", "x": 1.0, "feedback_scores": [{"name": "q", "value": 1}]},
        {"id": "a", "x": 2},
    ]
    notes, rejected = Notes(), list[Rejected]()
    kept = unique_spans(
        raw, id_key="id", where="f:1", notes=notes, rejected=rejected, scores_key="feedback_scores"
    )
    assert kept == raw[:1]
    assert notes.skipped == Counts()
    assert [(r.kind, r.where, r.record, r.contains) for r in rejected] == [
        ("span", "f:1: span a (occurrence 2)", raw[1], Counts(spans=1, scores=1)),
        ("span", "f:1: span a (occurrence 3)", raw[2], Counts(spans=1)),
    ]
    assert rejected[0].reason == (
        "span id 'a' appears more than once in the trace with different content; a platform "
        "keeps one span per id, so the first occurrence is written and this one is "
        "dead-lettered"
    )


def test_spans_without_a_string_id_are_left_to_validation() -> None:
    raw: list[Any] = [{"span_id": 1}, {"span_id": 1}, "not a span", {"name": "no id"}]
    kept = unique_spans(raw, id_key="span_id", where="w", notes=Notes(), rejected=[])
    assert kept is raw


# ------------------------------------------------------------------------ through the decoders


def _lw_span(span_id: str, parent: str | None, second: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "span_id": span_id,
        "trace_id": "t1",
        "parent_id": parent,
        "type": "llm",
        "timestamps": {"started_at": MS0 + second * 1000},
        **extra,
    }


def _lw_trace(spans: list[dict[str, Any]]) -> dict[str, Any]:
    return {"trace_id": "t1", "timestamps": {"started_at": MS0}, "spans": spans}


def _through_json(value: Any) -> Any:
    return json.loads(json.dumps(value, ensure_ascii=False))


def test_langwatch_cycle_is_broken_warned_and_restored_on_the_way_back() -> None:
    raw = _lw_trace([_lw_span("a", "b", 1), _lw_span("b", "a", 2), _lw_span("c", "a", 3)])
    with collecting() as notes:
        trace, _ = trace_from_wire(raw)
    assert _parents(trace.spans) == {"a": None, "b": "a", "c": "a"}
    (warning,) = notes.warnings
    assert warning.startswith("trace t1: spans a -> b -> a form a parent cycle")
    # In Opik the tree has a root; back in LangWatch the original parent is there again.
    opik = trace_to_opik(trace, mappings=M)
    assert "parent_span_id" not in opik.spans[0]
    back = trace_from_opik(
        _through_json(opik.trace), _through_json(opik.spans), project="p", mappings=M
    )
    assert same(_through_json(trace_to_wire(back)), raw)


def test_opik_cycle_is_broken_warned_and_restored_on_the_way_back() -> None:
    trace_id = "0190ca64-0000-7000-8000-000000000000"
    ids = [f"0190ca64-0000-7000-8000-00000000000{i}" for i in (1, 2, 3)]
    spans = [  # 0 -> 2 -> 1 -> 0, each naming the next as parent (ids[-1] is ids[2])
        {
            "id": ids[i],
            "trace_id": trace_id,
            "parent_span_id": ids[i - 1],
            "start_time": f"2026-03-09T19:00:0{i}.000Z",
        }
        for i in range(3)
    ]
    record = {"id": trace_id, "start_time": "2026-03-09T19:00:00.000Z"}
    with collecting() as notes:
        trace = trace_from_opik(record, spans, project="p", mappings=M)
    assert [s.id for s in trace.spans if s.parent_id is None] == [ids[0]]
    assert len(notes.warnings) == 1
    langwatch = _through_json(trace_to_wire(trace))
    back, _ = trace_from_wire(langwatch)
    assert back == trace
    again = trace_to_opik(back, mappings=M)
    assert same(_through_json(again.spans), spans)


def test_langwatch_repeated_spans_reach_the_collector_only_when_the_trace_converts() -> None:
    spans = [_lw_span("a", None), _lw_span("a", None), _lw_span("a", None, name="other")]
    with collecting() as notes:
        trace, _ = trace_from_wire(_lw_trace(spans))
    assert [s.id for s in trace.spans] == ["a"]
    assert notes.skipped == Counts(spans=1)
    assert [r.where for r in notes.rejected] == ["trace t1: span a (occurrence 3)"]

    broken = _lw_trace(spans)
    del broken["timestamps"]
    with collecting() as notes, pytest.raises(RecordError, match="field 'timestamps'"):
        trace_from_wire(broken)
    assert notes.skipped == Counts()  # the whole trace is dead-lettered: nothing counted twice
    assert notes.rejected == []


def test_opik_repeated_spans_keep_the_first_and_the_residuals_line_up() -> None:
    """After a repeat is left out, each span's residual still belongs to that span."""
    trace_id = "0190ca64-0000-7000-8000-000000000000"
    first = {"id": "0190ca64-0000-7000-8000-000000000001", "trace_id": trace_id}
    first |= {"start_time": "2026-03-09T19:00:01.000Z", "created_by": "me"}
    second = {"id": "0190ca64-0000-7000-8000-000000000002", "trace_id": trace_id}
    second |= {"start_time": "2026-03-09T19:00:02.000Z", "created_by": "you"}
    record = {"id": trace_id, "start_time": "2026-03-09T19:00:00.000Z"}
    with collecting() as notes:
        trace = trace_from_opik(record, [first, dict(first), second], project="p", mappings=M)
    assert notes.skipped == Counts(spans=1)
    again = trace_to_opik(trace, mappings=M)
    assert same(_through_json(again.spans), [first, second])


# ------------------------------------------------------------------------------- properties


@st.composite
def _langwatch_with_any_parents(draw: st.DrawFn) -> dict[str, Any]:
    """A LangWatch trace whose spans name any span (themselves included) or none as parent."""
    raw = draw(langwatch_traces())
    ids = [s["span_id"] for s in raw["spans"]]
    for span in raw["spans"]:
        span["parent_id"] = draw(st.sampled_from([None, "missing", *ids]))
    return raw


@PROPERTY
@given(_langwatch_with_any_parents())
def test_any_langwatch_tree_decodes_acyclic_and_round_trips_exactly(raw: dict[str, Any]) -> None:
    trace, _ = trace_from_wire(raw)
    _assert_acyclic(_parents(trace.spans))
    opik = trace_to_opik(trace, mappings=M)
    _assert_acyclic({s["id"]: s.get("parent_span_id") for s in opik.spans})
    back = trace_from_opik(
        _through_json(opik.trace), _through_json(opik.spans), project="p", mappings=M
    )
    assert same(_through_json(trace_to_wire(back)), raw)


@st.composite
def _opik_with_any_parents(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    trace, spans = draw(opik_traces())
    ids = [s["id"] for s in spans]
    for span in spans:
        parent = draw(st.sampled_from([None, *ids]))
        span.pop("parent_span_id", None)
        if parent is not None:
            span["parent_span_id"] = parent
    return trace, spans


@PROPERTY
@given(_opik_with_any_parents())
def test_any_opik_tree_decodes_acyclic_and_round_trips_exactly(
    record: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    trace_in, spans_in = record
    trace = trace_from_opik(trace_in, spans_in, project="p", mappings=M)
    _assert_acyclic(_parents(trace.spans))
    langwatch = _through_json(trace_to_wire(trace))
    _assert_acyclic({s["span_id"]: s["parent_id"] for s in langwatch["spans"]})
    back, _ = trace_from_wire(langwatch)
    assert back == trace
    placeless = [{k: v for k, v in s.items() if k != "project_id"} for s in spans_in]
    assert same(_through_json(trace_to_opik(back, mappings=M).spans), placeless)
