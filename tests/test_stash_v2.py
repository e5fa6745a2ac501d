"""Stash v2 (`_stash.py`): per-element patches, the merge that never reverts what the destination
changed, the report of a changed copy, and reading v1 stashes as before."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.factories import langwatch_trace
from tests.strategies import langwatch_traces
from tracebridge import RecordError, Score, Span, Thread, Trace
from tracebridge._decoding import collecting
from tracebridge._hashing import content_hash
from tracebridge._langwatch.convert import thread_to_wire, trace_from_wire, trace_to_wire
from tracebridge._mapping import default_mappings
from tracebridge._opik.convert import trace_from_opik, trace_to_opik
from tracebridge._stash import (
    STASH_KEY,
    CopyReader,
    make_merge_patch,
    make_patch,
    merge_patch,
    merged_fields,
    same,
)

Json = Any
MAPPINGS = default_mappings()
FIXTURES = Path(__file__).parent / "fixtures"


def _json(value: Json) -> Json:
    return json.loads(json.dumps(value, ensure_ascii=False))


# --------------------------------------------------------------------------- the patch itself

CASES: list[tuple[str, dict[str, Json], dict[str, Json]]] = [
    ("equal", {"a": 1, "tags": ["x"]}, {"a": 1, "tags": ["x"]}),
    ("changed scalar", {"a": 1}, {"a": 2}),
    ("added key", {"a": 1}, {"a": 1, "extra": "x"}),
    ("missing key", {"a": 1, "lost": {"deep": [1]}}, {"a": 1}),
    ("bool vs int", {"flag": True}, {"flag": 1}),
    ("nested", {"m": {"keep": 1, "change": "old", "gone": 2}}, {"m": {"keep": 1, "change": "new"}}),
    ("tags reordered", {"tags": ["a", "b", "a"]}, {"tags": ["b", "a"]}),
    (
        "scores dropped, added, changed",
        {"scores": [{"name": "x", "v": 1}, {"name": "y", "v": None}, {"name": "x", "v": 2}]},
        {"scores": [{"name": "x", "v": 1.0}, {"name": "thread: z", "v": 3}]},
    ),
    ("list replaced by scalar", {"tags": ["a"]}, {"tags": "a"}),
]


@pytest.mark.parametrize(("original", "decoded"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_an_untouched_copy_merges_back_to_the_original(
    original: dict[str, Json], decoded: dict[str, Json]
) -> None:
    """merge_patch(decoded, make_merge_patch(original, decoded)) is the original, after JSON."""
    patch = _json(make_merge_patch(original, decoded))
    merged = merge_patch(decoded, patch)
    assert same(merged, original), (merged, original, patch)


def test_list_elements_are_patched_one_by_one() -> None:
    """Scores are keyed by name (a repeat by `name␟n`), with what each change replaces."""
    patch = make_merge_patch(
        {"scores": [{"name": "x", "v": 1}, {"name": "x", "v": 2}], "tags": ["a"]},
        {"scores": [{"name": "x", "v": 9}, {"name": "extra", "v": 0}], "tags": ["a"]},
    )
    each = patch["scores"]["each"]
    assert each["order"] == ["x", "x\x1f2"]
    assert set(each["items"]) == {"x", "x\x1f2", "extra"}
    assert each["items"]["x"]["sub"]["v"]["set"] == 1
    assert "was" in each["items"]["x"]["sub"]["v"]
    assert each["items"]["x\x1f2"] == {"add": {"name": "x", "v": 2}}
    assert set(each["items"]["extra"]) == {"drop"}
    assert "tags" not in patch  # equal lists need no entry


ORIGINAL = {
    "name": None,
    "kind": "agent",
    "tags": ["a"],
    "scores": [
        {"name": "verdict", "value": None, "passed": True},
        {"name": "pending", "value": None, "status": "skipped"},
    ],
}
#: What the other platform holds of ORIGINAL: no null name, no agent kind, no verdict fields,
#: no score without a value.
DECODED = {
    "name": "agent",
    "kind": "general",
    "tags": ["a"],
    "scores": [{"name": "verdict", "value": 1.0, "passed": None}],
}


def _merged(edit: Any) -> dict[str, Json]:
    patch = _json(make_merge_patch(ORIGINAL, DECODED))
    current = copy.deepcopy(DECODED)
    edit(current)
    return merge_patch(current, patch)


def test_an_element_added_on_the_destination_is_kept() -> None:
    merged = _merged(lambda c: c["scores"].append({"name": "helpfulness", "value": 0.8}))
    assert merged["scores"] == [*ORIGINAL["scores"], {"name": "helpfulness", "value": 0.8}]
    merged = _merged(lambda c: c["tags"].append("reviewed"))
    assert merged["tags"] == ["a", "reviewed"]


def test_a_field_changed_on_the_destination_wins_and_the_rest_is_restored() -> None:
    """The reviewer's value stays; the verdict field they did not touch comes back."""
    merged = _merged(lambda c: c["scores"][0].update(value=0.0))
    assert merged["scores"][0] == {"name": "verdict", "value": 0.0, "passed": True}
    merged = _merged(lambda c: c.update(kind="llm", name="renamed"))
    assert (merged["kind"], merged["name"]) == ("llm", "renamed")
    merged = _merged(lambda c: c.update(kind="llm"))
    assert (merged["kind"], merged["name"]) == ("llm", None)


