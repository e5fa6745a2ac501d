"""LangWatch's read shape ⇄ canonical records.

The canonical vocabulary is LangWatch's (span types, typed IO values, `provider/model` names),
so this side is nearly one-to-one: epoch ms become datetimes, `labels` become tags, evaluations
become scores. What the canonical fields do not capture of a LangWatch record (server fields
such as `inserted_at`, unknown keys) is kept in `extras["langwatch"]` and put back on the way out.

A record born elsewhere (an Opik trace) is written with:
- a synthetic root span (`params.tracebridge = {"trace_span": true}`, span id = trace id) that
  carries the trace's own name, input, output, error and times, so LangWatch derives the same
  trace input/output; the trace's original root spans hang below it;
- the stash (`_stash.py`): provenance and a patch of whatever LangWatch cannot express, as JSON
  text in `metadata.tracebridge` and, per span, `params.tracebridge`; the patch is told from
  what the mapping changes (`_read_back`), and found by decoding the wire again and comparing
  only where that cannot be told (`_decoded_stashes`): the same stash either way;
- thread-level data (Opik thread scores, tags, status) on the thread's last trace.
Reading such a record undoes all three, so Opik → LangWatch → Opik is the identity.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from .._decoding import checked, decoding, describe_validation_error
from .._errors import RecordError
from .._hashing import Dumped
from .._interfaces import Counts, Page
from .._models import ErrorInfo, IOValue, Platform, Provenance, Score, Span, Thread, Trace
from .._stash import (
    STASH_KEY,
    CopyReader,
    apply_patch,
    copy_stashes,
    make_patch,
    parse_stash,
    told_stashes,
    with_residual,
)
from .._time import from_ms, to_ms
from .._trees import break_cycles, unique_spans
from .wire import LWError, LWEvaluation, LWSpan, LWTrace, LWTypedValue

__all__ = [
    "describe_validation_error",
    "evaluation_id",
    "raw_counts",
    "shift_timestamps",
    "thread_to_wire",
    "trace_from_wire",
    "trace_to_wire",
    "with_root_span",
]

PLATFORM: Platform = "langwatch"
_RESERVED_METADATA = frozenset({"thread_id", "labels", STASH_KEY})
_THREAD_TAGS_KEY = "thread_tags"


# ---------------------------------------------------------------------------------------- read


def trace_from_wire(
    raw: dict[str, Any], *, project: str = "", where: str = ""
) -> tuple[Trace, Thread | None]:
    """A LangWatch trace (read shape) as a canonical trace, plus the thread data it carries.

    Raises `RecordError` naming the field when the record does not validate or holds what no
    destination can store, and naming the exception when anything else in it fails to convert
    (`_decoding.py`). Repeated span ids and parent cycles are settled by the rules of
    `_trees.py`; what that skips, warns or dead-letters is published to the current collector.
    The second value is the Opik thread data a previous copy left on the thread's last trace,
    else None.
    """
    trace_id = raw.get("trace_id", "?") if isinstance(raw, dict) else "?"
    with decoding(where or f"trace {trace_id}", raw) as notes:
        if not isinstance(raw, dict):
            raise RecordError(f"a JSON {type(raw).__name__}, not a trace object")
        plain = checked(raw)
        metadata = raw.get("metadata")
        stash = (parse_stash(metadata.get(STASH_KEY)) if isinstance(metadata, dict) else None) or {}
        if stash:
            plain = checked(stash, ("metadata", STASH_KEY)) and plain
        shift = stash.get("shift_ms")
        if isinstance(shift, int) and shift:
            raw = shift_timestamps(raw, -shift)  # undo --shift-old-timestamps
        raw = _unique_spans(raw, where or f"trace {trace_id}", notes)
        wire = LWTrace.model_validate(raw)
        trace = _decode(wire, stash, project or wire.project_id or "", notes.warnings)
        if trace.source.platform == PLATFORM:
            trace = (_keep_residuals if plain else _residuals_by_encoding)(trace, raw)
        thread = _stashed_thread(stash.get("thread"))
    return trace, thread


def _stashed_thread(data: Any) -> Thread | None:
    """The Opik thread data a copy keeps on its thread's last trace, if any."""
    if not isinstance(data, dict):
        return None
    try:
        return Thread.model_validate(data)
    except ValidationError as exc:
        raise RecordError(
            f"the thread data in 'metadata.{STASH_KEY}' does not validate: "
            f"{describe_validation_error(exc)}"
        ) from None


