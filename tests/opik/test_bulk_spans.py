"""`bulk_spans`: windows of traces by span budget, the `trace_id` range bounds (§11), and the
split of a sparse window; the reads themselves are pinned against the fake in
`test_api_source.py`."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tracebridge._opik.bulk_spans import BulkSpans, id_range, windows

from ..fakes.opik import uuid7

Json = dict[str, Any]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _trace(ms: int, spans: int | None) -> Json:
    return {"id": uuid7(ms), "span_count": spans}


def test_windows_hold_consecutive_ids_up_to_the_budget() -> None:
    traces = [_trace(1000 + i, n) for i, n in enumerate([3, 3, 3, None, 9, 2, 0, 2])]
    got = windows(list(reversed(traces)), budget=6)
    ids = [[t["id"] for t in w] for w in got]
    newest_first = sorted((t["id"] for t in traces), reverse=True)
    assert [i for w in ids for i in w] == newest_first
    counts = [[t["span_count"] for t in w] for w in got]
    assert counts == [[2, 0, 2], [9], [None], [3, 3], [3]]  # 9 > budget: alone


def test_the_range_bounds_are_v7_ids_around_the_window() -> None:
    lo, hi = uuid7(5_000), uuid7(9_000)
    low, high = id_range(lo, hi)
    assert (low["operator"], high["operator"]) == (">", "<")
    for ms in (5_000, 7_000, 9_000):  # every id from lo's millisecond to hi's is inside
        for _ in range(20):
            assert low["value"] < uuid7(ms) < high["value"]
    for ms in (4_999, 9_001):
        for _ in range(20):
            assert not low["value"] < uuid7(ms) < high["value"]
    assert {uuid.UUID(low["value"]).version, uuid.UUID(high["value"]).version} == {7}


@pytest.mark.anyio
async def test_a_sparse_window_is_split_by_the_density_it_showed() -> None:
    """Three traces near each other and one far off, in a range holding 10,000 spans of other
    traces: one wasted first page, then one range read for the three and one read of the
    fourth on its own."""
    near = [_trace(1_000_000 + i, 2) for i in range(3)]
    far = _trace(2_000_000, 2)
    window = sorted([*near, far], key=lambda t: t["id"], reverse=True)
    asked: list[tuple[int, list[dict[str, str]]]] = []

    async def page(number: int, size: int, filters: list[dict[str, str]]) -> Json:
        asked.append((size, filters))
        inside = [t for t in window if filters[0]["value"] < t["id"] < filters[1]["value"]]
        spans = [{"id": f"{t['id']}-{k}", "trace_id": t["id"]} for t in inside for k in range(2)]
        total = 10_000 if len(inside) == 4 else len(spans)
        return {"content": spans[:size], "total": total}

    async def per_trace(trace_id: str) -> list[Json]:
        return [{"id": f"{trace_id}-{k}", "trace_id": trace_id} for k in range(2)]

    reader = BulkSpans(page, per_trace)
    got = await reader.read(window)
    assert {k: len(v) for k, v in got.items()} == {t["id"]: 2 for t in window}
    assert len(asked) == 2
    assert (reader.stats.sparse, reader.stats.per_trace, reader.stats.mismatched) == (1, 1, 0)
