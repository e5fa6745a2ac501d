"""A fake clock for the retry and pacing tests, which assert exact waits."""

from __future__ import annotations


class Clock:
    """A fake monotonic clock whose `sleep` records the wait and moves time on."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
