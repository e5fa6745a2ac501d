"""Tests of the latency wrapper: every request waits `ms`, half before the fake sees it and half
after; concurrent requests overlap their waits; sync clients wait too."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest

from tests.fakes.latency import LatencyTransport

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def _echo(seen: list[float]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(time.perf_counter())
        return httpx.Response(200, json={"path": request.url.path})

    return httpx.MockTransport(handler)


async def test_each_request_waits_half_before_and_half_after_the_fake() -> None:
    seen: list[float] = []
    slow = LatencyTransport(_echo(seen), ms=80)
    async with httpx.AsyncClient(transport=slow, base_url="http://x.test") as client:
        start = time.perf_counter()
        response = await client.get("/a")
        end = time.perf_counter()
    assert response.json() == {"path": "/a"}
    assert seen[0] - start >= 0.04  # the request travelled before the fake saw it
    assert end - seen[0] >= 0.04  # and the response after
    assert slow.requests == 1
    assert slow.waited == pytest.approx(0.08)


async def test_concurrent_requests_overlap_their_waits() -> None:
    slow = LatencyTransport(_echo([]), ms=100)
    async with httpx.AsyncClient(transport=slow, base_url="http://x.test") as client:
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(client.get, f"/{i}")
        elapsed = time.perf_counter() - start
    assert slow.requests == 5
    assert slow.waited == pytest.approx(0.5)  # each request's wait is counted...
    assert 0.1 <= elapsed < 0.4  # ...but they passed together, as on a network


async def test_zero_latency_adds_nothing() -> None:
    slow = LatencyTransport(_echo([]), ms=0)
    async with httpx.AsyncClient(transport=slow, base_url="http://x.test") as client:
        assert (await client.get("/a")).status_code == 200
    assert (slow.requests, slow.waited) == (1, 0.0)


def test_a_sync_client_waits_too() -> None:
    seen: list[float] = []
    slow = LatencyTransport(_echo(seen), ms=60)
    with httpx.Client(transport=slow, base_url="http://x.test") as client:
        start = time.perf_counter()
        assert client.get("/b").json() == {"path": "/b"}
        assert time.perf_counter() - start >= 0.06
    assert seen[0] - start >= 0.03


def test_negative_latency_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        LatencyTransport(_echo([]), ms=-1)
