"""`Api.send`: the retry policy, the server's waits, auth failures, gzip and secrecy.

Rules pinned: DESIGN.md "Errors and exit codes" (transient failures retried with jittered
exponential backoff under a total budget, waiting exactly what the server asks for; secrets
never in messages), `reference/opik-api.md` §6 (`RateLimit-Reset`, retried statuses) and §10
(gzip from 256 bytes), `reference/langwatch-api.md` §6 (429 on the collector is not retried).
"""

from __future__ import annotations

import email.utils
import gzip
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clock import Clock
from tracebridge import AuthError, RetriesExhausted, load_settings
from tracebridge._http import TRANSIENT_STATUSES, Api, RetryPolicy, encode_json
from tracebridge._langwatch.api import langwatch_api
from tracebridge._opik.api import opik_api
from tracebridge._pacing import Pacer

from .fakes.rate_limit import RateLimitedTransport

KEY = "sk-secret-0123456789abcdef"
BASE = "http://api.test/api"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


Reply = httpx.Response | Exception


class Server:
    """An `httpx.MockTransport` that answers from a script; the last answer repeats."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply


def make_api(server: Server, clock: Clock, **policy: Any) -> Api:
    retry = RetryPolicy(sleep=clock.sleep, clock=clock, jitter=lambda: 0.5, **policy)
    return Api(
        name="Opik",
        base_url=BASE,
        headers={"authorization": KEY},
        auth_variable="OPIK_API_KEY",
        transport=server.transport,
        policy=retry,
    )


def ok() -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.mark.anyio
@pytest.mark.parametrize("status", [503, 502, 500, 504, 429])
async def test_transient_statuses_are_retried_with_jittered_backoff(
    status: int, clock: Clock
) -> None:
    """DESIGN.md errors: 5xx/429 are retried; waits are exponential (0.5 s x 2^n, jitter 0.5
    gives x0.75) when the server names none; the success is returned."""
    server = Server(httpx.Response(status), httpx.Response(status), ok())
    api = make_api(server, clock)
    response = await api.send("POST", "v1/private/traces/batch", json_body={"traces": []})
    assert response.status_code == 200
    assert len(server.requests) == 3
    assert api.requests == 3
    assert clock.waits == [0.375, 0.75]
    await api.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ReadTimeout("read timed out"),
        httpx.ReadError("connection reset"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_timeouts_and_connection_errors_are_retried(error: Exception, clock: Clock) -> None:
    """DESIGN.md errors: timeouts and connection failures are transient (opik-api.md §6)."""
    server = Server(error, ok())
    api = make_api(server, clock)
    response = await api.send("GET", "v1/private/traces")
    assert response.status_code == 200
    assert len(server.requests) == 2
    assert clock.waits == [0.375]
    await api.aclose()


@pytest.mark.anyio
async def test_ratelimit_reset_is_waited_exactly(clock: Clock) -> None:
    """opik-api.md §6: on 429 sleep exactly `RateLimit-Reset` seconds, not a backoff."""
    limited = httpx.Response(429, headers={"RateLimit-Reset": "2"})
    server = Server(limited, ok())
    api = make_api(server, clock)
    assert (await api.send("POST", "v1/private/spans/batch", json_body={"spans": []})).is_success
    assert clock.waits == [2.0]
    await api.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_in_seconds_is_honoured(status: int, clock: Clock) -> None:
    """DESIGN.md errors: `Retry-After` seconds are waited as sent."""
    server = Server(httpx.Response(status, headers={"Retry-After": "7"}), ok())
    api = make_api(server, clock)
    assert (await api.send("GET", "v1/private/traces")).is_success
    assert clock.waits == [7.0]
    await api.aclose()


@pytest.mark.anyio
async def test_retry_after_as_http_date_is_honoured(clock: Clock) -> None:
    """DESIGN.md errors: `Retry-After` may be an HTTP date; the wait is the time until it."""
    moment = datetime.now(UTC) + timedelta(seconds=30)
    header = email.utils.format_datetime(moment, usegmt=True)
    server = Server(httpx.Response(503, headers={"Retry-After": header}), ok())
    api = make_api(server, clock)
    assert (await api.send("GET", "v1/private/traces")).is_success
    (wait,) = clock.waits
    assert 27.0 <= wait <= 30.5  # the date has whole seconds; a little time passed
    await api.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("header", ["RateLimit-Reset", "Retry-After"])
async def test_a_huge_server_wait_is_capped(header: str, clock: Clock) -> None:
    """DESIGN.md errors: the server's wait is honoured but capped at `max_server_wait`."""
    server = Server(httpx.Response(429, headers={header: "86400"}), ok())
    api = make_api(server, clock, max_server_wait=45.0)
    assert (await api.send("GET", "v1/private/traces")).is_success
    assert clock.waits == [45.0]
    await api.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 404, 409, 413, 422])
