"""`_langwatch.convert`: LangWatch's read shape ⇄ canonical records, the seed trace, bad records,
copies of Opik-born traces (synthetic root span, stash) and thread data."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracebridge import IOValue, RecordError, Score, Span, Thread, Trace
from tracebridge._langwatch import convert
from tracebridge._langwatch.convert import (
    evaluation_id,
    thread_to_wire,
    trace_from_wire,
    trace_to_wire,
)
from tracebridge._mapping import default_mappings
from tracebridge._models import Provenance
from tracebridge._opik.convert import trace_from_opik
from tracebridge._stash import STASH_KEY, apply_patch, make_patch, same

from ..strategies import (
    error_infos,
    json_objects,
    json_values,
    langwatch_traces,
    opik_traces,
    typed_values,
)

Json = dict[str, Any]

# The response of `GET /api/thread/{id}` from LangWatch's documentation (shared/seeds), verbatim.
SEED_THREAD_JSON = r"""
[
  {
    "trace_id": "trace_BKZL_X0TKSD4oa1aBJTc_",
    "project_id": "KAXYxPR8MUgTcP8CF193y",
    "metadata": {
      "sdk_version": "0.1.11",
      "sdk_language": "python"
    },
    "timestamps": {
      "started_at": 1721382486868,
      "inserted_at": 1721382492894,
      "updated_at": 1721382492894
    },
    "input": {
      "value": "hi"
    },
    "output": {
      "value": "Hey there! 👋😊"
    },
    "metrics": {
      "first_token_ms": 1449,
      "total_time_ms": 1543,
      "prompt_tokens": 20,
      "completion_tokens": 7,
      "tokens_estimated": true
    },
    "error": null,
    "indexing_md5s": [
      "cccd21e0b70c706034dfd9f7772816a3"
    ],
    "spans": [
      {
        "trace_id": "trace_BKZL_X0TKSD4oa1aBJTc_",
        "span_id": "span_h1xUkcUJilhudDrLeQbR_",
        "timestamps": {
          "finished_at": 1721382488392,
          "updated_at": 1721382492027,
          "started_at": 1721382486895,
          "first_token_at": 1721382488317,
          "inserted_at": 1721382492027
        },
        "type": "llm",
        "error": null,
        "params": {
          "stream": true,
          "temperature": 1
        },
        "project_id": "KAXYxPR8MUgTcP8CF193y",
        "parent_id": "span_ijZNjUMTz3ys0Z0YKwF_T",
        "name": null,
        "model": "openai/gpt-5",
        "metrics": {
          "tokens_estimated": true,
          "completion_tokens": 7,
          "prompt_tokens": 20
        },
        "input": {
          "type": "chat_messages",
          "value": [
            {
              "role": "system",
              "content": "You are a helpful assistant that only reply in short tweet-like responses, using lots of emojis."
            },
            {
              "role": "user",
              "content": "hi"
            }
          ]
        },
        "output": {
          "type": "chat_messages",
          "value": [
            {
              "role": "assistant",
              "content": "Hey there! 👋😊"
            }
          ]
        }
      }
    ],
    "evaluations": [
      {
        "evaluation_id": "check_VCagriZHNWICSOM09dXjM",
        "name": "Ragas Answer Relevancy",
        "type": "ragas/answer_relevancy",
        "trace_id": "trace_BKZL_X0TKSD4oa1aBJTc_",
        "project_id": "KAXYxPR8MUgTcP8CF193y",
        "status": "error",
        "timestamps": {
          "updated_at": 1721383657788,
          "inserted_at": 1721382493358
        },
        "error": {
          "stacktrace": [
            "TypeError: fetch failed"
          ],
          "message": "fetch failed",
          "has_error": true
        }
      }
    ]
  }
]
"""  # noqa: E501 - verbatim from the documentation
SEED: Json = json.loads(SEED_THREAD_JSON)[0]
SEED_START = datetime(2024, 7, 19, 9, 48, 6, 868_000, tzinfo=UTC)


def _seed() -> Json:
    return copy.deepcopy(SEED)


def _through_json(value: Any) -> Any:
    return json.loads(json.dumps(value, ensure_ascii=False))


def _opik_born(
    trace_id: str = "0190ca64-4354-7e14-b664-ec7094b9c424",
    start: str = "2024-07-19T09:48:06.868Z",
    thread_id: str | None = "3f2c9a1e-7b7d-4c1a-9a55-0d3b5e2f8c11",
) -> Trace:
    """An Opik trace with one LLM span under a general span, read as Opik returns it."""
    span_root = trace_id[:-4] + "aaaa"
    span_llm = trace_id[:-4] + "bbbb"
    trace: Json = {
        "id": trace_id,
        "project_id": "0190ca64-0000-7000-8000-000000000000",
        "name": "chat_turn",
        "start_time": start,
        "input": {"messages": [{"role": "user", "content": "My router keeps dropping"}]},
        "output": {"output": "Switch to 5 GHz, please."},
        "metadata": {"environment": "production", "ab_bucket": 3, "is_premium": False},
        "tags": ["web", "fibre"],
        "feedback_scores": [
            {"name": "hallucination", "value": 0.12, "source": "sdk", "reason": "grounded"}
        ],
    }
    if thread_id is not None:
        trace["thread_id"] = thread_id
    spans: list[Json] = [
        {
            "id": span_root,
            "trace_id": trace_id,
            "type": "general",
            "name": "support_pipeline",
            "start_time": start,
            "metadata": {"framework": "langchain"},
        },
        {
            "id": span_llm,
            "trace_id": trace_id,
            "parent_span_id": span_root,
            "type": "llm",
            "name": "ChatOpenAI",
            "start_time": start,
            "model": "gpt-5",
            "provider": "openai",
            "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27},
            "input": {"messages": [{"role": "user", "content": "My router keeps dropping"}]},
            "output": {"messages": [{"role": "assistant", "content": "Switch to 5 GHz."}]},
        },
    ]
    return trace_from_opik(trace, spans, project="support-bot", mappings=default_mappings())


# ---------------------------------------------------------------------------------- seed trace


def test_seed_trace_converts_to_canonical() -> None:
    """Every field of the documented trace lands where DESIGN.md says."""
    trace, thread = trace_from_wire(_seed())
    assert thread is None
    assert trace.id == "trace_BKZL_X0TKSD4oa1aBJTc_"
    assert trace.source.platform == "langwatch"
    assert trace.source.project == "KAXYxPR8MUgTcP8CF193y"
    assert trace.source.id == trace.id
    assert trace.started_at == SEED_START
    assert trace.ended_at == SEED_START + timedelta(milliseconds=1543)
    assert trace.input is not None
    assert trace.input.type == "text"
    assert trace.input.value == "hi"
    assert trace.output is not None
    assert trace.output.value == "Hey there! 👋😊"
    assert trace.metadata == {"sdk_version": "0.1.11", "sdk_language": "python"}
    assert trace.thread_id is None
    assert trace.tags == []

    (span,) = trace.spans
    assert span.id == "span_h1xUkcUJilhudDrLeQbR_"
    assert span.parent_id == "span_ijZNjUMTz3ys0Z0YKwF_T"  # an orphan: kept as it is
    assert span.kind == "llm"
    assert span.model == "openai/gpt-5"
    assert span.started_at == datetime(2024, 7, 19, 9, 48, 6, 895_000, tzinfo=UTC)
    assert span.first_token_at == datetime(2024, 7, 19, 9, 48, 8, 317_000, tzinfo=UTC)
    assert span.ended_at == datetime(2024, 7, 19, 9, 48, 8, 392_000, tzinfo=UTC)
    assert span.usage == {"prompt_tokens": 20, "completion_tokens": 7}
    assert span.params == {"stream": True, "temperature": 1}
    assert span.input is not None
    assert span.input.type == "chat_messages"
    assert span.input.value[1] == {"role": "user", "content": "hi"}

    (score,) = trace.scores
    assert score.name == "Ragas Answer Relevancy"
    assert score.status == "error"
    assert score.id == "check_VCagriZHNWICSOM09dXjM"
    assert score.value is None
    assert score.passed is None


def test_seed_trace_round_trips_exactly() -> None:
    """Writing the canonical trace back gives the documented record, unknown fields included."""
    raw = _seed()
    trace, _ = trace_from_wire(raw)
    back = _through_json(trace_to_wire(trace))
    assert same(back, raw), back
    assert back["indexing_md5s"] == ["cccd21e0b70c706034dfd9f7772816a3"]
    assert back["spans"][0]["timestamps"]["inserted_at"] == 1721382492027
    assert back["evaluations"][0]["type"] == "ragas/answer_relevancy"


def test_seed_trace_round_trips_through_json_text() -> None:
    """The canonical record itself survives JSON (as files and queues carry it)."""
    trace, _ = trace_from_wire(_seed())
    again = Trace.model_validate_json(trace.model_dump_json())
    assert again == trace
    assert same(trace_to_wire(again), SEED)


def test_project_argument_names_the_provenance_project() -> None:
    """The caller's project name wins over the record's project_id for provenance."""
    trace, _ = trace_from_wire(_seed(), project="support-bot")
    assert trace.source.project == "support-bot"


def test_labels_and_thread_id_become_tags_and_thread() -> None:
    """`metadata.labels` are tags and `metadata.thread_id` the thread; neither stays metadata."""
    raw = _seed()
    raw["metadata"].update(thread_id="conv_42", labels=["web", "vip"])
    trace, _ = trace_from_wire(raw)
    assert trace.thread_id == "conv_42"
    assert trace.tags == ["web", "vip"]
    assert "labels" not in trace.metadata
    assert "thread_id" not in trace.metadata
    assert same(trace_to_wire(trace), raw)


def test_labels_as_json_text_are_read() -> None:
    """LangWatch may return labels as a JSON string: it is decoded into tags."""
    raw = _seed()
    raw["metadata"]["labels"] = '["web", "vip"]'
    trace, _ = trace_from_wire(raw)
    assert trace.tags == ["web", "vip"]


# ---------------------------------------------------------------------------------- bad records


def _reason(raw: Json, **kwargs: Any) -> RecordError:
    with pytest.raises(RecordError) as info:
        trace_from_wire(raw, **kwargs)
    return info.value


def test_missing_started_at_names_the_field() -> None:
    """No `timestamps.started_at`: a RecordError whose reason names exactly that field."""
    raw = _seed()
    del raw["timestamps"]["started_at"]
    error = _reason(raw)
    assert "timestamps.started_at" in error.reason
    assert error.where == "trace trace_BKZL_X0TKSD4oa1aBJTc_"
    assert error.record is raw  # dead-lettered as it was read


def test_started_at_in_seconds_says_seconds() -> None:
    """A 10-digit timestamp is seconds: the reason names the field and says seconds."""
    raw = _seed()
    raw["timestamps"]["started_at"] = 1721382486
    error = _reason(raw, where="traces.jsonl:7")
    assert "timestamps.started_at" in error.reason
    assert "seconds" in error.reason
    assert error.where == "traces.jsonl:7"
    assert str(error).startswith("traces.jsonl:7: ")


def test_span_started_at_in_seconds_names_the_span_field() -> None:
    """The reason points into the span list."""
    raw = _seed()
    raw["spans"][0]["timestamps"]["started_at"] = 1721382486
    error = _reason(raw)
    assert "spans.0.timestamps.started_at" in error.reason
    assert "seconds" in error.reason


def test_span_without_span_id_names_the_field() -> None:
    """A span without `span_id` cannot be placed in a tree: refused by field name."""
    raw = _seed()
    del raw["spans"][0]["span_id"]
    assert "spans.0.span_id" in _reason(raw).reason


def test_missing_trace_id_names_the_field() -> None:
    """A record without `trace_id` is refused by name; `where` falls back to `?`."""
    raw = _seed()
    del raw["trace_id"]
    error = _reason(raw)
    assert "trace_id" in error.reason
    assert error.where == "trace ?"


def test_every_bad_field_is_named() -> None:
    """Two problems, one message: both fields are named."""
    raw = _seed()
    del raw["spans"][0]["span_id"]
    raw["timestamps"]["started_at"] = "yesterday"
    reason = _reason(raw).reason
    assert "spans.0.span_id" in reason
    assert "timestamps.started_at" in reason


def test_non_string_thread_id_is_a_record_error() -> None:
    """A numeric `metadata.thread_id` (hand-made JSONL) must be dead-lettered, not crash the run."""
    raw = _seed()
    raw["metadata"]["thread_id"] = 12345
    error = _reason(raw)
    assert "thread_id" in error.reason


# ------------------------------------------------------------------- copies of Opik-born traces


def test_opik_born_copy_gets_a_synthetic_root_span() -> None:
    """The copy's first span stands for the trace: id = trace id, trace name/IO/times, marked
    in `params.tracebridge`; the trace's own roots hang below it."""
    trace = _opik_born()
    wire = trace_to_wire(trace)
    root, *rest = wire["spans"]
    assert root["span_id"] == trace.id
    assert root["parent_id"] is None
    assert root["name"] == "chat_turn"
    assert json.loads(root["params"]["tracebridge"]) == {"trace_span": True}
    assert trace.input is not None
    assert trace.output is not None
    assert root["input"] == trace.input.model_dump()
    assert root["output"] == trace.output.model_dump()
    assert root["timestamps"]["started_at"] == wire["timestamps"]["started_at"]
    assert [s["span_id"] for s in rest] == [s.id for s in trace.spans]
    assert rest[0]["parent_id"] == trace.id  # was a root in Opik
    assert rest[1]["parent_id"] == trace.spans[0].id  # unchanged below