def _unique_spans(raw: dict[str, Any], where: str, notes: Page) -> dict[str, Any]:
    spans = raw.get("spans")
    if not isinstance(spans, list):
        return raw
    kept = unique_spans(spans, id_key="span_id", where=where, notes=notes, rejected=notes.rejected)
    return raw if kept is spans else {**raw, "spans": kept}


def _decode(
    wire: LWTrace, stash: dict[str, Any], project: str, warnings: list[str] | None = None
) -> Trace:
    """The canonical trace of a validated wire trace, a copy's stash applied
    (`_stash.CopyReader`); tree repairs, and what changed in a copy since it was written, are
    added to `warnings`.

    In a copy of a record born elsewhere, an evaluation of a span is that span's score (it is
    one when it names the span, or has the id tracebridge gives that span's score of its name:
    the collector does not keep `span_id`); in a LangWatch-born trace every evaluation stays a
    trace score (its span id kept in its extras), as LangWatch lists them.
    """
    source = (
        Provenance.model_validate(stash["source"])
        if isinstance(stash.get("source"), dict)
        else Provenance(platform=PLATFORM, project=project, id=wire.trace_id)
    )
    on_spans: dict[str, list[Score]] = {}
    trace_scores: list[Score] = []
    span_of = _span_of_evaluation(wire) if source.platform != PLATFORM else None
    for evaluation in wire.evaluations:
        score = _score_from_wire(evaluation)
        span_id = span_of(evaluation) if span_of is not None else None
        if span_id is not None:
            on_spans.setdefault(span_id, []).append(score)
        else:
            trace_scores.append(score)
    reader = CopyReader(stash, PLATFORM)
    trace_span: Span | None = None
    spans: list[Span] = []
    for wire_span in wire.spans:
        own_stash = parse_stash((wire_span.params or {}).get(STASH_KEY)) or {}
        span = _span_from_wire(wire_span)
        if own_stash.get("trace_span"):
            trace_span = span
            continue
        if span.id in on_spans:
            span = span.model_copy(update={"scores": on_spans[span.id]})
        spans.append(reader.span(span, own_stash))
    spans = reader.adopt_new_spans(spans)

    metadata = {k: v for k, v in wire.metadata.items() if k not in _RESERVED_METADATA}
    started_at = from_ms(wire.timestamps.started_at)
    total_ms = (wire.metrics or {}).get("total_time_ms")
    fields: dict[str, Any] = {
        "id": wire.trace_id,
        "source": source,
        "thread_id": wire.metadata.get("thread_id"),
        "started_at": started_at,
        "ended_at": started_at + timedelta(milliseconds=total_ms)
        if isinstance(total_ms, int | float) and not isinstance(total_ms, bool)
        else None,
        "input": _text_value(wire.input),
        "output": _text_value(wire.output),
        "metadata": metadata,
        "tags": _labels(wire.metadata.get("labels")),
        "error": _error_from_wire(wire.error),
        "scores": trace_scores,
    }
    if trace_span is not None:
        # Fold the synthetic root span back into the trace it stands for.
        fields.update(
            name=trace_span.name,
            input=trace_span.input,
            output=trace_span.output,
            error=trace_span.error,
            started_at=trace_span.started_at,
            ended_at=trace_span.ended_at,
        )
        spans = [
            s.model_copy(update={"parent_id": None}) if s.parent_id == trace_span.id else s
            for s in spans
        ]
    spans, repairs = break_cycles(
        spans, trace_id=wire.trace_id, remembered=source.platform == PLATFORM
    )
    if warnings is not None:
        warnings += repairs
    return reader.trace(Trace.model_validate({**fields, "spans": spans}), warnings)


