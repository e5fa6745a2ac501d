"""`LangWatchApiSource` on the update axis, against the stateful LangWatch fake.

Facts (`reference/langwatch-api.md`): §3.1 `dateField: "updated"`, ascending, `scrollId` kept
with constant parameters (a changed pageSize/sortDirection/dateField restarts it silently), the
snapshot pinned on page 1 and `pagination.updatedThrough`; §3.4 threads read whole; §5.1
evaluations stamped with the ingestion time, ingestion asynchronous, the 1-hour span dedupe.
"""

from __future__ import annotations

import base64
import json
import random
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.factories import langwatch_project, langwatch_trace
from tests.fakes.langwatch import LangWatchFake
from tracebridge import Page, ServerError, Thread, Trace, Window, load_settings
from tracebridge._http import RetryPolicy
from tracebridge._langwatch.api import LangWatchApiSource, langwatch_api
from tracebridge._time import from_ms

Json = dict[str, Any]
NOW = 1_780_000_000_000  # the fake's clock, epoch ms
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
SEARCH = "/api/traces/search"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self, ms: int = NOW) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


async def _no_sleep(seconds: float) -> None:
    return None


def _fake(raws: list[Json], clock: Clock, **options: Any) -> LangWatchFake:
    fake = LangWatchFake(now=clock, **options)
    for raw in raws:
        fake.add_trace(raw)
    return fake


def _source(
    fake: LangWatchFake,
    clock: Clock,
    *,
    page_size: int = 200,
    transport: httpx.AsyncBaseTransport | None = None,
    **options: Any,
) -> LangWatchApiSource:
    settings = load_settings(
        None, {"langwatch_api_key": fake.api_key, "langwatch_endpoint": fake.base_url}, environ={}
    )
    api = langwatch_api(
        settings, transport or fake.transport, RetryPolicy(attempts=2, sleep=_no_sleep)
    )
    return LangWatchApiSource(
        api,
        project="project_test",
        page_size=page_size,
        now=lambda: from_ms(clock.ms),
        **options,
    )


def _window(since: int | None, until: int | None) -> Window:
    return Window(
        since=None if since is None else from_ms(since),
        until=None if until is None else from_ms(until),
        axis="updated",
    )


async def _read(
    source: LangWatchApiSource, window: Window, resume: Json | None = None, stop_after: int = 0
) -> list[Page]:
    pages: list[Page] = []
    async for page in source.pages(window, resume):
        pages.append(page)
        if stop_after and len(pages) == stop_after:
            break
    await source.aclose()
    return pages


def _reads(pages: list[Page]) -> Counter[str]:
    reads: Counter[str] = Counter()
    for page in pages:
        for unit in page.units:
            reads.update(t.id for t in unit.traces) if isinstance(unit, Thread) else reads.update(
                [unit.id]
            )
    return reads


def _threads(pages: list[Page]) -> Counter[str]:
    return Counter(u.id for p in pages for u in p.units if isinstance(u, Thread))


def _traces(pages: list[Page]) -> dict[str, Trace]:
    out: dict[str, Trace] = {}
    for page in pages:
        for unit in page.units:
            out |= {t.id: t for t in unit.traces} if isinstance(unit, Thread) else {unit.id: unit}
    return out


def _bodies(fake: LangWatchFake, since: int = 0) -> list[Json]:
    return [json.loads(r.content) for r in fake.requests[since:] if r.url.path == SEARCH]


def _post(fake: LangWatchFake, body: Json) -> None:
    """A collector write, as an SDK or a sink sends it (§5.1)."""
    headers = {"X-Auth-Token": fake.api_key}
    with httpx.Client(transport=fake.transport, base_url=fake.base_url, headers=headers) as c:
        response = c.post("/api/collector", json=body)
    assert response.status_code == 200, response.text


def _new_span(raw: Json, span_id: str, at: int) -> Json:
    root = raw["spans"][0]["span_id"]
    times = {"started_at": at, "finished_at": at + 500}
    return {"span_id": span_id, "parent_id": root, "type": "tool", "timestamps": times}


def _project(n: int, threads: int, start_ms: int, seed: int = 3) -> list[Json]:
    return list(langwatch_project(n, threads, seed=seed, start_ms=start_ms))


