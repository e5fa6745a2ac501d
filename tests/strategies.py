"""Hypothesis strategies for LangWatch and Opik records as their APIs return them."""

from __future__ import annotations

import string
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from tracebridge._mapping import LANGWATCH_SPAN_TYPES
from tracebridge._models import ErrorInfo

MS_MIN = 1_600_000_000_000  # 2020
MS_MAX = 1_900_000_000_000  # 2030

_text = st.text(st.characters(max_codepoint=0x2FFFF, exclude_categories=("Cs",)), max_size=12)
_name = st.text(string.ascii_letters + string.digits + "_-/ .é👋中", min_size=1, max_size=10)
_key = _name.filter(lambda k: k != "tracebridge")
_scalar = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | _text
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
)
json_values = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_key, inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(_key, json_values, max_size=4)
_ms = st.integers(MS_MIN, MS_MAX)
_chat = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant", "tool"]), "content": _text},
        optional={"tool_calls": st.lists(json_objects, max_size=2), "name": _text},
    ),
    max_size=3,
)


#: No error, or a canonical error with or without a message and an exception type.
error_infos = st.none() | st.builds(
    ErrorInfo,
    message=st.none() | st.text(max_size=3),
    exception_type=st.none() | st.just("ValueError"),
    stacktrace=st.lists(st.text(max_size=3), max_size=2),
)


@st.composite
def typed_values(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(["text", "raw", "json", "chat_messages", "list", "guardrail_result"])
    )
    value: Any
    if kind in ("text", "raw"):
        value = draw(_text)
    elif kind == "chat_messages":
        value = draw(_chat)
    elif kind == "list":
        value = draw(
            st.lists(st.fixed_dictionaries({"type": st.just("text"), "value": _text}), max_size=2)
        )
    elif kind == "guardrail_result":
        value = draw(
            st.fixed_dictionaries(
                {"status": st.just("processed")}, optional={"passed": st.booleans()}
            )
        )
    else:
        value = draw(json_values)
    return {"type": kind, "value": value}


@st.composite
def langwatch_traces(draw: st.DrawFn) -> dict[str, Any]:
    """A LangWatch trace in the read shape, spans and evaluations included (orphans too)."""
    trace_id = draw(_name)
    started = draw(_ms)
    n_spans = draw(st.integers(0, 5))
    span_ids = draw(st.lists(_name, min_size=n_spans, max_size=n_spans, unique=True))
    spans = []
    for i, span_id in enumerate(span_ids):
        parent = draw(
            st.none() | st.sampled_from(span_ids[:i] or [None]) | st.just("missing-parent")
        )
        start = started + draw(st.integers(0, 10_000))
        span: dict[str, Any] = {
            "span_id": span_id,
            "trace_id": trace_id,
            "parent_id": parent,
            "name": draw(st.none() | _text),
            "type": draw(st.sampled_from(sorted(LANGWATCH_SPAN_TYPES))),
            "timestamps": {"started_at": start},
            "error": draw(
                st.none()
                | st.fixed_dictionaries(
                    {
                        "has_error": st.just(True),
                        "message": _text,
                        "stacktrace": st.lists(_text, max_size=2),
                    }
                )
            ),
        }
        if draw(st.booleans()):
            span["timestamps"]["finished_at"] = start + draw(st.integers(0, 5000))
        if draw(st.booleans()):
            span["timestamps"]["first_token_at"] = start + draw(st.integers(0, 500))
        optional = {
            "input": typed_values(),
            "output": typed_values(),
            "model": st.sampled_from(
                ["openai/gpt-5", "gpt-4o", "anthropic/claude-sonnet-4", "a/b/c"]
            ),
            "vendor": st.sampled_from(["openai", "azure"]),
            "metrics": st.fixed_dictionaries(
                {},
                optional={
                    "prompt_tokens": st.integers(0, 10**6),
                    "completion_tokens": st.integers(0, 10**6),
                    "cost": st.floats(0, 10, allow_nan=False),
                    "tokens_estimated": st.booleans(),
                },
            ),
            "params": json_objects,
            "contexts": st.lists(
                st.fixed_dictionaries({"document_id": _text, "content": _text}), max_size=2
            ),
            "unknown_field": json_values,
        }
        for key, strategy in optional.items():
            if draw(st.booleans()):
                span[key] = draw(strategy)
        spans.append(span)
    metadata: dict[str, Any] = draw(
        st.dictionaries(
            _key.filter(lambda k: k not in ("thread_id", "labels")), json_values, max_size=3
        )
    )
    if draw(st.booleans()):
        metadata["thread_id"] = draw(_name)
    if draw(st.booleans()):
        metadata["labels"] = draw(st.lists(_name, max_size=3))
    evaluations = []
    for _ in range(draw(st.integers(0, 4))):
        status = draw(
            st.sampled_from(["processed", "skipped", "error", "scheduled", "in_progress"])
        )
        evaluation: dict[str, Any] = {
            "evaluation_id": draw(_name),
            "name": draw(_name),
            "status": status,
        }
        for key, strategy in {
            "passed": st.booleans(),
            "score": st.floats(-100, 100, allow_nan=False),
            "label": _text,
            "details": _text,
            "evaluator_id": _name,
            "type": _name,
            "timestamps": st.fixed_dictionaries({"inserted_at": _ms}),
            "span_id": st.sampled_from(span_ids or ["x"]),
        }.items():
            if draw(st.booleans()):
                evaluation[key] = draw(strategy)
        evaluations.append(evaluation)
    trace: dict[str, Any] = {
        "trace_id": trace_id,
        "project_id": draw(_name),
        "metadata": metadata,
        "timestamps": {
            "started_at": started,
            "inserted_at": started + 5,
            "updated_at": started + 9,
        },
        "spans": spans,
        "evaluations": evaluations,
        "error": None,
    }
    for key, strategy in {
        "input": st.fixed_dictionaries({"value": _text}),
        "output": st.fixed_dictionaries({"value": _text}),
        "metrics": st.fixed_dictionaries(
            {"total_time_ms": st.integers(0, 10**6)}, optional={"prompt_tokens": st.integers(0, 99)}
        ),
        "indexing_md5s": st.lists(_name, max_size=1),
    }.items():
        if draw(st.booleans()):
            trace[key] = draw(strategy)
    return trace