def _span_of_evaluation(wire: LWTrace) -> Callable[[LWEvaluation], str | None]:
    """For a copy: the span an evaluation belongs to, else None (`_decode`)."""
    span_of = _evaluation_spans(
        wire.trace_id, {s.span_id for s in wire.spans}, {e.name for e in wire.evaluations}
    )
    return lambda evaluation: span_of(evaluation.span_id, evaluation.evaluation_id)


def _evaluation_spans(
    trace_id: str, span_ids: set[str], names: set[str]
) -> Callable[[str | None, str | None], str | None]:
    """The span an evaluation of a copy (its `span_id` and `evaluation_id`) belongs to, else
    None: the span it names, or the one whose score of its name has that id (`evaluation_id`
    of each name and span, worked out once, when first needed)."""
    by_id: dict[str, str] | None = None

    def span_of(span_id: str | None, given_id: str | None) -> str | None:
        nonlocal by_id
        if span_id is not None and span_id in span_ids:
            return span_id
        if by_id is None:
            by_id = {
                evaluation_id(trace_id, name, other): other for name in names for other in span_ids
            }
        return by_id.get(given_id or "")

    return span_of


def _span_from_wire(wire: LWSpan) -> Span:
    metrics = wire.metrics or {}
    params = {k: v for k, v in (wire.params or {}).items() if k != STASH_KEY}
    return Span(
        id=wire.span_id,
        parent_id=wire.parent_id,
        name=wire.name,
        kind=wire.type,
        started_at=from_ms(wire.timestamps.started_at),
        ended_at=_opt_ms(wire.timestamps.finished_at),
        first_token_at=_opt_ms(wire.timestamps.first_token_at),
        input=_typed_value(wire.input),
        output=_typed_value(wire.output),
        model=wire.model,
        provider=wire.vendor,
        usage={k: v for k, v in metrics.items() if type(v) is int and k != "cost"},
        cost=metrics.get("cost") if _is_number(metrics.get("cost")) else None,
        params=params,
        contexts=wire.contexts,
        error=_error_from_wire(wire.error),
    )


def _score_from_wire(wire: LWEvaluation) -> Score:
    return Score(
        name=wire.name,
        value=wire.score,
        passed=wire.passed,
        label=wire.label,
        reason=wire.details,
        status=wire.status,
        id=wire.evaluation_id,
    )


def _keep_residuals(trace: Trace, raw: dict[str, Any]) -> Trace:
    """`_residuals_by_encoding(trace, raw)` for a record of plain JSON (`_decoding.checked`),
    computed without copying or serialising what the canonical records hold.

    The wires compared share their values with the canonical records (`_span_base(...,
    share=True)`), which for plain JSON are the same JSON as the dumps the general way takes,
    so the patches are the same (`_stash.make_patch` takes a shared value as the same at
    once). A span's or score's wire with its residual applied is the same JSON as its raw
    record (`make_patch` then `apply_patch`), so the raw record itself stands for it in the
    trace's wire: the trace's `spans` and `evaluations` are then the raw lists' own
    elements, known to be the same without comparing them.
    """
    return _residuals(trace, raw, plain=True)


def _residuals_by_encoding(trace: Trace, raw: dict[str, Any]) -> Trace:
    """Put in `extras["langwatch"]` what re-encoding would not reproduce of the raw record:
    the general way, for any record (`_keep_residuals` is the same for plain JSON, faster).

    Each span and evaluation is encoded once: its wire with the residual applied is what
    encoding the record with its extras gives, so the trace's own residual is taken against
    those wires instead of encoding them all again.
    """
    return _residuals(trace, raw, plain=False)