def test_opik_born_copy_carries_the_stash_as_json_text() -> None:
    """`metadata.tracebridge` is JSON text (LangWatch stores strings) with the provenance."""
    trace = _opik_born()
    wire = trace_to_wire(trace)
    stash_text = wire["metadata"]["tracebridge"]
    assert isinstance(stash_text, str)
    stash = json.loads(stash_text)
    assert stash["source"] == {"platform": "opik", "project": "support-bot", "id": trace.id}
    # Custom metadata is written as LangWatch gives it back: strings.
    assert wire["metadata"]["ab_bucket"] == "3"
    assert wire["metadata"]["is_premium"] == "false"
    assert wire["metadata"]["labels"] == ["web", "fibre"]
    assert wire["metadata"]["thread_id"] == trace.thread_id
    # The trace-level input/output LangWatch shows are text.
    assert isinstance(wire["input"]["value"], str)


def test_opik_born_copy_reads_back_as_the_original() -> None:
    """LangWatch -> canonical undoes the synthetic span and the stash: the same trace."""
    trace = _opik_born()
    back, thread = trace_from_wire(_through_json(trace_to_wire(trace)))
    assert thread is None
    assert back == trace
    assert back.metadata["ab_bucket"] == 3  # the stash restored the original type
    assert back.spans[0].parent_id is None


