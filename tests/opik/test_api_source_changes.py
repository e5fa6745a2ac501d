"""`OpikApiSource` on keyset cursors and on the update axis, against `OpikFake`.

Facts (`reference/opik-api.md`): §2.5 the trace stream is a keyset (`id` DESC,
`last_retrieved_id`); §2.7 `last_updated_at` filters but does not sort; §10 threads have no
working cursor and a thread's `last_updated_at` is its newest trace's, thread tags, status and
scores do not move it; §2.3/§11 feedback scores live in their own table and carry their own
`last_updated_at`; §3.3 spans live in theirs.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import tracebridge._opik.api_source as opik_api_module
from tracebridge import Page, ServerError, Thread, Trace, Window, load_settings
from tracebridge._mapping import default_mappings
from tracebridge._opik.api import OpikApiSource, opik_api
from tracebridge._time import to_iso, to_ms

from ..factories import opik_project, opik_trace, uuid7
from ..fakes.opik import OpikFake

Json = dict[str, Any]
PROJECT = "support-bot"
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SEEDED_AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # the fake's clock while seeding


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self, at: datetime = SEEDED_AT) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _source(
    opik: OpikFake,
    *,
    page_size: int = 100,
    rescan: timedelta | None = timedelta(days=1),
    batch: int | None = None,
) -> OpikApiSource:
    """The source; its trace listings ask for `batch` traces per answer (default: `page_size`,
    so that mid-read changes land between answers)."""
    settings = load_settings(None, {"opik_url": opik.base_url}, environ={})
    return OpikApiSource(
        opik_api(settings, opik.transport),
        project=PROJECT,
        mappings=default_mappings(),
        page_size=page_size,
        rescan=rescan,
        now=opik.now,
        batch=batch or page_size,
    )


async def _read(
    source: OpikApiSource, window: Window, resume: Json | None = None, stop_after: int = 0
) -> list[Page]:
    pages: list[Page] = []
    async for page in source.pages(window, resume):
        pages.append(page)
        if stop_after and len(pages) == stop_after:
            break
    await source.aclose()
    return pages


def _thread_units(pages: list[Page]) -> Counter[str]:
    return Counter(u.id for p in pages for u in p.units if isinstance(u, Thread))


def _trace_reads(pages: list[Page]) -> Counter[str]:
    """How often each trace was delivered (inside its thread or alone)."""
    reads: Counter[str] = Counter()
    for page in pages:
        for unit in page.units:
            reads.update(t.id for t in unit.traces) if isinstance(unit, Thread) else reads.update(
                [unit.id]
            )
    return reads


def _traces(pages: list[Page]) -> dict[str, Trace]:
    out: dict[str, Trace] = {}
    for page in pages:
        for unit in page.units:
            out |= {t.id: t for t in unit.traces} if isinstance(unit, Thread) else {unit.id: unit}
    return out


def _seed(opik: OpikFake, n_traces: int, n_threads: int, seed: int = 1) -> list[Json]:
    rows = []
    for trace, spans, trace_scores, span_scores in opik_project(
        n_traces, n_threads, seed=seed, start=START, project_name=PROJECT
    ):
        opik.add_trace(PROJECT, trace, spans, trace_scores, span_scores)
        rows.append({**trace, "spans": spans})
    return rows


def _stream_calls(opik: OpikFake, path: str = "/v1/private/traces/search") -> int:
    return sum(r.url.path.endswith(path) for r in opik.requests)


def _send(opik: OpikFake, method: str, path: str, body: Json) -> None:
    """A write through the API (not the seeding helpers, which write the trace row again)."""
    with httpx.Client(transport=opik.sync_transport, base_url=opik.base_url) as client:
        response = client.request(method, path, json=body)
    assert response.is_success, response.text


def _rewrite(opik: OpikFake, row: Json, at: datetime, **changes: Any) -> None:
    """Write a trace again (a new version, as an upsert) with `last_updated_at` = `at`."""
    trace = {k: v for k, v in row.items() if k != "spans"}
    opik.add_trace(PROJECT, {**trace, **changes, "last_updated_at": to_iso(at)})


# --- the start axis on a keyset ---------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("dynamic_sorting", [True, False])
async def test_a_thread_changed_mid_read_is_neither_skipped_nor_read_twice(
    dynamic_sorting: bool,
) -> None:
    """The reported bug: threads paged by page number shifted when one was updated during the
    read (one skipped, another read twice, the run said OK). Here, between two answers: a thread
    gets a turn rewritten (its `last_updated_at` moves: first under the server's
    default thread order), a thread gets a new turn, and a conversation that started long ago
    is imported. Every thread that existed comes once, every trace at most
    once, and none that existed is missing — with or without the server honouring `sorting`."""
    clock = Clock()
    opik = OpikFake(now=clock, dynamic_sorting=dynamic_sorting)
    rows = _seed(opik, 120, 40)
    threads_before = {r["thread_id"] for r in rows if "thread_id" in r}
    by_thread: dict[str, list[Json]] = {}
    for row in rows:
        if "thread_id" in row:
            by_thread.setdefault(row["thread_id"], []).append(row)
    threaded = sorted((r for r in rows if "thread_id" in r), key=lambda r: r["start_time"])
    middle = threaded[len(threaded) // 2]  # a turn of a thread in the middle of any order
    newest_thread = threaded[-1]
    rng = random.Random(5)

    def change_during_read() -> None:
        clock.at += timedelta(minutes=5)
        _rewrite(opik, middle, clock.at, name="edited")
        turn = START + timedelta(days=2)  # a new turn of a thread already read
        opik.add_trace(
            PROJECT,
            opik_trace(
                rng,
                trace_id=uuid7(to_ms(turn), rng),
                start=turn,
                thread_id=newest_thread["thread_id"],
                project_name=PROJECT,
                n_spans=1,
            )[0],
        )
        old = START - timedelta(days=30)  # an old conversation, imported now
        opik.add_trace(
            PROJECT,
            opik_trace(
                rng,
                trace_id=uuid7(to_ms(old), rng),
                start=old,
                thread_id="imported-thread",
                project_name=PROJECT,
                n_spans=1,
            )[0],
        )

    # After the first listing answer and the first thread's read, whatever the reader asks.
    opik.after_request(2, change_during_read, path_contains="/v1/private/traces")
    pages = await _read(_source(opik, page_size=10), Window())

    units = _thread_units(pages)
    assert set(units) >= threads_before
    assert max(units.values()) == 1, units.most_common(3)
    reads = _trace_reads(pages)
    assert max(reads.values()) == 1, reads.most_common(3)
    assert set(reads) >= {r["id"] for r in rows}
    assert _traces(pages)[middle["id"]].name in ("edited", middle["name"])


@pytest.mark.anyio
async def test_the_start_axis_resumes_from_a_keyset_cursor() -> None:
    """A pass stopped after any page and resumed from that page's cursor loses nothing."""
    opik = OpikFake(now=Clock())
    rows = _seed(opik, 90, 25)
    full = await _read(_source(opik, page_size=10), Window())
    assert len(full) > 6
    for stop in range(1, len(full)):
        head = await _read(_source(opik, page_size=10), Window(), stop_after=stop)
        assert head[-1].cursor is not None
        assert "after" in head[-1].cursor
        tail = await _read(_source(opik, page_size=10), Window(), resume=head[-1].cursor)
        assert set(_trace_reads(head + tail)) == {r["id"] for r in rows}
    assert full[-1].cursor == {"done": True}
    assert [p.high_water for p in full] == [None] * len(full)  # no change axis here


