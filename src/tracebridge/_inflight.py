"""Requests in flight: run a sink's independent calls concurrently, bounded, keeping every outcome.

`in_order(calls, limit)` runs at most `limit` of `calls` at once and returns their results in the
order of `calls`, as a loop would. Unlike a task group's usual "first failure cancels the rest",
**every call runs to its end** even when another fails: what the others sent was acknowledged by
the server, and the sink must record it (an id map's acknowledgements, the ids a switch of id
mode adopts). Only then is the failure raised: that of the first failing call in order, the one
a sequential loop would have stopped at, with the others' as notes. Cancellation (Ctrl-C, a stop)
is not an outcome: it cancels every call at once.

With `first_alone`, the first call runs by itself before the others start, and its failure is
raised at once, as a loop's would be: a sink's first request of a run tells whether the server
takes the credentials, the quota and the data at all, before `limit` requests meet the same
refusal.

Our own ~40 lines rather than a library: `anyio`'s task group and `CapacityLimiter` do the work;
what they lack is only the "keep every outcome, raise the first in order" rule above.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar, cast

import anyio

__all__ = ["in_order"]

T = TypeVar("T")


async def in_order(
    calls: Sequence[Callable[[], Awaitable[T]]], limit: int, *, first_alone: bool = False
) -> list[T]:
    """The results of `calls`, run at most `limit` at a time; see the module docstring."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    if len(calls) <= 1 or limit == 1:
        return [await call() for call in calls]
    if first_alone:
        return [await calls[0](), *await in_order(calls[1:], limit)]
    results: list[T | None] = [None] * len(calls)
    errors: list[Exception | None] = [None] * len(calls)
    limiter = anyio.CapacityLimiter(limit)

    async def one(i: int) -> None:
        async with limiter:
            try:
                results[i] = await calls[i]()
            except Exception as exc:
                errors[i] = exc

    async with anyio.create_task_group() as group:
        for i in range(len(calls)):
            group.start_soon(one, i)
    failed = [e for e in errors if e is not None]
    if failed:
        first = failed[0]
        for other in failed[1:]:
            first.add_note(f"another request of the same write failed too: {other!r}")
        raise first
    return cast("list[T]", results)  # every slot was filled: no call failed
