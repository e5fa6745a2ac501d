"""Span trees as canonical records hold them: one span per id, and no parent cycles.

Both decoders apply these rules when they build a canonical trace, so every destination gets
a tree it can show and the counts stay true. Both run in O(n) without recursion (20,000-span
traces and chains as deep as the trace is long are fine).

**Repeated span ids** (`unique_spans`, on the raw spans, before anything else reads them).
Both platforms key a span by its id, so a trace cannot hold two spans under one id: written
as they are, the destination keeps one of them and reports both (the Opik API kept 38 of 39
reported spans), and ids derived from the span id make one span its own parent. So:
- a span repeated with *identical* content is what at-least-once exporters produce: it is
  kept once, and each repeat counts as skipped by the rule `REPEATED_SPAN`;
- a span repeated with *different* content is a conflict tracebridge cannot settle for the
  user: the first occurrence (in the record's order) is kept, with the children and scores
  that name its id, and each later one is dead-lettered on its own (kind `span`, the raw span
  as the record), so the trace is still copied and nothing is dropped unseen. Merging would
  invent a span neither source holds; a derived id would invent an id the origin never had.

**Parent cycles** (`break_cycles`, on the canonical spans). A span that is its own parent, two
spans that name each other, a longer loop, or a loop through what should be the root (the
trace then has no root at all): no platform can show such a tree. Each cycle is broken at the
span of the cycle that started first (ties: the smaller id), which is read as a top-level span,
and a warning names the cycle. The original parent is remembered the way an orphan's is: in
the origin platform's extras (the decoder's residual), which the stash carries through the
other platform, so writing the trace back to where it was born restores it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ._interfaces import Counts, Notes, Rejected
from ._models import Span
from ._stash import same

__all__ = ["REPEATED_SPAN", "break_cycles", "unique_spans"]

REPEATED_SPAN = "spans repeated in their trace with identical content (kept once)"
_CYCLE_IDS_SHOWN = 4


def unique_spans(
    spans: list[Any],
    *,
    id_key: str,
    where: str,
    notes: Notes,
    rejected: list[Rejected],
    scores_key: str | None = None,
) -> list[Any]:
    """`spans` (raw wire dicts) with one span per id (see the module docstring).

    Identical repeats are counted in `notes` as skipped; differing ones are appended to
    `rejected`. `scores_key` names where a span holds its scores (Opik's `feedback_scores`),
    so a left-out span's scores are counted with it. Spans without a string id are kept as
    they are (validation names them). Returns `spans` itself when no id repeats.
    """
    first: dict[str, Any] = {}
    kept: list[Any] = []
    occurrences: dict[str, int] = {}
    for span in spans:
        span_id = span.get(id_key) if isinstance(span, dict) else None
        if not isinstance(span_id, str):
            kept.append(span)
            continue
        if span_id not in first:
            first[span_id] = span
            kept.append(span)
            continue
        occurrences[span_id] = occurrences.get(span_id, 1) + 1
        scores = span.get(scores_key) if scores_key else None
        n_scores = len(scores) if isinstance(scores, list) else 0
        if same(span, first[span_id]):
            notes.skip(1, "spans", REPEATED_SPAN)
            notes.skip(n_scores, "scores", REPEATED_SPAN)
            continue
        rejected.append(
            Rejected(
                "span",
                f"{where}: span {span_id} (occurrence {occurrences[span_id]})",
                f"span id {span_id!r} appears more than once in the trace with different "
                "content; a platform keeps one span per id, so the first occurrence is written "
                "and this one is dead-lettered",
                span,
                Counts(spans=1, scores=n_scores),
            )
        )
    return kept if len(kept) < len(spans) else spans


def _find_cycles(parents: Sequence[int | None]) -> list[list[int]]:
    """Every cycle of the parent links (`parents[i]`: index of i's parent, None for none).

    Each cycle lists its spans child first (`c[k + 1]` is the parent of `c[k]`). Every index is
    walked once: a walk stops at a root, at a span already settled, or where it meets itself.
    """
    new, walking, settled = 0, 1, 2
    state = [new] * len(parents)
    cycles: list[list[int]] = []
    for start in range(len(parents)):
        walk: list[int] = []
        node: int | None = start
        while node is not None and state[node] == new:
            state[node] = walking
            walk.append(node)
            node = parents[node]
        if node is not None and state[node] == walking:
            cycles.append(walk[walk.index(node) :])
        for visited in walk:
            state[visited] = settled
    return cycles


def _cycle_warning(trace_id: str, cycle: list[Span], remembered: bool) -> str:
    kept = "the parent is remembered" if remembered else "the parent is dropped"
    head = cycle[0]
    if len(cycle) == 1:
        return (
            f"trace {trace_id}: span {head.id} names itself as its parent; read as a top-level "
            f"span ({kept})"
        )
    ids = [s.id for s in cycle[:_CYCLE_IDS_SHOWN]]
    loop = " -> ".join([*ids, "…"] if len(cycle) > _CYCLE_IDS_SHOWN else [*ids, head.id])
    return (
        f"trace {trace_id}: spans {loop} form a parent cycle ({len(cycle)} spans, each naming "
        f"the next as its parent); span {head.id}, the first of them to start, is read as a "
        f"top-level span ({kept}: {head.parent_id!r})"
    )


def _start_order(span: Span) -> tuple[datetime, str]:
    return span.started_at, span.id


def break_cycles(
    spans: list[Span], *, trace_id: str, remembered: bool = True
) -> tuple[list[Span], list[str]]:
    """`spans` with every parent cycle broken (see the module docstring), and one warning each.

    `remembered` says whether the caller keeps the original parent (an origin record's
    residual does; the warning says so). Spans keep their order; a span whose parent is not in
    the trace (an orphan) is left as it is: the encoders write it top-level and warn.
    Returns `spans` itself when there is no cycle.
    """
    position = {span.id: i for i, span in enumerate(spans)}
    parents = [position.get(s.parent_id) if s.parent_id is not None else None for s in spans]
    cycles = _find_cycles(parents)
    if not cycles:
        return spans, []
    repaired = list(spans)
    warnings = []
    for cycle in cycles:
        breaker = min(range(len(cycle)), key=lambda k: _start_order(spans[cycle[k]]))
        ordered = [spans[i] for i in cycle[breaker:] + cycle[:breaker]]
        warnings.append(_cycle_warning(trace_id, ordered, remembered))
        repaired[cycle[breaker]] = ordered[0].model_copy(update={"parent_id": None})
    return repaired, warnings