@pytest.mark.anyio
async def test_a_page_number_cursor_of_an_earlier_version_restarts_its_phase() -> None:
    opik = OpikFake(now=Clock())
    rows = _seed(opik, 30, 8)
    pages = await _read(_source(opik), Window(), resume={"phase": "traces", "page": 3, "read": 9})
    standalone = {r["id"] for r in rows if "thread_id" not in r}
    assert set(_trace_reads(pages)) == standalone
    assert any("page number" in w for w in pages[0].warnings)


@pytest.mark.anyio
async def test_a_resume_never_passes_a_thread_still_gathered() -> None:
    """A thread's turns are gathered from the stream until all have come: a page cut while one
    is held carries a cursor before its first turn, so a resumed read still brings it whole."""
    opik = OpikFake(now=Clock())
    rng = random.Random(6)
    for i in range(12):
        start = START + timedelta(minutes=i)
        thread = "long" if i in (2, 9) else None
        opik.add_trace(PROJECT, *opik_trace(
            rng, trace_id=uuid7(to_ms(start), rng), start=start, thread_id=thread,
            project_name=PROJECT, n_spans=1,
        ))  # fmt: skip
    head = await _read(_source(opik, page_size=2, batch=4), Window(), stop_after=2)
    assert "long" not in _thread_units(head)  # its newest turn was read, and held
    newest_turn = max(r["id"] for r in opik.traces.values() if r.get("thread_id") == "long")
    assert head[-1].cursor is not None
    assert head[-1].cursor["after"] > newest_turn  # the cursor stays before it
    tail = await _read(_source(opik, page_size=2, batch=4), Window(), resume=head[-1].cursor)
    (thread,) = (u for p in tail for u in p.units if isinstance(u, Thread))
    assert len(thread.traces) == 2


