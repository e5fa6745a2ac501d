"""`OpikApiSource` against `OpikFake`: how a project is read (`reference/opik-api.md` §2.4–§2.7,
§10, §11): traces on the keyset stream in large batches, spans in bulk by `trace_id` range
checked against each trace's `span_count`, threads gathered from the stream with their data from
the thread listing, and the per-trace and per-thread reads where that cannot be trusted, each
pinned by its requests; always `truncate=false` for traces and spans. The update axis, cursors
and mid-read changes are in `test_api_source_changes.py`."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import tracebridge._opik.api_source as opik_api_module
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


def _routes(opik: OpikFake) -> Counter[str]:
    """Requests by route: method and path below `/v1/private/`."""
    return Counter(f"{r.method} {r.url.path.split('/v1/private/')[-1]}" for r in opik.requests)


def _seed_ten(opik: OpikFake, n_traces: int, n_threads: int, seed: int = 5) -> list[Json]:
    """`n_traces` traces of 10 spans each, 1 in 5 outside threads, over `n_threads` threads
    picked at random (a thread's turns are spread over the whole project)."""
    rng = random.Random(seed)
    threads = [f"conversation-{i}" for i in range(n_threads)]
    rows, start = [], START
    for i in range(n_traces):
        start += timedelta(seconds=rng.randint(2, 45))
        thread = None if i % 5 == 0 or not threads else rng.choice(threads)
        trace, spans, scores, span_scores = opik_trace(
            rng, trace_id=uuid7(to_ms(start), rng), start=start, thread_id=thread,
            project_name=PROJECT, n_spans=10,
        )  # fmt: skip
        opik.add_trace(PROJECT, trace, spans, scores, span_scores)
        rows.append({**trace, "spans": spans})
    return rows


def _check_read(pages: list[Page], rows: list[Json]) -> None:
    """Every trace once, whole (spans), each in its thread when it has one, threads in order."""
    threads, traces = _units(pages)
    reads = Counter(
        t.id for p in pages for u in p.units for t in (u.traces if isinstance(u, Thread) else [u])
    )
    assert set(reads) == {r["id"] for r in rows}
    assert max(reads.values()) == 1
    assert set(threads) == {r["thread_id"] for r in rows if "thread_id" in r}
    for row in rows:
        trace = traces[row["id"]]
        assert trace.thread_id == row.get("thread_id")
        assert {s.id for s in trace.spans} == {s["id"] for s in row["spans"]}
    for thread in threads.values():
        assert {t.thread_id for t in thread.traces} == {thread.id}
        starts = [t.started_at for t in thread.traces]
        assert starts == sorted(starts)


@pytest.mark.anyio
async def test_a_project_is_read_in_a_handful_of_requests() -> None:
    """§2.5/§11: 1,000 traces of 10 spans: the traces in one stream answer (`limit` 2000),
    their spans in two `GET /spans` on a `trace_id` range (5,000 spans each), the threads'
    own data in one `GET /traces/threads`; no request per trace or per thread."""
    opik = OpikFake()
    rows = _seed_ten(opik, 1000, 200)
    pages = await _pages(_source(opik))
    _check_read(pages, rows)
    assert _routes(opik) == {
        "POST traces/search": 1,
        "GET spans": 2,
        "GET traces/threads": 1,
    }
    assert len(opik.requests) <= 10
    threads = {r["thread_id"] for r in rows if "thread_id" in r}
    assert sum(len(p.units) for p in pages) == len(threads) + 200  # threads, traces alone
    assert all(len(p.warnings) == 0 for p in pages)


@pytest.mark.anyio
async def test_reads_traces_on_a_keyset_with_spans_by_trace_id_range() -> None:
    """§2.5/§9: traces come from the NDJSON stream (`id` DESC, `last_retrieved_id`), each batch
    once; spans from `GET /spans` over the project with a `trace_id` range (`>`/`<` UUID v7
    bounds around the batch, §11), never `trace_id=` when the counts agree; the threads' data
    from `GET /traces/threads`, never from the thread stream whose cursor repeats (§10), nor one
    retrieve per thread; every read of traces or spans says `truncate=false`."""
    opik = OpikFake()
    rows = _seed(opik, 200, 150)
    source = _source(opik, page_size=30)
    source.batch = 70
    pages = await _pages(source)
    _check_read(pages, rows)
    routes = _routes(opik)
    assert routes["POST traces/search"] == 3  # 70 + 70 + 60
    assert "POST traces/threads/search" not in routes
    assert "POST traces/threads/retrieve" not in routes
    streams = [json.loads(r.content) for r in opik.requests if r.url.path.endswith("/search")]
    assert [b.get("last_retrieved_id") is not None for b in streams] == [False, True, True]
    assert all(b["truncate"] is False and b["project_name"] == PROJECT for b in streams)
    assert all(b["filters"] == [] and b["limit"] == 70 for b in streams)
    ids = sorted((r["id"] for r in rows), reverse=True)
    for params in _gets(opik, "/v1/private/spans"):
        assert params["truncate"] == "false"
        assert params["project_name"] == PROJECT
        assert "trace_id" not in params
        low, high = _filters(params)
        assert (low["field"], low["operator"], high["field"], high["operator"]) == (
            "trace_id", ">", "trace_id", "<",
        )  # fmt: skip
        inside = [i for i in ids if low["value"] < i < high["value"]]
        assert inside  # the bounds hold trace ids, and are UUID v7 ids themselves
        assert {uuid.UUID(low["value"]).version, uuid.UUID(high["value"]).version} == {7}
    for params in _gets(opik, "/v1/private/traces/threads"):
        assert params["project_name"] == PROJECT
    assert len(pages) == 7  # 30 stream traces a page, and the last
    assert [p.cursor for p in pages][-1] == {"done": True}


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


# --- where the bulk read is not trusted: the fallbacks, each pinned by its requests -------------


class _DroppingSpan(httpx.AsyncBaseTransport):
    """A server whose `trace_id` range answers miss one span (`span_id`)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, span_id: str) -> None:
        self.inner, self.span_id = inner, span_id

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not request.url.path.endswith("/spans") or "filters" not in request.url.params:
            return response
        body = json.loads(await response.aread())
        body["content"] = [s for s in body["content"] if s["id"] != self.span_id]
        return httpx.Response(200, json=body)


def _span_reads_by_trace(opik: OpikFake) -> list[str]:
    return [p["trace_id"] for p in _gets(opik, "/v1/private/spans") if "trace_id" in p]


@pytest.mark.anyio
async def test_a_span_written_after_the_trace_listing_costs_one_read_of_that_trace() -> None:
    """A span written between the trace listing and the span read: its trace's grouped spans
    disagree with its `span_count`, so that trace alone is read again (`trace_id=`), and the
    page says so."""
    opik = OpikFake()
    rows = _seed_ten(opik, 60, 0)
    target = rows[17]
    rng = random.Random(8)
    late = {**target["spans"][3], "id": uuid7(to_ms(START), rng), "name": "written late"}

    def write_span() -> None:
        opik.add_trace(PROJECT, {k: v for k, v in target.items() if k != "spans"}, [late])

    opik.after_request(1, write_span, path_contains="/traces/search")
    pages = await _pages(_source(opik))
    _, traces = _units(pages)
    assert _span_reads_by_trace(opik) == [target["id"]]
    assert "written late" in {s.name for s in traces[target["id"]].spans}
    assert len(traces[target["id"]].spans) == 11
    assert _routes(opik) == {"POST traces/search": 1, "GET spans": 2}
    assert any("1 trace(s) had another span count" in w for p in pages for w in p.warnings)


@pytest.mark.anyio
async def test_a_span_missing_from_the_range_read_costs_one_read_of_that_trace() -> None:
    """Fewer spans in the range answer than the trace's `span_count` (a page shifted under
    page/size): that trace is read on its own and comes whole; the others are not."""
    opik = OpikFake()
    rows = _seed_ten(opik, 60, 12)
    target = rows[40]
    settings = load_settings(None, {"opik_url": opik.base_url}, environ={})
    source = OpikApiSource(
        opik_api(settings, _DroppingSpan(opik.transport, target["spans"][5]["id"])),
        project=PROJECT,
        mappings=default_mappings(),
    )
    pages = await _pages(source)
    _check_read(pages, rows)
    assert _span_reads_by_trace(opik) == [target["id"]]
    assert source.spans.stats.mismatched == 1


def _thread_reads(opik: OpikFake) -> list[str]:
    """The thread ids the source read on their own (the trace stream filtered on a thread)."""
    return [
        f["value"]
        for r in opik.requests
        if r.url.path.endswith("/traces/search")
        for f in json.loads(r.content)["filters"]
        if f["field"] == "thread_id"
    ]


@pytest.mark.anyio
async def test_a_thread_missing_from_the_listing_is_read_on_its_own() -> None:
    """§3.2: a thread Opik has not created yet is not in `GET /traces/threads`: it alone is read
    by the stream filtered on its `thread_id` and retrieved (404: a warning); the other threads
    cost nothing of their own."""
    opik = OpikFake()
    rows = _seed(opik, 40, 8)
    pending = next(r["thread_id"] for r in rows if "thread_id" in r)
    del opik.threads[(opik.project_id(PROJECT), pending)]
    pages = await _pages(_source(opik))
    _check_read(pages, rows)
    by_thread = _thread_reads(opik)
    assert by_thread == [pending]
    retrieved = [json.loads(r.content)["thread_id"] for r in opik.requests
                 if r.url.path.endswith("/threads/retrieve")]  # fmt: skip
    assert retrieved == [pending]
    assert any(pending in w and "thread record" in w for p in pages for w in p.warnings)


@pytest.mark.anyio
async def test_a_thread_whose_turns_are_far_apart_is_read_on_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A held thread waits at most `_HOLD_DISTANCE` stream traces for its next turn (and all
    held traces are bounded): past that, it is read by the stream filtered on its `thread_id`,
    once, with its data from the listing (no retrieve), and comes whole once."""
    monkeypatch.setattr(opik_api_module, "_HOLD_DISTANCE", 5)
    opik = OpikFake()
    rng = random.Random(4)
    rows: list[Json] = []
    for i in range(30):
        start = START + timedelta(minutes=i)
        thread = "far-apart" if i in (0, 29) else "near" if i in (10, 11, 12) else None
        trace, spans, _, _ = opik_trace(
            rng, trace_id=uuid7(to_ms(start), rng), start=start, thread_id=thread,
            project_name=PROJECT, n_spans=3,
        )  # fmt: skip
        opik.add_trace(PROJECT, trace, spans)
        rows.append({**trace, "spans": spans})
    pages = await _pages(_source(opik, page_size=4))
    _check_read(pages, rows)
    by_thread = _thread_reads(opik)
    assert by_thread == ["far-apart"]
    assert "POST traces/threads/retrieve" not in _routes(opik)
    threads, _ = _units(pages)
    assert len(threads["far-apart"].traces) == 2


