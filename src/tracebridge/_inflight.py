"""Requests in flight: a sink's independent calls run concurrently, bounded, every outcome kept.

`InFlight(limit)` is an async context in which `await flight.start(call)` starts `call` once fewer
than `limit` calls are running (so the code that starts them, mapping the next record, runs while
the earlier ones wait for the network), and `in_order(calls, limit)` runs a list of calls that
way and returns their results in order, as a loop would.

Unlike a task group's usual "first failure cancels the rest", **every call runs to its end** even
when another fails: what the others sent was acknowledged by the server, and the sink must record
it (an id map's acknowledgements, the ids a switch of id mode adopts). Only when all have ended
is a failure raised: that of the first failing call in the order they were started, the one a
sequential loop would have stopped at, with the others' as notes. An exception in the body of the
context also waits for the calls in flight before it propagates. Cancellation (Ctrl-C, a stop) is
not an outcome: it cancels every call at once.

With `first_alone`, the first call runs by itself before any other starts, and its failure is
raised at once, as a loop's would be: a sink's first request of a run tells whether the server
takes the credentials, the quota and the data at all, before `limit` requests meet the same
refusal.

Our own small module rather than a library: `anyio`'s task group and semaphore do the work; what
they lack is only the "keep every outcome, raise the first in order" rule above.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TypeVar, cast

import anyio
from anyio.abc import TaskGroup

__all__ = ["InFlight", "in_order"]

T = TypeVar("T")


class InFlight:
    """At most `limit` calls at once; see the module docstring."""

    def __init__(self, limit: int, *, first_alone: bool = False) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        self._first_alone = first_alone
        self._slots = anyio.Semaphore(limit)
        self._errors: list[tuple[int, Exception]] = []
        self._started = 0
        self._group: TaskGroup | None = None

    async def __aenter__(self) -> InFlight:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        return self

    async def start(self, call: Callable[[], Awaitable[object]]) -> None:
        """Start `call` as soon as a slot is free (the first one alone with `first_alone`)."""
        assert self._group is not None, "start() outside `async with InFlight(...)`"
        index, self._started = self._started, self._started + 1
        if index == 0 and self._first_alone:
            await call()  # raises at once: nothing else was started
            return
        await self._slots.acquire()
        self._group.start_soon(self._run, index, call)

    async def _run(self, index: int, call: Callable[[], Awaitable[object]]) -> None:
        try:
            await call()
        except Exception as exc:
            self._errors.append((index, exc))
        finally:
            self._slots.release()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        assert self._group is not None
        if error is not None and not isinstance(error, Exception):
            return bool(await self._group.__aexit__(kind, error, traceback))  # cancelled
        await self._group.__aexit__(None, None, None)  # every call in flight ends
        if error is not None:
            return False  # the body's own failure propagates
        if self._errors:
            self._errors.sort(key=lambda pair: pair[0])
            first = self._errors[0][1]
            for _, other in self._errors[1:]:
                first.add_note(f"another request sent with it failed too: {other!r}")
            raise first
        return False


async def in_order(
    calls: Sequence[Callable[[], Awaitable[T]]], limit: int, *, first_alone: bool = False
) -> list[T]:
    """The results of `calls`, run at most `limit` at a time; see the module docstring."""
    results: list[T | None] = [None] * len(calls)

    def keep(i: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            results[i] = await calls[i]()

        return run

    async with InFlight(limit, first_alone=first_alone) as flight:
        for i in range(len(calls)):
            await flight.start(keep(i))
    return cast("list[T]", results)  # every slot was filled: no call failed