def test_langwatch_born_trace_gets_no_stash_and_no_synthetic_span() -> None:
    """Only copies carry the machinery; LangWatch's own traces are written as they were."""
    trace, _ = trace_from_wire(_seed())
    wire = trace_to_wire(trace)
    assert "tracebridge" not in wire["metadata"]
    assert [s["span_id"] for s in wire["spans"]] == ["span_h1xUkcUJilhudDrLeQbR_"]


# ---------------------------------------------------------------------------------- thread data


def test_thread_data_lands_on_the_last_trace_and_reads_back() -> None:
    """Opik thread scores, tags and status go on the thread's last trace by start time (even when
    it is not last in the list) and come back from it; other traces carry none."""
    early = _opik_born("0190ca64-4354-7e14-b664-ec7094b9c424", "2024-07-19T09:48:06.868Z")
    late = _opik_born("0190ca64-8000-7e14-b664-ec7094b9c425", "2024-07-19T09:52:00.000Z")
    thread = Thread(
        id="3f2c9a1e-7b7d-4c1a-9a55-0d3b5e2f8c11",
        traces=[late, early],
        scores=[Score(name="user_frustration", value=0.8, reason="repeated question")],
        tags=["escalated"],
        status="inactive",
    )
    wires = _through_json(thread_to_wire(thread))
    by_id = {w["trace_id"]: w for w in wires}
    assert [w["trace_id"] for w in wires] == [late.id, early.id]

    late_wire, early_wire = by_id[late.id], by_id[early.id]
    thread_evals = [e for e in late_wire["evaluations"] if e["name"] == "thread: user_frustration"]
    assert len(thread_evals) == 1
    assert thread_evals[0]["score"] == 0.8
    assert json.loads(late_wire["metadata"]["thread_tags"]) == ["escalated"]
    assert not any(e["name"].startswith("thread: ") for e in early_wire["evaluations"])
    assert "thread_tags" not in early_wire["metadata"]
    assert "thread" not in json.loads(early_wire["metadata"]["tracebridge"])

    late_back, late_thread = trace_from_wire(late_wire)
    early_back, early_thread = trace_from_wire(early_wire)
    assert late_back == late  # thread data is not mistaken for trace data
    assert early_back == early
    assert early_thread is None
    assert late_thread is not None
    assert late_thread.scores == thread.scores
    assert late_thread.tags == ["escalated"]
    assert late_thread.status == "inactive"


