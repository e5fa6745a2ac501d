"""Spans of many traces per request, as Opik's own `opik export` reads them (`reference/opik-api.md`
§2.6, §2.7, §11).

Contract: `BulkSpans.read(traces)` returns every span of each given trace (a wire trace with its
`id` and `span_count`), keyed by the trace's lower-case id. It reads `GET /v1/private/spans` over
the whole project, paged by `page`/`size` with `truncate=false`, filtered on a `trace_id` range
(`>` a UUID v7 bound just below the smallest id, `<` one just above the largest: there is no `in`
operator, and the span stream's rate limit is far lower, §11), and groups the answer by
`trace_id`, keeping only the traces asked for. Traces go in windows of consecutive ids whose
`span_count`s add up to at most `budget` spans, so one window is usually one request and memory
holds one window's spans.

What the range read is not trusted with, it reads per trace (`GET /spans?trace_id=`, `per_trace`):

* a trace whose grouped spans disagree with its `span_count` (a span written or deleted between
  the trace listing and the span read, or a page shifted by a concurrent insert: page/size has no
  cursor), counted in `SpanStats.mismatched`;
* a trace without a `span_count` (nothing to check against), or alone in its window;
* every trace of a window whose range holds far more spans than its traces have (`total` above
  the first page's size, which is twice the expected count plus `_SLACK` and at least
  `_FIRST_PAGE`: other traces' spans interleave, e.g. a sparse set of changed traces on the
  update axis), counted in `SpanStats.sparse`; that first page is the only request spent on
  finding it out. Such a window is first split once into groups of traces near in id time, at
  the density its `total` showed (`_split`), and each group is read by range, or per trace
  when it is a single trace or its range is sparse too.

A trace whose `span_count` is 0 and that is alone in its window is not read at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["SPAN_BUDGET", "BulkSpans", "SpanStats", "id_range", "last_page", "windows"]

#: Spans per window (and the largest page asked for): the bound on what one read holds.
SPAN_BUDGET = 5000
_SLACK = 100  # spans of other traces a window's range may hold before it is read per trace
#: The smallest first page of a range read: a window whose range holds this many spans of
#: other traces (a conversation among others) still costs one request.
_FIRST_PAGE = 1000

#: One page of `GET /spans` for (page, size, filters): the answer's body (`content`, `total`).
SpanPage = Callable[[int, int, list[dict[str, str]]], Awaitable[dict[str, Any]]]
#: Every span of one trace, read on its own (`GET /spans?trace_id=`).
PerTrace = Callable[[str], Awaitable[list[dict[str, Any]]]]
Json = dict[str, Any]


def last_page(body: Json, read: int, size: int) -> bool:
    """True after the last page: an empty one, or once `read` (items so far) reaches `total`.

    Without `total`, a short page ends it. A server that pages by a smaller `size` than asked
    for still reports `total`, so nothing is cut short.
    """
    if not body["content"]:
        return True
    total = body.get("total")
    if isinstance(total, int):
        return read >= total
    return len(body["content"]) < size


def span_count(raw: Json) -> int | None:
    """The trace's `span_count` (§2.5), or None when it has none that counts."""
    value = raw.get("span_count")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _trace_id(raw: Json) -> str:
    return str(raw["id"]).lower()


def windows(traces: list[Json], budget: int = SPAN_BUDGET) -> list[list[Json]]:
    """Traces in windows of consecutive ids (newest first) of at most `budget` spans each; a
    trace without a `span_count`, or with more than `budget`, is a window of its own."""
    ordered = sorted({_trace_id(t): t for t in traces}.values(), key=_trace_id, reverse=True)
    out: list[list[Json]] = []
    current: list[Json] = []
    spans = 0
    for raw in ordered:
        count = span_count(raw)
        if count is None or count > budget:
            out += [current, [raw]] if current else [[raw]]
            current, spans = [], 0
            continue
        if current and spans + count > budget:
            out.append(current)
            current, spans = [], 0
        current.append(raw)
        spans += count
    if current:
        out.append(current)
    return out


def _bound(trace_id: str, ms: int, *, high: bool) -> str:
    """A UUID v7 string at millisecond `ms`: the largest one (`high`) or the smallest."""
    if ms < 0 or ms >= 1 << 48:  # an id whose time field cannot move further: its own prefix
        return trace_id[:13] + ("-ffff-ffff-ffffffffffff" if high else "-0000-0000-000000000000")
    hexed = f"{ms:012x}"
    tail = "-7fff-bfff-ffffffffffff" if high else "-7000-8000-000000000000"
    return f"{hexed[:8]}-{hexed[8:]}{tail}"