@pytest.mark.anyio
async def test_a_window_that_cuts_a_thread_reads_that_thread_on_its_own() -> None:
    """A thread that started before `since` cannot be counted from the window's traces: it is
    read by the stream filtered on its `thread_id` and the window; a thread inside the window
    costs no request of its own."""
    opik = OpikFake()
    _window_project(opik)
    rng = random.Random(2)
    inside = START + timedelta(days=3, hours=2)
    for minutes in (0, 3):
        start = inside + timedelta(minutes=minutes)
        opik.add_trace(PROJECT, *opik_trace(
            rng, trace_id=uuid7(to_ms(start), rng), start=start, thread_id="inside",
            project_name=PROJECT, n_spans=2,
        ))  # fmt: skip
    since, until = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 6, tzinfo=UTC)
    threads, _ = _units(await _pages(_source(opik), Window(since, until)))
    assert set(threads) == {"7d1e0c4b-3a2f-4e5d-8c7b-6a5f4e3d2c1b", "inside"}
    (cut,) = [
        filters
        for r in opik.requests
        if r.url.path.endswith("/traces/search")
        and (filters := json.loads(r.content)["filters"])[0]["field"] == "thread_id"
    ]
    assert cut[0] == {"field": "thread_id", "operator": "=",
                      "value": "7d1e0c4b-3a2f-4e5d-8c7b-6a5f4e3d2c1b"}  # fmt: skip
    assert {f["field"] for f in cut[1:]} == {"start_time"}