def _residuals(trace: Trace, raw: dict[str, Any], *, plain: bool) -> Trace:
    """`_keep_residuals` (`plain`) or `_residuals_by_encoding`."""
    raw_spans = {s.get("span_id"): s for s in raw.get("spans") or [] if isinstance(s, dict)}
    spans, span_wires = [], []
    for span in trace.spans:
        own = raw_spans.get(span.id)
        base = _span_base(span, trace.id, share=plain)
        wire = with_residual(base, span.extras, PLATFORM)
        residual = make_patch(own if own is not None else {}, wire)
        if residual:
            span = span.model_copy(update={"extras": {PLATFORM: residual}})
        spans.append(span)
        span_wires.append(_as_applied(own if plain else None, base, wire, residual))
    scores, score_wires = [], []
    for raw_eval, score in zip(raw.get("evaluations") or [], trace.scores, strict=True):
        base = _score_base(score, trace.id)
        wire = with_residual(base, score.extras, PLATFORM)
        residual = make_patch(raw_eval, wire)
        if residual:
            score = score.model_copy(update={"extras": {PLATFORM: residual}})
        scores.append(score)
        score_wires.append(_as_applied(raw_eval if plain else None, base, wire, residual))
    trace = trace.model_copy(update={"spans": spans, "scores": scores})
    encoded = _encode(trace, project_id=None, thread=None, wires=(span_wires, score_wires))
    residual = make_patch(raw, encoded)
    return trace.model_copy(update={"extras": {PLATFORM: residual}}) if residual else trace


def _as_applied(
    raw: Any, base: dict[str, Any], wire: dict[str, Any], residual: dict[str, Any]
) -> Any:
    """The wire a span's or score's residual stands for (`base` with `residual` applied, or
    `wire` when there is none), or `raw` (its raw record, not None for plain JSON only) where
    that is the same JSON."""
    if raw is not None and (not residual or wire is base):
        return raw  # make_patch(raw, base) applied to base gives raw again, as JSON
    return apply_patch(base, residual) if residual else wire


# --------------------------------------------------------------------------------------- write


def trace_to_wire(
    trace: Trace, *, project_id: str | None = None, thread: Thread | None = None
) -> dict[str, Any]:
    """A canonical trace in LangWatch's read shape (what the JSONL export and GET return).

    `thread` is the thread-level data to keep on this trace (pass it for a thread's last trace).
    A copy of a record born elsewhere gets the synthetic root span and the stash.
    """
    wire = _encode(trace, project_id=project_id, thread=thread)
    if trace.source.platform == PLATFORM:
        return wire
    # What the mapping lost, per trace and per span, and the content hash (`_stash.py`, v2):
    # told from the mapping where `_read_back` can, else by decoding the wire again.
    told = _read_back(trace, wire, thread)
    if told is not None:
        stash, span_stashes = told_stashes(trace, *told)
    else:
        stash, span_stashes = _decoded_stashes(trace, wire)
    if thread is not None and (thread.scores or thread.tags or thread.status):
        stash["thread"] = thread.model_dump(mode="json", exclude={"traces"})
    wire["metadata"][STASH_KEY] = json.dumps(stash, ensure_ascii=False, sort_keys=True)
    for wire_span, own in zip(wire["spans"][1:], span_stashes, strict=True):
        wire_span.setdefault("params", {})[STASH_KEY] = json.dumps(
            own, ensure_ascii=False, sort_keys=True
        )
    return wire


