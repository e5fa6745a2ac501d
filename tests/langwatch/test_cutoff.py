"""`IngestionCutoff`: LangWatch's 31-day rule over canonical traces, without HTTP (`cutoff.py`;
the sink's tests pin it end to end through the collector)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from tracebridge import Provenance, Trace
from tracebridge._langwatch.convert import trace_from_wire
from tracebridge._langwatch.cutoff import IngestionCutoff, Verdict
from tracebridge._time import to_ms

from ..factories import langwatch_trace

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _trace(i: int, age: timedelta, *, born: str = "opik", project: str = "project_test") -> Trace:
    raw = langwatch_trace(
        random.Random(i),
        trace_id=f"t{i}",
        started_at_ms=to_ms(NOW - age),
        thread_id=None,
        project_id=project,
    )
    trace, _ = trace_from_wire(raw, project=project)
    if born != "langwatch":
        trace = trace.model_copy(
            update={"source": Provenance(platform=born, project="p", id=trace.id)}
        )
    return trace


class _Target:
    def __init__(self, names: tuple[str, ...]) -> None:
        self.names, self.asked = names, 0

    async def __call__(self) -> tuple[str, ...]:
        self.asked += 1
        return self.names


def _rule(shift: bool = False, names: tuple[str, ...] = ()) -> tuple[IngestionCutoff, _Target]:
    target = _Target(names)
    return IngestionCutoff(now=lambda: NOW, shift=shift, target_project=target), target


@pytest.mark.anyio
async def test_fresh_traces_are_kept_and_old_copies_refused() -> None:
    rule, target = _rule()
    fresh, old = _trace(1, DAY), _trace(2, 40 * DAY)
    assert await rule.judge([fresh]) == [Verdict("keep")]
    assert await rule.judge([fresh, old]) == [Verdict("keep"), Verdict("reject")]
    assert target.asked == 0  # no LangWatch-born trace: the target does not matter
    # A trace a minute from the cutoff is treated as old (the trip takes time).
    edge = _trace(3, timedelta(days=31) - timedelta(seconds=30))
    assert await rule.judge([edge]) == [Verdict("reject")]


@pytest.mark.anyio
async def test_shifted_copies_start_a_day_inside_the_window_and_move_together() -> None:
    rule, _ = _rule(shift=True)
    first, second = _trace(4, 45 * DAY), _trace(5, 44 * DAY)
    verdicts = await rule.judge([first, second])
    assert [v.action for v in verdicts] == ["shift", "shift"]
    moved = [
        to_ms(t.started_at) + v.shift_ms for t, v in zip((first, second), verdicts, strict=True)
    ]
    assert moved[0] == to_ms(NOW - 30 * DAY)
    assert moved[1] - moved[0] == to_ms(second.started_at) - to_ms(first.started_at)
    assert rule.shifted == 2


@pytest.mark.anyio
async def test_old_originals_of_the_target_project_are_skipped() -> None:
    old = _trace(6, 40 * DAY, born="langwatch", project="project_test")
    rule, target = _rule(shift=True, names=("project_test", "slug"))
    assert await rule.judge([old]) == [Verdict("skip")]
    assert target.asked == 1
    elsewhere, _ = _rule(shift=False, names=("another_project",))
    assert await elsewhere.judge([old]) == [Verdict("reject")]
    unknown, _ = _rule(shift=False, names=())
    assert await unknown.judge([old]) == [Verdict("reject")]
