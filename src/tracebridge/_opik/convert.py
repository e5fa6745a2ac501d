"""Opik's `Trace_Public` / `Span_Public` ⇄ canonical records, driven by `mappings/*.toml`.

The canonical vocabulary is LangWatch's, so the mapping tables apply here: span types, IO shapes,
model names, metadata renames and the evaluation → score rules. What Opik cannot hold of a copy
(LangWatch ids, span kinds beyond Opik's four, verdict fields, ...) travels in the stash
(`metadata.tracebridge`, see `_stash.py`); reading a copy back undoes the mapping exactly.

Ids (DESIGN.md invariant 1): a record born in Opik keeps its id; any other record gets the id
its `OpikIds` policy gives: by default a UUID v7 derived from the source start time and identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from .._decoding import (
    check_records,
    check_values,
    decoding,
    describe_validation_error,
    value_problem,
)
from .._errors import RecordError
from .._hashing import Dumped
from .._interfaces import Counts, Rejected
from .._mapping import Mappings
from .._models import ErrorInfo, IOValue, Platform, Provenance, Score, Span, Thread, Trace
from .._stash import (
    STASH_KEY,
    CopyReader,
    copy_stashes,
    make_patch,
    parse_stash,
    told_stashes,
    with_residual,
)
from .._time import from_iso, to_iso, to_ms
from .._trees import break_cycles, unique_spans
from .ids import OpikIds, SourceTimeIds
from .wire import OErrorInfo, OScore, OSpan, OTrace

__all__ = [
    "SCORES_IN_METADATA",
    "OpikTrace",
    "io_to_json",
    "json_to_io",
    "raw_counts",
    "thread_data_from_opik",
    "thread_data_to_opik",
    "trace_from_opik",
    "trace_to_opik",
]

PLATFORM: Platform = "opik"
#: The skip reason the Opik sinks give for the evaluations `trace_to_opik` keeps in the trace's
#: metadata instead of writing them as feedback scores (an Opik rule, so it lives here).
SCORES_IN_METADATA = (
    "scores kept in the trace's metadata, not as feedback scores (no verdict Opik can store: "
    "an evaluation not processed, without score or passed, or a repeated name)"
)
_SCORE_LIMIT = 1e9
# Opik fields that belong to where a record is stored, not to the record: never carried over.
_PLACE_FIELDS = frozenset({"project_id", "project_name"})


@dataclass
class OpikTrace:
    """One trace as Opik holds it: `Trace_Public` and `Span_Public` dicts, scores embedded."""

    trace: dict[str, Any]
    spans: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------- write


def trace_to_opik(trace: Trace, *, mappings: Mappings, ids: OpikIds | None = None) -> OpikTrace:
    """A canonical trace as Opik records; a copy carries its provenance and patch in the stash.

    Raises ValueError naming the span when two spans would be written under one Opik id (the
    caller dead-letters the trace: Opik would keep one of them and lose the other).
    """
    ids = ids or SourceTimeIds()
    record = _encode(trace, mappings, ids)
    _refuse_shared_span_ids(trace, record)
    if trace.source.platform == PLATFORM:
        return record
    # What the mapping lost, per trace and per span, so the reverse copy restores it, and the
    # content hash, so a read can tell a copy changed here since (`_stash.py`, version 2):
    # told from the mapping where `_read_back` can, else by decoding the record.
    mine = Dumped.of(trace)
    told = _read_back(trace, record, mine, mappings)
    if told is not None:
        stash, span_stashes = told_stashes(trace, mine, *told)
    else:
        decoded = _decode(
            record.trace, record.spans, mappings, stash={"source": trace.source.model_dump()}
        )
        stash, span_stashes = copy_stashes(trace, decoded, list(decoded.spans))
    record.trace["metadata"] = {**record.trace.get("metadata", {}), STASH_KEY: stash}
    for wire_span, own in zip(record.spans, span_stashes, strict=True):
        wire_span["metadata"] = {**wire_span.get("metadata", {}), STASH_KEY: own}
    return record


def _read_back(
    trace: Trace, record: OpikTrace, mine: Dumped, m: Mappings
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """How `_decode` reads `record` (the encoding of `trace`) back, told from the mapping: the
    dump of the trace without its spans and of each span, as `Dumped.of(decoded)` would give
    them (`mine` is `Dumped.of(trace)`); a value that reads back as it is, is `mine`'s own.

    None where this cannot tell it without decoding: platform residuals written into the
    record, a stash key in a span's metadata, a time before the year 1000, a parent cycle, an
    id that is not a text (an `OpikIds` of the caller's), or an input or output the
    bijection of `io_to_json` is not shown to hold for.
    """
    if PLATFORM in trace.extras or trace.started_at.year < 1000:
        return None
    if not all(type(r["id"]) is str and r["id"] for r in (record.trace, *record.spans)):
        return None
    if any(PLATFORM in s.extras for s in trace.scores):
        return None
    if trace.ended_at is not None and trace.ended_at.year < 1000:
        return None
    if break_cycles(trace.spans, trace_id=trace.id)[1]:
        return None
    wire = record.trace
    back = dict(mine.trace)
    back["id"] = wire["id"]
    back["name"] = wire["name"]
    for key in ("input", "output"):
        if not _reads_as(getattr(trace, key), wire.get(key), m):
            return None
    # `_encode`'s and `_decode`'s renames, and the stash key the reader leaves out, on the dump.
    to_opik, to_langwatch = m.to_opik.metadata.rename, m.to_langwatch.metadata.rename
    written = {to_opik.get(k, k): v for k, v in mine.trace["metadata"].items()}
    metadata = {to_langwatch.get(k, k): v for k, v in written.items() if k != STASH_KEY}
    back["metadata"] = _same_or(mine.trace["metadata"], metadata)
    back["tags"] = _tags_back(mine.trace["tags"])
    back["error"] = _error_back(wire.get("error_info"))
    if trace.scores:
        back["scores"] = [_score_back(s, m) for s in wire.get("feedback_scores", [])]
    if trace.extras:
        back["extras"] = {}
    span_backs = []
    for span, dump, wire_span in zip(trace.spans, mine.spans, record.spans, strict=True):
        span_back = _span_read_back(span, dump, wire_span, m)
        if span_back is None:
            return None
        span_backs.append(span_back)
    return back, span_backs


def _span_read_back(
    span: Span, dump: dict[str, Any], wire: dict[str, Any], m: Mappings
) -> dict[str, Any] | None:
    """`_read_back` of one span (`dump` is its dump, `wire` its Opik record)."""
    if PLATFORM in span.extras or STASH_KEY in span.metadata:
        return None
    if any(PLATFORM in s.extras for s in span.scores):
        return None
    for instant in (span.started_at, span.ended_at, span.first_token_at):
        if instant is not None and instant.year < 1000:
            return None
    if not (
        _reads_as(span.input, wire.get("input"), m)
        and _reads_as(span.output, wire.get("output"), m)
    ):
        return None
    back = dict(dump)
    back["id"] = wire["id"]
    back["parent_id"] = wire.get("parent_span_id")
    back["name"] = wire["name"]
    back["kind"] = m.to_langwatch.span_type(wire["type"] or "general")
    # `_encode`'s writing and `_span_from_opik`'s reading of metadata, params and contexts, on
    # the dump: the reader takes a dict `params` and a list `contexts` out of the metadata.
    raw = span.metadata
    if span.params or span.contexts is not None or "params" in raw or "contexts" in raw:
        if not (
            _same_kind(raw, dump["metadata"], "params", dict)
            and _same_kind(raw, dump["metadata"], "contexts", list)
        ):
            return None  # (a value whose dump is of another kind: let the decoder tell)
        metadata = dict(dump["metadata"])
        if span.params:
            metadata["params"] = dump["params"]
        if span.contexts is not None:
            metadata["contexts"] = dump["contexts"]
        params = metadata.pop("params") if isinstance(metadata.get("params"), dict) else {}
        contexts = metadata.pop("contexts") if isinstance(metadata.get("contexts"), list) else None
        back["metadata"] = _same_or(dump["metadata"], metadata)
        back["params"] = _same_or(dump["params"], params)
        back["contexts"] = contexts
    model, provider = wire.get("model"), wire.get("provider")
    if model and provider and m.to_langwatch.model.join_provider:
        model = f"{provider}/{model}"
    back["model"] = model
    back["provider"] = None if model != wire.get("model") else provider
    usage = dict(dump["usage"])  # (as `_span_to_opik` writes it and `_span_from_opik` reads it)
    both = {"prompt_tokens", "completion_tokens"} <= usage.keys()
    if both and "total_tokens" not in usage:
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    if both and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]:
        del usage["total_tokens"]
    back["usage"] = _same_or(dump["usage"], usage)
    cost = wire.get("total_estimated_cost")
    back["cost"] = dump["cost"] if cost is not None and cost is span.cost else None
    back["tags"] = _tags_back(dump["tags"])
    back["error"] = _error_back(wire.get("error_info"))
    if span.scores:
        back["scores"] = [_score_back(s, m) for s in wire.get("feedback_scores", [])]
    if span.extras:
        back["extras"] = {}
    return back


def _reads_as(value: IOValue | None, wire: Any, m: Mappings) -> bool:
    """True when `json_to_io(wire)` is `value` again: the same type and the same object."""
    if value is None:
        return wire is None
    if wire is None:
        return False
    kind, inner = _io_parts(wire, m)
    return kind == value.type and inner is value.value


def _same_kind(raw: dict[str, Any], dump: dict[str, Any], key: str, kind: type) -> bool:
    """True when `raw[key]` and its dump are both of `kind` or both not (or there is none)."""
    return key not in raw or isinstance(raw[key], kind) == isinstance(dump[key], kind)


def _same_or(dump: dict[str, Any], back: dict[str, Any]) -> dict[str, Any]:
    """`dump` itself when `back` holds the same keys, in order, with the same objects."""
    if len(dump) == len(back) and all(
        k == j and v is w for (k, v), (j, w) in zip(dump.items(), back.items(), strict=True)
    ):
        return dump
    return back


def _tags_back(tags: list[str]) -> list[str]:
    """The tags as read back: repeats are written once."""
    return tags if len(set(tags)) == len(tags) else list(dict.fromkeys(tags))


def _error_back(wire: dict[str, Any] | None) -> dict[str, Any] | None:
    """The dump of `_error_from_opik` of an error `_error_to_opik` wrote."""
    if wire is None:
        return None
    traceback = wire.get("traceback")
    return {
        "message": wire.get("message"),
        "exception_type": wire.get("exception_type"),
        "stacktrace": [traceback] if traceback is not None else [],
    }


def _score_back(wire: dict[str, Any], m: Mappings) -> dict[str, Any]:
    """The dump of `_score_from_opik` of a score `_scores_to_opik` wrote."""
    source = wire.get("source")
    return {
        "name": wire["name"],
        "value": float(wire["value"]),
        "passed": None,
        "label": wire.get("category_name"),
        "reason": wire.get("reason"),
        "status": m.to_langwatch.scores.status,
        "id": None,
        "source": None if source == m.to_opik.scores.source else source,
        "extras": {},
    }


def _refuse_shared_span_ids(trace: Trace, record: OpikTrace) -> None:
    """ValueError when two spans of `record` carry one Opik id (the id would hold only one)."""
    first: dict[str, Span] = {}
    for span, wire in zip(trace.spans, record.spans, strict=True):
        other = first.setdefault(wire["id"], span)
        if other is not span:
            who = (
                f"span {span.id!r} appears twice"
                if other.id == span.id
                else (f"spans {other.id!r} and {span.id!r} would share one Opik id")
            )
            raise ValueError(
                f"{who} in this trace (Opik span id {wire['id']}): Opik would keep only one"
            )


def _trace_name(trace: Trace) -> str:
    """The name Opik lists a trace by: its own, else its root span's name or kind.

    LangWatch traces have no name of their own; a record without one would be named
    `imported_trace` by `opik import`. The stash restores a missing name on the way back.
    """
    roots = [s for s in trace.spans if s.parent_id is None]
    named = (s.name for s in roots if s.name)
    return trace.name or next(named, None) or (roots[0].kind if roots else None) or "trace"


def _encode(trace: Trace, m: Mappings, ids: OpikIds) -> OpikTrace:
    rules = m.to_opik
    trace_id = ids.trace_id(trace)
    span_ids = {s.id: ids.span_id(trace, s) for s in trace.spans}
    warnings: list[str] = []
    wire: dict[str, Any] = {"id": trace_id, "name": _trace_name(trace)}
    wire["start_time"] = to_iso(trace.started_at)
    _put(wire, "end_time", trace.ended_at and to_iso(trace.ended_at))
    _put(wire, "input", io_to_json(trace.input, m))
    _put(wire, "output", io_to_json(trace.output, m))
    metadata = {rules.metadata.rename.get(k, k): v for k, v in trace.metadata.items()}
    _put(wire, "metadata", metadata or None)
    _put(wire, "tags", list(dict.fromkeys(trace.tags)) or None)
    _put(wire, "error_info", _error_to_opik(trace.error))
    _put(wire, "thread_id", trace.thread_id)
    _put(wire, "feedback_scores", _scores_to_opik(trace.scores, m) or None)
    spans = []
    for span in trace.spans:
        parent = None
        if span.parent_id is not None:
            parent = span_ids.get(span.parent_id)
            if parent is None:
                warnings.append(
                    f"trace {trace.id}: span {span.id} names parent {span.parent_id!r}, which is "
                    "not in the trace; written as a top-level span (the parent is remembered)"
                )
        spans.append(_span_to_opik(span, span_ids[span.id], trace_id, parent, m))
    return OpikTrace(with_residual(wire, trace.extras, PLATFORM), spans, warnings)


def _span_to_opik(
    span: Span, span_id: str, trace_id: str, parent: str | None, m: Mappings
) -> dict[str, Any]:
    wire: dict[str, Any] = {"id": span_id, "trace_id": trace_id}
    _put(wire, "parent_span_id", parent)
    # Never nameless (`opik import` would say `imported_span`): the kind reads better; the stash
    # restores a missing name on the way back.
    wire["name"] = span.name or span.kind or "span"
    wire["type"] = m.to_opik.span_type(span.kind)
    wire["start_time"] = to_iso(span.started_at)
    _put(wire, "end_time", span.ended_at and to_iso(span.ended_at))
    _put(wire, "input", io_to_json(span.input, m))
    _put(wire, "output", io_to_json(span.output, m))
    metadata = dict(span.metadata)
    if span.params:
        metadata["params"] = span.params
    if span.contexts is not None:
        metadata["contexts"] = span.contexts
    _put(wire, "metadata", metadata or None)
    model, provider = span.model, span.provider
    if model and m.to_opik.model.split_vendor_prefix and "/" in model:
        prefix, rest = model.split("/", 1)
        if provider in (None, prefix):
            provider, model = prefix, rest
    _put(wire, "model", model)
    _put(wire, "provider", provider)
    _put(wire, "tags", list(dict.fromkeys(span.tags)) or None)
    usage = dict(span.usage)
    if {"prompt_tokens", "completion_tokens"} <= usage.keys() and "total_tokens" not in usage:
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    _put(wire, "usage", usage or None)
    _put(
        wire,
        "total_estimated_cost",
        span.cost if span.cost is not None and span.cost >= 0 else None,
    )
    _put(wire, "error_info", _error_to_opik(span.error))
    if span.first_token_at is not None:
        wire["ttft"] = float(to_ms(span.first_token_at) - to_ms(span.started_at))
    _put(wire, "feedback_scores", _scores_to_opik(span.scores, m) or None)
    return with_residual(wire, span.extras, PLATFORM)


def _scores_to_opik(scores: list[Score], m: Mappings) -> list[dict[str, Any]]:
    """The scores Opik can hold: a verdict in the configured statuses, one per name."""
    rules = m.to_opik.scores
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for score in scores:
        value = score.value
        if value is None and score.passed is not None:
            value = rules.passed_value if score.passed else rules.failed_value
        if (
            score.status not in rules.statuses
            or value is None
            or not math.isfinite(value)
            or abs(value) > _SCORE_LIMIT
            or not score.name.strip()
            or score.name in seen
        ):
            continue  # kept in the stash's patch instead (DESIGN.md: "kept in trace metadata")
        seen.add(score.name)
        wire: dict[str, Any] = {
            "name": score.name,
            "value": value,
            "source": score.source or rules.source,
        }
        _put(wire, "category_name", score.label)
        _put(wire, "reason", score.reason)
        out.append(with_residual(wire, score.extras, PLATFORM))
    return out


def _error_to_opik(error: ErrorInfo | None) -> dict[str, Any] | None:
    if error is None:
        return None
    wire: dict[str, Any] = {"exception_type": error.exception_type or "Error"}
    _put(wire, "message", error.message)
    wire["traceback"] = "\n".join(error.stacktrace) or error.message or "(no traceback)"
    return wire


def io_to_json(value: IOValue | None, m: Mappings) -> Any:
    """A typed value as the Opik JSON that `json_to_io` maps back to exactly the same value.

    Opik takes an object, an array of objects or a string. A `json` value that is one of those
    and reads back as itself is written as it is; other types become a one-key object
    (`{"messages": [...]}`, `{"text": "..."}`); anything else is escaped as `{"json": value}`.
    The mapping is a bijection, so both round trips are exact.
    """
    if value is None:
        return None
    keys = m.to_opik.io
    if value.type == "json":
        return value.value if _plain(value.value, m) else {keys.get("json", "json"): value.value}
    return {keys.get(value.type, value.type): value.value}


def json_to_io(value: Any, m: Mappings) -> IOValue | None:
    """Opik JSON as a typed value (inverse of `io_to_json`); None stays None."""
    if value is None:
        return None
    kind, inner = _io_parts(value, m)
    return IOValue(type=kind, value=inner)


def _io_parts(value: Any, m: Mappings) -> tuple[str, Any]:
    """The type and value `json_to_io` reads `value` (not None) as."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, inner),) = value.items()
        kind = m.to_langwatch.io.get(key)
        if kind == "json" and not _plain(inner, m):
            return "json", inner
        if kind not in (None, "json") and _fits(kind, inner):
            return kind, inner
    return "json", value


def _plain(value: Any, m: Mappings) -> bool:
    """True when `value` is valid Opik IO that `json_to_io` reads as the `json` value itself."""
    if isinstance(value, str):
        return True
    if isinstance(value, list):
        return all(isinstance(item, dict) for item in value)
    if not isinstance(value, dict):
        return False
    if len(value) != 1:
        return True
    ((key, inner),) = value.items()
    kind = m.to_langwatch.io.get(key)
    if kind is None:
        return True
    return _plain(inner, m) if kind == "json" else not _fits(kind, inner)


def _fits(kind: str, value: Any) -> bool:
    if kind in ("text", "raw"):
        return isinstance(value, str)
    if kind == "chat_messages":
        return isinstance(value, list) and all(isinstance(v, dict) for v in value)
    if kind == "list":
        return isinstance(value, list) and all(isinstance(v, dict) and "type" in v for v in value)
    return isinstance(value, dict)


# ---------------------------------------------------------------------------------------- read


def trace_from_opik(
    trace: dict[str, Any],
    spans: list[dict[str, Any]],
    *,
    project: str,
    mappings: Mappings,
    where: str = "",
) -> Trace:
    """Opik records (`Trace_Public`, its `Span_Public`s) as one canonical trace.

    Raises `RecordError` naming the field when a record does not validate or holds what no
    destination can store, and naming the exception when anything else in it fails to convert
    (`_decoding.py`). Repeated span ids and parent cycles are settled by the rules of
    `_trees.py`; what that skips, warns or dead-letters is published to the current collector.
    """
    label = where or f"trace {trace.get('id', '?') if isinstance(trace, dict) else '?'}"
    with decoding(label, trace) as notes:
        if not isinstance(trace, dict) or not isinstance(spans, list):
            raise RecordError("not a trace object with a list of spans")
        check_records([(trace, ()), *((span, ("spans", i)) for i, span in enumerate(spans))])
        metadata = trace.get("metadata")
        stash = parse_stash(metadata.get(STASH_KEY)) if isinstance(metadata, dict) else None
        spans = unique_spans(
            spans,
            id_key="id",
            where=label,
            notes=notes,
            rejected=notes.rejected,
            scores_key="feedback_scores",
        )
        canonical = _decode(
            trace, spans, mappings, stash=stash or {}, project=project, warnings=notes.warnings
        )
        if canonical.source.platform == PLATFORM:
            canonical = _keep_residuals(canonical, trace, spans, mappings)
    return canonical


def _decode(
    trace: dict[str, Any],
    spans: list[dict[str, Any]],
    m: Mappings,
    *,
    stash: dict[str, Any],
    project: str = "",
    warnings: list[str] | None = None,
) -> Trace:
    """The canonical trace of Opik records, a copy's stash applied (`_stash.CopyReader`); tree
    repairs, and what changed in a copy since it was written, are added to `warnings`.

    Every span is validated before the trace (the first that does not validate is the error).
    """
    wire_spans = [OSpan.model_validate(raw) for raw in spans]
    wire = OTrace.model_validate(trace)
    source = (
        Provenance.model_validate(stash["source"])
        if isinstance(stash.get("source"), dict)
        else Provenance(platform=PLATFORM, project=project, id=wire.id)
    )
    metadata = _plain_metadata(wire.metadata)
    rename = m.to_langwatch.metadata.rename
    started_at = from_iso(wire.start_time)
    reader = CopyReader(stash, PLATFORM)
    copied = []
    for wire_span in wire_spans:
        copied.append(reader.span_fields(_span_fields(wire_span, m), _span_stash(wire_span)))
    tree, repairs = break_cycles(
        reader.adopt_new_spans(copied),
        trace_id=wire.id,
        remembered=source.platform == PLATFORM,
    )
    if warnings is not None:
        warnings += repairs
    fields: dict[str, Any] = {
        "id": wire.id,
        "source": source,
        "name": wire.name,
        "thread_id": wire.thread_id,
        "started_at": started_at,
        "ended_at": from_iso(wire.end_time) if wire.end_time else None,
        "input": json_to_io(wire.input, m),
        "output": json_to_io(wire.output, m),
        "metadata": {rename.get(k, k): v for k, v in metadata.items()},
        "tags": list(wire.tags or []),
        "error": _error_from_opik(wire.error_info),
        "spans": tree,
        "scores": [_score_from_opik(s, m) for s in wire.feedback_scores or []],
        "extras": {},
    }
    return reader.trace_fields(fields, warnings)


def _span_stash(wire: OSpan) -> dict[str, Any] | None:
    return parse_stash(wire.metadata.get(STASH_KEY)) if isinstance(wire.metadata, dict) else None


def _span_fields(wire: OSpan, m: Mappings) -> dict[str, Any]:
    """The span as its Opik record says, as the keyword arguments of every field of `Span`
    (a copy's stash is merged in by the caller before they are validated)."""
    metadata = _plain_metadata(wire.metadata)
    params = metadata.pop("params") if isinstance(metadata.get("params"), dict) else {}
    contexts = metadata.pop("contexts") if isinstance(metadata.get("contexts"), list) else None
    usage = dict(wire.usage or {})
    if (
        usage.get("total_tokens")
        == usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
        and {
            "prompt_tokens",
            "completion_tokens",
        }
        <= usage.keys()
    ):
        del usage["total_tokens"]
    model = wire.model
    if model and wire.provider and m.to_langwatch.model.join_provider:
        model = f"{wire.provider}/{model}"
    started_at = from_iso(wire.start_time)
    return {
        "id": wire.id,
        "parent_id": wire.parent_span_id,
        "name": wire.name,
        "kind": m.to_langwatch.span_type(wire.type or "general"),
        "started_at": started_at,
        "ended_at": from_iso(wire.end_time) if wire.end_time else None,
        "first_token_at": started_at + timedelta(milliseconds=wire.ttft)
        if wire.ttft is not None
        else None,
        "input": json_to_io(wire.input, m),
        "output": json_to_io(wire.output, m),
        "model": model,
        "provider": None if model != wire.model else wire.provider,
        "usage": usage,
        "cost": wire.total_estimated_cost,
        "params": params,
        "metadata": metadata,
        "tags": list(wire.tags or []),
        "contexts": contexts,
        "error": _error_from_opik(wire.error_info),
        "scores": [_score_from_opik(s, m) for s in wire.feedback_scores or []],
        "extras": {},
    }


def _score_from_opik(wire: OScore, m: Mappings) -> Score:
    return Score(
        name=wire.name,
        value=wire.value,
        label=wire.category_name,
        reason=wire.reason,
        status=m.to_langwatch.scores.status,
        source=None if wire.source == m.to_opik.scores.source else wire.source,
    )


def _error_from_opik(wire: OErrorInfo | None) -> ErrorInfo | None:
    if wire is None:
        return None
    stacktrace = [wire.traceback] if wire.traceback is not None else []
    return ErrorInfo(
        message=wire.message, exception_type=wire.exception_type, stacktrace=stacktrace
    )


def _keep_residuals(
    trace: Trace, raw: dict[str, Any], raw_spans: list[dict[str, Any]], m: Mappings
) -> Trace:
    """Put in `extras["opik"]` what re-encoding would not reproduce of the Opik records.

    One encoding serves the spans and the trace: a trace's record does not depend on its
    spans' extras (only on their names, for `_trace_name`), so it is the same before and after
    the spans' residuals are set."""
    record = _encode(trace, m, SourceTimeIds())
    spans = []
    for span, raw_span, back in zip(trace.spans, raw_spans, record.spans, strict=True):
        residual = make_patch(_placeless(raw_span), _placeless(back))
        spans.append(span.model_copy(update={"extras": {PLATFORM: residual}}) if residual else span)
    update: dict[str, Any] = {"spans": spans}
    residual = make_patch(_placeless(raw), _placeless(record.trace))
    if residual:
        update["extras"] = {PLATFORM: residual}
    return trace.model_copy(update=update)


def raw_counts(trace: Any, spans: Any) -> Counts:
    """What raw Opik records hold, as far as it can be told (for a dead-lettered trace)."""
    spans = [s for s in spans if isinstance(s, dict)] if isinstance(spans, list) else []
    scores = trace.get("feedback_scores") if isinstance(trace, dict) else None
    n_scores = len(scores) if isinstance(scores, list) else 0
    for span in spans:
        span_scores = span.get("feedback_scores")
        n_scores += len(span_scores) if isinstance(span_scores, list) else 0
    return Counts(traces=1, spans=len(spans), scores=n_scores)


# ------------------------------------------------------------------------------------- helpers


def _put(wire: dict[str, Any], key: str, value: Any) -> None:
    """Set `key` only when there is a value: Opik wants absent fields omitted, not null."""
    if value is not None:
        wire[key] = value


def _plain_metadata(value: Any) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k != STASH_KEY} if isinstance(value, dict) else {}