def test_thread_without_thread_data_adds_nothing() -> None:
    """A thread with no scores, tags or status writes its traces as they are."""
    trace = _opik_born()
    (wire,) = thread_to_wire(Thread(id="t", traces=[trace]))
    assert wire == trace_to_wire(trace)
    assert thread_to_wire(Thread(id="empty")) == []


# ------------------------------------------------------------- residuals: the fast way agrees


def _by_encoding(raw: Json) -> Trace:
    """`trace_from_wire` with its residuals taken the general way, as for any record."""
    with patch.object(convert, "_keep_residuals", convert._residuals_by_encoding):
        return trace_from_wire(raw, project="p")[0]


#: A span stash of version 1, as a copy read from LangWatch may carry.
_V1 = '{"patch": {"name": {"set": "renamed"}, "metadata": {"set": {"k": [1.5]}}}}'


def _ms_as_float(record: Json) -> None:
    record["timestamps"]["started_at"] = float(record["timestamps"]["started_at"])


#: What the canonical records cannot hold, as (where, how): the trace, each span or each
#: evaluation.
_TWEAKS: list[tuple[str, Any]] = [
    ("trace", _ms_as_float),
    ("trace", lambda r: r["metadata"].update(labels='["a", "b"]')),
    ("trace", lambda r: r.update(input={"value": None})),
    ("trace", lambda r: r.update(metrics={"total_time_ms": 12.0})),
    ("trace", lambda r: r.pop("evaluations", None)),
    ("trace", lambda r: r.pop("spans", None)),
    ("span", _ms_as_float),
    ("span", lambda s: s.setdefault("metrics", {}).update(cost=3)),
    ("span", lambda s: s.setdefault("metrics", {}).update(cached=True)),
    ("span", lambda s: s.pop("type", None)),
    ("span", lambda s: s.update(trace_id="elsewhere")),
    ("span", lambda s: s.pop("trace_id", None)),
    ("span", lambda s: s.update(error={"has_error": False, "message": None})),
    ("span", lambda s: s.update(error={"message": "m", "stacktrace": [], "code": 7})),
    ("span", lambda s: s.update(server_field={"a": [1, 2.5]})),
    ("span", lambda s: s.update(params=None)),
    ("span", lambda s: s.update(metrics={})),
    ("span", lambda s: s.update(input=None)),
    ("span", lambda s: s.update(output={"type": "json", "value": [0.0, -0.0], "x": 1})),
    ("span", lambda s: s.update(params={**(s.get("params") or {}), "tracebridge": _V1})),
    ("span", lambda s: s.update(params={"tracebridge": '{"trace_span": true}'})),
    ("span", lambda s: s.update(params={"tracebridge": '{"v": 2, "hash": "x"}'})),
    ("trace", lambda r: r["metadata"].update(tracebridge='{"shift_ms": 5}')),
    ("trace", lambda r: r["metadata"].update(tracebridge='{"patch": {"name": {"set": "n"}}}')),
    ("evaluation", lambda e: e.update(score=2)),
    ("evaluation", lambda e: e.update(timestamps={"inserted_at": 1}, passed=None)),
]


