"""Property tests (DESIGN.md invariants 1 and 2): a round trip through the other platform returns
the original records exactly — ids, timestamps to the millisecond, trees, scores, metadata.

Records go through JSON text on the way, as they do in files and over HTTP.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings

from tests.opik_spec import load_spec, validate_schema
from tests.strategies import langwatch_traces, opik_traces
from tracebridge._langwatch.convert import trace_from_wire, trace_to_wire
from tracebridge._mapping import default_mappings
from tracebridge._opik.convert import trace_from_opik, trace_to_opik
from tracebridge._opik.ids import is_uuid7, uuid7_ms
from tracebridge._stash import same

MAPPINGS = default_mappings()
SPEC = load_spec() is not None
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _placeless(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("project_id", "project_name")}


def _through_json(value: Any) -> Any:
    return json.loads(json.dumps(value, ensure_ascii=False))


@PROPERTY
@given(langwatch_traces())
def test_langwatch_to_opik_to_langwatch_is_the_identity(raw: dict[str, Any]) -> None:
    trace, _ = trace_from_wire(raw)
    opik = trace_to_opik(trace, mappings=MAPPINGS)
    opik_trace, opik_spans = _through_json(opik.trace), _through_json(opik.spans)

    # Opik gets valid UUID v7 ids whose time field is the source record's start time.
    assert is_uuid7(opik_trace["id"])
    assert uuid7_ms(opik_trace["id"]) == raw["timestamps"]["started_at"]
    for span, raw_span in zip(opik_spans, raw["spans"], strict=True):
        assert uuid7_ms(span["id"]) == raw_span["timestamps"]["started_at"]
    if SPEC:
        validate_schema("Trace_Public", opik_trace, strict=True)
        for span in opik_spans:
            validate_schema("Span_Public", span, strict=True)

    back, _ = trace_from_wire(
        trace_to_wire(trace_from_opik(opik_trace, opik_spans, project="p", mappings=MAPPINGS))
    )
    again = _through_json(trace_to_wire(back))
    assert same(again, raw), (again, raw)


@PROPERTY
@given(opik_traces())
def test_opik_to_langwatch_to_opik_is_the_identity(
    record: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    trace_in, spans_in = record
    trace = trace_from_opik(trace_in, spans_in, project="my project", mappings=MAPPINGS)
    langwatch = _through_json(trace_to_wire(trace))
    back, _ = trace_from_wire(langwatch)
    assert back == trace
    opik = trace_to_opik(back, mappings=MAPPINGS)
    # Where a record is stored (project_id) belongs to the destination, not to the record.
    assert same(_through_json(opik.trace), _placeless(trace_in)), (opik.trace, trace_in)
    assert same(_through_json(opik.spans), [_placeless(s) for s in spans_in])


@PROPERTY
@given(langwatch_traces())
def test_derived_ids_are_stable(raw: dict[str, Any]) -> None:
    first, _ = trace_from_wire(raw)
    second, _ = trace_from_wire(_through_json(raw))
    a, b = trace_to_opik(first, mappings=MAPPINGS), trace_to_opik(second, mappings=MAPPINGS)
    assert a.trace["id"] == b.trace["id"]
    assert [s["id"] for s in a.spans] == [s["id"] for s in b.spans]
