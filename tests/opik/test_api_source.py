"""`OpikApiSource` against `OpikFake`: how a project is read (`reference/opik-api.md` §2.4–§2.6,
§10): traces on the keyset stream, each thread whole through its traces, then the traces outside
threads, spans per trace; always `truncate=false`. The update axis and mid-read changes are in
`test_api_source_changes.py`."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tracebridge import AuthError, Page, Thread, Trace, UsageError, Window, load_settings
from tracebridge._mapping import default_mappings
from tracebridge._opik.api import OpikApiSource, opik_api
from tracebridge._time import to_ms

from ..factories import opik_project, opik_trace, uuid7
from ..fakes.opik import OpikFake

Json = dict[str, Any]
PROJECT = "support-bot"
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _source(
    opik: OpikFake, project: str = PROJECT, api_key: str | None = None, page_size: int = 100
) -> OpikApiSource:
    overrides: dict[str, Any] = {"opik_url": opik.base_url, "opik_api_key": api_key}
    settings = load_settings(None, overrides, environ={})
    return OpikApiSource(
        opik_api(settings, opik.transport),
        project=project,
        mappings=default_mappings(),
        page_size=page_size,
    )


async def _pages(source: OpikApiSource, window: Window | None = None) -> list[Page]:
    pages = [page async for page in source.pages(window or Window(), None)]
    await source.aclose()
    return pages


def _units(pages: list[Page]) -> tuple[dict[str, Thread], dict[str, Trace]]:
    """Threads by id, and every trace read (in a thread or not) by id."""
    threads = {u.id: u for p in pages for u in p.units if isinstance(u, Thread)}
    traces = {t.id: t for th in threads.values() for t in th.traces}
    traces |= {u.id: u for p in pages for u in p.units if isinstance(u, Trace)}
    return threads, traces


def _seed(opik: OpikFake, n_traces: int, n_threads: int, seed: int = 1) -> list[Json]:
    """Seed a generated project; return the trace rows as written (with their spans)."""
    rows = []
    for trace, spans, trace_scores, span_scores in opik_project(
        n_traces, n_threads, seed=seed, start=START, project_name=PROJECT
    ):
        opik.add_trace(PROJECT, trace, spans, trace_scores, span_scores)
        rows.append({**trace, "spans": spans})
    return rows


def _gets(opik: OpikFake, path: str) -> list[httpx.QueryParams]:
    return [r.url.params for r in opik.requests if r.method == "GET" and r.url.path.endswith(path)]


def _filters(params: httpx.QueryParams) -> list[Json]:
    raw = params.get("filters")
    return json.loads(raw) if raw else []


@pytest.mark.anyio
async def test_reads_traces_on_a_keyset_threads_whole_then_the_rest() -> None:
    """§2.5/§9: traces are listed with the NDJSON stream (`id` DESC, `last_retrieved_id`), first
    those with a `thread_id`, then the others; a thread comes whole once (its traces by the
    stream filtered on `thread_id`, its own data from `/threads/retrieve`), never by the page
    numbers of `GET /traces/threads` nor by the thread stream whose cursor repeats (§10);
    §2.6: spans per trace, with `project_name`; every read says `truncate=false`."""
    opik = OpikFake()
    rows = _seed(opik, 200, 150)
    threaded = {r["thread_id"] for r in rows if "thread_id" in r}
    assert len(threaded) == 150
    pages = await _pages(_source(opik))
    threads, traces = _units(pages)

    assert set(threads) == threaded
    assert set(traces) == {r["id"] for r in rows}
    for row in rows:
        trace = traces[row["id"]]
        assert trace.thread_id == row.get("thread_id")
        assert {s.id for s in trace.spans} == {s["id"] for s in row["spans"]}
    for thread in threads.values():
        assert {t.thread_id for t in thread.traces} == {thread.id}
        starts = [t.started_at for t in thread.traces]
        assert starts == sorted(starts)

    paths = [r.url.path for r in opik.requests]
    assert not any(p.endswith(("/threads/search", "/traces/threads")) for p in paths)
    streams = [
        json.loads(r.content)
        for r in opik.requests
        if r.method == "POST" and r.url.path.endswith("/v1/private/traces/search")
    ]
    assert all(b["truncate"] is False and b["project_name"] == PROJECT for b in streams)
    listing = [b for b in streams if not any(f["operator"] == "=" for f in b["filters"])]
    empty = {"field": "thread_id", "value": ""}
    phases = [next(f["operator"] for f in b["filters"] if f["field"] == "thread_id")
              for b in listing]  # fmt: skip
    assert phases == ["is_not_empty"] * 2 + ["is_empty"]  # 160 threaded traces, 40 others
    assert all(
        {**empty, "operator": op} in b["filters"] for b, op in zip(listing, phases, strict=True)
    )
    assert [("last_retrieved_id" in b) for b in listing] == [False, True, False]
    by_thread = [f["value"] for b in streams for f in b["filters"] if f["operator"] == "="]
    assert sorted(by_thread) == sorted(threaded)  # one keyset read per thread
    retrieved = [json.loads(r.content)["thread_id"] for r in opik.requests
                 if r.url.path.endswith("/threads/retrieve")]  # fmt: skip
    assert sorted(retrieved) == sorted(threaded)
    for request in opik.requests:
        if request.method == "GET":
            assert request.url.params["truncate"] == "false"
            assert request.url.params["project_name"] == PROJECT
    span_reads = _gets(opik, "/v1/private/spans")
    assert sorted(p["trace_id"] for p in span_reads) == sorted(r["id"] for r in rows)


@pytest.mark.anyio
async def test_long_threads_and_big_traces_are_read_whole() -> None:
    """§2.5/§2.6 pages: a thread of 130 traces and a trace of 250 spans need several pages."""
    opik = OpikFake()
    rng = random.Random(3)
    thread_id = "0f6d1c9e-5b7a-4e2d-9c1b-8a7f6e5d4c3b"
    for i in range(130):
        start = START + timedelta(minutes=i)
        opik.add_trace(
            PROJECT,
            *opik_trace(
                rng,
                trace_id=uuid7(to_ms(start), rng),
                start=start,
                thread_id=thread_id,
                project_name=PROJECT,
                n_spans=1,
            ),
        )
    big_start = START + timedelta(days=1)
    big, spans, scores, span_scores = opik_trace(
        rng,
        trace_id=uuid7(to_ms(big_start), rng),
        start=big_start,
        thread_id=None,
        project_name=PROJECT,
        n_spans=250,
    )
    opik.add_trace(PROJECT, big, spans, scores, span_scores)
    threads, traces = _units(await _pages(_source(opik)))
    assert len(threads[thread_id].traces) == 130
    assert {s.id for s in traces[big["id"]].spans} == {s["id"] for s in spans}
    span_scores_read = sum(len(s.scores) for s in traces[big["id"]].spans)
    assert span_scores_read == sum(len(v) for v in span_scores.values())


@pytest.mark.anyio
async def test_thread_scores_tags_and_status_come_through() -> None:
    """§2.4 `TraceThread`: `feedback_scores`, `tags` and `status` become the `Thread`'s."""
    opik = OpikFake()
    rows = _seed(opik, 12, 3)
    thread_ids = sorted({r["thread_id"] for r in rows if "thread_id" in r})
    opik.add_thread_data(
        PROJECT,
        thread_ids[0],
        scores=[
            {"name": "resolved", "value": 1, "reason": "customer confirmed", "source": "ui"},
            {"name": "csat", "value": 4, "category_name": "good"},
        ],
        tags=["vip", "refund"],
        status="inactive",
    )
    threads, _ = _units(await _pages(_source(opik)))
    thread = threads[thread_ids[0]]
    scores = {s.name: s for s in thread.scores}
    assert set(scores) == {"resolved", "csat"}
    assert scores["resolved"].value == 1
    assert scores["resolved"].reason == "customer confirmed"
    assert scores["resolved"].source == "ui"
    assert scores["csat"].label == "good"
    assert thread.tags == ["vip", "refund"]
    assert thread.status == "inactive"
    other = threads[thread_ids[1]]
    assert other.scores == []
    assert other.tags == []
    assert other.status == "active"


