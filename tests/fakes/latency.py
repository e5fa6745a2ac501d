"""A network's round trip in front of any fake: a transport wrapper that waits `ms` per request.

    slow = LatencyTransport(fake.transport, ms=20)
    async with httpx.AsyncClient(transport=slow, base_url=fake.base_url) as client: ...

Half the delay passes before the wrapped transport sees the request (the request travelling),
half after it answered (the response travelling), so a fake's state changes at the midpoint of
the round trip, as a server's do. The async path waits with `anyio.sleep` (other tasks run
meanwhile: concurrent requests overlap their delays, as on a network); the sync path (a
`httpx.Client` in a thread, e.g. the `opik` SDK) with `time.sleep`. `requests` counts the
requests that went through and `waited` sums the seconds spent waiting (overlapping waits
count each), for benchmarks that split wall time into network, fake and client.
"""

from __future__ import annotations

import time

import anyio
import httpx


class LatencyTransport(httpx.AsyncBaseTransport, httpx.BaseTransport):
    """`inner` (an async or sync transport, or both, e.g. `httpx.MockTransport`), `ms`
    milliseconds slower per request. `ms=0` adds no wait at all (not even a checkpoint)."""

    def __init__(self, inner: httpx.AsyncBaseTransport | httpx.BaseTransport, ms: float) -> None:
        if ms < 0:
            raise ValueError(f"latency must be >= 0 ms, got {ms}")
        self.inner, self.ms = inner, ms
        self.requests = 0
        self.waited = 0.0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(self.inner, httpx.AsyncBaseTransport):
            raise TypeError(f"{type(self.inner).__name__} is not an async transport")
        self.requests += 1
        await self._wait_async()
        response = await self.inner.handle_async_request(request)
        await self._wait_async()
        return response

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(self.inner, httpx.BaseTransport):
            raise TypeError(f"{type(self.inner).__name__} is not a sync transport")
        self.requests += 1
        self._wait_sync()
        response = self.inner.handle_request(request)
        self._wait_sync()
        return response

    async def _wait_async(self) -> None:
        if self.ms:
            self.waited += self.ms / 2000
            await anyio.sleep(self.ms / 2000)

    def _wait_sync(self) -> None:
        if self.ms:
            self.waited += self.ms / 2000
            time.sleep(self.ms / 2000)

    async def aclose(self) -> None:
        if isinstance(self.inner, httpx.AsyncBaseTransport):
            await self.inner.aclose()

    def close(self) -> None:
        if isinstance(self.inner, httpx.BaseTransport):
            self.inner.close()