def test_an_element_removed_on_the_destination_stays_removed() -> None:
    merged = _merged(lambda c: c["scores"].clear())
    assert merged["scores"] == [ORIGINAL["scores"][1]]  # only what the copy never had returns
    merged = _merged(lambda c: c["tags"].clear())
    assert merged["tags"] == []


def test_an_element_the_mapping_dropped_and_the_destination_now_holds_is_theirs() -> None:
    merged = _merged(lambda c: c["scores"].append({"name": "pending", "value": 0.5}))
    assert merged["scores"] == [ORIGINAL["scores"][0], {"name": "pending", "value": 0.5}]


def test_an_element_the_mapping_added_is_dropped_unless_changed() -> None:
    patch = make_merge_patch({"scores": []}, {"scores": [{"name": "thread: x", "value": 1}]})
    assert merge_patch({"scores": [{"name": "thread: x", "value": 1}]}, patch) == {"scores": []}
    changed = {"scores": [{"name": "thread: x", "value": 2}]}
    assert merge_patch(changed, patch) == changed


# ----------------------------------------------------------- copies written and read back


def _langwatch_raw() -> dict[str, Json]:
    import random

    raw = langwatch_trace(
        random.Random(3),
        trace_id="trace_lw",
        started_at_ms=1_767_225_600_000,
        thread_id="thread_1",
        n_spans=4,
        evaluation_statuses=("processed", "processed", "skipped"),
    )
    raw["evaluations"][1]["name"] = raw["evaluations"][0]["name"]  # Opik keeps one per name
    return raw


def _opik_copy(trace: Trace) -> tuple[dict[str, Json], list[dict[str, Json]]]:
    record = trace_to_opik(trace, mappings=MAPPINGS)
    return _json(record.trace), _json(record.spans)


def _read_opik(wire: dict[str, Json], spans: list[dict[str, Json]]) -> tuple[Trace, list[str]]:
    with collecting() as notes:
        trace = trace_from_opik(wire, spans, project="mirror", mappings=MAPPINGS)
    return trace, notes.warnings


def test_the_stash_v2_schema() -> None:
    """What a copy carries: version, provenance, content hash, parts and the patch; every
    span its own version, digest and patch."""
    trace, _ = trace_from_wire(_langwatch_raw())
    wire, spans = _opik_copy(trace)
    stash = wire["metadata"][STASH_KEY]
    assert set(stash) == {"v", "source", "hash", "parts", "patch"}
    assert stash["v"] == 2
    assert stash["source"] == {"platform": "langwatch", "project": "project_test", "id": "trace_lw"}
    assert stash["hash"] == content_hash(trace)
    assert set(stash["parts"]) == {"fields", "scores", "tags", "spans"}
    assert stash["parts"]["spans"] == len(trace.spans)
    assert "each" in stash["patch"]["scores"]
    for span in spans:
        assert {"v", "hash"} <= set(span["metadata"][STASH_KEY])
    lw = trace_to_wire(trace_from_opik(wire, spans, project="mirror", mappings=MAPPINGS))
    assert "v" not in json.dumps(lw["metadata"].get(STASH_KEY, ""))  # LangWatch-born: no stash