async def test_client_errors_are_returned_without_retry(status: int, clock: Clock) -> None:
    """`_http` docstring: any other status goes back to the caller after one request."""
    server = Server(httpx.Response(status, json={"errors": ["bad"]}), ok())
    api = make_api(server, clock)
    response = await api.send("POST", "v1/private/traces/batch", json_body={"traces": [{}]})
    assert response.status_code == status
    assert len(server.requests) == 1
    assert clock.waits == []
    await api.aclose()


@pytest.mark.anyio
async def test_429_is_not_retried_when_the_caller_takes_it_out(clock: Clock) -> None:
    """langwatch-api.md §5.1/§6: the collector's 429 means "too large": split, never resend."""
    server = Server(httpx.Response(429, json={"message": "Too many spans"}), ok())
    api = make_api(server, clock)
    response = await api.send(
        "POST", "api/collector", json_body={}, retry_statuses=TRANSIENT_STATUSES - {429}
    )
    assert response.status_code == 429
    assert len(server.requests) == 1
    assert clock.waits == []
    await api.aclose()


def _settings(tmp_path: Path) -> dict[str, object]:
    return {
        "langwatch_api_key": KEY,
        "langwatch_endpoint": "http://api.test",
        "opik_api_key": KEY,
        "opik_url": BASE,
        "state_dir": tmp_path,
    }


@pytest.mark.anyio
@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize(
    ("factory", "variable"),
    [(opik_api, "OPIK_API_KEY"), (langwatch_api, "LANGWATCH_API_KEY")],
    ids=["opik", "langwatch"],
)
async def test_refused_credentials_raise_auth_error_naming_the_variable(
    status: int,
    factory: Callable[..., Api],
    variable: str,
    clock: Clock,
    tmp_path: Path,
) -> None:
    """DESIGN.md errors: 401/403 are fatal (exit 3), name the variable to fix, never the key."""
    server = Server(httpx.Response(status, json={"message": "nope"}), ok())
    settings = load_settings(None, _settings(tmp_path), environ={})
    retry = RetryPolicy(sleep=clock.sleep, clock=clock, jitter=lambda: 0.5)
    api = factory(settings, server.transport, retry)
    with pytest.raises(AuthError) as caught:
        await api.send("GET", "v1/private/traces")
    message = str(caught.value)
    assert variable in message
    assert KEY not in message
    assert caught.value.exit_code == 3
    assert len(server.requests) == 1
    await api.aclose()


@pytest.mark.anyio
async def test_the_total_budget_stops_retrying(clock: Clock) -> None:
    """DESIGN.md errors: retries stop when the next wait would pass the budget, and the error
    says a rerun resumes."""
    server = Server(httpx.Response(503))
    api = make_api(server, clock, budget=10.0)
    with pytest.raises(RetriesExhausted) as caught:
        await api.send("POST", "v1/private/traces/batch", json_body={"traces": []})
    # 0.375 + 0.75 + 1.5 + 3 = 5.625 s; the next wait (6 s) would end at 11.6 s > 10 s.
    assert clock.waits == [0.375, 0.75, 1.5, 3.0]
    assert len(server.requests) == 5
    assert clock.now <= 10.0
    assert "rerun" in str(caught.value)
    assert "resume" in str(caught.value)
    assert "503" in str(caught.value)
    assert caught.value.exit_code == 3
    await api.aclose()