@st.composite
def _tweaked_traces(draw: st.DrawFn) -> Json:
    """LangWatch traces with what the canonical records cannot hold in many places."""
    raw = copy.deepcopy(draw(langwatch_traces()))
    for where, tweak in draw(st.lists(st.sampled_from(_TWEAKS), max_size=4)):
        if where == "trace":
            tweak(raw)
            continue
        for item in raw.get("spans" if where == "span" else "evaluations") or []:
            if draw(st.booleans()):
                tweak(item)
    return raw


@settings(max_examples=300, deadline=None)
@given(_tweaked_traces())
def test_residuals_of_plain_json_are_those_the_general_way_takes(raw: Json) -> None:
    """The fast residuals (`_keep_residuals`, values shared, no re-encoding) are exactly the
    general way's, key order included, for records as parsed from JSON text."""
    raw = json.loads(json.dumps(raw))
    try:
        fast = trace_from_wire(raw, project="p")[0]
    except RecordError:
        with pytest.raises(RecordError):
            _by_encoding(raw)
        return
    general = _by_encoding(raw)
    assert fast.model_dump_json() == general.model_dump_json()
    assert json.dumps(trace_to_wire(fast)) == json.dumps(trace_to_wire(general))
    if STASH_KEY not in json.dumps(raw):  # (a stash may shift or patch what is read)
        assert same(trace_to_wire(fast), raw)


