"""Tests of the LangWatch fake, through real httpx requests on `fake.transport`."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.fakes.langwatch import LangWatchFake

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

NOW = 1_750_000_000_000  # 2025-06-15, epoch ms
DAY = 86_400_000
SEED = Path("/work/shared/seeds/langwatch-get-thread.txt")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.ms = NOW

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> LangWatchFake:
    return LangWatchFake(now=clock)


@pytest.fixture
async def client(fake: LangWatchFake) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"X-Auth-Token": fake.api_key}
    async with httpx.AsyncClient(
        transport=fake.transport, base_url=fake.base_url, headers=headers
    ) as c:
        yield c


def span(span_id: str, start: int = NOW - 60_000, **extra: Any) -> dict[str, Any]:
    return {
        "span_id": span_id,
        "type": "llm",
        "timestamps": {"started_at": start, "finished_at": start + 1_000},
        **extra,
    }


def read_trace(trace_id: str, started_at: int, updated_at: int | None = None, **extra: Any):
    """A minimal trace in the read shape, for add_trace."""
    return {
        "trace_id": trace_id,
        "metadata": {},
        "timestamps": {
            "started_at": started_at,
            "inserted_at": started_at,
            "updated_at": started_at if updated_at is None else updated_at,
        },
        "input": {"value": f"in {trace_id}"},
        "output": {"value": f"out {trace_id}"},
        "spans": [],
        "evaluations": [],
        **extra,
    }


async def search(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    body = {"startDate": 0, "endDate": NOW * 2, "format": "json", **body}
    return await client.post("/api/traces/search", json=body)


async def scroll_ids(client: httpx.AsyncClient, **body: Any) -> tuple[list[str], int]:
    """Follow scrollId to the end; returns the trace ids in order and the request count."""
    ids: list[str] = []
    requests = 0
    scroll_id = None
    while True:
        page = (await search(client, scrollId=scroll_id, **body)).json()
        requests += 1
        ids += [t["trace_id"] for t in page["traces"]]
        scroll_id = page["pagination"].get("scrollId")
        if scroll_id is None:
            return ids, requests


# ---- auth (§2) ---------------------------------------------------------------------------------


async def test_auth_headers(fake: LangWatchFake) -> None:
    fake.add_trace(read_trace("t1", NOW))
    basic = base64.b64encode(f"{fake.project_id}:{fake.api_key}".encode()).decode()
    async with httpx.AsyncClient(transport=fake.transport, base_url=fake.base_url) as c:
        for headers in (
            {"X-Auth-Token": fake.api_key},
            {"Authorization": f"Bearer {fake.api_key}"},
            {"Authorization": f"Basic {basic}"},
            {
                "Authorization": "Bearer ",
                "X-Auth-Token": fake.api_key,
            },  # empty Bearer falls through
        ):
            assert (await c.get("/api/traces/t1", headers=headers)).status_code == 200, headers
        wrong = await c.get("/api/traces/t1", headers={"X-Auth-Token": "sk-lw-wrong"})
        assert wrong.status_code == 401
        assert wrong.json()["message"] == "Invalid auth token."
        bearer_wins = {"Authorization": "Bearer nope", "X-Auth-Token": fake.api_key}
        assert (await c.get("/api/traces/t1", headers=bearer_wins)).status_code == 401
        missing = await c.post("/api/traces/search", json={"startDate": 0, "endDate": 1})
        assert missing.status_code == 401
        assert missing.json()["message"].startswith("Authentication token is required")
        collector = await c.post("/api/collector", json={"trace_id": "x", "spans": [span("s")]})
        assert collector.status_code == 401
        assert collector.json() == {"error": "Unauthorized", "message": "Invalid credentials"}
    assert "x" not in fake.traces
    assert len(fake.requests) == 8


async def test_unknown_route_missing_trace_and_prefix_lookup(fake, client) -> None:
    assert (await client.get("/api/nope")).status_code == 404
    assert (await client.get("/api/collector")).status_code == 404  # wrong method
    missing = await client.get("/api/traces/does-not-exist")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Trace not found."}
    for trace_id in ("abcdef0123", "abcdef0199"):
        fake.add_trace(read_trace(trace_id, NOW))
    assert (await client.get("/api/traces/abcdef012")).json()["trace_id"] == "abcdef0123"
    ambiguous = await client.get("/api/traces/abcdef01")
    assert ambiguous.status_code == 409
    assert ambiguous.json()["candidateTraceIds"] == ["abcdef0123", "abcdef0199"]


# ---- search paging (§3.1) ----------------------------------------------------------------------


async def test_scroll_id_only_on_full_pages(fake: LangWatchFake, client) -> None:
    for i in range(5):
        fake.add_trace(read_trace(f"t{i}", NOW - 1000 * i))
    ids, requests = await scroll_ids(client, pageSize=2, sortDirection="asc")
    assert ids == ["t4", "t3", "t2", "t1", "t0"]  # ascending by started_at
    assert requests == 3
    first = (await search(client, pageSize=2)).json()
    assert [t["trace_id"] for t in first["traces"]] == ["t0", "t1"]  # default desc
    assert first["pagination"]["totalHits"] == 5
    cursor = json.loads(base64.b64decode(first["pagination"]["scrollId"]))
    assert cursor == {
        "lastTimestamp": NOW - 1000,
        "lastTraceId": "t1",
        "pageSize": 2,
        "sortDirection": "desc",
        "dateField": "occurred",
    }


async def test_exactly_full_last_page_costs_an_empty_extra_page(fake, client) -> None:
    for i in range(4):
        fake.add_trace(read_trace(f"t{i}", NOW - 1000 * i))
    page = (await search(client, pageSize=2)).json()
    page = (await search(client, pageSize=2, scrollId=page["pagination"]["scrollId"])).json()
    assert [t["trace_id"] for t in page["traces"]] == ["t2", "t3"]
    assert "scrollId" in page["pagination"]
    last = (await search(client, pageSize=2, scrollId=page["pagination"]["scrollId"])).json()
    assert last["traces"] == []
    assert "scrollId" not in last["pagination"]


async def test_ties_broken_by_trace_id_in_the_sort_direction(fake, client) -> None:
    for trace_id in ("b", "c", "a"):
        fake.add_trace(read_trace(trace_id, NOW))
    assert (await scroll_ids(client, pageSize=1, sortDirection="asc"))[0] == ["a", "b", "c"]
    assert (await scroll_ids(client, pageSize=1))[0] == ["c", "b", "a"]


async def test_changed_cursor_parameters_silently_restart_from_page_one(fake, client) -> None:
    for i in range(6):
        fake.add_trace(read_trace(f"t{i}", NOW - 1000 * i))
    first = (await search(client, pageSize=2)).json()
    scroll_id = first["pagination"]["scrollId"]
    same = (await search(client, pageSize=2, scrollId=scroll_id)).json()
    assert [t["trace_id"] for t in same["traces"]] == ["t2", "t3"]
    for change in ({"pageSize": 3}, {"sortDirection": "asc"}, {"dateField": "updated"}):
        body = {"pageSize": 2, **change}
        restarted = (await search(client, scrollId=scroll_id, **body)).json()
        expected = (await search(client, **body)).json()
        assert restarted["traces"] == expected["traces"], change
        assert restarted["traces"][0]["trace_id"] in ("t0", "t5"), change
    garbage = (await search(client, pageSize=2, scrollId="not base64 json!")).json()
    assert [t["trace_id"] for t in garbage["traces"]] == ["t0", "t1"]


async def test_page_size_default_and_cap(fake, client) -> None:
    for i in range(1001):
        fake.add_trace(read_trace(f"t{i:04d}", NOW - i))
    default = (await search(client)).json()
    capped = (await search(client, pageSize=5000)).json()
    assert len(default["traces"]) == len(capped["traces"]) == 1000
    cursor = json.loads(base64.b64decode(capped["pagination"]["scrollId"]))
    assert cursor["pageSize"] == 1000


async def test_search_validation(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/traces/search", json={"endDate": 1})).status_code == 422
    assert (await search(client, pageOffset=1000)).status_code == 422
    assert (await search(client, pageOffset=0)).status_code == 200
    assert (await search(client, dateField="created")).status_code == 422
    assert (await search(client, pageSize=0)).status_code == 422
    assert (await search(client, filters={"metadata.nope": ["x"]})).status_code == 422
    assert (await search(client, format="digest")).status_code == 400


async def test_date_window_is_inclusive_and_accepts_iso(fake, client) -> None:
    start, end = NOW - DAY, NOW
    for trace_id, at in (("before", start - 1), ("lo", start), ("hi", end), ("after", end + 1)):
        fake.add_trace(read_trace(trace_id, at))
    page = (await search(client, startDate=start, endDate=end, sortDirection="asc")).json()
    assert [t["trace_id"] for t in page["traces"]] == ["lo", "hi"]
    iso = (await search(client, startDate="2025-06-14T15:06:40Z", endDate=end)).json()
    assert {t["trace_id"] for t in iso["traces"]} == {"lo", "hi"}


async def test_date_field_updated_and_updated_through(fake, client, clock) -> None:
    fake.add_trace(read_trace("old-but-updated", NOW - 30 * DAY, updated_at=NOW - 100))
    fake.add_trace(read_trace("recent", NOW - 200, updated_at=NOW - 200))
    fake.add_trace(read_trace("stale", NOW - 300, updated_at=NOW - 10 * DAY))
    body = {"dateField": "updated", "startDate": NOW - DAY, "sortDirection": "asc"}
    page = (await search(client, **body, endDate=NOW + DAY)).json()
    assert [t["trace_id"] for t in page["traces"]] == ["recent", "old-but-updated"]
    assert page["pagination"]["updatedThrough"] == NOW  # the scroll start, not the endDate
    early = (await search(client, **body, endDate=NOW - 150)).json()
    assert early["pagination"]["updatedThrough"] == NOW - 150
    occurred = (await search(client, startDate=NOW - DAY, endDate=NOW + DAY)).json()
    assert "updatedThrough" not in occurred["pagination"]
    assert {t["trace_id"] for t in occurred["traces"]} == {"recent", "stale"}


async def test_updated_axis_pins_the_scroll_start(fake, client, clock) -> None:
    for i in range(3):
        fake.add_trace(read_trace(f"t{i}", NOW - 10, updated_at=NOW - 10 + i))
    body = {"dateField": "updated", "sortDirection": "asc", "pageSize": 1, "endDate": NOW + DAY}
    first = (await search(client, **body)).json()
    assert [t["trace_id"] for t in first["traces"]] == ["t0"]
    clock.ms = NOW + 5_000
    fake.traces["t1"]["timestamps"]["updated_at"] = NOW + 4_000  # modified mid-scroll
    rest = (await search(client, **body, scrollId=first["pagination"]["scrollId"])).json()
    assert [t["trace_id"] for t in rest["traces"]] == ["t2"]
    assert rest["pagination"]["updatedThrough"] == NOW
    nxt = (await search(client, **{**body, "startDate": NOW, "pageSize": 10})).json()
    assert [t["trace_id"] for t in nxt["traces"]] == ["t1"]


async def test_filters_trace_ids_and_spans_flag(fake, client) -> None:
    fake.add_trace(read_trace("a", NOW, metadata={"thread_id": "th1"}, spans=[span("s")]))
    fake.add_trace(read_trace("b", NOW, metadata={"thread_id": "th2"}))
    fake.add_trace(read_trace("c", NOW))
    by_thread = (await search(client, filters={"metadata.thread_id": ["th1", "th2"]})).json()
    assert sorted(t["trace_id"] for t in by_thread["traces"]) == ["a", "b"]
    negated = {"filters": {"metadata.thread_id": ["th1", "th2"]}, "negateFilters": True}
    assert [t["trace_id"] for t in (await search(client, **negated)).json()["traces"]] == ["c"]
    by_id = (await search(client, traceIds=["c", "zzz"])).json()
    assert [t["trace_id"] for t in by_id["traces"]] == ["c"]
    no_spans = (await search(client, traceIds=["a"])).json()["traces"][0]
    assert no_spans["spans"] == []
    assert no_spans["platformUrl"].endswith("/a")
    with_spans = (await search(client, traceIds=["a"], includeSpans=True)).json()["traces"][0]
    assert [s["span_id"] for s in with_spans["spans"]] == ["s"]


async def test_unserializable_traces_are_skipped_and_counted(fake, client) -> None:
    for i in range(4):
        fake.add_trace(read_trace(f"t{i}", NOW - i))
    fake.unserializable = {"t1"}
    page = (await search(client, pageSize=2)).json()
    assert [t["trace_id"] for t in page["traces"]] == ["t0"]
    assert page["pagination"]["skipped"] == 1
    assert "scrollId" in page["pagination"]  # the page was full before serialization
    rest = (await search(client, pageSize=2, scrollId=page["pagination"]["scrollId"])).json()
    assert [t["trace_id"] for t in rest["traces"]] == ["t2", "t3"]
    assert "skipped" not in rest["pagination"]


async def test_select_projection(fake, client) -> None:
    fake.add_trace(read_trace("a", NOW, metadata={"thread_id": "th"}))
    body = {"select": ["trace_id", "started_at", "metadata.thread_id", "evaluations.score"]}
    result = (await search(client, **body)).json()
    assert result["traces"] == [
        {"trace_id": "a", "started_at": NOW, "metadata": {"thread_id": "th"}, "evaluations": []}
    ]
    assert [c["collection"] for c in result["schema"]["columns"]] == [False, False, False, True]
    assert (await search(client, select=["nope.x"])).status_code == 422


# ---- previews (§6) -----------------------------------------------------------------------------


async def test_search_returns_a_64kb_preview_and_reads_return_full_values(fake, client) -> None:
    big = "é" * 40_000  # 80,000 bytes
    await client.post(
        "/api/collector",
        json={
            "trace_id": "big",
            "metadata": {"thread_id": "th"},
            "spans": [span("root", input={"type": "text", "value": big})],
        },
    )
    found = (await search(client, includeSpans=True)).json()["traces"][0]
    preview = found["input"]["value"]
    assert len(preview.encode()) == 65536
    assert big.startswith(preview)
    assert found["spans"][0]["input"]["value"] == preview
    full = (await client.get("/api/traces/big")).json()
    assert full["input"]["value"] == big
    assert full["spans"][0]["input"]["value"] == big
    thread = (await client.get("/api/thread/th")).json()["traces"][0]
    assert thread["input"]["value"] == big
    assert thread["spans"][0]["input"]["value"] == big


# ---- thread (§3.4) -----------------------------------------------------------------------------


async def test_thread_cap_ordering_and_no_evaluations(clock) -> None:
    fake = LangWatchFake(now=clock, thread_cap=3)
    evaluation = {"evaluation_id": "e1", "name": "x", "status": "processed", "score": 1}
    for i in (4, 2, 0, 3, 1):
        fake.add_trace(
            read_trace(
                f"t{i}",
                NOW + i,
                metadata={"thread_id": "th"},
                spans=[span(f"s{i}", NOW + i)],
                evaluations=[evaluation],
            )
        )
    fake.add_trace(read_trace("other", NOW - 5, metadata={"thread_id": "other"}))
    async with httpx.AsyncClient(transport=fake.transport, base_url=fake.base_url) as c:
        r = await c.get("/api/thread/th", headers={"X-Auth-Token": fake.api_key})
        assert r.status_code == 200
        traces = r.json()["traces"]
        assert [t["trace_id"] for t in traces] == ["t0", "t1", "t2"]
        assert all(t.get("evaluations", []) == [] for t in traces)
        assert [t["spans"][0]["span_id"] for t in traces] == ["s0", "s1", "s2"]
        full = await c.get("/api/traces/t0", headers={"X-Auth-Token": fake.api_key})
        assert full.json()["evaluations"] == [evaluation]
        empty = await c.get("/api/thread/none", headers={"X-Auth-Token": fake.api_key})
        assert empty.json() == {"traces": []}


async def test_me_project_names_the_keys_project(clock) -> None:
    """OpenAPI `getApiMeProject`: `{id, name, slug, isPersonal}` of the key's project; 401
    without a valid key; an older server without the route answers 404."""
    fake = LangWatchFake(now=clock, project_id="KAXYxPR8MUgTcP8CF193y", project_slug="bot")
    async with httpx.AsyncClient(transport=fake.transport, base_url=fake.base_url) as c:
        r = await c.get("/api/me/project", headers={"X-Auth-Token": fake.api_key})
        assert r.status_code == 200
        assert r.json() == {
            "id": "KAXYxPR8MUgTcP8CF193y",
            "name": "Bot",
            "slug": "bot",
            "isPersonal": False,
        }
        assert (await c.get("/api/me/project")).status_code == 401
    old = LangWatchFake(now=clock, me_endpoint=False)
    async with httpx.AsyncClient(transport=old.transport, base_url=old.base_url) as c:
        r = await c.get("/api/me/project", headers={"X-Auth-Token": old.api_key})
        assert r.status_code == 404


async def test_thread_answers_as_the_doc_page_shows_when_asked(clock) -> None:
    """seeds/langwatch-get-thread.txt shows a bare array; §3.4 an object with `traces`."""
    fake = LangWatchFake(now=clock, thread_shape="array")
    fake.add_trace(read_trace("t1", NOW, metadata={"thread_id": "th"}, spans=[span("s1", NOW)]))
    async with httpx.AsyncClient(transport=fake.transport, base_url=fake.base_url) as c:
        r = await c.get("/api/thread/th", headers={"X-Auth-Token": fake.api_key})
        assert isinstance(r.json(), list)
        assert [t["trace_id"] for t in r.json()] == ["t1"]
        assert r.json()[0]["evaluations"] == []


async def test_seed_trace_round_trips(fake, client) -> None:
    text = SEED.read_text()
    start = text.index("[\n  {")
    seed = json.JSONDecoder().raw_decode(text[start:])[0][0]
    seed["metadata"]["thread_id"] = "seed-thread"
    fake.add_trace(seed)
    got = (await client.get(f"/api/traces/{seed['trace_id']}")).json()
    assert got["spans"] == seed["spans"]
    assert got["evaluations"] == seed["evaluations"]
    assert got["input"] == {"value": "hi"}
    thread = (await client.get("/api/thread/seed-thread")).json()["traces"]
    assert [t["trace_id"] for t in thread] == [seed["trace_id"]]
    found = (await search(client, startDate=1721382486868, endDate=1721382486868)).json()
    assert [t["trace_id"] for t in found["traces"]] == [seed["trace_id"]]


# ---- collector (§5.1) --------------------------------------------------------------------------


async def test_collector_too_many_spans_is_429_without_state_change(fake, client) -> None:
    spans = [span(f"s{i}") for i in range(201)]
    r = await client.post("/api/collector", json={"trace_id": "t", "spans": spans})
    assert r.status_code == 429
    assert r.json() == {"message": "Too many spans, maximum of 200 per trace"}
    evals = [{"name": f"e{i}", "score": 1} for i in range(201)]
    body = {"trace_id": "t", "spans": spans[:1], "evaluations": evals}
    assert (await client.post("/api/collector", json=body)).status_code == 429
    assert fake.traces == {}
    assert fake.collected_requests() == []
    ok = await client.post("/api/collector", json={"trace_id": "t", "spans": spans[:200]})
    assert ok.status_code == 200
    assert len(fake.traces["t"]["spans"]) == 200


async def test_collector_drops_spans_older_than_31_days(fake, client) -> None:
    spans = [span("old", NOW - 31 * DAY - 1), span("edge", NOW - 31 * DAY), span("new")]
    r = await client.post("/api/collector", json={"trace_id": "t", "spans": spans})
    assert r.status_code == 200
    assert r.json()["message"] == "Trace received successfully."
    partial = r.json()["partialSuccess"]
    assert partial["rejectedSpans"] == 1
    assert partial["errorMessage"] == (
        "1 span(s) dropped: start time is more than 31 days in the past"
    )
    assert [s["span_id"] for s in fake.traces["t"]["spans"]] == ["edge", "new"]
    clean = await client.post("/api/collector", json={"trace_id": "u", "spans": [span("x")]})
    assert "partialSuccess" not in clean.json()


async def test_collector_rejects_seconds(fake, client) -> None:
    r = await client.post(
        "/api/collector", json={"trace_id": "t", "spans": [span("s", start=NOW // 1000)]}
    )
    assert r.status_code == 400
    assert "should be in milliseconds not in seconds" in r.json()["message"]
    evaluation = {"name": "e", "score": 1, "timestamps": {"started_at": NOW // 1000}}
    r = await client.post(
        "/api/collector", json={"trace_id": "t", "spans": [span("s")], "evaluations": [evaluation]}
    )
    assert r.status_code == 400
    assert fake.traces == {}


async def test_collector_request_validation(fake, client) -> None:
    body = {"trace_id": "t", "spans": [span("s")]}
    text = await client.post(
        "/api/collector", content=json.dumps(body), headers={"Content-Type": "text/plain"}
    )
    assert text.status_code == 400
    mixed = {"trace_id": "t", "spans": [span("a"), {**span("b"), "trace_id": "other"}]}
    assert (await client.post("/api/collector", json=mixed)).status_code == 400
    bad_type = {"trace_id": "t", "spans": [span("a", type="llm_call")]}
    assert (await client.post("/api/collector", json=bad_type)).status_code == 400
    huge = {"trace_id": "t", "spans": [span("a", params={"blob": "x" * (10 * 1024 * 1024)})]}
    assert (await client.post("/api/collector", json=huge)).status_code == 413
    assert fake.traces == {}
    from_spans = {"spans": [{**span("a"), "trace_id": "t"}, {**span("b"), "trace_id": "t"}]}
    assert (await client.post("/api/collector", json=from_spans)).status_code == 200
    assert len(fake.traces["t"]["spans"]) == 2


async def test_collector_plan_limit_is_402(fake, client) -> None:
    fake.plan_limit_reached = True
    r = await client.post("/api/collector", json={"trace_id": "t", "spans": [span("s")]})
    assert r.status_code == 402
    assert fake.traces == {}
    fake.plan_limit_reached = False
    r = await client.post("/api/collector", json={"trace_id": "t", "spans": [span("s")]})
    assert r.status_code == 200


async def test_posts_with_the_same_trace_id_merge(fake, client, clock) -> None:
    root = span(
        "root",
        NOW - 5_000,
        input={"type": "text", "value": "question"},
        output={"type": "json", "value": {"answer": 42}},
        metrics={"prompt_tokens": 10, "completion_tokens": 5, "cost": 0.5},
    )
    child = span("child", NOW - 4_000, parent_id="root", metrics={"prompt_tokens": 1})
    await client.post(
        "/api/collector",
        json={"trace_id": "t", "spans": [root], "metadata": {"thread_id": "a", "k1": "v1"}},
    )
    clock.ms = NOW + 1_000
    await client.post(
        "/api/collector",
        json={"trace_id": "t", "spans": [child], "metadata": {"thread_id": "b", "k2": "v2"}},
    )
    trace = fake.traces["t"]
    assert len(fake.traces) == 1
    assert [s["span_id"] for s in trace["spans"]] == ["root", "child"]
    assert trace["metadata"] == {"thread_id": "b", "k1": "v1", "k2": "v2"}
    assert trace["timestamps"] == {
        "started_at": NOW - 5_000,
        "inserted_at": NOW,
        "updated_at": NOW + 1_000,
    }
    assert trace["input"] == {"value": "question"}
    assert trace["output"] == {"value": '{"answer":42}'}
    assert trace["metrics"]["total_time_ms"] == 2_000
    assert trace["metrics"]["prompt_tokens"] == 11
    assert trace["metrics"]["total_cost"] == 0.5
    assert trace["error"] is None
    assert trace["spans"][1]["timestamps"]["inserted_at"] == NOW + 1_000
    assert trace["spans"][0]["project_id"] == fake.project_id

    clock.ms = NOW + 2_000  # identical re-send: deduped, nothing changes
    await client.post("/api/collector", json={"trace_id": "t", "spans": [child]})
    assert fake.traces["t"]["timestamps"]["updated_at"] == NOW + 1_000
    failed = {**root, "error": {"message": "boom", "stacktrace": []}}
    await client.post("/api/collector", json={"trace_id": "t", "spans": [failed]})
    trace = fake.traces["t"]
    assert len(trace["spans"]) == 2
    assert trace["spans"][0]["error"] == {"has_error": True, "message": "boom", "stacktrace": []}
    assert trace["spans"][0]["timestamps"]["inserted_at"] == NOW
    assert trace["spans"][0]["timestamps"]["updated_at"] == NOW + 2_000
    assert trace["timestamps"]["updated_at"] == NOW + 2_000
    assert trace["error"] == {"has_error": True, "message": "boom", "stacktrace": []}
    assert len(fake.collected_requests()) == 4


async def test_span_read_shape(fake, client) -> None:
    sent = span(
        "s",
        name="call",
        model="openai/gpt-5",
        params={"temperature": 0.2},
        metrics={"prompt_tokens": 3, "custom_metric": 7},
        extra_field="stripped",
        output={"type": "chat_messages", "value": [{"role": "assistant", "content": "hey"}]},
    )
    sent["timestamps"]["ignore_timestamps_on_write"] = True
    await client.post("/api/collector", json={"trace_id": "t", "spans": [sent]})
    got = (await client.get("/api/traces/t")).json()
    stored = got["spans"][0]
    assert "extra_field" not in stored
    assert stored["params"] == {"temperature": 0.2, "custom_metric": 7}
    assert stored["metrics"] == {"prompt_tokens": 3}
    assert stored["model"] == "openai/gpt-5"
    assert stored["timestamps"] == {
        "started_at": NOW - 60_000,
        "finished_at": NOW - 59_000,
        "inserted_at": NOW,
        "updated_at": NOW,
    }
    assert got["output"] == {"value": "hey"}
    assert got["project_id"] == fake.project_id
    assert "ascii_tree" in got


async def test_custom_metadata_comes_back_as_strings(fake, client) -> None:
    metadata = {
        "thread_id": "th",
        "labels": ["a", "b"],
        "count": 3,
        "ratio": 0.5,
        "whole": 2.0,
        "flag": True,
        "obj": {"x": [1, "y"]},
        "arr": [1, 2],
        "text": "plain",
    }
    await client.post(
        "/api/collector", json={"trace_id": "t", "spans": [span("s")], "metadata": metadata}
    )
    got = (await client.get("/api/traces/t")).json()["metadata"]
    assert got == {
        "thread_id": "th",
        "labels": ["a", "b"],
        "count": "3",
        "ratio": "0.5",
        "whole": "2",
        "flag": "true",
        "obj": '{"x":[1,"y"]}',
        "arr": "[1,2]",
        "text": "plain",
    }
    await client.post(
        "/api/collector",
        json={"trace_id": "t", "spans": [], "metadata": {"labels": ["c"], "count": 4}},
    )
    got = (await client.get("/api/traces/t")).json()["metadata"]
    assert got["labels"] == ["c"]
    assert got["count"] == "4"


async def test_patch_metadata(fake, client, clock) -> None:
    await client.post("/api/collector", json={"trace_id": "t", "spans": [span("s")]})
    clock.ms = NOW + 10
    r = await client.patch("/api/traces/t/metadata", json={"metadata": {"thread_id": "x", "n": 1}})
    assert r.json() == {"traceId": "t"}
    assert fake.traces["t"]["metadata"] == {"thread_id": "x", "n": "1"}
    assert fake.traces["t"]["timestamps"]["updated_at"] == NOW + 10
    missing = await client.patch("/api/traces/zz/metadata", json={"metadata": {}})
    assert missing.status_code == 404


async def test_evaluations_upsert_by_id(fake, client, clock) -> None:
    first = {"name": "Quality", "score": 0.2, "timestamps": {"started_at": NOW - DAY}}
    await client.post(
        "/api/collector", json={"trace_id": "t", "spans": [span("s")], "evaluations": [first]}
    )
    evaluations = fake.traces["t"]["evaluations"]
    expected_id = "eval_md5_" + hashlib.md5(b"tQuality").hexdigest()
    assert [e["evaluation_id"] for e in evaluations] == [expected_id]
    assert evaluations[0]["status"] == "processed"
    assert evaluations[0]["timestamps"]["started_at"] == NOW  # ingestion time, not NOW - DAY
    clock.ms = NOW + 500
    again = {"name": "Quality", "score": 0.9}
    explicit = {"evaluation_id": "mine", "name": "Other", "status": "skipped", "passed": True}
    await client.post(
        "/api/collector",
        json={"trace_id": "t", "spans": [], "evaluations": [again, explicit]},
    )
    listed = (await client.get("/api/traces/t")).json()["evaluations"]
    assert sorted(e["evaluation_id"] for e in listed) == sorted([expected_id, "mine"])
    by_id = {e["evaluation_id"]: e for e in listed}
    assert by_id[expected_id]["score"] == 0.9
    assert by_id[expected_id]["timestamps"]["inserted_at"] == NOW
    assert by_id[expected_id]["timestamps"]["updated_at"] == NOW + 500
    assert by_id["mine"]["passed"] is None  # verdicts nulled unless processed
    assert fake.traces["t"]["timestamps"]["updated_at"] == NOW + 500
    no_verdict = {"trace_id": "t", "spans": [], "evaluations": [{"name": "x"}]}
    assert (await client.post("/api/collector", json=no_verdict)).status_code == 400
    errored = {"name": "x", "error": {"message": "boom", "stacktrace": ["l1"]}}
    r = await client.post("/api/collector", json={"trace_id": "t", "evaluations": [errored]})
    assert r.status_code == 200
    stored = next(e for e in fake.traces["t"]["evaluations"] if e["name"] == "x")
    assert stored["status"] == "error"


async def test_a_trace_posted_without_spans_never_appears(fake, client) -> None:
    """§4/§5.1: a trace is the fold of its spans (input/output derived, "not independently
    settable"). `spans: []` is answered 200, yet no trace appears anywhere: not by id, not in
    a search, not in its thread; its metadata is gone and its evaluations wait for spans."""
    body = {
        "trace_id": "t",
        "spans": [],
        "metadata": {"thread_id": "th", "user_id": "u1", "labels": ["a"]},
        "evaluations": [{"name": "e", "score": 0.5}],
    }
    r = await client.post("/api/collector", json=body)
    assert r.status_code == 200
    assert r.json() == {"message": "Trace received successfully."}
    assert fake.traces == {}
    assert (await client.get("/api/traces/t")).status_code == 404
    assert (await search(client)).json()["traces"] == []
    assert (await client.get("/api/thread/th")).json() == {"traces": []}


async def test_evaluations_before_their_trace_wait_for_it(fake, client) -> None:
    body = {"trace_id": "t", "spans": [], "evaluations": [{"name": "e", "passed": True}]}
    assert (await client.post("/api/collector", json=body)).status_code == 200
    assert "t" not in fake.traces
    await client.post("/api/collector", json={"trace_id": "t", "spans": [span("s")]})
    assert [e["name"] for e in fake.traces["t"]["evaluations"]] == ["e"]


# ---- fault injection ---------------------------------------------------------------------------


async def test_fail_next_without_state_change(fake, client) -> None:
    fake.fail_next(503, times=2, path_contains="/api/collector", json={"message": "down"})
    body = {"trace_id": "t", "spans": [span("s")]}
    assert (await search(client)).status_code == 200  # other paths unaffected
    for _ in range(2):
        r = await client.post("/api/collector", json=body)
        assert r.status_code == 503
        assert r.json() == {"message": "down"}
    assert fake.traces == {}
    assert (await client.post("/api/collector", json=body)).status_code == 200
    fake.fail_next(500)
    assert (await search(client)).status_code == 500
    assert (await search(client)).status_code == 200
    assert len(fake.requests) == 6


async def test_fail_after_writes(fake, client) -> None:
    fake.fail_after_writes(2)
    for i in range(2):
        body = {"trace_id": f"t{i}", "spans": [span("s")]}
        assert (await client.post("/api/collector", json=body)).status_code == 200
    blocked = await client.post("/api/collector", json={"trace_id": "t2", "spans": [span("s")]})
    assert blocked.status_code == 503
    assert (await client.patch("/api/traces/t0/metadata", json={"metadata": {}})).status_code == 503
    assert (await search(client)).status_code == 200  # reads are not writes
    assert sorted(fake.traces) == ["t0", "t1"]
    assert len(fake.collected_requests()) == 2
    fake.clear_faults()
    body = {"trace_id": "t2", "spans": [span("s")]}
    assert (await client.post("/api/collector", json=body)).status_code == 200


def test_sync_clients_work_too(fake: LangWatchFake) -> None:
    with httpx.Client(transport=fake.transport, base_url=fake.base_url) as c:
        r = c.post(
            "/api/collector",
            json={"trace_id": "t", "spans": [span("s")]},
            headers={"Authorization": f"Bearer {fake.api_key}"},
        )
    assert r.status_code == 200
    assert list(fake.traces) == ["t"]


# ---- the change axis (§3.1 dateField "updated", §5.1) -----------------------------------------


async def test_evaluations_may_leave_updated_at_alone(clock) -> None:
    """§5.1 leaves open whether a later evaluation moves the trace's `updated_at`: with
    `evaluations_move_updated_at=False` it does not, and only the evaluation's own timestamps
    (ingestion time) say when it came."""
    fake = LangWatchFake(now=clock, evaluations_move_updated_at=False)
    headers = {"X-Auth-Token": fake.api_key}
    async with httpx.AsyncClient(
        transport=fake.transport, base_url=fake.base_url, headers=headers
    ) as c:
        await c.post(
            "/api/collector", json={"trace_id": "t", "spans": [span("s")]}, headers=headers
        )
        clock.ms = NOW + 5_000
        late = {"trace_id": "t", "spans": [], "evaluations": [{"name": "late", "score": 1}]}
        assert (await c.post("/api/collector", json=late, headers=headers)).status_code == 200
        found = (await search(c, dateField="updated", startDate=NOW + 1)).json()
    assert fake.traces["t"]["timestamps"]["updated_at"] == NOW
    assert found["traces"] == []
    (evaluation,) = fake.traces["t"]["evaluations"]
    assert evaluation["timestamps"]["finished_at"] == NOW + 5_000


async def test_span_dedupe_window_keeps_resends_from_updating(clock) -> None:
    """§5.1: dedupe per (trace, span) kept 1 h after success: a re-send inside the hour, even
    changed, is answered 200 and changes nothing; after it the span is recorded again and the
    trace's `updated_at` moves (content changed or not)."""
    fake = LangWatchFake(now=clock, span_dedupe_ms=3_600_000)
    headers = {"X-Auth-Token": fake.api_key}
    async with httpx.AsyncClient(
        transport=fake.transport, base_url=fake.base_url, headers=headers
    ) as c:

        async def send(**extra: Any) -> None:
            body = {"trace_id": "t", "spans": [span("s", **extra)]}
            assert (await c.post("/api/collector", json=body, headers=headers)).status_code == 200

        await send()
        clock.ms = NOW + 60_000
        await send(name="changed")
        assert fake.traces["t"]["spans"][0].get("name") is None
        assert fake.traces["t"]["timestamps"]["updated_at"] == NOW
        clock.ms = NOW + 3_600_000
        await send()
        assert fake.traces["t"]["timestamps"]["updated_at"] == NOW + 3_600_000


async def test_ingestion_delay_hides_a_write_that_keeps_its_write_time(clock) -> None:
    """§5.1 processing is asynchronous: the write is readable `ingest_delay_ms` later, with the
    write's time as its `updated_at` — a pass that ended in between did not see it."""
    fake = LangWatchFake(now=clock, ingest_delay_ms=30_000)
    headers = {"X-Auth-Token": fake.api_key}
    async with httpx.AsyncClient(
        transport=fake.transport, base_url=fake.base_url, headers=headers
    ) as c:
        body = {"trace_id": "t", "spans": [span("s")]}
        assert (await c.post("/api/collector", json=body, headers=headers)).status_code == 200
        clock.ms = NOW + 10_000
        early = (await search(c, dateField="updated")).json()
        assert early["traces"] == []
        assert early["pagination"]["updatedThrough"] == NOW + 10_000  # past the write's time
        assert (await c.get("/api/traces/t", headers=headers)).status_code == 404
        clock.ms = NOW + 30_000
        late = (await search(c, dateField="updated", startDate=NOW)).json()
        assert [t["trace_id"] for t in late["traces"]] == ["t"]
        assert late["traces"][0]["timestamps"]["updated_at"] == NOW
    fake.settle()


async def test_after_request_changes_state_between_two_pages(fake, client, clock) -> None:
    """The hook runs once, after the n-th matching request was answered: a trace changed after
    page 1 leaves the pinned updated-axis snapshot (§3.1, PR #6812) instead of shifting pages."""
    for i in range(4):
        fake.add_trace(read_trace(f"t{i}", NOW - 10, updated_at=NOW - 10 + i))

    def change() -> None:
        clock.ms = NOW + 50
        fake.traces["t3"]["timestamps"]["updated_at"] = NOW + 50

    fake.after_request(1, change, path_contains="/api/traces/search")
    ids, requests = await scroll_ids(client, dateField="updated", sortDirection="asc", pageSize=2)
    assert ids == ["t0", "t1", "t2"]
    assert requests == 2


# ---- the index: answers as a full scan would give them, at the cost of the answer ------------


def brute_force(fake: LangWatchFake, date_key: str, descending: bool) -> list[str]:
    """Every trace id in search order, by scanning (what the fake did before its index)."""
    traces = sorted(
        fake.traces.values(),
        key=lambda t: (t["timestamps"][date_key], t["trace_id"]),
        reverse=descending,
    )
    return [t["trace_id"] for t in traces]


async def test_scrolls_match_a_full_scan_while_traces_change_every_way(fake, client, clock):
    """Random dates with ties; traces then change by collector writes, metadata PATCHes, a
    test's direct edits of `timestamps` and direct inserts and deletes: every scroll, both date
    fields, both directions, several page sizes, gives what sorting every trace would."""
    import random

    rng = random.Random(5)
    clock.ms = NOW + 5_000  # after every date: the updated axis reads up to "now"
    for i in range(120):
        start = NOW - rng.randrange(40) * 1_000
        fake.add_trace(read_trace(f"t{i:03}", start, start + rng.randrange(5) * 1_000))

    async def check() -> None:
        for field, date_key in (("occurred", "started_at"), ("updated", "updated_at")):
            for direction in ("asc", "desc"):
                for size in (1, 7, 50, 1000):
                    clock.ms += 1  # the updated axis pins its snapshot at "now"
                    ids, _ = await scroll_ids(
                        client, dateField=field, sortDirection=direction, pageSize=size
                    )
                    assert ids == brute_force(fake, date_key, direction == "desc")
                    page = (await search(client, dateField=field, pageSize=3)).json()
                    assert page["pagination"]["totalHits"] == len(fake.traces)

    await check()
    clock.ms = NOW + 10_000
    for i in rng.sample(range(120), 10):  # collector writes: new spans move updated_at
        body = {"trace_id": f"t{i:03}", "spans": [span(f"new{i}", start=NOW - 90_000)]}
        assert (await client.post("/api/collector", json=body)).status_code == 200
    for i in rng.sample(range(120), 10):  # metadata PATCHes
        clock.ms += 1
        patch = await client.patch(f"/api/traces/t{i:03}/metadata", json={"metadata": {"k": i}})
        assert patch.status_code == 200
    for i in rng.sample(range(120), 10):  # a test's direct edits
        fake.traces[f"t{i:03}"]["timestamps"]["updated_at"] = NOW - rng.randrange(40) * 1_000
        fake.traces[f"t{i:03}"]["timestamps"]["started_at"] = NOW - rng.randrange(40) * 1_000
    del fake.traces["t000"]
    fake.traces["by-hand"] = read_trace("by-hand", NOW - 3_000)
    await check()
    fake.traces["by-hand"]["timestamps"]["started_at"] = NOW - 7_000  # followed from now on
    await check()


async def test_trace_ids_filters_and_query_page_as_a_scan_would(fake, client):
    for i in range(30):
        thread = {"thread_id": f"th{i % 3}"} if i % 4 else {}
        fake.add_trace(read_trace(f"t{i:02}", NOW - (i % 6) * 1_000, metadata=thread))
    asked = [f"t{i:02}" for i in range(0, 30, 2)] + ["missing"]
    ids, _ = await scroll_ids(client, traceIds=asked, pageSize=4)
    assert ids == [i for i in brute_force(fake, "started_at", True) if i in asked]
    ids, _ = await scroll_ids(client, filters={"metadata.thread_id": ["th1"]}, pageSize=2)
    in_th1 = [i for i in brute_force(fake, "started_at", True) if int(i[1:]) % 3 == 1]
    assert ids == [i for i in in_th1 if int(i[1:]) % 4]
    page = (await search(client, filters={"metadata.thread_id": ["th1"]}, pageSize=2)).json()
    assert page["pagination"]["totalHits"] == len(ids)
    negated = await scroll_ids(
        client, filters={"metadata.thread_id": ["th1"]}, negateFilters=True, pageSize=5
    )
    assert sorted(negated[0]) == sorted(set(fake.traces) - set(ids))
    ids, _ = await scroll_ids(client, query="in t1", pageSize=3)
    assert sorted(ids) == [f"t{i}" for i in range(10, 20)]


async def test_a_thread_read_follows_a_trace_moved_to_another_thread(fake, client):
    fake.add_trace(read_trace("a", NOW - 5_000, metadata={"thread_id": "one"}))
    fake.add_trace(read_trace("b", NOW - 4_000, metadata={"thread_id": "one"}))

    async def thread(thread_id: str) -> list[str]:
        answer = await client.get(f"/api/thread/{thread_id}")
        return [t["trace_id"] for t in answer.json()["traces"]]

    assert await thread("one") == ["a", "b"]
    body = {"trace_id": "b", "spans": [span("s", start=NOW - 4_000)]}
    body["metadata"] = {"thread_id": "two"}
    assert (await client.post("/api/collector", json=body)).status_code == 200
    assert (await thread("one"), await thread("two")) == (["a"], ["b"])
    fake.traces["a"]["metadata"]["thread_id"] = "two"  # by hand: reindex() files it
    fake.reindex()
    assert (await thread("one"), await thread("two")) == ([], ["a", "b"])


async def test_an_answer_is_a_copy_taken_when_it_was_sent(fake, client):
    """Answers are built from shallow copies: a later write does not change a sent answer,
    and a preview cut does not cut the stored trace."""
    fake.preview_bytes = 4
    fake.add_trace(
        read_trace("t", NOW, spans=[span("s", input={"type": "text", "value": "x" * 9})])
    )
    page = (await search(client, includeSpans=True)).json()
    assert page["traces"][0]["spans"][0]["input"]["value"] == "xxxx"
    assert fake.traces["t"]["spans"][0]["input"]["value"] == "x" * 9
    before = (await client.get("/api/traces/t")).json()
    body = {"trace_id": "t", "spans": [span("s2")], "metadata": {"k": "v"}}
    assert (await client.post("/api/collector", json=body)).status_code == 200
    assert (before["metadata"], len(before["spans"])) == ({}, 1)
    assert not {"ascii_tree", "platformUrl"} & fake.traces["t"].keys()


async def test_a_request_looks_at_the_traces_it_answers_not_the_project(fake, client):
    """The index at work: reading 100 of 3,000 traces, a thread of 10 or one trace looks at
    about those traces, and never walks `fake.traces`."""
    for i in range(3_000):
        thread = {"thread_id": f"th{i % 300}"}
        fake.add_trace(read_trace(f"t{i:04}", NOW - i * 1_000, metadata=thread))
    await search(client, pageSize=1)  # the index is built once
    looked: list[str] = []

    class Counting(type(fake.traces)):  # type: ignore[misc]
        __slots__ = ()

        def __getitem__(self, key: str) -> Any:
            looked.append(key)
            return super().__getitem__(key)

        def get(self, key: str, default: Any = None) -> Any:
            looked.append(key)
            return super().get(key, default)

        def __iter__(self) -> Any:
            raise AssertionError("a request walked every trace")

        def values(self) -> Any:
            raise AssertionError("a request walked every trace")

    fake.traces.__class__ = Counting  # the same dict, counting
    ids, requests = await scroll_ids(
        client, startDate=NOW - 99_000, pageSize=20, dateField="updated"
    )
    assert (len(ids), requests) == (100, 6)  # 5 full pages and the empty one after
    assert len(looked) <= 2 * len(ids)
    looked.clear()
    answer = await client.get("/api/thread/th7")
    assert len(answer.json()["traces"]) == 10
    assert len(looked) <= 20
    looked.clear()
    assert (await client.get("/api/traces/t0042")).status_code == 200
    assert len(looked) <= 2


def test_copies_of_stored_timestamps_are_plain_dicts(fake: LangWatchFake) -> None:
    import copy
    import pickle

    fake.add_trace(read_trace("t", NOW))
    stamps = fake.traces["t"]["timestamps"]
    for copied in (copy.copy(stamps), copy.deepcopy(stamps), pickle.loads(pickle.dumps(stamps))):
        assert type(copied) is dict
        assert copied == stamps
    assert json.loads(json.dumps(fake.traces["t"]))["timestamps"] == stamps


async def test_previews_cut_by_utf8_bytes_whatever_the_shortcut(fake, client):
    """The preview cuts each string leaf at `preview_bytes` UTF-8 bytes: multi-byte text, a
    string of exactly the limit, and values that fit whole (the fast path) all come out right."""
    fake.preview_bytes = 8
    values = {
        "accents": ("é" * 5, "é" * 4),  # 10 bytes -> 8
        "exact": ("abcdefgh", "abcdefgh"),
        "nested": (["short", {"k": "0123456789"}], ["short", {"k": "01234567"}]),
        "small": ({"a": 1}, {"a": 1}),
    }
    for name, (value, _) in values.items():
        io = {"type": "json", "value": value}
        fake.add_trace(read_trace(name, NOW, input=io, output=None))
    page = (await search(client)).json()
    got = {t["trace_id"]: t["input"]["value"] for t in page["traces"]}
    assert got == {name: want for name, (_, want) in values.items()}
    assert {t["trace_id"]: t["output"] for t in page["traces"]} == dict.fromkeys(values)


def test_fixed_path_routes_answer_alike_by_lookup_and_through_respx() -> None:
    """`transport` finds the collector, the search and `me/project` by lookup (cost only):
    each answers as respx's matching does."""
    assert len(LangWatchFake()._exact) == 3
    for method, path, body in (
        ("POST", "/api/collector", {"trace_id": "t1", "spans": []}),
        ("POST", "/api/traces/search", {"startDate": 0, "endDate": 1}),
        ("GET", "/api/me/project", None),
    ):
        via_lookup, via_respx = LangWatchFake(), LangWatchFake()
        headers = {"X-Auth-Token": via_lookup.api_key}
        request = httpx.Request(method, via_lookup.base_url + path, json=body, headers=headers)
        looked_up = via_lookup.transport.handle_request(request)
        routed = via_respx.router.handler(request)
        assert (looked_up.status_code, looked_up.content) == (routed.status_code, routed.content)
        assert len(via_lookup.requests) == len(via_respx.requests) == 1
