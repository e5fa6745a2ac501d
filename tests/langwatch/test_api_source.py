"""`LangWatchApiSource` against the stateful LangWatch fake: how it pages, what it yields.

Rules pinned (`reference/langwatch-api.md`): §3.1 search paging (same pageSize, sortDirection
and dateField on every page of a scroll, `format: "json"` sent explicitly, follow `scrollId`
until it is absent, `pagination.skipped` is a loss); §3.4 threads (fetched once, ascending,
capped at 1000 traces, no evaluations); §6 the 64 KB search preview (full values come from the
single-trace read); §2 auth. DESIGN.md invariant 4: nothing is lost silently.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import tracebridge._langwatch.api_source as lw_api
from tests.factories import langwatch_project, langwatch_trace
from tests.fakes.langwatch import LangWatchFake
from tests.fakes.opik import OpikFake
from tracebridge import (
    AuthError,
    Page,
    ServerError,
    Thread,
    Trace,
    Window,
    load_settings,
    migrate,
)
from tracebridge._http import RetryPolicy
from tracebridge._langwatch.api import LangWatchApiSource, langwatch_api

DAY_MS = 86_400_000
START_MS = int(time.time() * 1000) - 10 * DAY_MS
SEARCH = "/api/traces/search"
VERDICT = ("score", "passed", "label")
Json = dict[str, Any]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _no_sleep(seconds: float) -> None:
    return None


def make_source(fake: LangWatchFake, *, key: str | None = None, page_size: int = 200) -> Any:
    settings = load_settings(
        None,
        {"langwatch_api_key": key or fake.api_key, "langwatch_endpoint": fake.base_url},
        environ={},
    )
    api = langwatch_api(settings, fake.transport, RetryPolicy(attempts=2, sleep=_no_sleep))
    return LangWatchApiSource(api, project="project_test", page_size=page_size)


def seeded(raws: list[Json], **options: Any) -> LangWatchFake:
    fake = LangWatchFake(**options)
    for raw in raws:
        fake.add_trace(raw)
    return fake


async def read_all(source: LangWatchApiSource, window: Window | None = None) -> list[Page]:
    try:
        return [page async for page in source.pages(window or Window(), None)]
    finally:
        await source.aclose()


def units(pages: list[Page]) -> list[Thread | Trace]:
    return [unit for page in pages for unit in page.units]


def trace_ids(pages: list[Page]) -> list[str]:
    out: list[str] = []
    for unit in units(pages):
        out += [t.id for t in unit.traces] if isinstance(unit, Thread) else [unit.id]
    return out


def search_bodies(fake: LangWatchFake) -> list[Json]:
    import json

    return [json.loads(r.content) for r in fake.requests if r.url.path == SEARCH]


def main_scroll(fake: LangWatchFake) -> list[Json]:
    """The bodies of the project scroll (not the thread-fallback or evaluation searches)."""
    return [b for b in search_bodies(fake) if "traceIds" not in b and "filters" not in b]


def by_thread(raws: list[Json]) -> dict[str, list[Json]]:
    threads: dict[str, list[Json]] = defaultdict(list)
    for raw in raws:
        if (thread_id := raw["metadata"].get("thread_id")) is not None:
            threads[thread_id].append(raw)
    return threads


# --- paging -----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("n", "requests"), [(450, 3), (400, 3), (199, 1)])
async def test_the_scroll_repeats_its_parameters_and_runs_to_the_end(n: int, requests: int) -> None:
    """§3.1: every page of a scroll repeats pageSize/sortDirection/dateField (else the cursor
    silently restarts), `format: "json"` is explicit, and paging follows `scrollId` until it is
    absent (a full last page costs one empty request)."""
    raws = list(langwatch_project(n, 0, seed=3, start_ms=START_MS))
    fake = seeded(raws)
    pages = await read_all(make_source(fake, page_size=200))
    assert trace_ids(pages) == [r["trace_id"] for r in raws]  # all, once, in start order
    scroll = main_scroll(fake)
    assert len(scroll) == requests
    same = {"pageSize", "sortDirection", "dateField", "startDate", "endDate", "includeSpans"}
    for body in scroll:
        assert {k: body[k] for k in same} == {k: scroll[0][k] for k in same}
    assert scroll[0]["pageSize"] == 200
    assert scroll[0]["sortDirection"] == "asc"
    assert scroll[0]["dateField"] == "occurred"
    assert scroll[0]["includeSpans"] is True
    assert "scrollId" not in scroll[0]
    assert all(body.get("scrollId") for body in scroll[1:])
    assert all(body["format"] == "json" for body in search_bodies(fake))
    assert pages[-1].cursor == {"done": True}


@pytest.mark.anyio
async def test_each_page_says_how_many_traces_the_window_holds() -> None:
    """`Page.expected_traces` is the scroll's `totalHits` (for the progress's ETA)."""
    raws = list(langwatch_project(450, 0, seed=3, start_ms=START_MS))
    pages = await read_all(make_source(seeded(raws), page_size=200))
    assert [page.expected_traces for page in pages] == [450] * len(pages)


# --- threads ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_threads_are_fetched_once_and_come_whole_in_start_order() -> None:
    """§3.4/§3.6: a thread is read with one `GET /api/thread/{id}` however many search pages
    its traces appear on, and becomes one `Thread` with all its traces, oldest first."""
    raws = list(langwatch_project(120, 25, seed=5, start_ms=START_MS))
    fake = seeded(raws)
    pages = await read_all(make_source(fake, page_size=20))
    expected = by_thread(raws)
    fetched = Counter(r.url.path for r in fake.requests if r.url.path.startswith("/api/thread/"))
    assert fetched == Counter({f"/api/thread/{t}": 1 for t in expected})
    threads = [u for u in units(pages) if isinstance(u, Thread)]
    assert sorted(t.id for t in threads) == sorted(expected)
    for thread in threads:
        assert [t.id for t in thread.traces] == [r["trace_id"] for r in expected[thread.id]]
        assert all(t.thread_id == thread.id for t in thread.traces)
    standalone = [u for u in units(pages) if isinstance(u, Trace)]
    assert [t.id for t in standalone] == [
        r["trace_id"] for r in raws if "thread_id" not in r["metadata"]
    ]
    assert sorted(trace_ids(pages)) == sorted(r["trace_id"] for r in raws)


@pytest.mark.anyio
async def test_a_pages_thread_reads_overlap_and_change_nothing() -> None:
    """The thread reads a page needs are in flight together (up to `concurrency`), and the
    pages are exactly those of one read after another: same units, same order, same
    requests."""
    raws = list(langwatch_project(120, 25, seed=5, start_ms=START_MS))

    async def read(concurrency: int) -> tuple[list[Page], Counter[str], int]:
        fake = seeded(raws)
        inner, running, peak = fake.transport, 0, 0

        class Overlap(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                nonlocal running, peak
                running += 1
                peak = max(peak, running)
                try:
                    await anyio.sleep(0.001)  # a round trip: other reads may start meanwhile
                    return await inner.handle_async_request(request)
                finally:
                    running -= 1

        fake.transport = Overlap()
        source = make_source(fake, page_size=40)
        source.concurrency = concurrency
        pages = await read_all(source)
        return pages, Counter(r.url.path for r in fake.requests), peak

    one, one_requests, one_peak = await read(1)
    many, many_requests, many_peak = await read(8)
    assert one_peak == 1
    assert many_peak > 1
    assert many_requests == one_requests
    assert [[u.model_dump() for u in p.units] for p in many] == [
        [u.model_dump() for u in p.units] for p in one
    ]
    assert [p.cursor for p in many] == [p.cursor for p in one]


def _thread_of(n: int, thread_id: str, seed: int = 1) -> list[Json]:
    rng = random.Random(seed)
    return [
        langwatch_trace(
            rng,
            trace_id=f"trace_{seed}_{i:02d}",
            started_at_ms=START_MS + i * 60_000,
            thread_id=thread_id,
            evaluation_statuses=("processed",),
        )
        for i in range(n)
    ]


@pytest.mark.anyio
async def test_a_thread_over_the_endpoint_cap_is_read_whole_by_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """§3.4: the thread endpoint returns at most its cap (1000) with no paging; a thread that
    fills it is read completely through a search filtered on `metadata.thread_id`."""
    monkeypatch.setattr(lw_api, "THREAD_CAP", 5)  # a server whose cap is 5, like the fake's
    raws = _thread_of(12, "thread_long")
    fake = seeded(raws, thread_cap=5)
    pages = await read_all(make_source(fake, page_size=5))
    (thread,) = units(pages)
    assert isinstance(thread, Thread)
    assert [t.id for t in thread.traces] == [r["trace_id"] for r in raws]
    fallback = [b for b in search_bodies(fake) if "filters" in b]
    assert fallback
    assert all(b["filters"] == {"metadata.thread_id": ["thread_long"]} for b in fallback)
    assert len(fallback) == 3  # 12 traces in pages of 5, following the scroll
    keys = ("pageSize", "sortDirection", "dateField", "startDate", "endDate", "format")
    assert len({tuple(b[k] for k in keys) for b in fallback}) == 1  # §3.1, this scroll too
    assert [bool(b.get("scrollId")) for b in fallback] == [False, True, True]


@pytest.mark.anyio
async def test_thread_traces_carry_their_evaluations() -> None:
    """§3.4: the thread endpoint returns no evaluations; the source fetches them (search by
    trace ids) so every evaluation of a thread's trace arrives, whatever its status."""
    raws = list(langwatch_project(80, 15, seed=8, start_ms=START_MS))
    fake = seeded(raws)
    pages = await read_all(make_source(fake))
    raw_by_id = {r["trace_id"]: r for r in raws}
    threads = [u for u in units(pages) if isinstance(u, Thread)]
    checked = 0
    for thread in threads:
        for trace in thread.traces:
            evaluations = raw_by_id[trace.id]["evaluations"]
            got = [(s.id, s.name, s.status, s.value, s.passed, s.label) for s in trace.scores]
            want = [
                (e["evaluation_id"], e["name"], e["status"], *(e.get(k) for k in VERDICT))
                for e in evaluations
            ]
            assert got == want
            checked += len(evaluations)
    assert checked > 20
    statuses = {s.status for u in threads for t in u.traces for s in t.scores}
    assert statuses == {"processed", "skipped", "error", "scheduled", "in_progress"}