def test_a_record_built_with_other_types_takes_the_general_way() -> None:
    """A tuple (which JSON has not) sends the record to the general residuals."""
    raw = json.loads(SEED_THREAD_JSON)[0]
    raw["spans"][0]["params"] = {"stop": ("a", "b")}
    with patch.object(convert, "_keep_residuals", side_effect=AssertionError("fast way")):
        trace = trace_from_wire(raw)[0]
    assert trace.spans[0].params == {"stop": ("a", "b")}


@given(json_objects, json_objects, json_objects)
def test_the_residual_applied_on_write_is_the_stash_patch_applied(
    original: Json, decoded: Json, target: Json
) -> None:
    """`_stash.apply_patch` (used when writing; it sets a string, number, boolean or None as
    it is) shares nothing mutable with the patch."""
    residual = make_patch(original, decoded)
    for base in (decoded, target):
        ours = apply_patch(base, residual)
        for key, change in residual.items():
            if "set" in change and isinstance(change["set"], dict | list):
                assert ours[key] is not change["set"]


# ---------------------------------------------- the stash told from the mapping (fast path)


def _general(trace: Trace, thread: Thread | None = None) -> Json:
    """`trace_to_wire` by decoding the wire again (the general path), never told."""
    with patch.object(convert, "_read_back", return_value=None):
        return trace_to_wire(trace, project_id="p", thread=thread)


def _assert_told_as_decoded(trace: Trace, thread: Thread | None = None) -> bool:
    """The wire `trace_to_wire` writes (stashes included) is byte for byte the general path's,
    or both fail alike; True when the stash was told from the mapping (not decoded)."""
    before = copy.deepcopy(trace)
    try:
        general = _general(trace, thread)
    except Exception as exc:  # (an invalid wire: the told path must fail the same way)
        with pytest.raises(type(exc)):
            trace_to_wire(trace, project_id="p", thread=thread)
        assert (
            convert._read_back(trace, convert._encode(trace, project_id="p", thread=thread), thread)
            is None
        )
        return False
    encoded = convert._encode(trace, project_id="p", thread=thread)
    told = convert._read_back(trace, encoded, thread)
    fast = trace_to_wire(trace, project_id="p", thread=thread)
    assert json.dumps(fast, ensure_ascii=False) == json.dumps(general, ensure_ascii=False)
    assert trace == before
    return told is not None


_thread_scores = st.lists(
    st.builds(
        Score,
        name=st.sampled_from(["frustration", "a", ""]),
        value=st.none() | st.floats(-2, 2, allow_nan=False),
        passed=st.none() | st.booleans(),
        reason=st.none() | st.text(max_size=3),
        status=st.sampled_from(["processed", "skipped"]),
        id=st.none() | st.just("eval_1"),
        source=st.none() | st.just("ui"),
        extras=st.sampled_from([{}, {"opik": {"x": 1}}]),
    ),
    max_size=2,
)