def _window_project(opik: OpikFake) -> dict[str, datetime]:
    """Traces on 1, 3, 5 and 7 March: standalone ones, and a thread with a turn on each day."""
    rng = random.Random(9)
    starts: dict[str, datetime] = {}
    for day in (1, 3, 5, 7):
        for thread in ("7d1e0c4b-3a2f-4e5d-8c7b-6a5f4e3d2c1b", None):
            start = datetime(2026, 3, day, 12, tzinfo=UTC) + timedelta(minutes=1 if thread else 0)
            records = opik_trace(
                rng,
                trace_id=uuid7(to_ms(start), rng),
                start=start,
                thread_id=thread,
                project_name=PROJECT,
                n_spans=2,
            )
            opik.add_trace(PROJECT, *records)
            starts[records[0]["id"]] = start
    return starts


@pytest.mark.anyio
async def test_since_and_until_bound_the_start_time_of_what_is_read() -> None:
    """`--since/--until` (inclusive, on a trace's start time): a thread that started before
    `since` still brings its turns inside the window, and only those."""
    opik = OpikFake()
    starts = _window_project(opik)
    since, until = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 6, tzinfo=UTC)
    threads, traces = _units(await _pages(_source(opik), Window(since, until)))
    expected = {tid for tid, start in starts.items() if since <= start <= until}
    assert len(expected) == 4
    assert set(traces) == expected
    assert len(threads) == 1
    (thread,) = threads.values()
    assert {t.id for t in thread.traces} == expected & {
        t for t, s in starts.items() if s.minute == 1
    }