@pytest.mark.anyio
async def test_cursors_of_the_two_phase_read_still_resume() -> None:
    """The earlier start-axis read had a `threads` phase (threaded traces) then a `traces`
    phase (the others). A `threads` cursor starts the read over with a warning; a `traces`
    cursor (every thread read) resumes the traces outside threads below it."""
    opik = OpikFake(now=Clock())
    rows = _seed(opik, 40, 8)
    middle = sorted(r["id"] for r in rows)[20]
    pages = await _read(_source(opik), Window(), resume={"phase": "threads", "after": middle})
    assert set(_trace_reads(pages)) == {r["id"] for r in rows}
    assert any("threads phase of an earlier" in w for w in pages[0].warnings)
    pages = await _read(_source(opik), Window(), resume={"phase": "traces", "after": middle})
    assert set(_trace_reads(pages)) == {
        r["id"] for r in rows if "thread_id" not in r and r["id"] < middle
    }
    assert pages[0].warnings == []


# --- the update axis ------------------------------------------------------------------------


def _changes(since: datetime | None, until: datetime) -> Window:
    return Window(since=since, until=until, axis="updated")


@pytest.mark.anyio
async def test_a_pass_reads_what_changed_and_an_unchanged_pass_costs_a_handful() -> None:
    """§2.7: `last_updated_at` filters. The first pass (no `since`) reads all; one over a
    quiet window costs a handful of requests; a changed turn brings its whole thread, a changed
    standalone trace itself, and nothing else comes."""
    clock = Clock()
    opik = OpikFake(now=clock)
    rows = _seed(opik, 1000, 300)
    first_until = SEEDED_AT + timedelta(minutes=10)
    clock.at = first_until + timedelta(seconds=5)
    source = _source(opik, batch=2000)
    first = await _read(source, _changes(None, first_until))
    assert set(_trace_reads(first)) == {r["id"] for r in rows}
    assert max(_trace_reads(first).values()) == 1
    first_cost = source.api.requests
    assert first_cost <= 5  # one stream answer, one thread listing, spans in bulk
    assert [p.high_water for p in first] == [None] * (len(first) - 1) + [first_until]
    assert first[-1].cursor == {"axis": "updated", "done": True}

    second_until = first_until + timedelta(minutes=10)
    clock.at = second_until
    source = _source(opik)
    quiet = await _read(source, _changes(first_until - timedelta(minutes=2), second_until))
    assert _trace_reads(quiet) == Counter()
    quiet_cost = source.api.requests
    assert quiet_cost <= 5
    assert quiet[-1].high_water == second_until

    threaded = next(r for r in rows if "thread_id" in r)
    alone = next(r for r in rows if "thread_id" not in r)
    clock.at = second_until + timedelta(minutes=1)
    _rewrite(opik, threaded, clock.at, name="renamed turn")
    _rewrite(opik, alone, clock.at, output={"output": "corrected"})
    third_until = clock.at + timedelta(minutes=1)
    pages = await _read(_source(opik), _changes(second_until - timedelta(minutes=2), third_until))
    members = {r["id"] for r in rows if r.get("thread_id") == threaded["thread_id"]}
    assert _thread_units(pages) == Counter({threaded["thread_id"]: 1})
    assert set(_trace_reads(pages)) == members | {alone["id"]}
    assert _traces(pages)[threaded["id"]].name == "renamed turn"
    print(f"\nOpik, 1000 traces / 300 threads: first pass {first_cost}, quiet {quiet_cost}")


