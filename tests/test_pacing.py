"""`Pacer`: exact waits on a fake clock for Opik's budget headers, its 429s and
`--max-events-per-minute` (`reference/opik-api.md` §6; `_pacing.py` states the rules)."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest
from click.testing import CliRunner

from tests.clock import Clock
from tracebridge import UsageError, load_settings
from tracebridge._endpoint_specs import open_sink
from tracebridge._langwatch.api import LangWatchApiSink
from tracebridge._opik.api import OpikApiSink
from tracebridge._pacing import Pacer, budget_headers
from tracebridge.cli import main


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _pacer(clock: Clock, limit: int | None = None) -> Pacer:
    return Pacer(max_events_per_minute=limit, clock=clock, sleep=clock.sleep)


def _answer(left: int, ttl_ms: int, status: int = 200, **extra: str) -> httpx.Response:
    headers = {
        "Opik-Workspace-Limit": "workspace_events",
        "Opik-Workspace-Remaining-Limit": str(left),
        "Opik-Workspace-Remaining-Limit-TTL-Millis": str(ttl_ms),
        **extra,
    }
    return httpx.Response(status, headers=headers)


async def _send(pacer: Pacer, events: int, answer: httpx.Response | None) -> bool:
    probe = await pacer.acquire(events)
    pacer.answered(answer, events, probe)
    return probe


def test_the_bucket_with_the_fewest_events_left_binds() -> None:
    headers = {
        "Opik-User-Remaining-Limit": "900",
        "Opik-User-Remaining-Limit-TTL-Millis": "5000",
        "Opik-Workspace-Remaining-Limit": "300",
        "Opik-Workspace-Remaining-Limit-TTL-Millis": "41000",
        "Opik-Single-Tracing-Ops-Remaining-Limit": "junk",
    }
    assert budget_headers(httpx.Headers(headers)) == (300, 41.0)
    assert budget_headers(httpx.Headers({"Opik-User-Remaining-Limit": "7"})) == (7, 60.0)
    assert budget_headers(httpx.Headers({"Content-Type": "application/json"})) is None


@pytest.mark.anyio
async def test_without_a_budget_nothing_waits() -> None:
    clock = Clock()
    pacer = _pacer(clock)
    for _ in range(50):
        assert not await _send(pacer, 1000, httpx.Response(200))
    assert clock.waits == []
    assert pacer.batch_cap() is None


@pytest.mark.anyio
async def test_max_events_per_minute_holds_in_any_60_seconds() -> None:
    clock = Clock()
    pacer = _pacer(clock, limit=100)
    assert pacer.batch_cap() == 5  # a twentieth of the budget
    await _send(pacer, 60, None)
    clock.now = 10.0
    await _send(pacer, 30, None)  # 90 in the last minute: fits
    clock.now = 15.0
    await _send(pacer, 60, None)  # 150 would not: wait until the first 60 are a minute old
    assert clock.waits == [45.0]
    assert clock.now == 60.0
    await _send(pacer, 10, None)  # 30 + 60 + 10 = 100 since t=10: fits
    await _send(pacer, 25, None)  # the 30 of t=10 must leave first
    assert clock.waits == [45.0, 10.0]
    assert pacer.waited == 55.0


@pytest.mark.anyio
async def test_a_window_is_spent_then_waited_out_then_probed_again() -> None:
    clock = Clock()
    pacer = _pacer(clock)
    # The first answer names a budget: from now on a window starts with a probe.
    assert not await _send(pacer, 1, _answer(499, 50_000))
    probe = await pacer.acquire(100)
    assert probe
    waiting: list[float] = []

    async def second() -> None:
        await pacer.acquire(250)  # waits for the probe's answer, then fits
        waiting.append(clock.now)
        pacer.answered(_answer(150, 29_000), 250, False)

    async with anyio.create_task_group() as group:
        group.start_soon(second)
        await anyio.sleep(0.01)
        assert waiting == []  # not before the probe is answered
        clock.now = 1.0
        pacer.answered(_answer(400, 30_000), 100, probe)  # 400 left, until t=31
    assert waiting == [1.0]
    assert pacer.batch_cap() == 25  # the window held 500: a twentieth
    assert not await _send(pacer, 150, _answer(0, 28_000))  # exactly what is left
    assert clock.waits == []
    assert await _send(pacer, 10, _answer(490, 60_000))  # waits for t=31, then probes
    assert clock.waits == [30.0]


@pytest.mark.anyio
async def test_a_probe_answer_counts_the_events_still_in_flight() -> None:
    """Events sent in the old window and answered after the probe may be counted in the new
    one: the probe's answer keeps them off what is left."""
    clock = Clock()
    pacer = _pacer(clock)
    await _send(pacer, 1, _answer(100, 60_000))
    await _send(pacer, 10, _answer(90, 60_000))  # the probe: the window ends at t=60
    late = await pacer.acquire(40)  # sent, still in flight when the window ends
    clock.now = 61.0
    probe = await pacer.acquire(10)
    assert probe
    pacer.answered(_answer(90, 60_000), 10, probe)  # 90 left, but 40 are still in flight
    pacer.answered(_answer(50, 59_000), 40, late)
    assert not await _send(pacer, 50, _answer(0, 59_000))
    assert clock.waits == []
    await _send(pacer, 1, _answer(100, 60_000))  # nothing left: wait for the window's end
    assert clock.waits == [60.0]