class _HidingFromThreadReads(httpx.AsyncBaseTransport):
    """A server whose stream filtered on a `thread_id` misses one trace (`trace_id`): e.g. one
    changed between the listing and the thread's read."""

    def __init__(self, inner: httpx.AsyncBaseTransport, trace_id: str) -> None:
        self.inner, self.trace_id = inner, trace_id

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not request.url.path.endswith("/traces/search") or '"=' not in request.content.decode():
            return response
        lines = (await response.aread()).decode().splitlines()
        kept = [line for line in lines if json.loads(line)["id"] != self.trace_id]
        return httpx.Response(200, content="".join(f"{line}\n" for line in kept).encode())


@pytest.mark.anyio
async def test_a_trace_its_thread_read_misses_comes_on_its_own_with_its_spans() -> None:
    """A thread read on its own (here: missing from the listing) whose read misses one of its
    traces that the stream lists after: that trace comes on its own, whole, once."""
    opik = OpikFake()
    rows = _seed_ten(opik, 30, 3)
    thread_id = next(r["thread_id"] for r in rows if "thread_id" in r)
    members = sorted((r for r in rows if r.get("thread_id") == thread_id), key=lambda r: r["id"])
    assert len(members) >= 2
    del opik.threads[(opik.project_id(PROJECT), thread_id)]
    hidden = members[0]  # the oldest: the stream reaches it after the thread's read
    settings = load_settings(None, {"opik_url": opik.base_url}, environ={})
    source = OpikApiSource(
        opik_api(settings, _HidingFromThreadReads(opik.transport, hidden["id"])),
        project=PROJECT,
        mappings=default_mappings(),
    )
    pages = await _pages(source)
    threads, traces = _units(pages)
    assert {t.id for t in threads[thread_id].traces} == {r["id"] for r in members[1:]}
    alone = [u for p in pages for u in p.units if isinstance(u, Trace) and u.id == hidden["id"]]
    assert len(alone) == 1
    assert alone[0].thread_id == thread_id
    assert {s.id for s in alone[0].spans} == {s["id"] for s in hidden["spans"]}
    assert set(traces) == {r["id"] for r in rows}


@pytest.mark.anyio
async def test_a_line_separator_inside_a_string_does_not_split_a_stream_line() -> None:
    """The NDJSON streams (§2.4) are split on newlines only: a server writes U+2028, U+2029
    and U+0085 inside strings unescaped (the fake does, as compact UTF-8 JSON), and a line split
    there would be read as broken JSON."""
    opik = OpikFake()
    rows = _seed(opik, 3, 0)
    odd = "one\u2028two\u2029three\x85four"
    opik.traces[rows[0]["id"]]["input"] = {"text": odd}
    pages = await _pages(_source(opik))
    _, traces = _units(pages)
    assert len(traces) == 3
    read = traces[rows[0]["id"]].input
    assert read is not None
    assert odd in json.dumps(read.model_dump(mode="json"), ensure_ascii=False)
