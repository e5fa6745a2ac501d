"""Echo suppression (`_echo.suppress_echoes`): a copy read back unchanged is not written back to
where it came from; a copy changed on this side is, merged."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from tests.factories import langwatch_trace
from tracebridge import Provenance, Score, Thread, Trace
from tracebridge._decoding import collecting
from tracebridge._echo import suppress_echoes
from tracebridge._langwatch.convert import trace_from_wire, trace_to_wire
from tracebridge._mapping import default_mappings
from tracebridge._opik.convert import trace_from_opik, trace_to_opik

MAPPINGS = default_mappings()
FIXTURES = Path(__file__).parent / "fixtures"
PROJECT = "project_test"  # the LangWatch project the factory's traces belong to


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, ensure_ascii=False))


def _original(n: int = 0, thread_id: str | None = None) -> Trace:
    raw = langwatch_trace(
        random.Random(n),
        trace_id=f"trace_{n}",
        started_at_ms=1_767_225_600_000 + n * 60_000,
        thread_id=thread_id,
        evaluation_statuses=("processed",),
    )
    trace, _ = trace_from_wire(raw)
    return trace


def _opik_copy(trace: Trace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    record = trace_to_opik(trace, mappings=MAPPINGS)
    return _json(record.trace), _json(record.spans)


def _read(wire: dict[str, Any], spans: list[dict[str, Any]]) -> Trace:
    with collecting():
        return trace_from_opik(wire, spans, project="mirror", mappings=MAPPINGS)


def test_an_unchanged_copy_from_the_destination_is_dropped() -> None:
    step = suppress_echoes("langwatch", PROJECT)
    assert step.rule == "echo: came from langwatch unchanged"
    back = _read(*_opik_copy(_original()))
    assert step(back) is None
    assert suppress_echoes("langwatch", None)(back) is None  # any project of the platform


def test_a_copy_changed_on_this_side_passes_merged() -> None:
    """A reviewer's score on the Opik copy goes back to LangWatch, over the original as it was
    copied, nothing reverted."""
    original = _original()
    wire, spans = _opik_copy(original)
    wire["feedback_scores"].append({"name": "helpfulness", "value": 0.8, "source": "ui"})
    back = _read(wire, spans)
    assert suppress_echoes("langwatch", PROJECT)(back) is back
    assert back.scores == [*original.scores, Score(name="helpfulness", value=0.8, source="ui")]
    names = [e["name"] for e in trace_to_wire(back)["evaluations"]]
    assert names == [*(s.name for s in original.scores), "helpfulness"]


def test_records_from_elsewhere_pass() -> None:
    """Copied from another project, born on this side, or headed to another platform: not
    echoes."""
    back = _read(*_opik_copy(_original()))
    assert suppress_echoes("langwatch", "another-project")(back) is back
    assert suppress_echoes("opik", None)(back) is back
    born_here = back.model_copy(
        update={"source": Provenance(platform="opik", project="mirror", id=back.id)}
    )
    assert suppress_echoes("langwatch", None)(born_here) is born_here


def test_a_copy_without_a_recorded_hash_passes() -> None:
    """A v1 stash (fixture written before v2) recorded no hash, and a trace rebuilt from JSON
    carries no copy state: neither can be told unchanged."""
    data = json.loads((FIXTURES / "stash_v1_langwatch_in_opik.json").read_text())
    v1 = _read(data["opik"]["trace"], data["opik"]["spans"])
    assert v1.copy_state is not None
    assert v1.copy_state.hash is None
    step = suppress_echoes("langwatch", PROJECT)
    assert step(v1) is v1
    rebuilt = Trace.model_validate(_read(*_opik_copy(_original())).model_dump())
    assert rebuilt.copy_state is None
    assert step(rebuilt) is rebuilt


def test_a_step_that_changes_the_content_first_makes_it_pass() -> None:
    """The hash is taken of the trace as it reaches the step: a transform before it that
    changes content makes the record a change (run echo suppression first); a copy keeps the
    copy state."""
    back = _read(*_opik_copy(_original()))
    step = suppress_echoes("langwatch", PROJECT)
    assert step(back.model_copy()) is None
    redacted = back.model_copy(update={"metadata": {**back.metadata, "user_id": "***"}})
    assert step(redacted) is redacted


def test_a_thread_keeps_its_changed_traces_and_goes_when_none_is_left() -> None:
    first, second = _original(1, "th"), _original(2, "th")
    echo1, echo2 = _read(*_opik_copy(first)), _read(*_opik_copy(second))
    wire, spans = _opik_copy(second)
    wire["tags"] = ["reviewed"]
    changed = _read(wire, spans)
    step = suppress_echoes("langwatch", PROJECT)

    kept = step(Thread(id="th", traces=[echo1, changed], tags=["vip"]))
    assert isinstance(kept, Thread)
    assert [t.id for t in kept.traces] == [second.id]
    assert kept.tags == ["vip"]
    assert step(Thread(id="th", traces=[echo1, echo2])) is None
    whole = Thread(id="th", traces=[changed])
    assert step(whole) is whole
