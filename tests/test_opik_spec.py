"""Tests for the Opik OpenAPI validation helper in ``tests/opik_spec.py``."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import httpx
import pytest

from tests import opik_spec
from tests.opik_spec import validate_httpx_request, validate_request, validate_schema

TRACE_ID = "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"
SPAN_ID = "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6c"
START = "2024-05-01T12:00:00.123456Z"


@pytest.fixture(autouse=True)
def _spec() -> None:
    """Skip every test here (with the reason) when the spec is absent."""
    opik_spec.require_spec()


def _trace(**extra: Any) -> dict[str, Any]:
    return {"id": TRACE_ID, "name": "t", "start_time": START, **extra}


def _span(**extra: Any) -> dict[str, Any]:
    return {"id": SPAN_ID, "trace_id": TRACE_ID, "type": "llm", "start_time": START, **extra}


def test_spec_loads_quickly_and_parses_the_value_tag() -> None:
    started = time.perf_counter()
    spec = opik_spec.load_spec()
    assert spec is not None
    assert time.perf_counter() - started < 30
    operators = spec["components"]["schemas"]["SpanFilter"]["properties"]["operator"]["enum"]
    assert "=" in operators
    assert opik_spec.load_spec() is spec  # cached


def test_minimal_public_trace_and_span_pass() -> None:
    payload = {"messages": [{"role": "user", "content": "hi"}]}
    validate_schema("Trace_Public", _trace(input=payload, output={"a": 1}, metadata={"k": "v"}))
    validate_schema("Span_Public", _span(parent_span_id=TRACE_ID, input=payload))


def test_json_list_string_accepts_object_array_and_string_but_not_number() -> None:
    for value in ({"a": 1}, [{"a": 1}], "text"):
        validate_schema("Trace_Write", _trace(input=value))
    with pytest.raises(AssertionError, match=r"\$\.input"):
        validate_schema("Trace_Write", _trace(input=42))


def test_span_type_chain_is_rejected() -> None:
    with pytest.raises(AssertionError, match=r"\$\.type: 'chain' is not one of"):
        validate_schema("Span_Public", _span(type="chain"))


@pytest.mark.parametrize("bad", ["not-a-uuid", "0190a3b45c6d7e8f9a0b1c2d3e4f5a6b", ""])
def test_non_uuid_id_is_rejected(bad: str) -> None:
    with pytest.raises(AssertionError, match=r"\$\.id: .* is not a 'uuid'"):
        validate_schema("Trace_Public", _trace(id=bad))


@pytest.mark.parametrize(
    "bad", ["2024-13-01T00:00:00Z", "2024-05-01", "2024-05-01T12:00:00", "yesterday"]
)
def test_bad_date_time_is_rejected(bad: str) -> None:
    with pytest.raises(AssertionError, match=r"\$\.start_time: .* is not a 'date-time'"):
        validate_schema("Trace_Public", _trace(start_time=bad))


def test_offset_date_time_passes() -> None:
    validate_schema("Trace_Public", _trace(start_time="2024-05-01T12:00:00+02:00"))


def test_missing_required_field_reports_all_errors() -> None:
    with pytest.raises(AssertionError) as info:
        validate_schema("Span_Public", {"id": "x", "type": "chain"})
    message = str(info.value)
    assert "'start_time' is a required property" in message
    assert "is not a 'uuid'" in message
    assert "'chain' is not one of" in message


def test_unknown_schema_name_fails() -> None:
    with pytest.raises(AssertionError, match="no schema 'Nope'"):
        validate_schema("Nope", {})


def test_create_traces_request() -> None:
    body = {"traces": [_trace(project_name="p", input={"q": 1}, tags=["a"])]}
    assert validate_request("POST", "/v1/private/traces/batch", body=body) == "createTraces"
    with pytest.raises(AssertionError, match=r"\$\.traces: \[\] should be non-empty"):
        validate_request("POST", "/v1/private/traces/batch", body={"traces": []})


def test_feedback_score_batches_accept_fractional_values() -> None:
    """``exclusiveMaximum: false`` must not be read as ``maximum 0`` by jsonschema."""
    score = {"name": "accuracy", "value": 0.75, "source": "sdk", "reason": "ok"}
    traces = {"scores": [{"id": TRACE_ID, "project_name": "p", **score}]}
    threads = {"scores": [{"thread_id": "th-1", "project_name": "p", **score}]}
    assert validate_request("PUT", "/v1/private/traces/feedback-scores", body=traces, strict=True)
    validate_schema("FeedbackScoreBatch", traces, strict=True)
    validate_schema("FeedbackScoreBatchThread", threads, strict=True)
    with pytest.raises(AssertionError, match="maximum"):
        validate_schema("FeedbackScoreBatch", {"scores": [{**traces["scores"][0], "value": 2e9}]})


def test_unknown_operation_fails() -> None:
    with pytest.raises(AssertionError, match="no operation POST /v1/private/nope"):
        validate_request("POST", "/v1/private/nope", body={})
    with pytest.raises(AssertionError, match="no operation PUT /v1/private/traces/batch"):
        validate_request("PUT", "/v1/private/traces/batch")


def test_path_parameters_are_checked() -> None:
    """``DELETE /traces/batch`` routes to ``/traces/{id}``, whose id must be a uuid."""
    with pytest.raises(AssertionError, match=r"deleteTraceById.*path id: 'batch' is not a 'uuid'"):
        validate_request("DELETE", "/v1/private/traces/batch")


def test_invalid_body_fails() -> None:
    with pytest.raises(AssertionError, match=r"createSpans.*\n.*'chain' is not one of"):
        validate_request("POST", "/v1/private/spans/batch", body={"spans": [_span(type="chain")]})


def test_strict_mode_rejects_undeclared_properties_and_nulls() -> None:
    body = {"traces": [_trace(bogus=1)]}
    validate_request("POST", "/v1/private/traces/batch", body=body)  # lenient by default
    with pytest.raises(AssertionError, match=r"\$\.traces\[0\]\.bogus: property not declared"):
        validate_request("POST", "/v1/private/traces/batch", body=body, strict=True)
    error = {"exception_type": "E", "traceback": "tb", "extra": 1}
    with pytest.raises(AssertionError, match=r"\$\.error_info\.extra: property not declared"):
        validate_schema("Span_Write", _span(error_info=error), strict=True)
    with pytest.raises(AssertionError, match=r"\$\.end_time"):
        validate_schema("Trace_Write", _trace(end_time=None), strict=True)
    with pytest.raises(AssertionError, match=r"\$\.end_time: None is not of type 'string'"):
        validate_schema("Trace_Write", _trace(end_time=None))
    # free-form JSON (input/metadata) may hold anything, even in strict mode
    validate_schema("Trace_Write", _trace(metadata={"x": {"y": None}}), strict=True)


def test_strict_mode_merges_all_of_parts() -> None:
    definition = {"name": "score", "type": "numerical", "details": {"min": 0, "max": 1}}
    validate_schema("NumericalFeedbackDefinition_Create", definition, strict=True)
    bad = {**definition, "details": {"min": 0, "max": 1, "step": 0.5}, "bogus": True}
    with pytest.raises(AssertionError, match=r"\$\.bogus: property not declared") as info:
        validate_schema("NumericalFeedbackDefinition_Create", bad, strict=True)
    assert "$.details.step: property not declared" in str(info.value)


def test_templated_paths_match_and_literals_win() -> None:
    fb = {"name": "n", "value": 1, "source": "sdk"}
    op = validate_request("PUT", f"/v1/private/traces/{TRACE_ID}/feedback-scores", body=fb)
    assert op == "addTraceFeedbackScore"
    assert validate_request("GET", f"/v1/private/traces/{TRACE_ID}") == "getTraceById"
    assert validate_request("GET", "/v1/private/traces/threads", query={}) == "getTraceThreads"


def test_query_parameters_are_checked() -> None:
    assert validate_request("GET", "/v1/private/traces", query={"project_name": "p"})
    with pytest.raises(AssertionError, match="undeclared query parameter 'nope'"):
        validate_request("GET", "/v1/private/traces", query={"nope": "1"})


def test_httpx_request_with_gzip_body() -> None:
    body = {"spans": [_span(project_name="p", input={"q": 1})]}
    request = httpx.Request(
        "POST",
        "http://localhost:5173/api/v1/private/spans/batch",
        content=gzip.compress(json.dumps(body).encode()),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert validate_httpx_request(request, strict=True) == "createSpans"
    cloud = httpx.Request(
        "POST", "https://www.comet.com/opik/api/v1/private/spans/batch", json={"spans": []}
    )
    with pytest.raises(AssertionError, match="spans"):
        validate_httpx_request(cloud, base_path="/opik/api")
