"""Blocking twins of `migrate` and `sync`, for scripts and notebooks without an event loop.

`migrate_blocking(...)` takes exactly `migrate`'s arguments and returns its `Report`, running
it with `anyio.run` (asyncio); likewise `sync_blocking` for `sync`. Inside a running event loop
(an async function, or a Jupyter cell, whose loop is already running) use `await migrate(...)`
instead: `anyio.run` refuses to start a second loop in the same thread.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import anyio

from ._migrate import migrate
from ._sync import sync

__all__ = ["migrate_blocking", "sync_blocking"]

P = ParamSpec("P")
T = TypeVar("T")


def _blocking(work: Callable[P, Awaitable[T]], name: str) -> Callable[P, T]:
    """`work` run to completion on a fresh event loop: same arguments, same result."""

    @functools.wraps(work)
    def blocking(*args: P.args, **kwargs: P.kwargs) -> T:
        async def call() -> T:
            return await work(*args, **kwargs)

        return anyio.run(call)

    blocking.__name__ = blocking.__qualname__ = name
    blocking.__module__ = __name__
    blocking.__doc__ = (
        f"`{work.__name__}` for code without an event loop (scripts, notebooks): the same "
        f"arguments, run with `anyio.run`; returns what `{work.__name__}` returns and raises "
        f"what it raises. Not from inside a running event loop (use `await "
        f"{work.__name__}(...)` there).\n\n{work.__name__}: {work.__doc__ or ''}"
    )
    return blocking


#: `migrate`, blocking (module docstring).
migrate_blocking = _blocking(migrate, "migrate_blocking")
#: `sync`, blocking (module docstring). With `every`, it runs until `stop` is set from
#: another thread's callback or the process is interrupted.
sync_blocking = _blocking(sync, "sync_blocking")