# --- the change scroll -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_pass_follows_the_update_axis_and_a_quiet_one_costs_two_requests() -> None:
    """§3.1: `dateField: "updated"`, ascending, the same pageSize on every page, the window as
    startDate/endDate; `updatedThrough` becomes the last page's high-water mark, the pages
    before carry none. A pass over a quiet window costs the change scroll and the evaluation
    re-read; a new span on a turn brings its whole thread (turns outside the window too), a
    metadata PATCH a standalone trace, and nothing else comes."""
    clock = Clock()
    raws = _project(1000, 300, NOW - 10 * DAY)
    fake = _fake(raws, clock)
    source = _source(fake, clock)
    first = await _read(source, _window(None, NOW + MINUTE))
    first_cost = source.api.requests
    assert _reads(first) == Counter({r["trace_id"]: 1 for r in raws})
    scroll = [b for b in _bodies(fake) if "traceIds" not in b and "filters" not in b]
    assert len(scroll) == 6  # 1000 traces, pages of 200, the last one full: one empty more
    for body in scroll:
        assert body["dateField"] == "updated"
        assert body["sortDirection"] == "asc"
        assert body["pageSize"] == 200
        assert body["endDate"] == NOW + MINUTE
        assert body["includeSpans"] is True
    assert [bool(b.get("scrollId")) for b in scroll] == [False] + [True] * 5
    assert [p.high_water for p in first] == [None] * (len(first) - 1) + [from_ms(NOW)]
    assert first[-1].cursor == {"axis": "updated", "done": True, "through": NOW}

    clock.ms = NOW + 10 * MINUTE
    mark = len(fake.requests)
    source = _source(fake, clock)
    quiet = await _read(source, _window(NOW - MINUTE, clock.ms))
    assert _reads(quiet) == Counter()
    assert source.api.requests == 2
    rescan = _bodies(fake, mark)[1]
    assert rescan["dateField"] == "occurred"
    assert rescan["startDate"] == NOW - MINUTE - DAY
    assert rescan["endDate"] == NOW + 10 * MINUTE  # the change scroll's updatedThrough
    assert rescan["includeSpans"] is False
    assert quiet[-1].high_water == from_ms(NOW + 10 * MINUTE)

    turn = next(r for r in raws if "thread_id" in r["metadata"])
    alone = next(r for r in raws if "thread_id" not in r["metadata"])
    clock.ms += MINUTE
    _post(fake, {"trace_id": turn["trace_id"], "spans": [_new_span(turn, "late", clock.ms)]})
    headers = {"X-Auth-Token": fake.api_key}
    with httpx.Client(transport=fake.transport, base_url=fake.base_url, headers=headers) as c:
        path = f"/api/traces/{alone['trace_id']}/metadata"
        assert c.patch(path, json={"metadata": {"reviewed": "yes"}}).status_code == 200
    clock.ms += MINUTE
    source = _source(fake, clock)
    changed = await _read(source, _window(NOW + 9 * MINUTE, clock.ms))
    thread_id = turn["metadata"]["thread_id"]
    members = {r["trace_id"] for r in raws if r["metadata"].get("thread_id") == thread_id}
    assert _threads(changed) == Counter({thread_id: 1})
    assert _reads(changed) == Counter({t: 1 for t in members | {alone["trace_id"]}})
    assert "late" in {s.id for s in _traces(changed)[turn["trace_id"]].spans}
    assert _traces(changed)[alone["trace_id"]].metadata.get("reviewed") == "yes"
    print(f"\nLangWatch, 1000 traces / 300 threads: first pass {first_cost}, quiet 2")


@pytest.mark.anyio
async def test_a_trace_changed_mid_scroll_is_read_once_now_or_in_the_next_pass() -> None:
    """PR #6812: page 1 pins the snapshot. A trace changed after page 1 leaves this scroll
    (its `updated_at` is past `updatedThrough`), no page shifts, nothing comes twice; the next
    pass, starting at this one's high-water mark, brings it."""
    clock = Clock()
    raws = _project(450, 0, NOW - 3 * DAY)  # standalone traces: one unit each
    fake = _fake(raws, clock)
    last = raws[-1]  # the scroll reaches it last

    def change() -> None:
        clock.ms = NOW + 30_000
        _post(fake, {"trace_id": last["trace_id"], "spans": [_new_span(last, "x", clock.ms)]})

    fake.after_request(1, change, path_contains=SEARCH)
    first = await _read(_source(fake, clock), _window(None, None))
    reads = _reads(first)
    assert max(reads.values()) == 1
    assert set(reads) == {r["trace_id"] for r in raws} - {last["trace_id"]}
    assert first[-1].high_water == from_ms(NOW)
    clock.ms = NOW + MINUTE
    second = await _read(_source(fake, clock), _window(NOW, None))
    assert set(_reads(second)) == {last["trace_id"]}
    assert "x" in {s.id for s in _traces(second)[last["trace_id"]].spans}