@pytest.mark.anyio
@pytest.mark.parametrize("shape", ["object", "array"])
async def test_the_thread_answer_is_read_in_either_documented_shape(shape: str) -> None:
    """§3.4 shows `GET /api/thread/{id}` answering `{"traces": [...]}`; the published doc page
    (`seeds/langwatch-get-thread.txt`) shows a bare array. Both give the same threads."""
    raws = list(langwatch_project(60, 12, seed=31, start_ms=START_MS))
    fake = seeded(raws, thread_shape=shape)
    pages = await read_all(make_source(fake, page_size=20))
    answers = [r for r in fake.requests if r.url.path.startswith("/api/thread/")]
    assert answers  # the thread endpoint was used, in the shape asked for
    expected = by_thread(raws)
    threads = {u.id: u for u in units(pages) if isinstance(u, Thread)}
    assert set(threads) == set(expected)
    for thread_id, members in expected.items():
        assert [t.id for t in threads[thread_id].traces] == [r["trace_id"] for r in members]
    assert sorted(trace_ids(pages)) == sorted(r["trace_id"] for r in raws)


class ThreadAnswers(httpx.AsyncBaseTransport):
    """The fake, except that `GET /api/thread/{id}` answers 200 with `body` (raw bytes)."""

    def __init__(self, fake: LangWatchFake, body: bytes) -> None:
        self.fake, self.body = fake, body

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/thread/"):
            return httpx.Response(200, content=self.body)
        return await self.fake.transport.handle_async_request(request)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"data": []}', "an object with keys ['data']"),
        (b'{"traces": null}', "an object with keys ['traces']"),
        (b'"thread"', 'JSON "thread"'),
        (b"<html>oops</html>", "not JSON"),
    ],
)
async def test_any_other_thread_answer_is_an_error_naming_the_thread(
    body: bytes, said: str
) -> None:
    """Neither documented shape: the run stops with a `ServerError` that names the thread and
    what came back, rather than reading the thread as empty (its traces would be lost)."""
    raws = _thread_of(3, "thread_odd")
    fake = seeded(raws)
    settings = load_settings(
        None, {"langwatch_api_key": fake.api_key, "langwatch_endpoint": fake.base_url}, environ={}
    )
    api = langwatch_api(settings, ThreadAnswers(fake, body), RetryPolicy(sleep=_no_sleep))
    with pytest.raises(ServerError) as caught:
        await read_all(LangWatchApiSource(api, project="project_test"))
    message = str(caught.value)
    assert "GET /api/thread/thread_odd" in message
    assert said in message
    assert caught.value.exit_code == 3