@pytest.mark.anyio
async def test_scores_added_later_are_read_again_by_the_rescan_rule() -> None:
    """§2.3/§11: a score does not move `last_updated_at`. Each pass re-reads the traces started
    within `rescan` before `since` that got a score (their own, on a span, or their thread's)
    in the window. The documented limit is pinned too: a score on an older trace is not seen."""
    clock = Clock(START + timedelta(hours=3))
    opik = OpikFake(now=clock)
    rows = _seed(opik, 60, 10)  # started from START on, over about 20 minutes
    until = clock.at + timedelta(minutes=10)
    await _read(_source(opik), _changes(None, until))
    threaded = next(r for r in rows if "thread_id" in r)
    alone = [r for r in rows if "thread_id" not in r]
    with_span = next(r for r in alone[1:] if r["spans"])
    clock.at = until + timedelta(minutes=3)
    score = {"value": 0.5, "source": "ui", "project_name": PROJECT}
    _send(opik, "PUT", "/v1/private/traces/feedback-scores",
          {"scores": [{"id": alone[0]["id"], "name": "late_review", **score}]})  # fmt: skip
    span_id = with_span["spans"][0]["id"]
    _send(opik, "PUT", "/v1/private/spans/feedback-scores",
          {"scores": [{"id": span_id, "name": "late_span", **score}]})  # fmt: skip
    opik.add_thread_data(PROJECT, threaded["thread_id"], scores=[{"name": "csat", "value": 4}])
    assert opik.traces[alone[0]["id"]]["last_updated_at"] < to_iso(until)
    second = clock.at + timedelta(minutes=1)
    source = _source(opik)
    pages = await _read(source, _changes(until - timedelta(minutes=2), second))
    reads = _trace_reads(pages)
    assert {alone[0]["id"], with_span["id"]} <= set(reads)
    assert _thread_units(pages) == Counter({threaded["thread_id"]: 1})
    assert max(reads.values()) == 1
    assert {s.name for s in _traces(pages)[alone[0]["id"]].scores} >= {"late_review"}
    thread = next(u for p in pages for u in p.units if isinstance(u, Thread))
    assert {s.name for s in thread.scores} == {"csat"}

    # Limit: with since more than `rescan` after the trace started, the score is not seen.
    clock.at = START + timedelta(days=3)
    _send(opik, "PUT", "/v1/private/traces/feedback-scores",
          {"scores": [{"id": alone[2]["id"], "name": "much_later", **score}]})  # fmt: skip
    late = await _read(
        _source(opik), _changes(clock.at - timedelta(minutes=5), clock.at + timedelta(minutes=1))
    )
    assert _trace_reads(late) == Counter()


@pytest.mark.anyio
async def test_thread_tags_alone_wait_for_the_next_change_of_the_thread() -> None:
    """§10: tags and status carry no timestamp and do not move `last_updated_at`: a change of
    only those is not seen (the documented limit) until a trace of the thread changes, and then
    the thread comes with them."""
    clock = Clock()
    opik = OpikFake(now=clock)
    rows = _seed(opik, 20, 4)
    until = clock.at + timedelta(minutes=1)
    await _read(_source(opik), _changes(None, until))
    turn = next(r for r in rows if "thread_id" in r)
    clock.at = until + timedelta(minutes=2)
    opik.add_thread_data(PROJECT, turn["thread_id"], tags=["escalated"], status="inactive")
    quiet = await _read(_source(opik), _changes(until, clock.at))
    assert _thread_units(quiet) == Counter()
    clock.at += timedelta(minutes=1)
    _rewrite(opik, turn, clock.at)
    opik.add_thread_data(PROJECT, turn["thread_id"], status="inactive")  # writes reopen it
    pages = await _read(_source(opik), _changes(until, clock.at + timedelta(minutes=1)))
    (thread,) = (u for p in pages for u in p.units if isinstance(u, Thread))
    assert thread.tags == ["escalated"]
    assert thread.status == "inactive"