def test_a_score_a_reviewer_adds_on_the_opik_copy_reaches_langwatch() -> None:
    """The bug stash v1 had: the reviewer's feedback score vanished when the Opik copy of a
    LangWatch trace was read back. Now it is kept, and the read says so."""
    original, _ = trace_from_wire(_langwatch_raw())
    wire, spans = _opik_copy(original)
    wire["feedback_scores"].append({"name": "helpfulness", "value": 0.8, "source": "ui"})
    back, warnings = _read_opik(wire, spans)
    assert [s.name for s in back.scores] == [*(s.name for s in original.scores), "helpfulness"]
    assert back.scores[:-1] == original.scores  # the rest exactly as copied
    assert warnings == [
        "trace trace_lw: changed on opik since it was copied: score 'helpfulness' added"
    ]
    assert back.copy_state is not None
    assert back.copy_state.changed is True
    assert back.copy_state.changes == ("score 'helpfulness' added",)
    assert back.copy_state.hash == content_hash(original)
    evaluations = trace_to_wire(back)["evaluations"]
    assert [e["name"] for e in evaluations][-1] == "helpfulness"
    assert evaluations[-1]["score"] == 0.8


def test_edits_on_the_opik_copy_are_merged_and_described() -> None:
    """A changed score value, a tag, an edited span, a new span under a copied one and a
    removed span: all kept as Opik has them, the rest restored; the warning names each."""
    original, _ = trace_from_wire(_langwatch_raw())
    wire, spans = _opik_copy(original)
    first = wire["feedback_scores"][0]
    first["value"] = 0.123
    wire["tags"] = [*wire.get("tags", []), "reviewed"]
    spans[1]["output"] = {"text": "edited"}
    new_id = "019b796d-d600-7000-8000-0000000000aa"
    spans.append(
        {
            "id": new_id,
            "trace_id": wire["id"],
            "parent_span_id": spans[0]["id"],
            "type": "general",
            "name": "note",
            "start_time": spans[0]["start_time"],
        }
    )
    del spans[2]
    back, warnings = _read_opik(wire, spans)
    assert back.scores[0].value == 0.123
    assert back.scores[0].id == original.scores[0].id  # untouched fields restored
    assert back.tags == [*original.tags, "reviewed"]
    edited = next(s for s in back.spans if s.id == original.spans[1].id)
    assert edited.output is not None
    assert edited.output.value == "edited"
    assert edited.kind == original.spans[1].kind
    added = next(s for s in back.spans if s.id == new_id)
    assert added.parent_id == original.spans[0].id  # named as the original names its parent
    assert original.spans[2].id not in {s.id for s in back.spans}
    assert warnings == [
        f"trace trace_lw: changed on opik since it was copied: score "
        f"{original.scores[0].name!r} changed, tag 'reviewed' added, span "
        f"{original.spans[1].id} changed, span {new_id} added, 1 span removed"
    ]


def test_a_span_evaluation_added_on_the_langwatch_copy_stays_on_its_span() -> None:
    """Opik → LangWatch: an evaluation LangWatch holds on a span of the copy is that span's
    score when read back, next to the span's own copied scores."""
    record = json.loads((FIXTURES / "stash_v1_opik_in_langwatch.json").read_text())["opik"]
    original = trace_from_opik(record["trace"], record["spans"], project="sb", mappings=MAPPINGS)
    wire = _json(trace_to_wire(original))
    span_id = original.spans[1].id
    wire["evaluations"].append(
        {"evaluation_id": "ev_new", "name": "toxicity", "status": "processed", "score": 0.1}
        | {"span_id": span_id}
    )
    with collecting() as notes:
        back, _ = trace_from_wire(wire)
    span = next(s for s in back.spans if s.id == span_id)
    assert [s.name for s in span.scores] == [
        *(s.name for s in original.spans[1].scores),
        "toxicity",
    ]
    assert back.scores == original.scores
    assert notes.warnings == [
        f"trace {original.id}: changed on langwatch since it was copied: span {span_id} changed"
    ]


def test_span_scores_come_home_when_langwatch_drops_their_span_id() -> None:
    """The collector does not keep an evaluation's `span_id`: an Opik span score comes back
    as an evaluation of the trace whose id tracebridge made for that span, and is that span's."""
    record = json.loads((FIXTURES / "stash_v1_opik_in_langwatch.json").read_text())["opik"]
    original = trace_from_opik(record["trace"], record["spans"], project="sb", mappings=MAPPINGS)
    assert any(s.scores for s in original.spans)
    wire = _json(trace_to_wire(original))
    for evaluation in wire["evaluations"]:
        evaluation.pop("span_id", None)
    with collecting() as notes:
        back, _ = trace_from_wire(wire)
    assert back == original
    assert notes.warnings == []


def test_an_unchanged_copy_reads_as_unchanged_and_warns_nothing() -> None:
    original, _ = trace_from_wire(_langwatch_raw())
    back, warnings = _read_opik(*_opik_copy(original))
    assert back == original
    assert warnings == []
    assert back.copy_state is not None
    assert back.copy_state.changed is False


