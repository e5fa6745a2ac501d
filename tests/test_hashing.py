"""`_hashing.content_hash`: what a user would call a record, equal for a record and its faithful
copy read back, blind to provenance, platform extras and order, and moved by any edit."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.recorders import counted_content_hashes
from tests.strategies import langwatch_traces, opik_traces
from tracebridge import Provenance, Score, Span, Thread, Trace
from tracebridge._hashing import (
    Dumped,
    HashMemo,
    content_hash,
    digest,
    remembering_hashes,
    span_digest,
    trace_parts,
)
from tracebridge._langwatch.convert import trace_from_wire, trace_to_wire
from tracebridge._mapping import default_mappings
from tracebridge._opik.convert import trace_from_opik, trace_to_opik

MAPPINGS = default_mappings()
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _through_json(value: Any) -> Any:
    return json.loads(json.dumps(value, ensure_ascii=False))


@PROPERTY
@given(langwatch_traces())
def test_a_langwatch_trace_and_its_opik_copy_read_back_have_one_hash(raw: dict[str, Any]) -> None:
    """LangWatch → Opik → canonical: the same hash, and the read says the copy is unchanged."""
    trace, _ = trace_from_wire(raw)
    opik = trace_to_opik(trace, mappings=MAPPINGS)
    back = trace_from_opik(
        _through_json(opik.trace), _through_json(opik.spans), project="p", mappings=MAPPINGS
    )
    assert content_hash(back) == content_hash(trace)
    assert back.copy_state is not None
    assert back.copy_state.changed is False
    assert back.copy_state.hash == content_hash(trace)


@PROPERTY
@given(opik_traces())
def test_an_opik_trace_and_its_langwatch_copy_read_back_have_one_hash(
    record: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    """Opik → LangWatch → canonical: the same hash, and the read says the copy is unchanged."""
    trace = trace_from_opik(*record, project="my project", mappings=MAPPINGS)
    back, _ = trace_from_wire(_through_json(trace_to_wire(trace)))
    assert content_hash(back) == content_hash(trace)
    assert back.copy_state is not None
    assert back.copy_state.changed is False


def _trace(**kw: Any) -> Trace:
    spans = [
        Span(id="root", name="agent", kind="agent", started_at=T0, ended_at=T0 + timedelta(1)),
        Span(
            id="llm",
            parent_id="root",
            kind="llm",
            started_at=T0,
            model="openai/gpt-5",
            scores=[Score(name="relevance", value=0.5)],
            tags=["a", "b"],
        ),
    ]
    fields: dict[str, Any] = {
        "id": "t1",
        "source": Provenance(platform="langwatch", project="p", id="t1"),
        "started_at": T0,
        "metadata": {"user": "u1", "n": 1},
        "tags": ["x", "y"],
        "spans": spans,
        "scores": [Score(name="helpfulness", value=1.0), Score(name="tone", passed=True)],
    }
    return Trace.model_validate({**fields, **kw})


def test_the_hash_is_versioned_and_stable() -> None:
    """`c1:` and 64 hex digits; the same for equal records built separately."""
    h = content_hash(_trace())
    assert h.startswith("c1:")
    assert len(h) == 3 + 64
    assert content_hash(_trace()) == h


def test_provenance_extras_and_score_ids_are_not_content() -> None:
    """Where a record was born, what a platform adds (server fields) and storage ids of scores
    do not change the hash."""
    base = _trace()
    other = base.model_copy(
        update={
            "source": Provenance(platform="opik", project="q", id="elsewhere"),
            "extras": {"langwatch": {"timestamps": {"sub": {"inserted_at": {"set": 1}}}}},
            "scores": [
                s.model_copy(update={"id": "ev_1", "extras": {"opik": {"x": {"set": 1}}}})
                for s in base.scores
            ],
            "spans": [
                s.model_copy(update={"extras": {"opik": {"a": {"del": True}}}}) for s in base.spans
            ],
        }
    )
    assert content_hash(other) == content_hash(base)


def test_order_of_spans_scores_and_tags_is_not_content() -> None:
    """Each platform lists spans, scores and tags in its own order."""
    base = _trace()
    llm = base.spans[1].model_copy(update={"tags": ["b", "a"]})
    other = base.model_copy(
        update={
            "spans": [llm, base.spans[0]],
            "scores": list(reversed(base.scores)),
            "tags": ["y", "x"],
        }
    )
    assert base.spans[1].tags == ["a", "b"]
    assert content_hash(other) == content_hash(base)


@pytest.mark.parametrize(
    "edit",
    [
        {"name": "renamed"},
        {"metadata": {"user": "u1", "n": 2}},
        {"metadata": {"user": "u1", "n": True}},  # JSON tells true from 1
        {"metadata": {"user": "u1", "n": 1.0}},  # and 1 from 1.0
        {"tags": ["x", "y", "reviewed"]},
        {"tags": ["x", "y", "y"]},  # a repeated tag counts
        {"scores": [Score(name="helpfulness", value=0.9), Score(name="tone", passed=True)]},
        {"scores": [Score(name="helpfulness", value=1.0)]},
        {"ended_at": T0 + timedelta(seconds=3)},
        {"thread_id": "th"},
    ],
    ids=lambda e: next(iter(e)),
)
def test_any_edit_of_the_content_changes_the_hash(edit: dict[str, Any]) -> None:
    assert content_hash(_trace(**edit)) != content_hash(_trace())


def test_an_edit_inside_a_span_changes_the_hash() -> None:
    base = _trace()
    for update in (
        {"model": "openai/gpt-4o"},
        {"scores": [Score(name="relevance", value=0.6)]},
        {"tags": ["a"]},
        {"parent_id": None},
    ):
        spans = [base.spans[0], base.spans[1].model_copy(update=update)]
        assert content_hash(base.model_copy(update={"spans": spans})) != content_hash(base)
    added = [*base.spans, Span(id="new", started_at=T0)]
    assert content_hash(base.model_copy(update={"spans": added})) != content_hash(base)


def test_a_thread_hash_covers_its_traces_and_its_own_data() -> None:
    """A changed trace changes its thread's hash; the order of traces does not; thread scores,
    tags and status count; a thread never hashes like a trace."""
    a, b = _trace(), _trace(id="t2")
    thread = Thread(id="th", traces=[a, b])
    h = content_hash(thread)
    assert content_hash(Thread(id="th", traces=[b, a])) == h
    assert content_hash(Thread(id="th", traces=[a, _trace(id="t2", name="x")])) != h
    assert content_hash(Thread(id="th", traces=[a, b], tags=["vip"])) != h
    assert content_hash(Thread(id="th", traces=[a, b], status="inactive")) != h
    assert content_hash(Thread(id="th", traces=[a, b], scores=[Score(name="csat", value=4)])) != h
    assert content_hash(Thread(id="th", traces=[a])) != content_hash(a)


def test_digest_is_json_equality() -> None:
    assert digest({"a": 1, "b": [True]}) == digest({"b": [True], "a": 1})
    assert digest(1) != digest(1.0)
    assert digest(True) != digest(1)
    assert digest("\ud800") != digest("")  # a lone surrogate still hashes


def _plain_hash(trace: Trace) -> str:
    """`content_hash` as it was defined before `Dumped`: the canonical text of the whole."""
    from tracebridge._hashing import HASH_VERSION, _canonical, _trace_content

    text = _canonical({"trace": _trace_content(trace)})
    return f"{HASH_VERSION}:{hashlib.sha256(text).hexdigest()}"


@PROPERTY
@given(langwatch_traces(), opik_traces())
def test_one_dump_gives_the_hashes_a_dump_each_gives(
    raw: dict[str, Any], record: tuple[dict[str, Any], list[dict[str, Any]]]
) -> None:
    """`Dumped` (one dump, the hash text put together from its parts) gives what the plain
    definitions give: the content hash, each span's digest and the trace's parts."""
    for trace in (
        trace_from_wire(raw)[0],
        trace_from_opik(*record, project="p", mappings=MAPPINGS),
    ):
        dumped = Dumped.of(trace)
        assert dumped.hash == _plain_hash(trace) == content_hash(trace)
        assert dumped.span_digests() == [span_digest(s) for s in trace.spans]
        assert dumped.parts() == trace_parts(trace)
        assert dumped.trace == trace.dump_without_spans()


def test_inside_remembering_hashes_one_trace_object_is_hashed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine's write of a page hashes a trace (skip-unchanged), then stashes its hash,
    parts and span digests (the converter): one hashing serves both; outside the block, and
    for another object, each hashes afresh. The memo keeps hashes, not dumps."""
    hashed = counted_content_hashes(monkeypatch)
    trace = _trace()
    copy = trace.model_copy(update={"tags": ["other"]})
    content_hash(trace)
    content_hash(trace)
    assert hashed == ["t1", "t1"]
    with remembering_hashes() as memo:
        first = content_hash(trace)
        dumped = Dumped.of(trace)
        assert (dumped.hash, dumped.span_digests()) == (
            first,
            [span_digest(s) for s in trace.spans],
        )
        assert content_hash(copy) == _plain_hash(copy) != first  # another object: its own
        assert memo.get(trace) == (first, dumped.span_digests())
        assert all(not isinstance(v, dict) for entry in memo._known.values() for v in entry)
    assert hashed == ["t1", "t1", "t1", "t1"]
    assert first == _plain_hash(trace)
    content_hash(trace)  # the block is over: hashed again
    assert len(hashed) == 5


def test_an_edit_made_before_the_block_is_seen_by_the_hash() -> None:
    """A step may change a unit in place; the engine's block starts after the steps, so the
    hash is of the unit as written."""
    trace = _trace()
    before = content_hash(trace)
    trace.tags.append("added by a step")
    with remembering_hashes():
        assert content_hash(trace) != before
        assert content_hash(trace) == _plain_hash(trace)


def test_a_hash_memo_keeps_each_objects_hash_until_its_page_is_forgotten() -> None:
    trace, other = _trace(), _trace(id="t2")
    memo = HashMemo()
    with remembering_hashes(memo):
        first = content_hash(trace)
        memo.generation = 1
        content_hash(other)
        assert memo.get(trace) == (first, [span_digest(s) for s in trace.spans])
        assert memo.get(trace.model_copy()) is None  # another object: hashed on its own
        memo.forget_through(0)
        assert memo.get(trace) is None
        assert memo.get(other) is not None
    assert len(memo) == 1
    content_hash(trace)  # outside the block: not recorded
    assert len(memo) == 1