@pytest.mark.anyio
async def test_since_alone_and_until_alone() -> None:
    """Open-ended windows (§2.7 filters on `start_time`): each bound alone."""
    opik = OpikFake()
    starts = _window_project(opik)
    bound = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)  # exactly a standalone trace's start
    _, after = _units(await _pages(_source(opik), Window(since=bound)))
    assert set(after) == {t for t, s in starts.items() if s >= bound}
    _, before = _units(await _pages(_source(opik), Window(until=bound)))
    assert set(before) == {t for t, s in starts.items() if s <= bound}


@pytest.mark.anyio
async def test_an_unknown_project_is_a_usage_error() -> None:
    """§2.5: Opik answers 404 for a project that does not exist: the user named it wrong."""
    opik = OpikFake()
    _seed(opik, 3, 1)
    with pytest.raises(UsageError) as caught:
        await _pages(_source(opik, project="no-such-project"))
    assert caught.value.exit_code == 2
    assert "no-such-project" in str(caught.value)
    assert "--source-project" in str(caught.value)


@pytest.mark.anyio
async def test_refused_credentials_are_an_auth_error_naming_opik_api_key() -> None:
    """§5: a wrong key is 401: fatal (exit 3), names OPIK_API_KEY, never shows the key."""
    opik = OpikFake(api_key="right-key")
    _seed(opik, 3, 1)
    with pytest.raises(AuthError) as caught:
        await _pages(_source(opik, api_key="wrong-key-123"))
    assert caught.value.exit_code == 3
    assert "OPIK_API_KEY" in str(caught.value)
    assert "wrong-key-123" not in str(caught.value)
    assert len(opik.requests) == 1  # not retried
    # and the right key reads the project
    _, traces = _units(await _pages(_source(opik, api_key="right-key")))
    assert len(traces) == 3


class _CappingTransport(httpx.AsyncBaseTransport):
    """A server that pages by at most `cap` items whatever `size` it is asked for."""

    def __init__(self, inner: httpx.AsyncBaseTransport, cap: int) -> None:
        self.inner, self.cap = inner, cap

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        if "size" in params and "page" in params and request.method == "GET":
            asked, page = int(params["size"]), int(params["page"])
            # Ask the fake for page `page` of `cap` items: what a capping server would send.
            params.update(size=str(min(asked, self.cap)), page=str(page))
            request = httpx.Request(
                request.method, request.url.copy_with(params=params), headers=request.headers
            )
        return await self.inner.handle_async_request(request)


@pytest.mark.anyio
async def test_a_server_that_pages_by_fewer_items_than_asked_loses_nothing() -> None:
    """§2.4/§2.5: `page`/`size` paging ends on `total`, not on a page shorter than asked for,
    so a server with a lower size cap than the reader's is read to the end."""
    opik = OpikFake()
    seeded = _seed(opik, 60, 12)
    settings = load_settings(None, {"opik_url": opik.base_url}, environ={})
    source = OpikApiSource(
        opik_api(settings, _CappingTransport(opik.transport, cap=7)),
        project=PROJECT,
        mappings=default_mappings(),
        page_size=50,
    )
    _, traces = _units(await _pages(source))
    assert len(traces) == len(seeded) == 60
