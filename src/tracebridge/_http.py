"""HTTP for the API endpoints: one httpx client per platform and the retry policy, as data.

Retried, and only these (`TRANSIENT_*`): timeouts, connection failures and the statuses
429, 500, 502, 503, 504 — unless a caller takes a status out (LangWatch's collector answers 429
for "too many spans in one request", which must be split, not resent). The wait is the server's
when it says one (`RateLimit-Reset` seconds from Opik, `Retry-After` seconds or HTTP date),
capped; otherwise jittered exponential backoff. Every request has a total time budget; when it
is spent the request fails with `RetriesExhausted`. 401/403 raise `AuthError` naming the
variable to fix. Any other status is returned to the caller, who knows what it means.
Each retry is logged at WARNING on `tracebridge.http`: `Opik 503, retry 3 in 4.0 s (GET path)`
(the status or the error's type, the retry's number, the wait), so the CLI shows it by default.

With a `pacer` (`_pacing.Pacer`), every attempt first waits for the events it carries (`events`:
the items of a batch, else 1) to fit the budget, and every answer (a 429 too) tells the pacer what
is left of it; the retry wait above still honours `RateLimit-Reset` on a 429 that slips through.

Tests pass a `transport` (the seam respx fakes plug into) and a `RetryPolicy` whose `sleep`
records waits instead of sleeping.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import orjson

from . import _json
from ._errors import AuthError, RetriesExhausted
from ._pacing import Pacer

__all__ = [
    "TRANSIENT_ERRORS",
    "TRANSIENT_STATUSES",
    "Api",
    "RetryPolicy",
    "decode_json",
    "encode_json",
    "error_message",
    "server_wait",
]

log = logging.getLogger("tracebridge.http")

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
_GZIP_FROM_BYTES = 256  # what the Opik SDK does (reference/opik-api.md §10)
#: zlib level 3 (deflate's fast strategy): about half the CPU of gzip's default 6 for a body
#: about a fifth larger (a 2.8 MB span batch: 12 ms and 408 KB against 26 ms and 342 KB).
_GZIP_LEVEL = 3
_PASSTHROUGH = (  # what `json` refuses or writes otherwise: `orjson` raises, `json` answers
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often a request is retried."""

    attempts: int = 8
    budget: float = 600.0  # seconds for one request, waits included
    initial_wait: float = 0.5
    max_backoff: float = 30.0
    max_server_wait: float = 300.0
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[], float] = field(default=random.random)

    def backoff(self, attempt: int) -> float:
        """Jittered exponential wait before retry number `attempt` (1-based)."""
        base = min(self.max_backoff, self.initial_wait * 2 ** (attempt - 1))
        return float(base * (0.5 + self.jitter() / 2))


def server_wait(response: httpx.Response, now: datetime | None = None) -> float | None:
    """The wait the server asks for: `RateLimit-Reset` or `Retry-After` (seconds or a date)."""
    for header in ("RateLimit-Reset", "Retry-After"):
        value = response.headers.get(header)
        if not value:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
    return None


def encode_json(value: Any) -> bytes:
    """`value` as the compact UTF-8 JSON a request body carries.

    NaN and infinities are not JSON: a record holding one fails alone (`ValueError`).
    `orjson` writes it (several times faster than `json`); it would write NaN as `null`, so
    when its output holds a `null` value the floats of `value` are looked at, and one that is
    not finite sends `value` to `json`, which raises (its own message); so does a value
    `orjson` refuses (integers beyond 64 bits, non-string keys, datetimes and subclasses,
    passed through), and `json` raises its own errors. The text may differ from `json`'s in
    how a float is spelled (`1e-05`, `0.00001`), never in the value it carries."""
    try:
        out = orjson.dumps(value, option=_PASSTHROUGH)
    except orjson.JSONEncodeError:
        pass
    else:
        if not (_may_hold_nan(out) and _holds_non_finite(value)):
            return out
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _may_hold_nan(out: bytes) -> bool:
    """True when `orjson`'s compact `out` holds a `null` value (where it writes NaN): after a
    `:`, a `,` or a `[`, or alone. A `null` inside a string (`{"set": null}` as text) is not
    one; one written as `:null` inside a string only costs the slower path."""
    return b":null" in out or b",null" in out or b"[null" in out or out == b"null"