@st.composite
def _threads(draw: st.DrawFn) -> Thread | None:
    """No thread, or thread data for the last trace (it may have none)."""
    if draw(st.booleans()):
        return None
    return Thread(
        id="th",
        scores=draw(_thread_scores),
        tags=draw(st.lists(st.sampled_from(["x", "esc", "x"]), max_size=2)),
        status=draw(st.none() | st.just("inactive")),
    )


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(opik_traces(), _threads())
def test_the_told_stash_is_the_decoded_one_for_opik_traces(
    records: tuple[Json, list[Json]], thread: Thread | None
) -> None:
    trace = trace_from_opik(*records, project="p", mappings=default_mappings())
    assert _assert_told_as_decoded(trace, thread)


@st.composite
def _canonical_traces(draw: st.DrawFn) -> tuple[Trace, Thread | None]:
    """Canonical traces (born on Opik) with what the LangWatch mapping loses or moves:
    reserved and non-text metadata, span metadata and tags, exception types, scores' sources,
    extras and ids (given, empty, or the id of another span's score, or of the synthetic root
    span's), spans under the trace's id, traces without an end, thread data."""
    start = datetime(2026, 3, 9, 19, 2, 11, 482000, tzinfo=UTC)
    # Half the traces also hold what sends `trace_to_wire` to the decoder: residuals for
    # LangWatch, a stash key in params, a cost among the usage, parent cycles, repeated span
    # ids or the trace's id as a span's, times LangWatch cannot hold, an empty trace id.
    odd = draw(st.booleans())
    trace_id = draw(st.sampled_from(["t1", *(["", "s0"] if odd else [])]))

    def extras(residual: Json) -> Json:
        return draw(st.sampled_from([{}, {"opik": {"k": [1]}}, *([residual] if odd else [])]))

    def when() -> datetime:
        if odd and draw(st.integers(0, 9)) == 0:
            return datetime(2000, 1, 1, tzinfo=UTC)  # (before 13-digit epoch milliseconds)
        return start + timedelta(milliseconds=draw(st.integers(-5, 10_000)))

    def metadata() -> Json:
        out: Json = draw(st.dictionaries(_meta_key, json_values, max_size=3))
        return out

    def scores(span_ids: list[str]) -> list[Score]:
        ids = [
            evaluation_id(trace_id, name, other)
            for name in ("a", "b")
            for other in [trace_id, *span_ids]
        ]
        return draw(
            st.lists(
                st.builds(
                    Score,
                    name=st.sampled_from(["a", "b", " ", ""]),
                    value=st.none() | st.floats(-2e9, 2e9, allow_nan=False),
                    passed=st.none() | st.booleans(),
                    label=st.none() | st.text(max_size=3),
                    reason=st.none() | st.text(max_size=3),
                    status=st.sampled_from(["processed", "skipped", "error"]),
                    id=st.none() | st.sampled_from(["eval_1", "", *ids]),
                    source=st.none() | st.sampled_from(["sdk", "ui"]),
                    extras=st.sampled_from(
                        [
                            {},
                            {"opik": {"x": 1}},
                            *([{"langwatch": {"span_id": {"set": "s0"}}}] if odd else []),
                        ]
                    ),
                ),
                max_size=3,
            )
        )

    def io() -> IOValue | None:
        value = draw(st.none() | typed_values())
        return None if value is None else IOValue.model_validate(value)

    tags = st.lists(st.sampled_from(["x", "y", "z"]), max_size=4)
    n = draw(st.integers(0, 4))
    ids = [f"s{i}" for i in range(n)]
    if odd and n > 1 and draw(st.booleans()):
        ids[-1] = ids[0]
    spans = []
    for i in range(n):
        started = when()
        usage_keys = ["prompt_tokens", "completion_tokens", *(["cost"] if odd else [])]
        spans.append(
            Span(
                id=ids[i],
                parent_id=draw(
                    st.none()
                    | st.sampled_from((ids if odd else ids[:i]) or ["gone"])
                    | st.sampled_from(["gone", trace_id])
                ),
                name=draw(st.none() | st.sampled_from(["", "n"])),
                kind=draw(st.sampled_from(["llm", "tool", "agent", "span", ""])),
                started_at=started,
                ended_at=draw(st.none() | st.just(started + timedelta(milliseconds=7))),
                first_token_at=draw(st.none() | st.just(started + timedelta(milliseconds=3))),
                input=io(),
                output=io(),
                model=draw(st.none() | st.sampled_from(["openai/gpt-5", "gpt-5", ""])),
                provider=draw(st.none() | st.sampled_from(["openai", "azure"])),
                usage=draw(st.dictionaries(st.sampled_from(usage_keys), st.integers(0, 3))),
                cost=draw(st.none() | st.floats(-1, 1, allow_nan=False)),
                params=draw(
                    st.sampled_from(
                        [{}, {"temperature": 0.5}, *([{STASH_KEY: '{"v": 2}'}] if odd else [])]
                    )
                ),
                metadata=metadata(),
                tags=draw(tags),
                contexts=draw(st.none() | st.just([]) | st.just([{"content": "c"}])),
                error=draw(error_infos),
                scores=scores(ids),
                extras=extras({"langwatch": {"name": {"set": "o"}}}),
            )
        )
    trace = Trace(
        id=trace_id,
        source=Provenance(platform="opik", project="p", id=trace_id),
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
        scores=scores(ids),
        extras=extras({"langwatch": {"labels": {"set": ["o"]}}}),
    )
    return trace, draw(_threads())


