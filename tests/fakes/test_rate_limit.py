"""`RateLimitedTransport` behaves like Opik's limiter (`reference/opik-api.md` §6): batch items
are events, per-bucket fixed 60 s windows, the `Opik-*` headers on every answer, 429 with
`RateLimit-Reset` when a bucket is exceeded and nothing written then."""

from __future__ import annotations

import gzip
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ..factories import opik_trace, uuid7
from .opik import OpikFake
from .rate_limit import RateLimitedTransport, VirtualClock

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _traces(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        start = NOW - timedelta(minutes=i)
        trace_id = uuid7(int(start.timestamp() * 1000), rng)
        trace, *_ = opik_trace(
            rng, trace_id=trace_id, start=start, thread_id=None, project_name="p"
        )
        out.append(trace)
    return out


def _client(limited: RateLimitedTransport, fake: OpikFake) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=limited, base_url=fake.base_url + "/")


async def _post(client: httpx.AsyncClient, traces: list[dict[str, Any]]) -> httpx.Response:
    return await client.post("v1/private/traces/batch", json={"traces": traces})


@pytest.mark.anyio
async def test_batch_items_are_events_and_every_answer_carries_the_headers() -> None:
    fake, clock = OpikFake(), VirtualClock(100.0)
    limited = RateLimitedTransport(
        fake.transport, budgets={"User": 100, "Workspace": 50}, clock=clock.now
    )
    async with _client(limited, fake) as client:
        first = await _post(client, _traces(7))
        clock.t += 12.5
        second = await client.get("v1/private/projects")  # not a batch: one event
    assert first.status_code == 204
    assert second.status_code == 200
    assert first.headers["Opik-Workspace-Remaining-Limit"] == "43"
    assert first.headers["Opik-User-Remaining-Limit"] == "93"
    assert first.headers["Opik-Workspace-Remaining-Limit-TTL-Millis"] == "60000"
    assert first.headers["Opik-User-Limit"] == "general_events"
    assert second.headers["Opik-Workspace-Remaining-Limit"] == "42"
    assert second.headers["Opik-Workspace-Remaining-Limit-TTL-Millis"] == "47500"
    assert limited.events == 8
    assert limited.refused == 0
    assert len(fake.traces) == 7


@pytest.mark.anyio
async def test_a_gzip_body_is_counted_by_its_items() -> None:
    fake, clock = OpikFake(), VirtualClock()
    limited = RateLimitedTransport(fake.transport, budgets={"User": 100}, clock=clock.now)
    body = gzip.compress(json.dumps({"traces": _traces(5)}).encode())
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    async with _client(limited, fake) as client:
        response = await client.post("v1/private/traces/batch", content=body, headers=headers)
    assert response.headers["Opik-User-Remaining-Limit"] == "95"


@pytest.mark.anyio
async def test_an_exceeded_bucket_answers_429_with_the_reset_and_writes_nothing() -> None:
    fake, clock = OpikFake(), VirtualClock()
    limited = RateLimitedTransport(
        fake.transport, budgets={"User": 100, "Workspace": 10}, clock=clock.now
    )
    traces = _traces(12)
    async with _client(limited, fake) as client:
        assert (await _post(client, traces[:6])).status_code == 204
        clock.t += 20.2
        refused = await _post(client, traces[6:])  # 6 more: the workspace bucket holds 4
        assert refused.status_code == 429
        assert refused.headers["RateLimit-Reset"] == "40"  # ceil(39.8)
        assert "Too Many Requests" in refused.json()["message"]
        assert refused.headers["Opik-Workspace-Remaining-Limit"] == "4"
        assert set(fake.traces) == {t["id"] for t in traces[:6]}  # nothing of it written
        assert limited.events == 6
        assert limited.refused == 1
        clock.t += 39.8  # the window is over: a new one holds the batch
        again = await _post(client, traces[6:])
    assert again.status_code == 204
    assert again.headers["Opik-Workspace-Remaining-Limit"] == "4"
    assert again.headers["Opik-Workspace-Remaining-Limit-TTL-Millis"] == "60000"
    assert set(fake.traces) == {t["id"] for t in traces}
    assert limited.use("Workspace") == [0.6, 0.6]


@pytest.mark.anyio
async def test_the_reset_is_at_least_one_second() -> None:
    fake, clock = OpikFake(), VirtualClock()
    limited = RateLimitedTransport(fake.transport, budgets={"User": 3}, clock=clock.now)
    async with _client(limited, fake) as client:
        await _post(client, _traces(3))
        clock.t += 59.9
        refused = await _post(client, _traces(1, seed=2))
    assert refused.status_code == 429
    assert refused.headers["RateLimit-Reset"] == "1"


@pytest.mark.anyio
async def test_the_virtual_clock_moves_when_slept_on() -> None:
    clock = VirtualClock(5.0)
    await clock.sleep(2.5)
    await clock.sleep(-1)  # never backwards
    assert clock.now() == 7.5
    assert clock.slept == [2.5, -1]