# --- large values -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_standalone_trace_over_64_kb_arrives_whole() -> None:
    """§6: search returns a 64 KB preview of big values; the source reads such a trace with
    `GET /api/traces/{id}` so the FULL input arrives. Small traces need no extra request."""
    rng = random.Random(4)
    small = [
        langwatch_trace(rng, trace_id=f"small_{i}", started_at_ms=START_MS + i, thread_id=None)
        for i in range(5)
    ]
    big = langwatch_trace(
        rng,
        trace_id="big_one",
        started_at_ms=START_MS + 100,
        thread_id=None,
        big_input_bytes=80_000,
    )
    text = big["input"]["value"]
    assert len(text.encode()) > 65_536
    fake = seeded([*small, big])
    pages = await read_all(make_source(fake))
    (trace,) = [u for u in units(pages) if isinstance(u, Trace) and u.id == "big_one"]
    assert trace.input is not None
    assert trace.input.value == text
    root = next(s for s in trace.spans if s.parent_id is None)
    raw_root = next(s for s in big["spans"] if s["parent_id"] is None)
    assert root.input is not None
    assert root.input.value == raw_root["input"]["value"]
    gets = [r.url.path for r in fake.requests if r.url.path.startswith("/api/traces/big")]
    assert gets == ["/api/traces/big_one"]
    assert len(fake.requests) == 2  # one search page, one GET


