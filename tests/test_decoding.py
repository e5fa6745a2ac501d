"""`_decoding.py`: what no destination can hold is dead-lettered at read time naming the field,
any other failure converting one record is that record's, and what a conversion noticed reaches
the page being read. Also `_file_source.paged`: a unit that cannot be loaded is one dead letter."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.strategies import json_values
from tracebridge import Counts, Page, Provenance, RecordError, Rejected, Trace, Unit
from tracebridge._decoding import (
    _ORJSON_EXACT,
    MAX_DEPTH,
    _types_suspect,
    _values_suspect,
    check_records,
    checked,
    collecting,
    decoding,
    value_problem,
)
from tracebridge._file_source import ThreadIndex, paged
from tracebridge._langwatch.convert import trace_from_wire
from tracebridge._mapping import default_mappings
from tracebridge._opik.convert import thread_data_from_opik, trace_from_opik

M = default_mappings()
MS0 = 1_773_082_800_000
OPIK_TRACE = {"id": "0190ca64-0000-7000-8000-000000000000", "start_time": "2026-03-09T19:00:00Z"}


def _nested(depth: int, leaf: Any = "x") -> Any:
    """`depth` levels of objects and arrays around `leaf` (built without recursion)."""
    value = leaf
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


def _lw(**fields: Any) -> dict[str, Any]:
    span = {"span_id": "s1", "type": "llm", "timestamps": {"started_at": MS0}}
    return {"trace_id": "t1", "timestamps": {"started_at": MS0}, "spans": [span], **fields}


def _reason(call: Any) -> str:
    with pytest.raises(RecordError) as caught:
        call()
    return caught.value.reason


# -------------------------------------------------------------------------------- value rules


@pytest.mark.parametrize(
    ("value", "name"),
    [(float("nan"), "NaN"), (float("inf"), "Infinity"), (float("-inf"), "-Infinity")],
)
def test_non_finite_numbers_are_named_with_their_field(value: float, name: str) -> None:
    problem = value_problem({"spans": [{"metrics": {"cost": value}}]})
    assert problem == (
        f"field 'spans.0.metrics.cost' is {name}: JSON has no NaN or Infinity, so neither Opik "
        "nor LangWatch can store it; replace it at the source (with a number or null) and rerun"
    )


def test_lone_surrogates_are_named_in_values_and_keys() -> None:
    assert value_problem({"a": ["ok", "cut \ud83d"]}) == (
        "field 'a.1' holds a lone surrogate (U+D83D), half of a character (often text cut "
        "inside an emoji) that no UTF-8 file or request can carry; fix the text at the source "
        "and rerun"
    )
    problem = value_problem({"meta": {"k\udc00": 1}})
    assert problem is not None
    assert problem.startswith("a key in field 'meta' holds a lone surrogate (U+DC00)")
    assert value_problem({"emoji": "👋 fine", "n": 1.5, "b": True, "z": None}) is None


def test_the_depth_limit_is_exact_and_the_path_is_shortened() -> None:
    """A record is level 1; MAX_DEPTH levels pass, one more is refused."""
    assert value_problem({"v": _nested(MAX_DEPTH - 1)}) is None
    problem = value_problem({"v": _nested(MAX_DEPTH)})
    assert problem is not None
    assert problem.startswith("field 'v.a.0.a.0.a.0.a.…' is nested more than 200 levels deep")


def test_the_value_walk_needs_no_recursion() -> None:
    problem = value_problem(_nested(200_000, leaf=float("nan")))
    assert problem is not None
    assert "nested more than" in problem
    assert value_problem([[0.5] * 10] * 100_000) is None


def test_the_first_problem_in_document_order_is_named() -> None:
    record = {"a": [1, {"b": float("nan")}], "c": "\ud800"}
    problem = value_problem(record, ("spans", 3))
    assert problem is not None
    assert problem.startswith("field 'spans.3.a.1.b' is NaN")


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (_lw(metrics={"total_cost": float("nan")}), "metrics.total_cost"),
        (_lw(evaluations=[{"name": "q", "score": float("inf")}]), "evaluations.0.score"),
        (_lw(metadata={"temperature": float("nan")}), "metadata.temperature"),
    ],
)
def test_langwatch_records_holding_nan_are_record_errors(record: Any, field: str) -> None:
    assert _reason(lambda: trace_from_wire(record)).startswith(f"field '{field}' is")


def test_a_langwatch_span_cost_of_nan_is_not_turned_into_null() -> None:
    record = _lw()
    record["spans"][0]["metrics"] = {"cost": float("nan"), "prompt_tokens": 3}
    with pytest.raises(RecordError) as caught:
        trace_from_wire(record, where="in.jsonl:7")
    assert caught.value.where == "in.jsonl:7"
    assert caught.value.record is record
    assert caught.value.reason.startswith("field 'spans.0.metrics.cost' is NaN")


@pytest.mark.parametrize(
    ("span", "field"),
    [
        ({"total_estimated_cost": float("nan")}, "spans.0.total_estimated_cost"),
        ({"ttft": float("inf")}, "spans.0.ttft"),
        ({"feedback_scores": [{"name": "q", "value": float("nan")}]}, "spans.0.feedback_scores"),
        ({"usage": {"prompt_tokens": float("nan")}}, "spans.0.usage.prompt_tokens"),
    ],
)
def test_opik_records_holding_nan_are_record_errors(span: dict[str, Any], field: str) -> None:
    spans = [{"id": "0190ca64-0000-7000-8000-000000000001", "start_time": "2026-03-09T19:00:01Z"}]
    spans[0] |= span
    reason = _reason(lambda: trace_from_opik(OPIK_TRACE, spans, project="p", mappings=M))
    assert reason.startswith(f"field '{field}")
    assert "NaN or Infinity" in reason


def test_a_traces_records_are_checked_together_and_the_first_problem_named() -> None:
    """`check_records` (one lean pass over a trace and its spans) names what the checks of
    each record, in order, would: the trace's field before any span's, a later span by its
    index; a record exactly as deep as the limit still passes, though the pass wraps it."""
    good = {"id": "s", "output": {"x": [1.5, "ü"]}}
    bad = {"id": "s", "output": {"x": [1.5, float("-inf")]}}
    records: list[tuple[Any, tuple[object, ...]]] = [({"id": "t"}, ())]
    check_records([*records, *((good, ("spans", i)) for i in range(3))])
    with pytest.raises(RecordError, match=r"field 'spans\.2\.output\.x\.1' is -Infinity"):
        check_records([*records, (good, ("spans", 0)), (good, ("spans", 1)), (bad, ("spans", 2))])
    with pytest.raises(RecordError, match=r"field 'name' is NaN"):
        check_records([({"name": float("nan")}, ()), (bad, ("spans", 0))])
    deepest: Any = "leaf"
    for _ in range(MAX_DEPTH):
        deepest = [deepest]
    check_records([(deepest, ()), (good, ("spans", 0))])
    with pytest.raises(RecordError, match="nested"):
        check_records([([deepest], ()), (good, ("spans", 0))])


def test_an_opik_trace_score_of_nan_is_a_record_error() -> None:
    trace = {**OPIK_TRACE, "feedback_scores": [{"name": "q", "value": float("nan")}]}
    reason = _reason(lambda: trace_from_opik(trace, [], project="p", mappings=M))
    assert reason.startswith("field 'feedback_scores.0.value' is NaN")


def test_a_too_deep_value_is_a_record_error_not_a_recursion_error() -> None:
    record = _lw()
    record["spans"][0]["input"] = {"type": "json", "value": _nested(900)}
    reason = _reason(lambda: trace_from_wire(record))
    assert reason.startswith("field 'spans.0.input.value.a.0.a.0.…' is nested more than 200")


# ----------------------------------------------------------------------- one record's failures


def test_any_failure_converting_one_record_is_a_record_error_naming_it() -> None:
    """An Opik ttft too large for a timedelta used to escape as OverflowError."""
    spans = [{"id": "0190ca64-0000-7000-8000-000000000001", "start_time": "2026-03-09T19:00:01Z"}]
    spans[0]["ttft"] = 1e300
    with pytest.raises(RecordError) as caught:
        trace_from_opik(OPIK_TRACE, spans, project="p", mappings=M, where="f.json")
    assert caught.value.where == "f.json"
    assert caught.value.reason.startswith("cannot convert it: OverflowError: ")


@pytest.mark.parametrize("raw", [["a", "list"], "text", None, 3])
def test_a_record_that_is_not_an_object_is_a_record_error(raw: Any) -> None:
    reason = _reason(lambda: trace_from_wire(raw))
    assert reason == f"a JSON {type(raw).__name__}, not a trace object"


def test_a_corrupt_thread_stash_rejects_its_trace_instead_of_escaping() -> None:
    record = _lw(metadata={"tracebridge": json.dumps({"thread": {"id": 5}})})
    assert _reason(lambda: trace_from_wire(record)) == (
        "the thread data in 'metadata.tracebridge' does not validate: "
        "field 'id': Input should be a valid string"
    )


def test_decoding_lets_fatal_errors_through() -> None:
    with pytest.raises(PermissionError), decoding("w", {}):
        raise PermissionError(13, "Permission denied", "/x")
    with pytest.raises(MemoryError), decoding("w", {}):
        raise MemoryError


def _fail_after_a_note() -> None:
    with decoding("w", {}) as notes:
        notes.warnings.append("dropped")
        raise ValueError("bad")


def test_notes_reach_the_collector_only_on_success_and_nest() -> None:
    with collecting() as outer:
        with decoding("w", {}) as notes:
            notes.warnings.append("kept")
        with pytest.raises(RecordError):
            _fail_after_a_note()
        with collecting() as inner, decoding("w", {}) as notes:
            notes.skip(2, "spans", "rule")
        assert inner.skipped == Counts(spans=2)
    assert outer.warnings == ["kept"]
    assert outer.skipped == Counts()


def test_without_a_collector_notes_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with decoding("w", {}) as notes:
        notes.warnings.append("a span was repaired")
    assert "a span was repaired" in caplog.text


# -------------------------------------------------------------------------------- thread data


def test_a_bad_thread_score_is_dead_lettered_alone_and_the_thread_is_read() -> None:
    data = {
        "id": "conv",
        "feedback_scores": [
            {"name": "good", "value": 1.0},
            {"name": "no value"},
            {"name": "nan", "value": float("nan")},
        ],
        "tags": "not-a-list",
        "status": 3,
    }
    with collecting() as notes:
        kwargs = thread_data_from_opik(data, M)
    assert [s.name for s in kwargs["scores"]] == ["good"]
    assert kwargs["tags"] == []
    assert kwargs["status"] is None
    missing, nan = notes.rejected
    assert (missing.kind, missing.where) == ("score", "thread conv: score no value")
    assert missing.reason.startswith("field 'value'")
    assert (nan.kind, nan.where) == ("score", "thread conv: score nan")
    assert nan.reason.startswith("field 'value' is NaN")
    assert len(notes.warnings) == 2


# --------------------------------------------------------------------------- _files.paged


def _trace(trace_id: str) -> Trace:
    return Trace(
        id=trace_id,
        source=Provenance(platform="langwatch", project="p", id=trace_id),
        started_at=datetime(2026, 3, 9, tzinfo=UTC),
    )


async def _pages(index: ThreadIndex[Any], load: Any, page_size: int = 10) -> list[Page]:
    return [page async for page in paged(index, load, None, page_size, "in.jsonl")]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_unit_whose_load_raises_is_one_dead_letter_and_the_next_unit_loads() -> None:
    index: ThreadIndex[tuple[int, int]] = ThreadIndex()
    for n, thread in enumerate(["conv", None, "conv", None], start=1):
        index.add(thread, (n * 100, n))

    def load(thread_id: str | None, locators: list[tuple[int, int]]) -> tuple[Unit, list[Any]]:
        if locators[0][1] == 2:
            raise RecursionError("maximum recursion depth exceeded")
        if thread_id == "conv":
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        return _trace(f"line{locators[0][1]}"), []

    (page,) = await _pages(index, load)
    assert [u.id for u in page.units] == ["line4"]
    thread, single = page.rejected
    assert (thread.kind, thread.where) == ("thread", "in.jsonl: thread conv (line 1, line 3)")
    assert thread.contains == Counts(threads=1, traces=2)
    assert thread.reason.startswith("could not be read: UnicodeEncodeError: ")
    assert (single.kind, single.where) == ("trace", "in.jsonl: line 2")
    assert single.reason == (
        "could not be read: RecursionError: maximum recursion depth exceeded "
        "(a value is nested too deeply to handle)"
    )
    assert page.cursor == {"units_done": 3, "units": 3, "input": ""}


@pytest.mark.anyio
async def test_an_environment_error_while_loading_stops_the_read(tmp_path: Path) -> None:
    index: ThreadIndex[Path] = ThreadIndex()
    index.add(None, tmp_path / "a.json")

    def load(thread_id: str | None, locators: list[Path]) -> tuple[Unit, list[Any]]:
        raise PermissionError(13, "Permission denied", str(locators[0]))

    with pytest.raises(PermissionError):
        await _pages(index, load)


@pytest.mark.anyio
async def test_what_a_unit_noticed_travels_with_its_page_unless_it_failed() -> None:
    index: ThreadIndex[tuple[int, int]] = ThreadIndex()
    index.add(None, (0, 1))
    index.add(None, (50, 2))

    def load(thread_id: str | None, locators: list[tuple[int, int]]) -> tuple[Unit, list[Any]]:
        with decoding("w", {}) as notes:
            notes.skip(1, "spans", "repeated")
            notes.rejected.append(Rejected("span", f"line {locators[0][1]}", "differs", {}))
        if locators[0][1] == 2:
            raise KeyError("boom")
        return _trace("ok"), []

    (page,) = await _pages(index, load)
    assert page.skipped == Counts(spans=1)
    assert [r.where for r in page.rejected] == ["line 1", "in.jsonl: line 2"]


# ------------------------------------------------------------------ plain JSON (`checked`)


class _Dict(dict[str, Any]):
    pass


class _Str(str):
    pass


def _plain(value: Any) -> bool:
    """The reference: only exact JSON types, string keys, finite floats (recursively)."""
    kind = type(value)
    if kind is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if kind is list:
        return all(_plain(v) for v in value)
    if kind is float:
        return value == value and value not in (float("inf"), float("-inf"))
    return kind in (str, int, bool, type(None))


#: Values as parsers give them, and as code may build them: NaN, lone surrogates, tuples,
#: subclasses and keys that are not strings too.
_odd_scalar = (
    st.floats()
    | st.text(st.characters(max_codepoint=0xDFFF), max_size=3)
    | st.sampled_from([(1, 2), _Str("s"), b"x", 2**70, True])
)
_any_values = st.recursive(
    json_values | _odd_scalar,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.text(max_size=2) | st.integers(0, 3) | st.just(float("nan")), inner, max_size=3
        )
        | st.dictionaries(st.text(max_size=2), inner, max_size=2).map(_Dict)
        | st.lists(inner, max_size=2).map(tuple)
    ),
    max_leaves=8,
)


@given(_any_values)
def test_checked_raises_what_value_problem_names_and_tells_plain_json(value: Any) -> None:
    """`checked` raises exactly when `value_problem` names a problem, with its message, and
    answers True exactly for plain JSON (the lean pass `checked` relies on is exact)."""
    problem = value_problem({"v": value})
    if problem is not None:
        with pytest.raises(RecordError) as caught:
            checked({"v": value})
        assert caught.value.reason == problem
    else:
        assert checked({"v": value}) is _plain({"v": value})


@given(json_values)
def test_values_from_json_are_plain(value: Any) -> None:
    """What a JSON parser gives is plain JSON, at the top or nested."""
    assert checked(value) is True
    assert checked(json.loads(json.dumps(value))) is True


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (_Dict(a=float("nan")), "a"),  # a dict subclass at the top was not walked
        ({"a": {float("nan"): 1}}, "a"),  # nor a key that is not a string
        ([_Dict(b=["\ud800"])], "0.b.0"),
    ],
)
def test_the_lean_pass_leaves_no_value_unseen(record: Any, field: str) -> None:
    """A subclass of dict at the top, and keys that are not strings, go to the full pass."""
    problem = value_problem(record)
    assert problem is not None
    assert f"'{field}'" in problem
    with pytest.raises(RecordError):
        checked(record)


def test_checked_tells_plain_json_from_what_code_built() -> None:
    assert checked({"a": [1, 2.5, "é", None, True, {"b": []}]}) is True
    for built in ({"a": (1, 2)}, {"a": _Str("x")}, {1: "a"}, _Dict(), {"a": [_Dict()]}, b"x"):
        assert checked(built) is False
    assert checked(_nested(MAX_DEPTH - 1)) is True
    with pytest.raises(RecordError):
        checked(_nested(MAX_DEPTH + 1))


@given(_any_values)
def test_the_walk_after_orjson_agrees_with_the_walk_that_checks_strings(value: Any) -> None:
    """Where `orjson` writes a record, skipping the strings and keys (`_types_suspect`) gives
    what checking them gives (`_values_suspect`); where it cannot, the latter decides."""
    record = {"v": value}
    try:
        orjson.dumps(record, option=_ORJSON_EXACT)
    except orjson.JSONEncodeError:
        return
    assert _types_suspect(record) is _values_suspect(record)


@pytest.mark.timeout(10)
def test_a_deep_structure_sharing_its_parts_is_refused_without_walking_it_whole() -> None:
    """Built in code, 2**300 paths in 300 lists: refused at the depth limit, at once."""
    shared: list[Any] = []
    for _ in range(300):
        shared = [shared, shared]
    problem = value_problem({"x": shared})
    assert problem is not None
    assert "nested more than" in problem