def test_thread_data_on_a_langwatch_copy_is_not_a_change() -> None:
    """The thread's own scores ride on its last trace as evaluations: not the trace's."""
    record = json.loads((FIXTURES / "stash_v1_opik_in_langwatch.json").read_text())["opik"]
    trace = trace_from_opik(record["trace"], record["spans"], project="sb", mappings=MAPPINGS)
    thread = Thread(
        id="thread_o1", traces=[trace], scores=[Score(name="resolved", value=1)], tags=["vip"]
    )
    (wire,) = _json(thread_to_wire(thread))
    with collecting() as notes:
        back, data = trace_from_wire(wire)
    assert back == trace
    assert data is not None
    assert data.scores == thread.scores
    assert notes.warnings == []


def test_a_stash_from_a_newer_tracebridge_is_refused_by_name() -> None:
    original, _ = trace_from_wire(_langwatch_raw())
    wire, spans = _opik_copy(original)
    wire["metadata"][STASH_KEY]["v"] = 3
    with pytest.raises(RecordError, match="stash version 3, which a newer tracebridge wrote"):
        _read_opik(wire, spans)


# ------------------------------------------------------------------------------ version 1


def test_a_v1_stash_on_opik_reads_as_before() -> None:
    """A copy written before stash v2 (fixture made by the v1 writer) reads back exactly; its
    copy state says nothing is known (no hash)."""
    data = json.loads((FIXTURES / "stash_v1_langwatch_in_opik.json").read_text())
    assert "v" not in data["opik"]["trace"]["metadata"][STASH_KEY]
    original, _ = trace_from_wire(data["langwatch"])
    back, warnings = _read_opik(data["opik"]["trace"], data["opik"]["spans"])
    assert back == original
    assert warnings == []
    assert back.copy_state is not None
    assert (back.copy_state.hash, back.copy_state.changed) == (None, None)


def test_a_v1_stash_on_langwatch_reads_as_before() -> None:
    data = json.loads((FIXTURES / "stash_v1_opik_in_langwatch.json").read_text())
    assert '"v"' not in data["langwatch"]["metadata"][STASH_KEY]
    original = trace_from_opik(
        data["opik"]["trace"], data["opik"]["spans"], project="support-bot", mappings=MAPPINGS
    )
    back, thread = trace_from_wire(data["langwatch"])
    assert back == original
    assert thread is not None
    assert thread.tags == ["vip"]
    assert back.copy_state is not None
    assert back.copy_state.changed is None


def test_patches_name_deleted_keys_in_the_records_order_not_a_sets() -> None:
    """A patch's `del`s (and a list's `drop`s) follow the decoded record's order, so the same
    input gives the same bytes in every process (a set's order changes with the hash seed).
    Twenty keys: a set iterating them in insertion order by chance is all but impossible."""
    extra = {f"k{i:02d}_{'x' * i}": i for i in range(20)}
    decoded = {"kept": 1, **extra}
    assert list(make_patch({"kept": 1}, decoded)) == list(extra)
    assert list(make_merge_patch({"kept": 1}, decoded, {})) == list(extra)
    theirs = [{"name": name} for name in extra]
    patch = make_merge_patch({"items": []}, {"items": theirs}, {"items": lambda e: e["name"]})
    each = patch["items"]["each"]["items"]
    drops = [k for k, change in each.items() if "drop" in change]
    assert drops == list(extra)


# ------------------------------------------- patches merged into the decoder's fields (fast path)


def _by_dump(reader: CopyReader, kind: str) -> Callable[..., Any]:
    """`CopyReader.span_fields` / `trace_fields` as the reader did before: validate, dump,
    merge into the dump, validate again."""
    if kind == "span":
        return lambda fields, stash: reader.span(Span.model_validate(fields), stash)
    return lambda fields, warnings=None: reader.trace(Trace.model_validate(fields), warnings)


def _read(records: tuple[Json, list[Json]], *, by_dump: bool) -> tuple[Trace, list[str]]:
    trace, spans = copy.deepcopy(records)
    with pytest.MonkeyPatch.context() as patch:
        if by_dump:
            real = CopyReader.__init__

            def init(self: CopyReader, *args: Any) -> None:
                real(self, *args)
                self.span_fields = _by_dump(self, "span")  # type: ignore[method-assign]
                self.trace_fields = _by_dump(self, "trace")  # type: ignore[method-assign]

            patch.setattr(CopyReader, "__init__", init)
        with collecting() as page:
            read = trace_from_opik(trace, spans, project="p", mappings=MAPPINGS)
    return read, page.warnings


