"""A rate-limited Opik: a transport wrapper that limits any httpx async transport as Opik does.

Modelled on Opik's limiter (`reference/opik-api.md` §6): every request costs events, a batch one
per item (`traces`, `spans` or `scores` of the body, gzip or not), any other request one. Each
bucket (`User`, `Workspace`, ... with its budget) counts events in a fixed 60-second window that
opens at the first event after the previous one ended. A request that a bucket cannot hold is
answered 429 with `RateLimit-Reset: <seconds until that window ends, at least 1>` and Opik's
message, and reaches nothing behind the wrapper (nothing is written, no event is counted). Every
answer carries, for every bucket, `Opik-<Name>-Limit` (the bucket's name),
`Opik-<Name>-Remaining-Limit` and `Opik-<Name>-Remaining-Limit-TTL-Millis`.

Time is the injected `clock` (seconds): with `VirtualClock`, a test or a benchmark runs in
virtual time, since sleeping advances the clock. The wrapper keeps what a test asserts on:
requests, 429s and the events each bucket's windows held (`windows`).
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio
import httpx

__all__ = ["OPIK_CLOUD", "RateLimitedTransport", "VirtualClock", "WindowUse"]

#: Opik Cloud's event budgets per minute (reference §6): per user, and per workspace per user.
OPIK_CLOUD: Mapping[str, int] = {"User": 10_000, "Workspace": 5_000}
_BUCKET_NAMES = {"User": "general_events", "Workspace": "workspace_events"}
_BATCH_KEYS = ("traces", "spans", "scores")


class VirtualClock:
    """Virtual seconds: `now()` reads the clock; `sleep(s)` moves it `s` on, then yields.

    Sleepers do not overlap: each one moves the clock by its whole wait, so tasks sleeping at
    once make time pass as if they slept one after another (elapsed time is overestimated,
    never underestimated: a budget's use measured on it is a lower bound)."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += max(0.0, seconds)
        await anyio.sleep(0)


@dataclass
class WindowUse:
    """One window of one bucket: when it opened and the events it held."""

    start: float
    used: int = 0


class RateLimitedTransport(httpx.AsyncBaseTransport):
    """`inner`, behind Opik's rate limiter (module docstring)."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        budgets: Mapping[str, int] = OPIK_CLOUD,
        clock: Callable[[], float],
        window: float = 60.0,
    ) -> None:
        self.inner = inner
        self.budgets = dict(budgets)
        self.clock = clock
        self.window = window
        self.windows: dict[str, list[WindowUse]] = {name: [] for name in budgets}
        self.requests = 0
        self.refused = 0  # answered 429
        self.events = 0  # events of the requests let through

    @staticmethod
    def events_of(request: httpx.Request) -> int:
        """What `request` costs: the items of a batch body, else 1."""
        content = request.content
        if request.headers.get("Content-Encoding") == "gzip":
            content = gzip.decompress(content)
        try:
            body = json.loads(content) if content else None
        except ValueError:
            return 1
        if isinstance(body, dict):
            for key in _BATCH_KEYS:
                if isinstance(body.get(key), list):
                    return max(1, len(body[key]))
        return 1

    def _current(self, name: str, now: float) -> WindowUse:
        uses = self.windows[name]
        if not uses or now >= uses[-1].start + self.window:
            uses.append(WindowUse(now))
        return uses[-1]

    def _headers(self, now: float) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, budget in self.budgets.items():
            uses = self.windows[name]
            live = uses and now < uses[-1].start + self.window
            left = budget - uses[-1].used if live else budget
            ttl = uses[-1].start + self.window - now if live else self.window
            headers[f"Opik-{name}-Limit"] = _BUCKET_NAMES.get(name, name.lower())
            headers[f"Opik-{name}-Remaining-Limit"] = str(left)
            headers[f"Opik-{name}-Remaining-Limit-TTL-Millis"] = str(int(ttl * 1000))
        return headers

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        events = self.events_of(request)
        now = self.clock()
        current = {name: self._current(name, now) for name in self.budgets}
        for name, use in current.items():
            if use.used + events > self.budgets[name]:
                self.refused += 1
                reset = max(1, math.ceil(use.start + self.window - now))
                message = f"Too Many Requests: {_BUCKET_NAMES.get(name, name)}"
                return httpx.Response(
                    429,
                    json={"code": 429, "message": message},
                    headers={"RateLimit-Reset": str(reset), **self._headers(now)},
                    request=request,
                )
        for use in current.values():
            use.used += events
        self.events += events
        response = await self.inner.handle_async_request(request)
        response.headers.update(self._headers(now))
        return response

    def use(self, name: str) -> list[float]:
        """The share of `name`'s budget each of its windows held, oldest first."""
        return [w.used / self.budgets[name] for w in self.windows[name]]

    async def aclose(self) -> None:
        await self.inner.aclose()