def _holds_non_finite(value: Any) -> bool:
    """True when a float in `value` (dicts, lists and tuples of JSON values, at most as deep
    as `orjson` writes) is NaN or infinite."""
    kind = type(value)
    if kind is float:
        return not math.isfinite(value)
    if kind is dict:
        value = value.values()
    elif kind is not list and kind is not tuple:
        return False
    return any(_holds_non_finite(item) for item in value)


def decode_json(response: httpx.Response) -> Any:
    """The JSON body of `response`, as `response.json()` reads it (`json`'s result and errors,
    through `_json.loads`: `orjson`'s speed where the two agree)."""
    return _json.loads(response.content)


def error_message(response: httpx.Response) -> str:
    """What an error answer says: `message`, `details`, `error` and `errors` of either platform."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        parts = [
            str(body[k])
            for k in ("message", "details", "error")
            if isinstance(body.get(k), str) and body[k]
        ]
        errors = body.get("errors")
        parts += [str(e) for e in errors] if isinstance(errors, list) else []
        if parts:
            return "; ".join(parts)
    return json.dumps(body)[:500]


class Api:
    """A platform's HTTP API: base URL, headers that carry the credentials, the retry policy."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        headers: Mapping[str, str],
        auth_variable: str,
        transport: httpx.AsyncBaseTransport | None = None,
        policy: RetryPolicy | None = None,
        timeout: httpx.Timeout | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.name = name
        self.pacer = pacer
        self.auth_variable = auth_variable
        self.policy = policy or RetryPolicy()
        self.requests = 0  # requests sent, retries included (benchmarks report it)
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers={"Accept": "application/json", **headers},
            transport=transport,
            timeout=timeout or httpx.Timeout(connect=20, read=100, write=100, pool=20),
        )

    async def send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        json_bytes: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        compress: bool = False,
        retry_statuses: frozenset[int] = TRANSIENT_STATUSES,
        events: int = 1,
    ) -> httpx.Response:
        """Send one request, retrying transient failures; return the final response.

        `json_bytes` is a body already encoded by `encode_json` (a caller that measured it);
        `events` is what the request costs against a rate budget (the items of a batch)."""
        content, headers = json_bytes, {}
        if json_body is not None:
            content = encode_json(json_body)
        if content is not None:
            headers["Content-Type"] = "application/json"
            if compress and len(content) >= _GZIP_FROM_BYTES:
                content = zlib.compress(content, _GZIP_LEVEL, wbits=31)  # a gzip member
                headers["Content-Encoding"] = "gzip"
        policy = self.policy
        deadline = policy.clock() + policy.budget
        last = ""
        for attempt in range(1, policy.attempts + 1):
            wait: float | None = None
            try:
                response = await self._request(method, path, content, params, headers, events)
            except TRANSIENT_ERRORS as exc:
                last = f"{type(exc).__name__}"
                problem = last
            else:
                if response.status_code in (401, 403):
                    raise AuthError(
                        f"{self.name} refused the credentials ({response.status_code} on "
                        f"{method} {path}): check {self.auth_variable}"
                    )
                if response.status_code not in retry_statuses:
                    return response
                last = f"HTTP {response.status_code}"
                problem = str(response.status_code)
                wait = server_wait(response)
                if wait is not None:
                    wait = min(wait, policy.max_server_wait)
            if attempt == policy.attempts:
                break
            wait = policy.backoff(attempt) if wait is None else wait
            if policy.clock() + wait > deadline:
                break
            log.warning(
                "%s %s, retry %d in %.1f s (%s %s)", self.name, problem, attempt, wait, method, path
            )
            await policy.sleep(wait)
        raise RetriesExhausted(
            f"{self.name} {method} {path} still failing ({last}) after {attempt} attempts; "
            "rerun the same command to resume"
        )

    async def _request(
        self,
        method: str,
        path: str,
        content: bytes | None,
        params: Mapping[str, Any] | None,
        headers: dict[str, str],
        events: int,
    ) -> httpx.Response:
        """One attempt, paced when there is a pacer (module docstring)."""
        pacer = self.pacer
        probe = await pacer.acquire(events) if pacer is not None else False
        response: httpx.Response | None = None
        try:
            self.requests += 1
            response = await self._client.request(
                method, path.lstrip("/"), content=content, params=params, headers=headers
            )
            return response
        finally:
            if pacer is not None:
                pacer.answered(response, events, probe)

    async def aclose(self) -> None:
        await self._client.aclose()