@pytest.mark.anyio
async def test_a_span_written_after_its_trace_brings_the_trace_again() -> None:
    """§3.3: spans live in their own table; a span written later leaves the trace's
    `last_updated_at` alone, so the pass finds the trace through the span stream."""
    clock = Clock()
    opik = OpikFake(now=clock)
    rows = _seed(opik, 10, 0)
    until = clock.at + timedelta(minutes=1)
    await _read(_source(opik), _changes(None, until))
    row = rows[4]
    clock.at = until + timedelta(minutes=2)
    late = {**row["spans"][0], "id": uuid7(to_ms(clock.at), random.Random(1)), "name": "late"}
    late["parent_span_id"] = row["spans"][0]["id"]
    _send(opik, "POST", "/v1/private/spans/batch", {"spans": [late]})
    assert opik.traces[row["id"]]["last_updated_at"] < to_iso(until)
    pages = await _read(_source(opik), _changes(until, clock.at + timedelta(minutes=1)))
    assert set(_trace_reads(pages)) == {row["id"]}
    assert "late" in {s.name for s in _traces(pages)[row["id"]].spans}


@pytest.mark.anyio
async def test_a_trace_changed_mid_pass_is_read_once_now_or_in_the_next_pass() -> None:
    """A trace rewritten during the pass leaves the window (its `last_updated_at` passes
    `until`): the keyset on `id` does not shift, nothing is read twice, and the next pass —
    whose window starts at this one's `until` — has it."""
    clock = Clock()
    opik = OpikFake(now=clock)
    rows = _seed(opik, 200, 40)
    until = clock.at + timedelta(minutes=1)
    clock.at = until
    oldest = min(rows, key=lambda r: r["start_time"])  # the stream reaches it last

    def edit() -> None:
        clock.at += timedelta(seconds=30)
        _rewrite(opik, oldest, clock.at, name="edited mid-pass")

    opik.after_request(1, edit, path_contains="/traces/search")
    first = await _read(_source(opik, page_size=20), _changes(None, until))
    reads = _trace_reads(first)
    assert max(reads.values()) == 1
    assert set(reads) | {oldest["id"]} == {r["id"] for r in rows}
    later = clock.at + timedelta(minutes=1)
    second = await _read(_source(opik), _changes(until, later))
    assert _traces(second)[oldest["id"]].name == "edited mid-pass"


@pytest.mark.anyio
async def test_the_update_axis_resumes_in_every_phase() -> None:
    """Stop after any page, resume from its cursor (with the same window): nothing that the
    uninterrupted pass reads is missing, and the last page still carries `until`."""
    clock = Clock(START + timedelta(hours=2))
    opik = OpikFake(now=clock)
    rows = _seed(opik, 80, 15)
    until = clock.at + timedelta(minutes=1)
    await _read(_source(opik), _changes(None, until))
    clock.at = until + timedelta(minutes=1)
    for row in rows[::7]:
        _rewrite(opik, row, clock.at)
    opik.add_thread_data(
        PROJECT, rows[1].get("thread_id") or "t", scores=[{"name": "x", "value": 1}]
    )
    window = _changes(until, clock.at + timedelta(minutes=1))
    full = await _read(_source(opik, page_size=3), window)
    expected = set(_trace_reads(full))
    phases = [p.cursor.get("phase") for p in full if p.cursor]
    assert {"changed", "spans", "scores"} <= set(phases)
    for stop in range(1, len(full)):
        head = await _read(_source(opik, page_size=3), window, stop_after=stop)
        tail = await _read(_source(opik, page_size=3), window, resume=head[-1].cursor)
        assert set(_trace_reads(head + tail)) >= expected, stop
        assert tail[-1].high_water == window.until