def _uuid7(ms: int, rest: int) -> str:
    raw = bytearray(ms.to_bytes(6, "big") + rest.to_bytes(10, "big"))
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    return str(uuid.UUID(bytes=bytes(raw)))


def _iso(ms: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


_opik_io = (
    st.none()
    | json_objects
    | st.lists(json_objects, max_size=2)
    | _text
    | st.fixed_dictionaries({"messages": _chat})
    | st.fixed_dictionaries({"text": _text})
)
_scores = st.lists(
    st.fixed_dictionaries(
        {
            "name": _name,
            "value": st.floats(-1e6, 1e6, allow_nan=False),
            "source": st.sampled_from(["sdk", "ui", "online_scoring"]),
        },
        optional={"category_name": _text, "reason": _text},
    ),
    max_size=3,
    unique_by=lambda s: s["name"],
)
_error_info = st.fixed_dictionaries(
    {"exception_type": _name, "traceback": _name}, optional={"message": _text}
)


@st.composite
def opik_traces(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An Opik trace and its spans as `GET /traces` and `GET /spans` return them."""
    started = draw(_ms)
    rest = draw(st.integers(0, 2**80 - 1))
    trace_id = _uuid7(started, rest)
    trace: dict[str, Any] = {"id": trace_id, "start_time": _iso(started)}
    for key, strategy in {
        "name": _text,
        "end_time": st.integers(0, 10**6).map(lambda d: _iso(started + d)),
        "input": _opik_io,
        "output": _opik_io,
        "metadata": json_objects | st.lists(json_objects, max_size=1),
        "tags": st.lists(_name, max_size=3, unique=True),
        "error_info": _error_info,
        "thread_id": _name,
        "feedback_scores": _scores,
        "created_at": st.just(_iso(started + 1000)),
        "usage": st.fixed_dictionaries({"prompt_tokens": st.integers(0, 100)}),
        "ttft": st.floats(0, 1000, allow_nan=False),
    }.items():
        if draw(st.booleans()):
            value = draw(strategy)
            if value is not None:
                trace[key] = value
    spans: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 5))):
        start = started + draw(st.integers(0, 10_000))
        taken = {trace_id, *(s["id"] for s in spans)}  # an id is unique in Opik
        random_bits = st.integers(1, 2**80 - 1).filter(
            lambda r, s=start, t=taken: _uuid7(s, r) not in t
        )
        span: dict[str, Any] = {
            "id": _uuid7(start, draw(random_bits)),
            "trace_id": trace_id,
            "type": draw(st.sampled_from(["general", "llm", "tool", "guardrail"])),
            "start_time": _iso(start),
        }
        parents = [s["id"] for s in spans]
        for key, strategy in {
            "parent_span_id": st.sampled_from(parents) if parents else st.nothing(),
            "name": _text,
            "end_time": st.integers(0, 10**5).map(lambda d, s=start: _iso(s + d)),
            "input": _opik_io,
            "output": _opik_io,
            "metadata": json_objects,
            "model": st.sampled_from(["gpt-5", "claude-sonnet-4", "meta/llama-3"]),
            "provider": st.sampled_from(["openai", "anthropic"]),
            "tags": st.lists(_name, max_size=2, unique=True),
            "usage": st.dictionaries(
                st.sampled_from(
                    ["prompt_tokens", "completion_tokens", "total_tokens", "original_usage.x"]
                ),
                st.integers(0, 2**31 - 1),
            ),
            "total_estimated_cost": st.floats(0, 100, allow_nan=False),
            "error_info": _error_info,
            "ttft": st.integers(0, 5000).map(float),
            "feedback_scores": _scores,
            "project_id": st.just("0190ca64-0000-7000-8000-000000000000"),
        }.items():
            if draw(st.booleans()):
                value = draw(strategy)
                if value is not None:
                    span[key] = value
        spans.append(span)
    return trace, spans