@pytest.mark.anyio
async def test_another_client_on_the_bucket_lowers_what_is_left() -> None:
    clock = Clock()
    pacer = _pacer(clock)
    await _send(pacer, 1, _answer(1000, 60_000))
    await _send(pacer, 10, _answer(990, 60_000))  # the probe: 990 left
    await _send(pacer, 10, _answer(300, 58_000))  # someone else spent 680
    clock.now = 2.0
    await _send(pacer, 500, _answer(0, 58_000))  # 280 left: wait for the window's end
    assert clock.waits == [58.0]


@pytest.mark.anyio
async def test_a_429_empties_the_window_until_ratelimit_reset() -> None:
    clock = Clock()
    pacer = _pacer(clock)
    await _send(pacer, 5, httpx.Response(429, headers={"RateLimit-Reset": "7"}))
    assert await _send(pacer, 5, _answer(100, 60_000))  # waits the 7 s, then probes
    assert clock.waits == [7.0]


@pytest.mark.anyio
async def test_a_probe_without_an_answer_hands_the_probe_on() -> None:
    clock = Clock()
    pacer = _pacer(clock)
    await _send(pacer, 1, _answer(100, 60_000))
    assert await _send(pacer, 1, None)  # a connection error: no answer
    assert await _send(pacer, 1, _answer(98, 59_000))  # the next request probes again
    assert not await _send(pacer, 1, _answer(97, 59_000))
    assert clock.waits == []


@pytest.mark.anyio
async def test_both_budgets_apply_and_the_cap_is_the_smaller() -> None:
    clock = Clock()
    pacer = _pacer(clock, limit=10_000)
    assert pacer.batch_cap() == 500
    await _send(pacer, 1, _answer(4_000, 60_000))
    await _send(pacer, 1, _answer(3_999, 60_000))  # the probe: a window of 4,000
    assert pacer.batch_cap() == 200
    with pytest.raises(ValueError, match="at least 1"):
        Pacer(max_events_per_minute=0)


# ------------------------------------------------------------------------ options and config


def test_the_budget_and_concurrency_reach_the_sinks(tmp_path: Path) -> None:
    """`--max-events-per-minute` / `[opik] max_events_per_minute`, and `[opik] concurrency`,
    `[langwatch] concurrency` in the config file, reach the API sinks open_sink builds."""
    config = tmp_path / "tracebridge.toml"
    config.write_text(
        "[opik]\nmax_events_per_minute = 900\nconcurrency = 2\n[langwatch]\nconcurrency = 5\n",
        encoding="utf-8",
    )
    environ = {"LANGWATCH_API_KEY": "sk-lw-test"}
    settings = load_settings(config, {"state_dir": tmp_path / "state"}, environ=environ)
    opik = open_sink("opik", project="p", settings=settings)
    assert isinstance(opik, OpikApiSink)
    assert opik.api.pacer is not None
    assert opik.api.pacer.max_events_per_minute == 900
    assert opik.concurrency == 2
    langwatch = open_sink("langwatch", settings=settings)
    assert isinstance(langwatch, LangWatchApiSink)
    assert langwatch.concurrency == 5
    flag = load_settings(config, {"max_events_per_minute": 120}, environ=environ)
    assert flag.max_events_per_minute == 120  # the flag wins over the file
    defaults = load_settings(None, {}, environ=environ)
    assert defaults.max_events_per_minute is None
    assert (defaults.opik_concurrency, defaults.langwatch_concurrency) == (4, 32)
    bad = tmp_path / "bad.toml"
    bad.write_text("[opik]\nconcurrency = 0\n", encoding="utf-8")
    with pytest.raises(UsageError, match="concurrency"):
        load_settings(bad, {}, environ=environ)


def test_the_cli_takes_max_events_per_minute_on_migrate_and_sync() -> None:
    runner = CliRunner()
    for command in ("migrate", "sync"):
        shown = runner.invoke(main, [command, "--help"])
        assert "--max-events-per-minute" in shown.output
        refused = runner.invoke(
            main,
            [
                command,
                "--from",
                "langwatch-file:x.jsonl",
                "--to",
                "opik",
                "--max-events-per-minute",
                "0",
            ],
        )
        assert refused.exit_code == 2
        assert "max-events-per-minute" in refused.output