@pytest.mark.anyio
async def test_a_thread_trace_over_64_kb_arrives_whole() -> None:
    """§3.4/§6: the thread endpoint resolves big values, so thread traces arrive whole."""
    rng = random.Random(6)
    raws = [
        langwatch_trace(
            rng,
            trace_id=f"turn_{i}",
            started_at_ms=START_MS + i * 1000,
            thread_id="thread_big",
            big_input_bytes=80_000 if i == 1 else 0,
        )
        for i in range(3)
    ]
    fake = seeded(raws)
    pages = await read_all(make_source(fake))
    (thread,) = units(pages)
    assert isinstance(thread, Thread)
    assert thread.traces[1].input is not None
    assert thread.traces[1].input.value == raws[1]["input"]["value"]
    assert len(raws[1]["input"]["value"].encode()) > 65_536


class ThreadEndpointMisses(httpx.AsyncBaseTransport):
    """The fake, except that `GET /api/thread/{id}` leaves out `hidden` traces: §3.4 says it
    matches only `gen_ai.conversation.id`, so a trace whose only thread key is
    `langgraph.thread_id` shows `metadata.thread_id` in search but is not in its thread."""

    def __init__(self, fake: LangWatchFake, hidden: set[str]) -> None:
        self.fake, self.hidden = fake, hidden

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.fake.transport.handle_async_request(request)
        if not request.url.path.startswith("/api/thread/"):
            return response
        await response.aread()
        body = response.json()
        body["traces"] = [t for t in body["traces"] if t["trace_id"] not in self.hidden]
        return httpx.Response(response.status_code, json=body)


@pytest.mark.anyio
async def test_a_trace_its_thread_read_misses_is_not_lost_silently() -> None:
    """DESIGN.md invariant 4: every trace the scroll shows is yielded or counted as lost, also
    when the thread endpoint does not return it."""
    rng = random.Random(21)
    hidden = [
        langwatch_trace(rng, trace_id=f"lg_{i}", started_at_ms=START_MS + i, thread_id="lg")
        for i in range(3)
    ]
    others = list(langwatch_project(20, 4, seed=22, start_ms=START_MS + 1000))
    fake = seeded([*hidden, *others])
    settings = load_settings(
        None, {"langwatch_api_key": fake.api_key, "langwatch_endpoint": fake.base_url}, environ={}
    )
    transport = ThreadEndpointMisses(fake, {r["trace_id"] for r in hidden})
    api = langwatch_api(settings, transport, RetryPolicy(attempts=2, sleep=_no_sleep))
    pages = await read_all(LangWatchApiSource(api, page_size=10))
    yielded = set(trace_ids(pages))
    assert {r["trace_id"] for r in others} <= yielded
    missing = {r["trace_id"] for r in hidden} - yielded
    assert sum(page.lost for page in pages) >= len(missing)