def _decoded_stashes(
    trace: Trace, wire: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The stashes of a copy of `trace` whose wire is `wire` (without its stashes), by decoding
    the wire and comparing (the general way: `_read_back` tells the same without decoding)."""
    decoded = _decode(LWTrace.model_validate(wire), {"source": trace.source.model_dump()}, "")
    decoded_spans = {s.id: s for s in decoded.spans}
    backs = [decoded_spans.get(span.id) for span in trace.spans]
    return copy_stashes(trace, decoded, backs)


def _read_back(
    trace: Trace, wire: dict[str, Any], thread: Thread | None
) -> tuple[Dumped, dict[str, Any], list[dict[str, Any]]] | None:
    """How `_decode` reads `wire` (`_encode` of the copy `trace`, with `thread`, before its
    stashes are added) back, told from the mapping: `Dumped.of(trace)`, and the dump of the
    decoded trace without its spans and of the decoded span of each of `trace.spans`, as
    `_decoded_stashes` compares them (`_stash.told_stashes`). A value that reads back as it
    is, is the trace dump's own object.

    What the mapping changes: the trace's and spans' errors lose their exception type, spans
    their metadata, tags and extras; a top-level span, and one under the trace's id, reads as
    top-level; a trace without an end ends at its start (the synthetic root span's end);
    metadata values are texts, the labels and thread keys are the reader's; scores lose their
    source and extras and get the evaluation id written, and each is read as the score of the
    span `_evaluation_spans` names (the trace's, when none; none at all under the synthetic
    root span), thread scores included.

    None where this cannot tell it without decoding: platform residuals written into the wire,
    a stash key in a span's params, a time outside 13-digit epoch milliseconds (the wire does
    not validate), an empty trace id, span ids repeated or equal to the trace's id, a parent
    cycle, a cost among the usage, a metadata value of another type than `str`, and a number
    or usage count of another type than its field validates to (a record changed without
    validation).
    """
    if PLATFORM in trace.extras or not trace.id or not _epoch_ms_all(trace.started_at):
        return None
    if trace.ended_at is not None and not _epoch_ms_all(trace.ended_at):
        return None
    scores = [*trace.scores, *(thread.scores if thread is not None else ())]
    span_ids = {trace.id}
    for span in trace.spans:
        if span.id in span_ids or not _tellable_span(span):
            return None
        span_ids.add(span.id)
        scores += span.scores
    if not all(PLATFORM not in s.extras and type(s.value) in _FLOAT_OR_NONE for s in scores):
        return None
    metadata = {k: v for k, v in wire["metadata"].items() if k not in _RESERVED_METADATA}
    if not all(type(v) is str for v in metadata.values()):
        return None
    if break_cycles(trace.spans, trace_id=trace.id)[1]:
        return None
    mine = Dumped.of(trace)
    evaluations = wire["evaluations"]
    dumps = [*mine.trace["scores"], *(s for dump in mine.spans for s in dump["scores"])]
    if thread is not None:
        dumps += [s.model_dump(mode="json") for s in thread.scores]
    span_of = _evaluation_spans(trace.id, span_ids, {e["name"] for e in evaluations})
    trace_scores: list[dict[str, Any]] = []
    on_spans: dict[str, list[dict[str, Any]]] = {}
    for evaluation, dump in zip(evaluations, dumps, strict=True):
        score = _score_back(evaluation, dump)
        owner = span_of(evaluation.get("span_id"), evaluation["evaluation_id"])
        if owner is None:
            trace_scores.append(score)
        elif owner != trace.id:  # (the synthetic root span's are not read)
            on_spans.setdefault(owner, []).append(score)
    back = dict(mine.trace)
    if trace.ended_at is None:
        back["ended_at"] = mine.trace["started_at"]
    back["metadata"] = metadata
    back["error"] = _error_back(wire["error"])
    back["scores"] = trace_scores if trace_scores or mine.trace["scores"] else mine.trace["scores"]
    if trace.extras:
        back["extras"] = {}
    span_backs = []
    for span, dump, wire_span in zip(trace.spans, mine.spans, wire["spans"][1:], strict=True):
        span_back = dict(dump)
        if span.parent_id == trace.id:
            span_back["parent_id"] = None
        if span.metadata:
            span_back["metadata"] = {}
        if span.tags:
            span_back["tags"] = []
        span_back["error"] = _error_back(wire_span["error"])
        span_back["scores"] = on_spans.get(span.id) or ([] if dump["scores"] else dump["scores"])
        if span.extras:
            span_back["extras"] = {}
        span_backs.append(span_back)
    return mine, back, span_backs


_FLOAT_OR_NONE = (float, type(None))


def _tellable_span(span: Span) -> bool:
    """True when `_read_back` can tell how `span` reads back (its docstring)."""
    return (
        PLATFORM not in span.extras
        and STASH_KEY not in span.params
        and "cost" not in span.usage
        and type(span.cost) in _FLOAT_OR_NONE
        and all(type(v) is int for v in span.usage.values())
        and _epoch_ms_all(span.started_at, span.ended_at, span.first_token_at)
    )


def _epoch_ms_all(*instants: datetime | None) -> bool:
    """True when every time given (None: none) is 13-digit epoch milliseconds on the wire."""
    try:
        for instant in instants:
            if instant is not None:
                from_ms(to_ms(instant))
    except ValueError:
        return False
    return True


def _score_back(wire: dict[str, Any], dump: dict[str, Any]) -> dict[str, Any]:
    """The dump of `_score_from_wire` of the evaluation `wire` written of the score `dump`."""
    return {
        "name": wire["name"],
        "value": dump["value"],
        "passed": dump["passed"],
        "label": dump["label"],
        "reason": dump["reason"],
        "status": dump["status"],
        "id": wire["evaluation_id"],
        "source": None,
        "extras": {},
    }


def _error_back(wire: dict[str, Any] | None) -> dict[str, Any] | None:
    """The dump of `_error_from_wire` of an error `_error_to_wire` wrote."""
    if wire is None:
        return None
    return {"message": wire["message"], "exception_type": None, "stacktrace": wire["stacktrace"]}


def thread_to_wire(thread: Thread, *, project_id: str | None = None) -> list[dict[str, Any]]:
    """Every trace of a thread; the thread-level data goes on the last one (by start time)."""
    if not thread.traces:
        return []
    last = max(range(len(thread.traces)), key=lambda i: thread.traces[i].started_at)
    return [
        trace_to_wire(t, project_id=project_id, thread=thread if i == last else None)
        for i, t in enumerate(thread.traces)
    ]


def _encode(
    trace: Trace,
    *,
    project_id: str | None,
    thread: Thread | None,
    wires: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The wire of `trace`; `wires`: its spans' and its own scores' wires, already encoded
    (or, for comparing only, what is the same JSON: `_keep_residuals`)."""
    copy = trace.source.platform != PLATFORM
    metadata: dict[str, Any] = {}
    if trace.thread_id is not None:
        metadata["thread_id"] = trace.thread_id
    if trace.tags:
        metadata["labels"] = list(trace.tags)
    for key, value in trace.metadata.items():
        if key not in _RESERVED_METADATA:
            # LangWatch stores custom metadata as strings; write what it will give back.
            metadata[key] = value if isinstance(value, str) or not copy else _as_text(value)
    if wires is None:
        spans = [_span_to_wire(s, trace.id) for s in trace.spans]
        evaluations = [_score_to_wire(s, trace.id) for s in trace.scores]
    else:
        spans, evaluations = list(wires[0]), list(wires[1])
    for span in trace.spans:
        evaluations += [_score_to_wire(s, trace.id, span_id=span.id) for s in span.scores]
    if copy:
        spans = [_trace_span(trace), *_under(spans, trace.id)]
    if thread is not None:
        evaluations += [_score_to_wire(s, trace.id, thread=True) for s in thread.scores]
        if thread.tags:
            metadata[_THREAD_TAGS_KEY] = _as_text(thread.tags)
    wire: dict[str, Any] = {"trace_id": trace.id}
    if project_id is not None:
        wire["project_id"] = project_id
    wire["metadata"] = metadata
    wire["timestamps"] = {"started_at": to_ms(trace.started_at)}
    if trace.input is not None:
        wire["input"] = {"value": _as_text_value(trace.input)}
    if trace.output is not None:
        wire["output"] = {"value": _as_text_value(trace.output)}
    if trace.ended_at is not None:
        wire["metrics"] = {"total_time_ms": to_ms(trace.ended_at) - to_ms(trace.started_at)}
    wire["error"] = _error_to_wire(trace.error)
    wire["spans"] = spans
    wire["evaluations"] = evaluations
    return with_residual(wire, trace.extras, PLATFORM)


def with_root_span(trace: Trace, wire: dict[str, Any]) -> dict[str, Any]:
    """`wire` (from `trace_to_wire`) as the collector must receive it: never without spans.

    LangWatch builds a trace from its spans (§4: trace input, output, times and error are
    derived from them), so a trace posted with `spans: []` is answered 200 and never appears:
    its metadata is gone and its evaluations wait for a trace that never comes. A copy of a
    record born elsewhere already has the synthetic root span; a LangWatch-born trace without
    spans (read from an export made without spans) gets the same span here, carrying the
    trace's name, input, output, error and times. Reading it back folds the span into the
    trace again, so the canonical trace comes back without spans. What the span cannot carry
    exactly (a trace with no end time: the collector needs `finished_at`) goes in the stash
    patch, as for a copy. Any other wire is returned unchanged.
    """
    if wire["spans"]:
        return wire
    out = {**wire, "spans": [_trace_span(trace)], "metadata": dict(wire["metadata"])}
    decoded = _decode(LWTrace.model_validate(out), {}, trace.source.project)
    carried = ("name", "input", "output", "error", "started_at", "ended_at")
    patch = make_patch(
        trace.model_dump(mode="json", include=set(carried)),
        decoded.model_dump(mode="json", include=set(carried)),
    )
    if patch:
        stash = parse_stash(out["metadata"].get(STASH_KEY)) or {}
        stash["patch"] = {**(stash.get("patch") or {}), **patch}
        out["metadata"][STASH_KEY] = json.dumps(stash, ensure_ascii=False, sort_keys=True)
    return out


def _trace_span(trace: Trace) -> dict[str, Any]:
    """The synthetic root span that carries a trace's own name, IO, error and times.

    The collector needs `finished_at` on every span: a trace without an end time gives its
    start (the stash patch of the copy restores the missing end on read).
    """
    span = Span(
        id=trace.id,
        name=trace.name,
        kind="span",
        started_at=trace.started_at,
        ended_at=trace.ended_at or trace.started_at,
        input=trace.input,
        output=trace.output,
        error=trace.error,
        params={STASH_KEY: json.dumps({"trace_span": True})},
    )
    return _span_to_wire(span, trace.id)


def _under(spans: list[dict[str, Any]], root_id: str) -> list[dict[str, Any]]:
    return [{**s, "parent_id": root_id} if s["parent_id"] is None else s for s in spans]


def _span_to_wire(span: Span, trace_id: str) -> dict[str, Any]:
    return with_residual(_span_base(span, trace_id), span.extras, PLATFORM)


def _span_base(span: Span, trace_id: str, *, share: bool = False) -> dict[str, Any]:
    """The span's wire before its residual is applied; with `share`, its input and output
    values are the span's own objects, not copies (for comparing only: `_keep_residuals`)."""
    timestamps: dict[str, Any] = {"started_at": to_ms(span.started_at)}
    if span.ended_at is not None:
        timestamps["finished_at"] = to_ms(span.ended_at)
    if span.first_token_at is not None:
        timestamps["first_token_at"] = to_ms(span.first_token_at)
    wire: dict[str, Any] = {
        "span_id": span.id,
        "trace_id": trace_id,
        "parent_id": span.parent_id,
        "name": span.name,
        "type": span.kind,
        "timestamps": timestamps,
    }
    if span.input is not None:
        wire["input"] = _io_wire(span.input) if share else span.input.model_dump()
    if span.output is not None:
        wire["output"] = _io_wire(span.output) if share else span.output.model_dump()
    if span.model is not None:
        wire["model"] = span.model
    if span.provider is not None:
        wire["vendor"] = span.provider
    metrics: dict[str, Any] = dict(span.usage)
    if span.cost is not None:
        metrics["cost"] = span.cost
    if metrics:
        wire["metrics"] = metrics
    if span.params:
        wire["params"] = dict(span.params)
    if span.contexts is not None:
        wire["contexts"] = span.contexts
    wire["error"] = _error_to_wire(span.error)
    return wire


def evaluation_id(
    trace_id: str, name: str, span_id: str | None = None, thread: bool = False
) -> str:
    """The stable id tracebridge gives a score that has none (the collector upserts by it)."""
    key = "\x1f".join((trace_id, span_id or "", "thread" if thread else "", name))
    return "tb_" + hashlib.sha256(key.encode()).hexdigest()[:24]


def _score_to_wire(
    score: Score, trace_id: str, *, span_id: str | None = None, thread: bool = False
) -> dict[str, Any]:
    base = _score_base(score, trace_id, span_id=span_id, thread=thread)
    return with_residual(base, score.extras, PLATFORM)


def _score_base(
    score: Score, trace_id: str, *, span_id: str | None = None, thread: bool = False
) -> dict[str, Any]:
    """The score's wire before its residual is applied."""
    name = f"thread: {score.name}" if thread else score.name
    wire: dict[str, Any] = {
        "evaluation_id": score.id or evaluation_id(trace_id, score.name, span_id, thread),
        "name": name,
        "status": score.status,
    }
    for key, value in (("passed", score.passed), ("score", score.value), ("label", score.label)):
        if value is not None:
            wire[key] = value
    if score.reason is not None:
        wire["details"] = score.reason
    if span_id is not None:
        wire["span_id"] = span_id
    return wire


def shift_timestamps(wire: dict[str, Any], delta_ms: int) -> dict[str, Any]:
    """A copy of a read-shape trace with every timestamp moved by `delta_ms`.

    A shifted copy records the shift in its stash (`shift_ms`), so reading it undoes the move:
    that is how `--shift-old-timestamps` keeps the original times.
    """

    def moved(timestamps: Any) -> Any:
        if not isinstance(timestamps, dict):
            return timestamps
        return {k: v + delta_ms if type(v) is int else v for k, v in timestamps.items()}

    def moved_record(record: Any) -> Any:
        if not isinstance(record, dict) or "timestamps" not in record:
            return record
        return {**record, "timestamps": moved(record["timestamps"])}

    shifted = dict(moved_record(wire))
    for key in ("spans", "evaluations"):
        if isinstance(wire.get(key), list):
            shifted[key] = [moved_record(item) for item in wire[key]]
    return shifted


def raw_counts(raw: Any) -> Counts:
    """What a raw LangWatch trace holds, as far as it can be told (for a dead-lettered one)."""
    spans = raw.get("spans") if isinstance(raw, dict) else None
    evaluations = raw.get("evaluations") if isinstance(raw, dict) else None
    return Counts(
        traces=1,
        spans=len(spans) if isinstance(spans, list) else 0,
        scores=len(evaluations) if isinstance(evaluations, list) else 0,
    )


# ------------------------------------------------------------------------------------- helpers


def _opt_ms(value: int | None) -> Any:
    return None if value is None else from_ms(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _io_wire(value: IOValue) -> dict[str, Any]:
    """`value.model_dump()` with the value itself in it, not a copy."""
    return {"type": value.type, "value": value.value}


def _typed_value(wire: LWTypedValue | None) -> IOValue | None:
    return None if wire is None else IOValue(type=wire.type, value=wire.value)


def _text_value(wire: Any) -> IOValue | None:
    return None if wire is None or wire.value is None else IOValue(type="text", value=wire.value)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _as_text_value(value: IOValue) -> str:
    return (
        value.value
        if value.type == "text" and isinstance(value.value, str)
        else _as_text(value.value)
    )


def _labels(value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


def _error_from_wire(wire: LWError | None) -> ErrorInfo | None:
    if wire is None:
        return None
    return ErrorInfo(message=wire.message, stacktrace=list(wire.stacktrace))


def _error_to_wire(error: ErrorInfo | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"has_error": True, "message": error.message or "", "stacktrace": list(error.stacktrace)}