@pytest.mark.anyio
async def test_the_budget_also_bounds_server_waits(clock: Clock) -> None:
    """DESIGN.md errors: a server-asked wait that would pass the budget is not waited."""
    server = Server(httpx.Response(429, headers={"RateLimit-Reset": "8"}))
    api = make_api(server, clock, budget=10.0)
    with pytest.raises(RetriesExhausted):
        await api.send("GET", "v1/private/traces")
    assert clock.waits == [8.0]
    assert len(server.requests) == 2
    await api.aclose()


@pytest.mark.anyio
async def test_the_attempt_limit_stops_retrying(clock: Clock) -> None:
    """`RetryPolicy.attempts` bounds the number of requests."""
    server = Server(httpx.ReadTimeout("slow"))
    api = make_api(server, clock, attempts=3)
    with pytest.raises(RetriesExhausted, match="rerun"):
        await api.send("GET", "v1/private/traces")
    assert len(server.requests) == 3
    assert len(clock.waits) == 2
    await api.aclose()


def _big_body() -> dict[str, object]:
    return {"traces": [{"name": f"número {i} ✓", "input": {"text": "x" * 40}} for i in range(8)]}


@pytest.mark.anyio
async def test_large_bodies_are_gzipped_when_asked(clock: Clock) -> None:
    """opik-api.md §10: bodies of 256 bytes or more go with `Content-Encoding: gzip`."""
    server = Server(ok())
    api = make_api(server, clock)
    body = _big_body()
    assert len(json.dumps(body).encode()) >= 256
    await api.send("POST", "v1/private/traces/batch", json_body=body, compress=True)
    (request,) = server.requests
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(gzip.decompress(request.content)) == body
    await api.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "compress"),
    [(_big_body(), False), ({"traces": [{"name": "small"}]}, True)],
    ids=["not-asked", "under-256-bytes"],
)
async def test_bodies_are_plain_otherwise(
    body: dict[str, object], compress: bool, clock: Clock
) -> None:
    """opik-api.md §10: small bodies and callers that do not ask are sent as plain JSON."""
    server = Server(ok())
    api = make_api(server, clock)
    await api.send("POST", "v1/private/traces/batch", json_body=body, compress=compress)
    (request,) = server.requests
    assert "content-encoding" not in request.headers
    assert json.loads(request.content) == body
    await api.aclose()


@pytest.mark.anyio
async def test_a_body_holding_nan_is_never_sent(clock: Clock) -> None:
    """NaN is not JSON: the body fails to encode (ValueError, the record's problem, which the
    engine dead-letters alone) instead of reaching the server as the literal `NaN`."""
    server = Server(ok())
    api = make_api(server, clock)
    with pytest.raises(ValueError, match="not JSON compliant"):
        await api.send("POST", "v1/private/traces/batch", json_body={"value": float("nan")})
    assert server.requests == []
    await api.aclose()