# --- reads that cannot be trusted say so ------------------------------------------------------


class _Rewriting(httpx.AsyncBaseTransport):
    """Passes requests to the fake, and lets a test rewrite the stream answers."""

    def __init__(self, inner: httpx.AsyncBaseTransport, rewrite: Any) -> None:
        self.inner, self.rewrite = inner, rewrite

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not request.url.path.endswith("/traces/search"):
            return response
        await response.aread()
        body = json.loads(request.content)
        return httpx.Response(200, content=self.rewrite(body, response.content))


def _source_on(transport: httpx.AsyncBaseTransport, opik: OpikFake) -> OpikApiSource:
    settings = load_settings(None, {"opik_url": opik.base_url}, environ={})
    return OpikApiSource(
        opik_api(settings, transport),
        project=PROJECT,
        mappings=default_mappings(),
        page_size=5,
        batch=5,
    )


@pytest.mark.anyio
async def test_a_stream_that_ignores_its_cursor_stops_the_read() -> None:
    """A server that answers the same first page whatever `last_retrieved_id` says would loop
    or repeat forever: the source checks that ids descend below the cursor, and stops."""
    opik = OpikFake(now=Clock())
    _seed(opik, 30, 0)
    first: list[bytes] = []

    def same_page(body: Json, content: bytes) -> bytes:
        if content and not first:
            first.append(content)
        return first[0] if first else content

    with pytest.raises(ServerError, match="descending ids below its cursor"):
        await _read(_source_on(_Rewriting(opik.transport, same_page), opik), Window())


@pytest.mark.anyio
async def test_an_error_line_in_the_stream_stops_the_read() -> None:
    """§2.4: an `ErrorMessage` may appear as a line of the NDJSON stream."""
    opik = OpikFake(now=Clock())
    _seed(opik, 30, 0)

    def broken(body: Json, content: bytes) -> bytes:
        lines = content.splitlines()[:2]
        return b"\n".join([*lines, b'{"code": 500, "message": "query timed out"}']) + b"\n"

    with pytest.raises(ServerError, match="query timed out"):
        await _read(_source_on(_Rewriting(opik.transport, broken), opik), Window())


@pytest.mark.anyio
async def test_a_thread_opik_has_not_created_yet_comes_without_its_own_data() -> None:
    """§3.2: threads appear asynchronously; until then `/threads/retrieve` answers 404. The
    thread's traces are read all the same, and a warning says its scores, tags, status are not."""
    opik = OpikFake(now=Clock())
    rows = _seed(opik, 12, 2)
    pending = next(r["thread_id"] for r in rows if "thread_id" in r)
    del opik.threads[(opik.project_id(PROJECT), pending)]
    pages = await _read(_source(opik), Window())
    assert _thread_units(pages)[pending] == 1
    assert any(pending in w and "thread record" in w for p in pages for w in p.warnings)


@pytest.mark.anyio
async def test_a_span_count_that_changes_while_spans_are_paged_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Spans per trace are read with page/size (the span stream's rate limit is too low):
    no cursor there, so a count that changes between pages is said, and no span comes twice."""
    monkeypatch.setattr(opik_api_module, "_LIST_SIZE", 5)
    opik = OpikFake(now=Clock())
    rng = random.Random(2)
    trace, spans, _, _ = opik_trace(
        rng, trace_id=uuid7(to_ms(START), rng), start=START, thread_id=None,
        project_name=PROJECT, n_spans=12,
    )  # fmt: skip
    opik.add_trace(PROJECT, trace, spans)
    extra = {**spans[-1], "id": uuid7(to_ms(START), rng), "name": "added"}

    def add_span() -> None:
        _send(opik, "POST", "/v1/private/spans/batch", {"spans": [extra]})

    opik.after_request(1, add_span, path_contains="/v1/private/spans", method="GET")
    pages = await _read(_source(opik), Window())
    (read,) = _traces(pages).values()
    ids = [s.id for s in read.spans]
    assert len(ids) == len(set(ids))
    assert {s["id"] for s in spans} <= set(ids)
    assert any("changed while it was read page by page" in w for p in pages for w in p.warnings)