@pytest.mark.anyio
async def test_a_pass_resumes_from_any_page_cursor() -> None:
    """Stop after any page (in the change scroll or in the evaluation re-read), resume from its
    cursor: nothing the uninterrupted pass delivers is missing, the end keeps its mark."""
    clock = Clock()
    raws = _project(120, 30, NOW - 3 * HOUR)
    fake = _fake(raws, clock, evaluations_move_updated_at=False)
    await _read(_source(fake, clock), _window(None, NOW))
    clock.ms = NOW + 5 * MINUTE
    for raw in raws[::9]:
        _post(fake, {"trace_id": raw["trace_id"], "spans": [_new_span(raw, "n", clock.ms)]})
    for raw in raws[4::11]:
        _post(fake, {"trace_id": raw["trace_id"], "evaluations": [{"name": "late", "score": 1}]})
    window = _window(NOW - MINUTE, NOW + 6 * MINUTE)
    clock.ms = NOW + 6 * MINUTE
    full = await _read(_source(fake, clock, page_size=4, rescan_page_size=10), window)
    expected = set(_reads(full))
    phases = {(p.cursor or {}).get("phase") for p in full}
    assert {"changed", "evaluations"} <= phases
    for stop in range(1, len(full)):
        source = _source(fake, clock, page_size=4, rescan_page_size=10)
        head = await _read(source, window, stop_after=stop)
        source = _source(fake, clock, page_size=4, rescan_page_size=10)
        tail = await _read(source, window, resume=head[-1].cursor)
        assert set(_reads(head + tail)) >= expected, stop
        assert tail[-1].high_water == from_ms(NOW + 6 * MINUTE)


@pytest.mark.anyio
async def test_a_resume_cursor_keeps_its_page_size_so_the_server_keeps_it() -> None:
    """§3.1: a cursor sent with another pageSize is dropped silently and the scroll restarts.
    A pass resumed by a source configured with another page size sends the cursor's own."""
    clock = Clock()
    raws = _project(300, 0, NOW - DAY)
    fake = _fake(raws, clock)
    head = await _read(_source(fake, clock, page_size=100), _window(None, NOW), stop_after=1)
    mark = len(fake.requests)
    tail = await _read(_source(fake, clock, page_size=40), _window(None, NOW), head[-1].cursor)
    assert {b["pageSize"] for b in _bodies(fake, mark)} == {100}
    assert _reads(head + tail) == Counter({r["trace_id"]: 1 for r in raws})
    assert not any(w for p in tail for w in p.warnings)


@pytest.mark.anyio
async def test_a_cursor_the_server_drops_on_resume_is_said_and_loses_nothing() -> None:
    """A cursor the server cannot use (here one claiming another dateField) restarts the search
    from page 1 without a word from the server: the source notices and says so."""
    clock = Clock()
    raws = _project(300, 0, NOW - DAY)
    fake = _fake(raws, clock)
    head = await _read(_source(fake, clock, page_size=100), _window(None, NOW), stop_after=1)
    cursor = dict(head[-1].cursor or {})
    state = json.loads(base64.b64decode(cursor["scroll_id"]))
    cursor["scroll_id"] = base64.b64encode(
        json.dumps({**state, "dateField": "occurred"}).encode()
    ).decode()
    tail = await _read(_source(fake, clock, page_size=100), _window(None, NOW), cursor)
    assert set(_reads(head + tail)) == {r["trace_id"] for r in raws}
    assert any("did not take the resume cursor" in w for w in tail[0].warnings)