def _payloads(request: httpx.Request) -> Iterator[tuple[str, str]]:
    """Every place of a request a secret could hide, except the credential header itself."""
    yield "url", str(request.url)
    raw = request.content
    if request.headers.get("content-encoding") == "gzip":
        raw = gzip.decompress(raw)
    yield "body", raw.decode()
    for name, value in request.headers.items():
        if name.lower() not in ("authorization", "x-auth-token"):
            yield f"header {name}", value


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("factory", "header"),
    [(opik_api, "authorization"), (langwatch_api, "x-auth-token")],
    ids=["opik", "langwatch"],
)
async def test_the_key_travels_only_in_its_header(
    factory: Callable[..., Api],
    header: str,
    clock: Clock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DESIGN.md errors: secrets never appear anywhere but the credential header — not in
    URLs, bodies, other headers, log lines or exception messages."""
    caplog.set_level(logging.DEBUG)
    server = Server(
        httpx.Response(503),
        httpx.Response(429, headers={"RateLimit-Reset": "1"}),
        ok(),
        ok(),
        httpx.Response(503),
    )
    settings = load_settings(None, _settings(tmp_path), environ={})
    retry = RetryPolicy(sleep=clock.sleep, clock=clock, jitter=lambda: 0.5, attempts=3)
    api = factory(settings, server.transport, retry)
    await api.send("POST", "a/b", json_body=_big_body(), compress=True)
    await api.send("GET", "a/c", params={"page": "1", "size": "10"})
    with pytest.raises(RetriesExhausted) as caught:
        await api.send("POST", "a/d", json_body={"x": 1})
    assert len(server.requests) == 7
    for request in server.requests:
        assert request.headers[header] == KEY  # the bare key (no "Bearer ") in its header
        for where, text in _payloads(request):
            assert KEY not in text, f"the key leaked into the {where}"
    assert KEY not in str(caught.value)
    assert all(KEY not in record.getMessage() for record in caplog.records)
    await api.aclose()


# ----------------------------------------------------------------------------------- pacing


@pytest.mark.anyio
async def test_a_paced_api_waits_for_the_window_instead_of_a_429(clock: Clock) -> None:
    """With a pacer, a request's `events` are spent against the budget Opik's headers tell;
    one the window cannot hold waits exactly for the window's end (rate-limited fake)."""
    server = Server(ok())
    limited = RateLimitedTransport(server.transport, budgets={"Workspace": 100}, clock=clock)
    api = Api(
        name="Opik",
        base_url=BASE,
        headers={},
        auth_variable="OPIK_API_KEY",
        transport=limited,
        policy=RetryPolicy(sleep=clock.sleep, clock=clock),
        pacer=Pacer(clock=clock, sleep=clock.sleep),
    )
    for events in (1, 40, 50, 9):  # the first tells the budget; 100 in all
        body = {"spans": [{}] * events} if events > 1 else None
        response = await api.send("POST", "v1/private/spans/batch", json_body=body, events=events)
        assert response.is_success
    clock.now = 12.0
    assert (
        await api.send("POST", "v1/private/spans/batch", json_body={"spans": [{}] * 2}, events=2)
    ).is_success
    assert clock.waits == [48.0]  # the window opened at t=0 ends at t=60
    assert limited.refused == 0
    assert api.pacer is not None
    assert api.pacer.waited == 48.0
    await api.aclose()


@pytest.mark.anyio
async def test_a_paced_429_still_waits_ratelimit_reset_and_tells_the_pacer(clock: Clock) -> None:
    """Another client spent the window: the 429's `RateLimit-Reset` is waited once (the retry
    policy), and the pacer, told by the 429, sends the retry as the next window's probe."""
    limited = httpx.Response(429, headers={"RateLimit-Reset": "5"})
    server = Server(limited, ok())
    api = make_api(server, clock)
    api.pacer = Pacer(clock=clock, sleep=clock.sleep)
    assert (await api.send("POST", "v1/private/spans/batch", json_body={"spans": []})).is_success
    assert clock.waits == [5.0]  # not 5 more on top from the pacer
    assert len(server.requests) == 2
    await api.aclose()


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        [float("inf")],
        [1, float("-inf")],
        {"a": {"b": [None, float("nan")]}},
        {"text": "null", "x": float("nan")},
        {"t": (None, (2.0, float("inf")))},
    ],
    ids=["alone", "first-in-list", "in-list", "nested", "beside-null-text", "in-tuple"],
)
def test_encode_json_refuses_nan_wherever_it_is(value: object) -> None:
    """`orjson` writes NaN as `null`: every place a value can stand is checked, so a NaN
    never reaches a server as a silent `null`."""
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode_json(value)


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"a": None, "b": [None, 1.5, 1e-05, 10**30], "c": "x: null, [null"},
        {"stash": '{"set": null}', "é": "\u2028", "n": [True, False, 0.0, -0.0]},
    ],
    ids=["null", "nulls-floats-big-int", "text"],
)
def test_encode_json_carries_the_value_json_carries(value: object) -> None:
    assert json.loads(encode_json(value)) == value