def _placeless(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in _PLACE_FIELDS}


# ------------------------------------------------------------------------------------- threads


def thread_data_to_opik(thread: Thread, m: Mappings) -> dict[str, Any] | None:
    """A thread's own data (scores, tags, status) as Opik holds it; None when it has none."""
    if not (thread.scores or thread.tags or thread.status):
        return None
    data: dict[str, Any] = {"thread_id": thread.id}
    _put(data, "feedback_scores", _scores_to_opik(thread.scores, m) or None)
    _put(data, "tags", list(dict.fromkeys(thread.tags)) or None)
    _put(data, "status", thread.status)
    return data


def thread_data_from_opik(data: dict[str, Any], m: Mappings) -> dict[str, Any]:
    """Keyword arguments for `Thread` from an Opik thread (`TraceThread` or our thread file).

    A thread score that does not validate or holds what no destination can store (NaN) is
    dead-lettered on its own (kind `score`, the raw score as the record); tags that are not a
    list of storable values and a status that is not text are left out with a warning. Both go
    to the current collector (`_decoding.py`), so the thread is read.
    """
    thread_id = data.get("thread_id", data.get("id", "?"))
    scores: list[Score] = []
    with decoding(f"thread {thread_id}", data) as notes:
        raw_scores = data.get("feedback_scores") or []
        for raw in raw_scores if isinstance(raw_scores, list) else [raw_scores]:
            name = raw.get("name", "?") if isinstance(raw, dict) else "?"
            try:
                check_values(raw)
                scores.append(_score_from_opik(OScore.model_validate(raw), m))
            except (RecordError, ValidationError) as exc:
                reason = (
                    exc.reason if isinstance(exc, RecordError) else describe_validation_error(exc)
                )
                where = f"thread {thread_id}: score {name}"
                notes.rejected.append(Rejected("score", where, reason, raw))
        tags = data.get("tags") or []
        if not isinstance(tags, list) or value_problem(tags) is not None:
            notes.warnings.append(f"thread {thread_id}: tags {tags!r} cannot be read; left out")
            tags = []
        status = data.get("status")
        if status is not None and not isinstance(status, str):
            notes.warnings.append(f"thread {thread_id}: status {status!r} is not text; left out")
            status = None
    return {"scores": scores, "tags": [str(t) for t in tags], "status": status}