class _WithoutUpdatedThrough(httpx.AsyncBaseTransport):
    """A LangWatch that does not know the update axis: no `updatedThrough`."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path != SEARCH:
            return response
        await response.aread()
        body = response.json()
        body["pagination"].pop("updatedThrough", None)
        return httpx.Response(response.status_code, json=body)


@pytest.mark.anyio
async def test_a_server_without_updated_through_is_an_error() -> None:
    """§3.1: unknown body keys are stripped silently, so a server without `dateField` would
    read the start axis; without `updatedThrough` the source refuses rather than guess."""
    clock = Clock()
    fake = _fake(_project(5, 0, NOW - DAY), clock)
    source = _source(fake, clock, transport=_WithoutUpdatedThrough(fake.transport))
    with pytest.raises(ServerError, match="updatedThrough"):
        await _read(source, _window(None, NOW))


# --- the evaluation re-read -------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_evaluation_added_later_is_read_again_by_the_rescan_rule() -> None:
    """§5.1: whether a later evaluation moves `updated_at` is unverified; under the reading
    that it does not, the re-read finds it by its own (ingestion) time: the trace comes again,
    a thread's turn brings its thread, whole, once. Without the rule nothing comes; the limit
    (a trace started more than `rescan` before `since`) is pinned too."""
    clock = Clock()
    raws = _project(60, 10, NOW - 2 * HOUR)
    rng = random.Random(4)
    old = langwatch_trace(rng, trace_id="old", started_at_ms=NOW - 3 * DAY, thread_id=None)
    fake = _fake([*raws, old], clock, evaluations_move_updated_at=False)
    await _read(_source(fake, clock), _window(None, NOW))
    alone = next(r for r in raws if "thread_id" not in r["metadata"])
    turns = [r for r in raws if "thread_id" in r["metadata"]]
    clock.ms = NOW + 5 * MINUTE
    for raw in (alone, turns[0], turns[1], old):
        body = {"trace_id": raw["trace_id"], "evaluations": [{"name": "late", "passed": True}]}
        _post(fake, body)
    window = _window(NOW - MINUTE, NOW + 6 * MINUTE)
    clock.ms = NOW + 6 * MINUTE

    blind = await _read(_source(fake, clock, rescan=None), window)
    assert _reads(blind) == Counter()

    pages = await _read(_source(fake, clock), window)
    reads = _reads(pages)
    threads = {r["metadata"]["thread_id"] for r in turns[:2]}
    members = {r["trace_id"] for r in raws if r["metadata"].get("thread_id") in threads}
    assert reads == Counter({t: 1 for t in members | {alone["trace_id"]}})
    assert _threads(pages) == Counter(dict.fromkeys(threads, 1))
    assert "late" in {s.name for s in _traces(pages)[alone["trace_id"]].scores}
    assert "late" in {s.name for s in _traces(pages)[turns[0]["trace_id"]].scores}
    assert "old" not in reads  # started 3 days before `since`: past the 1-day rescan


# --- asynchronous ingestion -------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_write_ingested_late_needs_the_next_window_to_look_back() -> None:
    """§5.1: processing is asynchronous. A write readable 30 s after it was answered, stamped
    with its own time, is behind a pass that ended in between: a next window starting at that
    pass's high-water mark misses it; one that looks back further than the delay has it. (The
    lookback is the sync job's; this pins why it must exceed the ingestion delay.)"""
    clock = Clock()
    raws = _project(5, 0, NOW - DAY)
    fake = _fake(raws, clock, ingest_delay_ms=30_000)
    target = raws[2]
    _post(fake, {"trace_id": target["trace_id"], "spans": [_new_span(target, "late", NOW)]})
    clock.ms = NOW + 10_000
    first = await _read(_source(fake, clock), _window(NOW - MINUTE, None))
    assert _reads(first) == Counter()
    mark = first[-1].high_water
    assert mark == from_ms(NOW + 10_000)
    clock.ms = NOW + MINUTE
    no_lookback = await _read(_source(fake, clock), Window(mark, None, "updated"))
    assert _reads(no_lookback) == Counter()
    with_lookback = await _read(
        _source(fake, clock), Window(mark - timedelta(minutes=1), None, "updated")
    )
    assert set(_reads(with_lookback)) == {target["trace_id"]}


@pytest.mark.anyio
async def test_the_start_axis_still_reads_by_start_time() -> None:
    """`axis="started"` is what it was: `dateField: "occurred"`, no high-water mark; a cursor
    from the other axis is not followed (it would be dropped by the server anyway)."""
    clock = Clock()
    raws = _project(50, 10, NOW - DAY)
    fake = _fake(raws, clock)
    head = await _read(_source(fake, clock, page_size=10), _window(None, NOW), stop_after=1)
    mark = len(fake.requests)
    pages = await _read(_source(fake, clock), Window(), head[-1].cursor)
    assert _reads(pages) == Counter({r["trace_id"]: 1 for r in raws})
    assert {b["dateField"] for b in _bodies(fake, mark)} == {"occurred"}
    assert all(p.high_water is None for p in pages)
    assert any("other time axis" in w for w in pages[0].warnings)


class _Dropping(httpx.AsyncBaseTransport):
    """A server that leaves one trace out of the first search page without a word."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner, self.done = inner, False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path != SEARCH or self.done:
            return response
        await response.aread()
        body = response.json()
        body["traces"] = body["traces"][1:]
        self.done = True
        return httpx.Response(response.status_code, json=body)


@pytest.mark.anyio
async def test_a_scroll_that_returns_fewer_traces_than_it_counts_says_so() -> None:
    """§3.1: `totalHits` is exact on the update axis; a scroll that returns fewer (and does
    not count them as `skipped`) gets a warning, not silence."""
    clock = Clock()
    raws = _project(30, 0, NOW - DAY)
    fake = _fake(raws, clock)
    source = _source(fake, clock, page_size=10, transport=_Dropping(fake.transport))
    pages = await _read(source, _window(None, NOW))
    assert len(_reads(pages)) == 29
    assert any("counted 30 traces" in w and "returned 29" in w for p in pages for w in p.warnings)