def id_range(lo: str, hi: str) -> list[dict[str, str]]:
    """The `trace_id` filters that hold every id from `lo` to `hi` (lower-case UUID strings,
    compared as text as the server does): `>` the largest v7 id of the millisecond before
    `lo`'s, `<` the smallest of the millisecond after `hi`'s (§11; both are valid v7 ids)."""
    lo_ms, hi_ms = _ms(lo), _ms(hi)
    return [
        {"field": "trace_id", "operator": ">", "value": _bound(lo, lo_ms - 1, high=True)},
        {"field": "trace_id", "operator": "<", "value": _bound(hi, hi_ms + 1, high=False)},
    ]


def _ms(trace_id: str) -> int:
    """The UUID v7 time field (ms) of a lower-case id string."""
    return int(trace_id[:8] + trace_id[9:13], 16)


def _split(window: list[Json], total: int) -> list[list[Json]]:
    """A sparse window in groups of traces near enough in id time that their range should hold
    at most half a first page of spans, at the density the window's range showed (`total`
    spans over its id time): a conversation among other traffic is still one request, a trace
    far from the others is read on its own."""
    ids = [_trace_id(raw) for raw in window]
    try:
        extent = max(1, _ms(ids[0]) - _ms(ids[-1]) + 1)
        reach = (_FIRST_PAGE / 2) / (max(total, 1) / extent)
        groups: list[list[Json]] = []
        for raw, trace_id in zip(window, ids, strict=True):
            if groups and _ms(_trace_id(groups[-1][0])) - _ms(trace_id) <= reach:
                groups[-1].append(raw)
            else:
                groups.append([raw])
    except ValueError:  # not UUID-shaped ids: no time to go by
        return [[raw] for raw in window]
    return groups


@dataclass
class SpanStats:
    """What bulk reads cost and where they fell back, for tests and the report."""

    range_requests: int = 0  # GET /spans pages read by trace_id range
    per_trace: int = 0  # traces read on their own
    mismatched: int = 0  # traces whose grouped spans disagreed with their span_count
    sparse: int = 0  # windows whose range held far more spans than expected


class BulkSpans:
    """Reads the spans of many traces per request (module docstring)."""

    def __init__(self, page: SpanPage, per_trace: PerTrace, budget: int = SPAN_BUDGET) -> None:
        self._page, self._per_trace, self.budget = page, per_trace, budget
        self.stats = SpanStats()

    async def read(self, traces: list[Json]) -> dict[str, list[Json]]:
        """Every span of each trace, by lower-case trace id (module docstring)."""
        out: dict[str, list[Json]] = {}
        for window in windows(traces, self.budget):
            out |= await self.read_window(window)
        return out

    async def read_window(self, window: list[Json], *, split: bool = True) -> dict[str, list[Json]]:
        """One window of `windows()`: one range read (usually one request), then checks. A
        window found sparse is split once by the density its `total` shows (`_split`)."""
        if len(window) == 1:
            (raw,) = window
            if span_count(raw) == 0:
                return {_trace_id(raw): []}
            return {_trace_id(raw): await self._one(_trace_id(raw))}
        grouped, total = await self._range(window)
        out: dict[str, list[Json]] = {}
        if grouped is None:
            for group in _split(window, total) if split else [[raw] for raw in window]:
                out |= await self.read_window(group, split=False)
            return out
        for raw in window:
            trace_id = _trace_id(raw)
            spans = list(grouped[trace_id].values())
            if len(spans) == span_count(raw):
                out[trace_id] = spans
                continue
            self.stats.mismatched += 1
            out[trace_id] = await self._one(trace_id)
        return out

    async def _one(self, trace_id: str) -> list[Json]:
        self.stats.per_trace += 1
        return await self._per_trace(trace_id)

    async def _range(self, window: list[Json]) -> tuple[dict[str, dict[Any, Json]] | None, int]:
        """The window's spans grouped by trace id (then span id: a span a shifted page repeats
        counts once), or None when the range holds far more than the window's spans; and the
        range's `total`."""
        expected = sum(span_count(raw) or 0 for raw in window)
        size = min(self.budget, max(2 * expected + _SLACK, _FIRST_PAGE))
        filters = id_range(_trace_id(window[-1]), _trace_id(window[0]))
        grouped: dict[str, dict[Any, Json]] = {_trace_id(raw): {} for raw in window}
        page, read = 1, 0
        while True:
            body = await self._page(page, size, filters)
            self.stats.range_requests += 1
            total = body.get("total")
            if page == 1 and isinstance(total, int) and total > max(size, 2 * expected + _SLACK):
                self.stats.sparse += 1
                return None, total
            for position, span in enumerate(body["content"]):
                if not isinstance(span, dict):
                    continue
                spans = grouped.get(str(span.get("trace_id", "")).lower())
                if spans is not None:
                    spans[span.get("id") or (page, position)] = span
            read += len(body["content"])
            if last_page(body, read, size):
                return grouped, total if isinstance(total, int) else read
            page += 1
