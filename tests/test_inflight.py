"""`in_order` / `InFlight`: bounded, results in order, every call run to its end, the first
failure in order raised (`_inflight.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest

from tracebridge._inflight import InFlight, in_order


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _Calls:
    """Calls that sleep `delays[i]` and fail where `fail` says, noting what ran."""

    def __init__(self, delays: list[float], fail: frozenset[int] = frozenset()) -> None:
        self.delays, self.fail = delays, fail
        self.running = self.most = 0
        self.ended: list[int] = []

    def __call__(self, i: int) -> Callable[[], Awaitable[int]]:
        async def call() -> int:
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                await anyio.sleep(self.delays[i])
                if i in self.fail:
                    raise ValueError(f"call {i}")
                return i * 10
            finally:
                self.running -= 1
                self.ended.append(i)

        return call


@pytest.mark.anyio
async def test_results_come_in_order_with_at_most_limit_running() -> None:
    calls = _Calls([0.03, 0.01, 0.02, 0.0, 0.01, 0.02])
    assert await in_order([calls(i) for i in range(6)], 3) == [0, 10, 20, 30, 40, 50]
    assert calls.most == 3


@pytest.mark.anyio
async def test_every_call_ends_and_the_first_failure_in_order_is_raised() -> None:
    calls = _Calls(
        [0.05, 0.0, 0.03, 0.0], fail=frozenset({1, 3})
    )  # 3 fails first in time, 1 in order
    with pytest.raises(ValueError, match="call 1") as caught:
        await in_order([calls(i) for i in range(4)], 4)
    assert sorted(calls.ended) == [0, 1, 2, 3]  # the slow ones were not cancelled
    assert any("call 3" in note for note in caught.value.__notes__)


@pytest.mark.anyio
async def test_the_first_call_alone_stops_everything_when_it_fails() -> None:
    calls = _Calls([0.0, 0.0, 0.0], fail=frozenset({0}))
    with pytest.raises(ValueError, match="call 0"):
        await in_order([calls(i) for i in range(3)], 3, first_alone=True)
    assert calls.ended == [0]


@pytest.mark.anyio
async def test_a_failure_of_the_body_waits_for_the_calls_in_flight() -> None:
    calls = _Calls([0.02, 0.02])

    async def write() -> None:
        async with InFlight(2) as flight:
            await flight.start(calls(0))
            await flight.start(calls(1))
            raise KeyError("mapping failed")

    with pytest.raises(KeyError):
        await write()
    assert sorted(calls.ended) == [0, 1]


def test_the_limit_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        InFlight(0)