# --- losses -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_traces_the_search_skips_count_as_lost() -> None:
    """§3.1 `pagination.skipped` and DESIGN.md invariant 4: traces the server could not
    serialize are counted as lost on the page."""
    raws = list(langwatch_project(50, 0, seed=9, start_ms=START_MS))
    fake = seeded(raws)
    dropped = {raws[3]["trace_id"], raws[20]["trace_id"], raws[49]["trace_id"]}
    fake.unserializable |= dropped
    pages = await read_all(make_source(fake, page_size=20))
    assert sum(page.lost for page in pages) == 3
    assert trace_ids(pages) == [r["trace_id"] for r in raws if r["trace_id"] not in dropped]


@pytest.mark.anyio
async def test_a_run_that_lost_traces_exits_1(tmp_path: Path) -> None:
    """DESIGN.md invariant 4: a lossy run says so and exits 1."""
    raws = list(langwatch_project(30, 5, seed=10, start_ms=START_MS))
    lw = seeded(raws)
    standalone = [r["trace_id"] for r in raws if "thread_id" not in r["metadata"]]
    lw.unserializable.add(standalone[0])
    opik = OpikFake()
    settings = load_settings(
        None,
        {
            "langwatch_api_key": lw.api_key,
            "langwatch_endpoint": lw.base_url,
            "opik_url": opik.base_url,
            "state_dir": tmp_path,
        },
        environ={},
    )
    transports: dict[str, httpx.AsyncBaseTransport] = {
        "langwatch": lw.transport,
        "opik": opik.transport,
    }
    report = await migrate(
        "langwatch", "opik", target_project="p", settings=settings, transports=transports
    )
    assert report.lost == 1
    assert report.lossy
    assert report.exit_code == 1
    assert len(opik.traces) == 29


# --- window and auth --------------------------------------------------------------------------


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.mark.anyio
async def test_the_time_window_is_honoured_inclusively() -> None:
    """§3.1 `startDate`/`endDate` are inclusive; thread traces outside the window are left out
    too, although the thread endpoint has no window (§3.4)."""
    raws = list(langwatch_project(150, 20, seed=12, start_ms=START_MS))
    starts = [r["timestamps"]["started_at"] for r in raws]
    since_ms, until_ms = starts[40], starts[110]
    window = Window(
        since=datetime.fromtimestamp(since_ms / 1000, UTC),
        until=datetime.fromtimestamp(until_ms / 1000, UTC),
    )
    fake = seeded(raws)
    pages = await read_all(make_source(fake, page_size=25), window)
    inside = [r["trace_id"] for r in raws if since_ms <= r["timestamps"]["started_at"] <= until_ms]
    assert sorted(trace_ids(pages)) == sorted(inside)
    assert len(inside) == 71
    for body in main_scroll(fake):
        assert (body["startDate"], body["endDate"]) == (since_ms, until_ms)
    # some thread started before the window and goes on inside it: only its inside turns come
    threads = by_thread(raws)
    assert any(
        ts[0]["timestamps"]["started_at"] < since_ms <= ts[-1]["timestamps"]["started_at"]
        for ts in threads.values()
    )


@pytest.mark.anyio
async def test_a_refused_key_raises_auth_error_naming_the_variable() -> None:
    """§2 and DESIGN.md errors: 401 is fatal and names LANGWATCH_API_KEY, never the key."""
    fake = seeded(list(langwatch_project(3, 0, seed=1, start_ms=START_MS)))
    source = make_source(fake, key="sk-lw-wrong-9876")
    with pytest.raises(AuthError) as caught:
        await read_all(source)
    assert "LANGWATCH_API_KEY" in str(caught.value)
    assert "sk-lw-wrong-9876" not in str(caught.value)
    assert len(fake.requests) == 1