_meta_key = st.sampled_from(
    ["user_id", "thread_id", "labels", "tracebridge", "thread_tags", "k", "text"]
)


@settings(max_examples=350, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_canonical_traces())
def test_the_told_stash_is_the_decoded_one_where_the_mapping_loses_most(
    drawn: tuple[Trace, Thread | None],
) -> None:
    _assert_told_as_decoded(*drawn)


def test_the_common_cases_are_told_not_decoded() -> None:
    """Opik-born traces, with thread data too, are told from the mapping; a residual for
    LangWatch (on the trace, or on a thread score), a stash key in a span's params, a parent
    cycle, a repeated span id, a span with the trace's id, a time before 13-digit epoch
    milliseconds and a metadata text of a `str` subclass are decoded."""
    trace = _opik_born()
    thread = Thread(id="th", scores=[Score(name="f", value=1.0)], tags=["t"], status="s")
    assert _assert_told_as_decoded(trace)
    assert _assert_told_as_decoded(trace, thread)
    span = trace.spans[0]
    assert not _assert_told_as_decoded(
        trace.model_copy(update={"extras": {"langwatch": {"x": {"set": 1}}}})
    )
    stashed = span.model_copy(update={"params": {STASH_KEY: "{}"}})
    assert not _assert_told_as_decoded(trace.model_copy(update={"spans": [stashed]}))
    cycle = [span.model_copy(update={"parent_id": span.id})]
    assert not _assert_told_as_decoded(trace.model_copy(update={"spans": cycle}))
    assert not _assert_told_as_decoded(trace.model_copy(update={"spans": [span, span]}))
    named = span.model_copy(update={"id": trace.id})
    assert not _assert_told_as_decoded(trace.model_copy(update={"spans": [named]}))
    old = trace.model_copy(update={"started_at": datetime(2000, 1, 1, tzinfo=UTC)})
    assert not _assert_told_as_decoded(old)
    residual = Score(name="f", value=1.0, extras={"langwatch": {"span_id": {"set": span.id}}})
    assert not _assert_told_as_decoded(trace, thread.model_copy(update={"scores": [residual]}))
    text = type("Text", (str,), {})("a text of another type")
    assert not _assert_told_as_decoded(trace.model_copy(update={"metadata": {"k": text}}))


def test_a_score_with_another_span_s_evaluation_id_is_told_as_that_span_s() -> None:
    """A trace score given the id tracebridge gives a span's score of its name reads back as
    that span's score (`_decode`), and one given the synthetic root span's is not read: the
    told stash restores both, as the decoded one does."""
    trace = _opik_born()
    span_id = trace.spans[1].id
    scores = [
        Score(name="x", value=1.0, id=evaluation_id(trace.id, "x", span_id)),
        Score(name="y", value=0.0, id=evaluation_id(trace.id, "y", trace.id)),
    ]
    moved = trace.model_copy(update={"scores": scores})
    assert _assert_told_as_decoded(moved)
    back, _ = trace_from_wire(_through_json(trace_to_wire(moved)))
    assert back == moved