_EDITS = st.lists(
    st.sampled_from(
        [
            ("trace", "name", "renamed"),
            ("trace", "start_time", "2026-03-09T19:02:11.480123Z"),
            ("trace", "tags", ["reviewed"]),
            ("trace", "feedback_scores", [{"name": "human", "value": 1, "source": "ui"}]),
            ("trace", "error_info", {"exception_type": "E", "traceback": "t"}),
            ("trace", "metadata", None),
            ("span", "model", "gpt-x"),
            ("span", "type", "tool"),
            ("span", "end_time", "2026-03-09T19:02:12.000+00:00"),
            ("span", "ttft", 1.5),
            ("span", "usage", {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}),
            ("span", "input", {"messages": [{"role": "user", "content": "hi"}]}),
            ("span", "tags", ["a", "a"]),
            ("span", "feedback_scores", [{"name": "s", "value": 0.5}]),
            ("span", "metadata", {"params": {"t": 1}}),
            ("span", None, None),
        ]
    ),
    max_size=3,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(langwatch_traces(), _EDITS, st.integers(0, 4))
def test_patches_merged_into_fields_read_as_merged_into_the_dump(
    raw: Json, edits: list[tuple[str, str | None, Json]], which: int
) -> None:
    """A copy, untouched or edited on Opik, reads the same (content, copy state, warnings)
    whether its patches are merged into the decoder's fields or into a dump of its records."""
    trace, _ = trace_from_wire(raw)
    record = trace_to_opik(trace, mappings=MAPPINGS)
    opik, spans = _json(record.trace), _json(record.spans)
    for where, key, value in edits:
        if where == "trace" and key is not None:
            if key == "metadata":  # (the stash kept, every other key dropped)
                opik["metadata"] = {STASH_KEY: opik["metadata"][STASH_KEY]}
            else:
                opik[key] = value
        elif spans and key is None:
            del spans[which % len(spans)]
        elif spans and key is not None:
            span = spans[which % len(spans)]
            if key == "metadata":
                value = {**value, STASH_KEY: span["metadata"][STASH_KEY]}
            span[key] = value
    fast, fast_warnings = _read((opik, spans), by_dump=False)
    slow, slow_warnings = _read((opik, spans), by_dump=True)
    assert fast == slow
    assert fast.copy_state == slow.copy_state
    assert fast_warnings == slow_warnings
    assert json.dumps(fast.model_dump(mode="json")) == json.dumps(slow.model_dump(mode="json"))
    if not edits:
        assert fast.copy_state is not None
        assert fast.copy_state.changed is False


def test_a_v1_stash_reads_the_same_through_fields() -> None:
    """A copy written before stash v2 (the v1 writer's fixture) reads as through a dump."""
    data = json.loads((FIXTURES / "stash_v1_langwatch_in_opik.json").read_text())
    records = (data["opik"]["trace"], data["opik"]["spans"])
    fast, _ = _read(records, by_dump=False)
    slow, _ = _read(records, by_dump=True)
    assert fast == slow == trace_from_wire(data["langwatch"])[0]
    assert fast.copy_state == slow.copy_state


def test_merged_fields_take_what_the_patch_names_as_the_dump_has_it() -> None:
    """A time is compared as its dump writes it (truncated to the millisecond), a field the
    patch deletes falls back to its default, and a key no field has is refused on validation."""
    started = datetime(2026, 3, 9, 19, 2, 11, 482000, tzinfo=UTC)
    fields = {name: None for name in Span.model_fields} | {
        "id": "s",
        "started_at": started,
        "first_token_at": started + timedelta(microseconds=1500),
        "usage": {},
        "params": {},
        "metadata": {"k": 1},
        "tags": [],
        "scores": [],
        "extras": {},
        "kind": "span",
    }
    dump = Span.model_validate(fields).model_dump(mode="json")
    patch = make_merge_patch(
        {**dump, "first_token_at": "2026-03-09T19:02:11.490Z", "metadata": {}}, dump
    )
    merged = merged_fields(Span, fields, patch)
    assert Span.model_validate(merged) == Span.model_validate(merge_patch(dump, patch))
    assert Span.model_validate(merged).first_token_at == started + timedelta(milliseconds=8)
    assert Span.model_validate(merged).metadata == {}
    with pytest.raises(ValidationError, match="unknown"):
        Span.model_validate(merged_fields(Span, fields, {"unknown": {"set": 1}}))
