"""Pacing by an event budget: how fast a sink may send, so a run uses its budget without 429s.

Opik Cloud counts every item of a batch as one event, per bucket and per 60-second window (10,000
per user, 5,000 per workspace; `reference/opik-api.md` §6). It answers every request with
`Opik-<Name>-Remaining-Limit` (events left in the bucket's window) and
`Opik-<Name>-Remaining-Limit-TTL-Millis` (when that window ends), and an exceeded bucket with 429
and `RateLimit-Reset` (seconds). A `Pacer` turns that into waits before requests, so that a run
spends a window's budget and then waits for the next one instead of collecting 429s:

- **The server's budget** (when it sends the headers). The answer to a *probe* (the first
  request of a window: one at a time, the others wait for its answer) says how many events are
  left and when the window ends, minus the events still in flight, which the server may not
  have counted yet. Every request after it takes its events off that count before it is sent;
  a request the rest of the window cannot hold waits for the window's end, and the first one
  after it is the next probe. An answer saying less is left than we count (another client on
  the same bucket) lowers the count; a 429 empties it until `RateLimit-Reset`. Of several
  buckets, the one with the fewest events left binds. A server that sends no headers (self-hosted
  Opik without rate limiting, LangWatch) is not paced by them at all.
- **The user's budget** (`--max-events-per-minute`): at most that many events in any 60 s
  (a sliding log of what was sent); a request waits until enough of it is older than 60 s.

`batch_cap()` is the largest batch worth sending under the budget: a twentieth of it, so the
end of a window wastes at most about 5 % (a 1000-item batch against a 5,000-event window would
waste up to 20 %). Waits hold a lock, so requests go in the order they asked (FIFO).

Tests pass `clock` and `sleep` (as `_http.RetryPolicy` takes them) and assert exact waits.
Our own small class rather than a limiter library: none of them reads Opik's headers, and the
window arithmetic above is the whole of it.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

import anyio
import httpx

__all__ = ["WINDOW", "Pacer", "budget_headers"]

WINDOW = 60.0  # seconds: Opik's buckets and `--max-events-per-minute` count per minute
_REMAINING = re.compile(r"^opik-(.+)-remaining-limit$", re.IGNORECASE)
_BATCH_SHARE = 20  # batch_cap: a twentieth of the budget


def budget_headers(headers: Mapping[str, str]) -> tuple[int, float] | None:
    """(events left, seconds until the window ends) of the bucket with the fewest events left,
    from `Opik-<Name>-Remaining-Limit` and `-TTL-Millis`; None when no bucket is named. A bucket
    without a TTL is taken to end a full window from now."""
    found: list[tuple[int, float]] = []
    for name, value in headers.items():
        match = _REMAINING.match(name)
        if match is None:
            continue
        try:
            remaining = int(float(value))
        except ValueError:
            continue
        ttl = headers.get(f"Opik-{match.group(1)}-Remaining-Limit-TTL-Millis")
        try:
            seconds = float(ttl) / 1000 if ttl is not None else WINDOW
        except ValueError:
            seconds = WINDOW
        found.append((max(0, remaining), max(0.0, seconds)))
    return min(found) if found else None


class Pacer:
    """Waits before requests so that their events fit the server's and the user's budgets."""

    def __init__(
        self,
        *,
        max_events_per_minute: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if max_events_per_minute is not None and max_events_per_minute < 1:
            raise ValueError("max_events_per_minute must be at least 1")
        self.max_events_per_minute = max_events_per_minute
        self.clock = clock
        self.sleep = sleep
        self.waited = 0.0  # seconds spent waiting (a run report can show it)
        self._sent: deque[tuple[float, int]] = deque()  # (when, events) of the last 60 s
        self._sent_events = 0
        self._paced = False  # the server has sent a budget: pace by it from now on
        self._remaining: int | None = None  # events left in the server's window, if known
        self._reset_at = 0.0  # when that window ends (clock time)
        self._limit: int | None = None  # the largest budget a window was seen to hold
        self._in_flight = 0  # events sent and not yet answered
        self._probe: anyio.Event | None = None  # set when the probe in flight is answered
        self._lock = anyio.Lock()

    def batch_cap(self) -> int | None:
        """The largest batch worth sending (module docstring); None while no budget is known."""
        budgets = [b for b in (self.max_events_per_minute, self._limit) if b is not None]
        return max(1, min(budgets) // _BATCH_SHARE) if budgets else None

    async def acquire(self, events: int) -> bool:
        """Wait until `events` may be sent; True when this request is a window's probe.

        Every `acquire` must be followed by `answered` with the same `events` and flag.
        """
        async with self._lock:
            await self._user_budget(events)
            probe = await self._server_budget(events)
            self._in_flight += events
            return probe

    def answered(self, response: httpx.Response | None, events: int, probe: bool) -> None:
        """What the answer to a request of `events` says about the budget (None: no answer)."""
        self._in_flight -= events
        now = self.clock()
        if response is not None:
            budget = budget_headers(response.headers)
            if response.status_code == 429:
                wait = _reset_seconds(response)
                if wait is None:
                    wait = budget[1] if budget is not None else WINDOW
                self._paced, self._remaining, self._reset_at = True, 0, now + wait
            elif budget is not None:
                left, seconds = budget
                self._paced = True
                # What is left plus what this request spent: at most the window's budget
                # (others may have spent some too), so the largest seen is a safe estimate.
                self._limit = max(self._limit or 0, left + events)
                if probe:
                    self._remaining = max(0, left - self._in_flight)
                    self._reset_at = now + seconds
                elif self._remaining is not None:
                    self._remaining = min(self._remaining, left)
        if probe and self._probe is not None:
            self._probe.set()
            self._probe = None

    async def _wait(self, seconds: float) -> None:
        self.waited += seconds
        await self.sleep(seconds)

    async def _user_budget(self, events: int) -> None:
        limit = self.max_events_per_minute
        if limit is None:
            return
        while True:
            now = self.clock()
            while self._sent and self._sent[0][0] <= now - WINDOW:
                self._sent_events -= self._sent.popleft()[1]
            if not self._sent or self._sent_events + events <= limit:
                self._sent.append((now, events))
                self._sent_events += events
                return
            # Wait until enough of the last minute's events are older than a minute.
            need, freed = self._sent_events + events - limit, 0
            for when, n in self._sent:
                freed += n
                if freed >= need:
                    await self._wait(when + WINDOW - now)
                    break

    async def _server_budget(self, events: int) -> bool:
        while self._paced:
            now = self.clock()
            if self._remaining is not None and now >= self._reset_at:
                self._remaining = None  # a new window: what is left is not known
            if self._remaining is None:
                if self._probe is None:
                    self._probe = anyio.Event()
                    return True
                await self._probe.wait()  # the probe's answer tells what is left
                continue
            if self._remaining >= events:
                self._remaining -= events
                return False
            await self._wait(self._reset_at - now)
        return False


def _reset_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("RateLimit-Reset")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
