"""Tests of the Opik fake's rules, through real httpx requests (reference: opik-api.md)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import uuid

import httpx
import pytest
import respx

from tests.fakes.opik import OpikFake, is_uuid7, uuid7, uuid7_ms

T0 = dt.datetime(2025, 5, 1, 12, 0, tzinfo=dt.UTC)
BATCH, SPANS = "/v1/private/traces/batch", "/v1/private/spans/batch"
TRACE_SCORES = "/v1/private/traces/feedback-scores"
SPAN_SCORES = "/v1/private/spans/feedback-scores"
THREAD_SCORES = "/v1/private/traces/threads/feedback-scores"
THREADS = "/v1/private/traces/threads"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def at(seconds: float = 0) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def tid(seconds: float = 0) -> str:
    return uuid7(int((T0 + dt.timedelta(seconds=seconds)).timestamp() * 1000))


def trace(**fields: object) -> dict:
    return {"id": tid(), "name": "t", "start_time": at(), "project_name": "P", **fields}


def span(trace_id: str, **fields: object) -> dict:
    return {
        "id": tid(),
        "trace_id": trace_id,
        "type": "general",
        "start_time": at(),
        "project_name": "P",
        **fields,
    }


def score(ref: str, name: str = "q", value: float = 1.0, **fields: object) -> dict:
    return {"id": ref, "name": name, "value": value, "source": "sdk", **fields}


@pytest.fixture
def fake() -> OpikFake:
    return OpikFake()


@pytest.fixture
async def client(fake: OpikFake):
    async with httpx.AsyncClient(transport=fake.transport, base_url=fake.base_url) as c:
        yield c


async def list_traces(client: httpx.AsyncClient, project: str = "P", **params: str) -> dict:
    response = await client.get("/v1/private/traces", params={"project_name": project, **params})
    assert response.status_code == 200, response.text
    return response.json()


async def list_threads(client: httpx.AsyncClient, project: str = "P", **params: str) -> dict:
    response = await client.get(THREADS, params={"project_name": project, **params})
    assert response.status_code == 200, response.text
    return response.json()


# --- ids ------------------------------------------------------------------------------------


def test_uuid7_helper_sets_version_variant_and_time() -> None:
    value = uuid7(1_700_000_000_123)
    parsed = uuid.UUID(value)
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert uuid7_ms(value) == 1_700_000_000_123
    assert is_uuid7(value)
    assert not is_uuid7(str(uuid.uuid4()))
    assert uuid7(5) != uuid7(5)


# --- auth (ref §5) -------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"authorization": "key-1", "Comet-Workspace": "ws"}, 200),
        ({"authorization": "Bearer key-1", "Comet-Workspace": "ws"}, 401),
        ({"authorization": "key-2", "Comet-Workspace": "ws"}, 401),
        ({"authorization": "key-1", "Comet-Workspace": "other"}, 401),
        ({"authorization": "key-1"}, 401),
        ({}, 401),
    ],
)
async def test_auth_requires_bare_key_and_workspace(headers: dict, status: int) -> None:
    fake = OpikFake(api_key="key-1", workspace="ws")
    async with httpx.AsyncClient(transport=fake.transport, base_url=fake.base_url) as c:
        response = await c.get("/v1/private/auth/workspace", headers=headers)
        write = await c.post(BATCH, json={"traces": [trace()]}, headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.json() == {"code": 401, "message": "User not allowed to access workspace!"}
        assert write.status_code == 401
        assert fake.traces == {}
    else:
        assert response.json() == {"workspace_name": "ws"}
        assert write.status_code == 204


@pytest.mark.anyio
async def test_no_auth_needed_without_api_key(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/private/auth", json={})).status_code == 204
    assert (await client.get("/v1/private/auth/workspace")).json() == {"workspace_name": "default"}


@pytest.mark.anyio
async def test_health_and_version_need_no_credentials() -> None:
    """`GET /is-alive/ping` and `/is-alive/ver` (IsAliveResource, outside /v1/private) answer
    without credentials; the SDK pings before it sends."""
    fake = OpikFake(api_key="key-1", workspace="ws")
    async with httpx.AsyncClient(transport=fake.transport, base_url=fake.base_url) as c:
        ping, ver = await c.get("/is-alive/ping"), await c.get("/is-alive/ver")
        private = await c.get("/v1/private/auth/workspace")
    assert (ping.status_code, ping.json()) == (200, {"message": "Healthy Server", "healthy": True})
    assert (ver.status_code, ver.json()) == (200, {"version": fake.server_version})
    assert private.status_code == 401  # the rest still needs them


def test_sync_client_works_with_the_same_transport(fake: OpikFake) -> None:
    with httpx.Client(transport=fake.sync_transport, base_url=fake.base_url) as c:
        assert c.post(BATCH, json={"traces": [trace()]}).status_code == 204
    assert len(fake.traces) == 1
    assert fake.requests[0].url.path == "/api" + BATCH


@pytest.mark.anyio
async def test_unknown_routes_are_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/private/nothing")).status_code == 404
    assert (await client.get("http://opik.test/v1/private/traces")).status_code == 404
    assert (await client.delete("/v1/private/traces/batch")).status_code == 404


# --- trace and span batch writes (ref §2.1, §2.2, §3) ---------------------------------------


@pytest.mark.anyio
async def test_non_v7_id_fails_whole_trace_batch(fake: OpikFake, client: httpx.AsyncClient) -> None:
    good, bad = trace(), trace(id=str(uuid.uuid4()))
    response = await client.post(BATCH, json={"traces": [good, bad]})
    assert response.status_code == 400
    assert response.json() == {"errors": ["Trace id must be a version 7 UUID"]}
    assert fake.traces == {}
    assert fake.projects == {}


@pytest.mark.anyio
async def test_non_v7_span_id_or_trace_id_fails_whole_span_batch(
    fake: OpikFake, client: httpx.AsyncClient
) -> None:
    t = tid()
    for bad in (span(t, id=str(uuid.uuid4())), span(str(uuid.uuid4()))):
        response = await client.post(SPANS, json={"spans": [span(t), bad]})
        assert response.status_code == 400
        assert response.json() == {"errors": ["Span id must be a version 7 UUID"]}
    assert fake.spans == {}


@pytest.mark.anyio
@pytest.mark.parametrize(("count", "status"), [(0, 422), (1, 204), (1000, 204), (1001, 422)])
async def test_batch_size_is_1_to_1000(
    fake: OpikFake, client: httpx.AsyncClient, count: int, status: int
) -> None:
    response = await client.post(BATCH, json={"traces": [trace() for _ in range(count)]})
    assert response.status_code == status
    assert len(fake.traces) == (count if status == 204 else 0)
    if status == 422:
        assert "errors" in response.json()
    else:
        assert response.content == b""


@pytest.mark.anyio
async def test_field_validation(fake: OpikFake, client: httpx.AsyncClient) -> None:
    no_start = {k: v for k, v in trace().items() if k != "start_time"}
    assert (await client.post(BATCH, json={"traces": [no_start]})).status_code == 422
    naive = trace(start_time="2025-05-01T12:00:00")
    assert (await client.post(BATCH, json={"traces": [naive]})).status_code == 400
    t = tid()
    no_trace = {k: v for k, v in span(t).items() if k != "trace_id"}
    assert (await client.post(SPANS, json={"spans": [no_trace]})).status_code == 422
    assert (await client.post(SPANS, json={"spans": [span(t, type="agent")]})).status_code == 422
    assert fake.row_count() == 0


@pytest.mark.anyio
async def test_span_without_type_is_stored_unknown(
    fake: OpikFake, client: httpx.AsyncClient
) -> None:
    s = span(tid())
    del s["type"]
    assert (await client.post(SPANS, json={"spans": [s]})).status_code == 204
    assert fake.spans[s["id"]]["type"] == "unknown"


@pytest.mark.anyio
async def test_upsert_replaces_whole_row_without_duplicates(
    fake: OpikFake, client: httpx.AsyncClient
) -> None:
    t = trace(output={"answer": 42}, tags=["a"])
    await client.post(BATCH, json={"traces": [t]})
    rows = fake.row_count()
    again = {k: v for k, v in t.items() if k != "output"}
    assert (await client.post(BATCH, json={"traces": [again]})).status_code == 204
    assert fake.row_count() == rows == 1
    assert "output" not in fake.traces[t["id"]]
    assert fake.traces[t["id"]]["tags"] == ["a"]
    assert fake.duplicate_rows == {}


@pytest.mark.anyio
async def test_absent_and_null_fields_are_absent_and_junk_dropped(
    fake: OpikFake, client: httpx.AsyncClient
) -> None:
    t = trace(output=None, usage={"total_tokens": 3}, whatever=1)
    await client.post(BATCH, json={"traces": [t]})
    row = fake.traces[t["id"]]
    assert {"output", "usage", "whatever", "project_name", "end_time"}.isdisjoint(row)
    assert row["project_id"] == fake.project_id("P")
    assert {"created_at", "last_updated_at"} <= set(row)


@pytest.mark.anyio
async def test_highest_last_updated_at_wins(fake: OpikFake, client: httpx.AsyncClient) -> None:
    t = trace(name="new", last_updated_at=at(100))
    await client.post(BATCH, json={"traces": [t]})
    await client.post(BATCH, json={"traces": [{**t, "name": "old", "last_updated_at": at(50)}]})
    assert fake.traces[t["id"]]["name"] == "new"
    await client.post(BATCH, json={"traces": [{**t, "name": "newer", "last_updated_at": at(101)}]})
    assert fake.traces[t["id"]]["name"] == "newer"
    # within one batch, the newest copy wins regardless of order
    u = trace(name="b", last_updated_at=at(2))
    await client.post(BATCH, json={"traces": [u, {**u, "name": "a", "last_updated_at": at(1)}]})
    assert fake.traces[u["id"]]["name"] == "b"


@pytest.mark.anyio
async def test_omitted_last_updated_at_is_set_by_server() -> None:
    fake = OpikFake(now=lambda: T0)
    async with httpx.AsyncClient(transport=fake.transport, base_url=fake.base_url) as c:
        t = trace()
        await c.post(BATCH, json={"traces": [t]})
    assert fake.traces[t["id"]]["last_updated_at"] == "2025-05-01T12:00:00Z"


@pytest.mark.anyio
async def test_same_id_in_another_project_or_parent_is_a_second_row(
    fake: OpikFake, client: httpx.AsyncClient
) -> None:
    t = trace()
    await client.post(BATCH, json={"traces": [t]})
    await client.post(BATCH, json={"traces": [{**t, "project_name": "Q"}]})
    assert len(fake.traces) == 1
    assert list(fake.duplicate_rows) == [("trace", fake.project_id("Q"), t["id"])]
    assert fake.row_count() == 2
    assert [r["id"] for r in (await list_traces(client, "Q"))["content"]] == [t["id"]]
    s = span(t["id"])
    await client.post(SPANS, json={"spans": [s]})
    await client.post(SPANS, json={"spans": [{**s, "parent_span_id": tid(1)}]})
    assert len(fake.spans) == 1
    assert len(fake.duplicate_rows) == 2


@pytest.mark.anyio
async def test_gzip_body_is_decompressed(fake: OpikFake, client: httpx.AsyncClient) -> None:
    t = trace(input={"text": "x" * 500})
    body = gzip.compress(json.dumps({"traces": [t]}).encode())
    response = await client.post(
        BATCH,
        content=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 204
    assert fake.traces[t["id"]]["input"] == {"text": "x" * 500}
    assert fake.request_bodies(BATCH) == [{"traces": [t]}]


@pytest.mark.anyio
async def test_projects_default_and_case_insensitive(
    fake: OpikFake, client: httpx.AsyncClient
) -> None:
    a, b, c = trace(project_name="My Proj"), trace(project_name="my proj"), trace()
    del c["project_name"]
    d = trace(project_name="")
    await client.post(BATCH, json={"traces": [a, b, c, d]})
    assert sorted(p["name"] for p in fake.projects.values()) == ["Default Project", "My Proj"]
    assert fake.traces[b["id"]]["project_id"] == fake.project_id("MY PROJ")
    assert fake.traces[d["id"]]["project_id"] == fake.project_id("Default Project")
    assert (
        await client.post(BATCH, json={"traces": [trace(project_name="  ")]})
    ).status_code == 422


@pytest.mark.anyio
async def test_project_endpoints(fake: OpikFake, client: httpx.AsyncClient) -> None:
    missing = await client.post("/v1/private/projects/retrieve", json={"name": "P"})
    assert missing.status_code == 404
    created = await client.post("/v1/private/projects", json={"name": "P"})
    assert created.status_code == 201
    assert created.headers["Location"].endswith(fake.project_id("P"))
    assert (await client.post("/v1/private/projects", json={"name": "p"})).status_code == 409
    found = await client.post("/v1/private/projects/retrieve", json={"name": "p"})
    assert found.json()["id"] == fake.project_id("P")
    listed = (await client.get("/v1/private/projects", params={"name": "p"})).json()
    assert [p["name"] for p in listed["content"]] == ["P"]


# --- time window (ref §3.1, §10) ------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("offset", "reason"), [(-25 * 3600, "too_old"), (25 * 3600, "too_far_future"), (-3600, None)]
)
async def test_time_window(offset: int, reason: str | None) -> None:
    now = T0 + dt.timedelta(days=10)
    fake = OpikFake(enforce_time_window=True, now=lambda: now)
    old = uuid7(int((now + dt.timedelta(seconds=offset)).timestamp() * 1000))
    ok = uuid7(int(now.timestamp() * 1000))
    async with httpx.AsyncClient(transport=fake.transport, base_url=fake.base_url) as c:
        response = await c.post(BATCH, json={"traces": [trace(id=ok), trace(id=old)]})
        span_response = await c.post(SPANS, json={"spans": [span(ok, id=old)]})
    if reason is None:
        assert response.status_code == span_response.status_code == 204
        assert len(fake.traces) == 2
        return
    assert response.status_code == span_response.status_code == 400
    body = response.json()
    assert body["code"] == 400
    assert body["message"] == "Invalid UUID for id"
    assert body["details"].startswith("id with timestamp '")
    assert body["details"].endswith(f"ingestion window of 'PT24H' around now, reason '{reason}'")
    assert fake.traces == {}
    assert fake.spans == {}


@pytest.mark.anyio
async def test_time_window_off_by_default(fake: OpikFake, client: httpx.AsyncClient) -> None:
    ancient = trace(id=uuid7(1_000))
    assert (await client.post(BATCH, json={"traces": [ancient]})).status_code == 204


# --- feedback scores (ref §2.3, §10) --------------------------------------------------------


@pytest.mark.anyio
async def test_scores_upsert_by_entity_and_name(fake: OpikFake, client: httpx.AsyncClient) -> None:
    t = trace()
    await client.post(BATCH, json={"traces": [t]})
    first = [score(t["id"], "q", 0.1, project_name="P"), score(t["id"], "r", 1, project_name="P")]
    assert (await client.put(TRACE_SCORES, json={"scores": first})).status_code == 204
    again = [score(t["id"], "q", 0.9, reason="better", project_name="P")]
    await client.put(TRACE_SCORES, json={"scores": again})
    assert len(fake.trace_scores) == 2
    assert fake.trace_scores[(t["id"], "q")]["value"] == 0.9
    assert fake.trace_scores[(t["id"], "q")]["reason"] == "better"
    listed = (await list_traces(client))["content"][0]["feedback_scores"]
    assert sorted((s["name"], s["value"]) for s in listed) == [("q", 0.9), ("r", 1)]
    assert "project_id" not in listed[0]


@pytest.mark.anyio
async def test_score_without_project_lands_in_default_and_is_invisible(
    fake: OpikFake, client: httpx.AsyncClient
) -> None:
    t = trace()
    s = span(t["id"])
    await client.post(BATCH, json={"traces": [t]})
    await client.post(SPANS, json={"spans": [s]})
    await client.put(TRACE_SCORES, json={"scores": [score(t["id"])]})
    await client.put(SPAN_SCORES, json={"scores": [score(s["id"])]})
    assert fake.trace_scores[(t["id"], "q")]["project_id"] == fake.project_id("Default Project")
    assert "feedback_scores" not in (await list_traces(client))["content"][0]
    spans = (await client.get("/v1/private/spans", params={"project_name": "P"})).json()
    assert "feedback_scores" not in spans["content"][0]
    # re-sent with the right project: a second row, now visible
    await client.put(SPAN_SCORES, json={"scores": [score(s["id"], project_name="P")]})
    assert len(fake.duplicate_rows) == 1
    spans = (await client.get("/v1/private/spans", params={"project_name": "P"})).json()
    assert spans["content"][0]["feedback_scores"][0]["name"] == "q"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("item", "status"),
    [
        ({"value": 2e9}, 422),
        ({"source": "api"}, 422),
        ({"name": " "}, 422),
        ({"id": str(uuid.uuid4())}, 400),
    ],
)
async def test_score_validation(
    fake: OpikFake, client: httpx.AsyncClient, item: dict, status: int
) -> None:
    bad = {**score(tid()), **item}
    response = await client.put(TRACE_SCORES, json={"scores": [score(tid()), bad]})
    assert response.status_code == status
    assert fake.trace_scores == {}


@pytest.mark.anyio
async def test_scores_do_not_require_the_entity(fake: OpikFake, client: httpx.AsyncClient) -> None:
    assert (await client.put(TRACE_SCORES, json={"scores": [score(tid())]})).status_code == 204
    assert len(fake.trace_scores) == 1


@pytest.mark.anyio
async def test_thread_scores_get_or_create_thread(
    fake: OpikFake, client: httpx.AsyncClient
) -> None:
    item = {"thread_id": "th", "name": "csat", "value": 4, "source": "sdk", "project_name": "P"}
    assert (await client.put(THREAD_SCORES, json={"scores": [item]})).status_code == 204
    await client.put(THREAD_SCORES, json={"scores": [{**item, "value": 5}]})
    pid = fake.project_id("P")
    assert fake.thread_scores[(pid, "th", "csat")]["value"] == 5
    assert len(fake.thread_scores) == 1
    assert fake.threads[(pid, "th")]["status"] == "active"
    no_id = {k: v for k, v in item.items() if k != "thread_id"}
    assert (await client.put(THREAD_SCORES, json={"scores": [no_id]})).status_code == 422


# --- threads (ref §2.4, §2.9, §10) ----------------------------------------------------------


async def write_threads(client: httpx.AsyncClient) -> None:
    """Threads a (updated at 30), b (updated at 20, started at 0), c (updated at 20, start 5)."""
    traces = [
        trace(
            id=tid(1),
            thread_id="a",
            start_time=at(1),
            end_time=at(2),
            last_updated_at=at(30),
            input={"q": "a1"},
            output={"r": "a1"},
        ),
        trace(
            id=tid(3),
            thread_id="a",
            start_time=at(3),
            end_time=at(9),
            last_updated_at=at(10),
            input={"q": "a2"},
            output={"r": "a2"},
        ),
        trace(id=tid(5), thread_id="c", start_time=at(5), last_updated_at=at(20)),
        trace(id=tid(0), thread_id="b", start_time=at(0), last_updated_at=at(20)),
        trace(id=tid(7), start_time=at(7), last_updated_at=at(8)),
    ]
    assert (await client.post(BATCH, json={"traces": traces})).status_code == 204


@pytest.mark.anyio
async def test_threads_listing_order_paging_and_aggregates(client: httpx.AsyncClient) -> None:
    await write_threads(client)
    page1 = await list_threads(client, size="2")
    page2 = await list_threads(client, size="2", page="2")
    assert page1["total"] == page2["total"] == 3
    assert [t["id"] for t in page1["content"] + page2["content"]] == ["a", "b", "c"]
    a = page1["content"][0]
    assert a["number_of_messages"] == 4
    assert (a["start_time"], a["end_time"], a["duration"]) == (at(1), at(9), 8000.0)
    assert (a["first_message"], a["last_message"]) == ({"q": "a1"}, {"r": "a2"})
    assert a["last_updated_at"] == at(30)
    assert a["status"] == "active"
    assert is_uuid7(a["thread_model_id"])
    assert "sortableBy" in page1


@pytest.mark.anyio
async def test_thread_tags_status_and_scores_do_not_move_last_updated_at(
    fake: OpikFake, client: httpx.AsyncClient
) -> None:
    await write_threads(client)
    c = (await list_threads(client))["content"][2]
    url = f"{THREADS}/{c['thread_model_id']}"
    assert (await client.patch(url, json={"tags": ["x", "y"]})).status_code == 204
    assert (
        await client.patch(url, json={"tags_to_add": ["z"], "tags_to_remove": ["x"]})
    ).is_success
    closed = await client.put(f"{THREADS}/close", json={"project_name": "P", "thread_ids": ["c"]})
    assert closed.status_code == 204
    item = {"thread_id": "c", "name": "n", "value": 1, "source": "sdk", "project_name": "P"}
    await client.put(THREAD_SCORES, json={"scores": [item]})
    threads = (await list_threads(client))["content"]
    assert [t["id"] for t in threads] == ["a", "b", "c"]
    c = threads[2]
    assert (c["tags"], c["status"], c["last_updated_at"]) == (["y", "z"], "inactive", at(20))
    assert [s["name"] for s in c["feedback_scores"]] == ["n"]
    opened = await client.put(f"{THREADS}/open", json={"project_name": "P", "thread_id": "c"})
    assert opened.status_code == 204
    assert fake.threads[(fake.project_id("P"), "c")]["status"] == "active"
    both = {"project_name": "P", "thread_id": "c", "thread_ids": ["c"]}
    assert (await client.put(f"{THREADS}/close", json=both)).status_code == 422
    unknown = {"project_name": "P", "thread_id": "zz"}
    assert (await client.put(f"{THREADS}/close", json=unknown)).status_code == 404
    assert (await client.patch(f"{THREADS}/{uuid7()}", json={"tags": []})).status_code == 404


@pytest.mark.anyio
async def test_new_trace_reopens_closed_thread(fake: OpikFake, client: httpx.AsyncClient) -> None:
    await write_threads(client)
    await client.put(f"{THREADS}/close", json={"project_name": "P", "thread_id": "b"})
    assert fake.threads[(fake.project_id("P"), "b")]["status"] == "inactive"
    await client.post(BATCH, json={"traces": [trace(thread_id="b")]})
    assert fake.threads[(fake.project_id("P"), "b")]["status"] == "active"


@pytest.mark.anyio
async def test_thread_retrieve(client: httpx.AsyncClient) -> None:
    await write_threads(client)
    found = await client.post(f"{THREADS}/retrieve", json={"project_name": "P", "thread_id": "b"})
    assert found.status_code == 200
    assert found.json()["id"] == "b"
    missing = await client.post(f"{THREADS}/retrieve", json={"project_name": "P", "thread_id": "x"})
    assert missing.status_code == 404


@pytest.mark.anyio
async def test_thread_search_cursor_repeats_first_page(client: httpx.AsyncClient) -> None:
    await write_threads(client)

    async def search(cursor: str | None) -> list[dict]:
        body = {"project_name": "P", "limit": 2}
        if cursor:
            body["last_retrieved_thread_model_id"] = cursor
        response = await client.post(f"{THREADS}/search", json=body)
        assert response.status_code == 200
        return [json.loads(line) for line in response.text.splitlines()]

    first = await search(None)
    second = await search(first[-1]["thread_model_id"])
    assert len(first) == 2
    # `thread_model_id > cursor` with DESC order: page 2 re-sends page 1 minus its last item
    assert [t["id"] for t in second] == [t["id"] for t in first[:-1]]
    # so a client paging by this cursor sees repeats and never reaches the third thread
    received: list[str] = []
    cursor = None
    while page := await search(cursor):
        received += [t["id"] for t in page]
        cursor = page[-1]["thread_model_id"]
    assert len(received) > len(set(received)) == 2


# --- reads: traces and spans (ref §2.5, §2.6, §2.7) -----------------------------------------


@pytest.mark.anyio
async def test_traces_require_project_and_default_to_id_desc(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/private/traces")).status_code == 400
    assert (await client.get("/v1/private/traces", params={"project_name": "X"})).status_code == 404
    await write_threads(client)
    ids = [t["id"] for t in (await list_traces(client, size="100"))["content"]]
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == 5


@pytest.mark.anyio
async def test_traces_filters(client: httpx.AsyncClient) -> None:
    await write_threads(client)

    async def ids(*filters: dict) -> list[str]:
        page = await list_traces(client, filters=json.dumps(list(filters)), size="100")
        return sorted(t["start_time"] for t in page["content"])

    assert await ids({"field": "thread_id", "operator": "=", "value": "a"}) == [at(1), at(3)]
    assert await ids({"field": "thread_id", "operator": "is_empty", "value": ""}) == [at(7)]
    assert len(await ids({"field": "thread_id", "operator": "is_not_empty", "value": ""})) == 4
    since = {"field": "last_updated_at", "operator": ">=", "value": at(20)}
    assert await ids(since) == [at(0), at(1), at(5)]
    bad = await client.get(
        "/v1/private/traces", params={"project_name": "P", "filters": '[{"field": "nope"}]'}
    )
    assert bad.status_code == 400


@pytest.mark.anyio
async def test_metadata_filters_take_a_json_path_key(client: httpx.AsyncClient) -> None:
    """§2.7: `metadata` filters on `key`, a JSON path (`a.b` is nested, as Opik's
    `JsonPathUtils` reads it); `=` compares the scalar's text case-insensitively; a missing
    path is empty. `total` counts every match whatever the page size."""
    source = {"platform": "langwatch", "project": "Proj-A", "id": "x"}
    t1, t2, t3, t4 = (tid(i) for i in range(1, 5))
    rows = [
        trace(id=t1, metadata={"tracebridge": {"source": source}, "n": 3}),
        trace(id=t2, metadata={"tracebridge": {"source": {**source, "project": "B"}}}),
        trace(id=t3, metadata={"flag": True}),
        trace(id=t4),
    ]
    await client.post(BATCH, json={"traces": rows})

    async def ids(*filters: dict, size: str = "100") -> tuple[list[str], int]:
        page = await list_traces(client, filters=json.dumps(list(filters)), size=size)
        return sorted(t["id"] for t in page["content"]), page["total"]

    def on(key: str, value: str, operator: str = "=") -> dict:
        return {"field": "metadata", "key": key, "operator": operator, "value": value}

    platform = on("tracebridge.source.platform", "langwatch")
    assert await ids(platform) == ([t1, t2], 2)
    assert await ids(platform, on("tracebridge.source.project", "proj-a")) == ([t1], 1)
    assert await ids(platform, size="1") == ([t2], 2)  # id DESC, total of all matches
    assert await ids(on("flag", "true")) == ([t3], 1)
    assert await ids(on("n", "2", ">")) == ([t1], 1)
    # JSON_VALUE of an object is '' (ClickHouse): Opik's is_empty holds for it as for a gap
    assert await ids(on("tracebridge.source", "", "is_not_empty")) == ([], 0)
    assert (await ids(on("tracebridge", "", "is_empty")))[1] == 4
    assert await ids(on("n", "", "is_not_empty")) == ([t1], 1)
    no_key = [{"field": "metadata", "operator": "=", "value": "x"}]
    bad = await client.get(
        "/v1/private/traces", params={"project_name": "P", "filters": json.dumps(no_key)}
    )
    assert bad.status_code == 400


@pytest.mark.anyio
async def test_trace_read_adds_derived_fields_and_truncates(client: httpx.AsyncClient) -> None:
    t = trace(start_time=at(0), end_time=at(1.5), input={"text": "x" * 20_000})
    await client.post(BATCH, json={"traces": [t]})
    spans = [
        span(t["id"], type="llm", usage={"total_tokens": 5}, total_estimated_cost=0.5),
        span(t["id"], type="llm", usage={"total_tokens": 7}),
    ]
    await client.post(SPANS, json={"spans": spans})
    got = (await client.get(f"/v1/private/traces/{t['id']}")).json()
    assert (got["span_count"], got["llm_span_count"], got["duration"]) == (2, 2, 1500.0)
    assert got["usage"] == {"total_tokens": 12}
    assert got["total_estimated_cost"] == 0.5
    assert len(got["input"]["text"]) == 20_000
    cut = (await list_traces(client, truncate="true"))["content"][0]
    assert len(cut["input"]["text"]) < 20_000
    assert (await client.get(f"/v1/private/traces/{tid()}")).status_code == 404


@pytest.mark.anyio
async def test_spans_require_project_even_with_trace_id(client: httpx.AsyncClient) -> None:
    t = trace()
    s = span(t["id"])
    await client.post(BATCH, json={"traces": [t]})
    await client.post(SPANS, json={"spans": [s, span(tid(9))]})
    await client.put(SPAN_SCORES, json={"scores": [score(s["id"], project_name="P")]})
    refused = await client.get("/v1/private/spans", params={"trace_id": t["id"]})
    assert refused.status_code == 400
    page = await client.get("/v1/private/spans", params={"project_name": "P", "trace_id": t["id"]})
    assert [x["id"] for x in page.json()["content"]] == [s["id"]]
    assert page.json()["content"][0]["feedback_scores"][0]["value"] == 1.0


@pytest.mark.anyio
async def test_trace_search_stream_pages_by_keyset(client: httpx.AsyncClient) -> None:
    await write_threads(client)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        body = {
            "project_name": "P",
            "limit": 2,
            **({"last_retrieved_id": cursor} if cursor else {}),
        }
        response = await client.post("/v1/private/traces/search", json=body)
        page = [json.loads(line)["id"] for line in response.text.splitlines()]
        if not page:
            break
        seen += page
        cursor = page[-1]
    assert len(seen) == len(set(seen)) == 5
    assert seen == sorted(seen, reverse=True)


# --- seeding ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_seed_helpers_are_readable_through_the_api(
    fake: OpikFake, client: httpx.AsyncClient
) -> None:
    t = {"id": tid(), "start_time": at(), "thread_id": "th", "name": "seed"}
    s = {"id": tid(1), "type": "llm", "start_time": at()}
    fake.add_trace(
        "Seeded",
        t,
        [s],
        trace_scores=[{"name": "q", "value": 1}],
        span_scores={s["id"]: [{"name": "s", "value": 0}]},
    )
    fake.add_thread_data(
        "Seeded", "th", scores=[{"name": "csat", "value": 3}], tags=["vip"], status="inactive"
    )
    assert fake.row_count() == 5
    got = (await list_traces(client, "seeded"))["content"][0]
    assert (got["name"], got["feedback_scores"][0]["name"], got["span_count"]) == ("seed", "q", 1)
    thread = (await list_threads(client, "Seeded"))["content"][0]
    assert (thread["tags"], thread["status"]) == (["vip"], "inactive")
    assert thread["feedback_scores"][0]["value"] == 3
    with pytest.raises(ValueError, match="version 7"):
        fake.add_trace("Seeded", {"id": str(uuid.uuid4()), "start_time": at()})


# --- fault injection and rate limits (ref §6) ----------------------------------------------


@pytest.mark.anyio
async def test_fail_next_changes_no_state(fake: OpikFake, client: httpx.AsyncClient) -> None:
    fake.fail_next(429, headers={"RateLimit-Reset": "2"})
    t = trace()
    limited = await client.post(BATCH, json={"traces": [t]})
    assert limited.status_code == 429
    assert limited.headers["RateLimit-Reset"] == "2"
    assert fake.traces == {}
    assert fake.projects == {}
    assert (await client.post(BATCH, json={"traces": [t]})).status_code == 204


@pytest.mark.anyio
async def test_fail_next_times_and_path(fake: OpikFake, client: httpx.AsyncClient) -> None:
    fake.fail_next(503, times=2, path_contains="/spans", json={"oops": True})
    assert (await client.post(BATCH, json={"traces": [trace()]})).status_code == 204
    s = span(tid())
    first = await client.post(SPANS, json={"spans": [s]})
    assert (first.status_code, first.json()) == (503, {"oops": True})
    assert (await client.post(SPANS, json={"spans": [s]})).status_code == 503
    assert fake.spans == {}
    assert (await client.post(SPANS, json={"spans": [s]})).status_code == 204


@pytest.mark.anyio
async def test_fail_after_writes(fake: OpikFake, client: httpx.AsyncClient) -> None:
    fake.fail_after_writes(1)
    await client.post(BATCH, json={"traces": [trace()]})
    t2 = trace()
    assert (await client.post(BATCH, json={"traces": [t2]})).status_code == 503
    assert (await client.put(TRACE_SCORES, json={"scores": [score(t2["id"])]})).status_code == 503
    assert len(fake.traces) == 1
    assert fake.trace_scores == {}
    assert (await list_traces(client))["total"] == 1  # reads still work
    fake.clear_faults()
    assert (await client.post(BATCH, json={"traces": [t2]})).status_code == 204
    assert len(fake.traces) == 2


@pytest.mark.anyio
async def test_failed_writes_do_not_count_toward_fail_after_writes(
    fake: OpikFake, client: httpx.AsyncClient
) -> None:
    fake.fail_after_writes(1, status=500)
    bad = await client.post(BATCH, json={"traces": [trace(id=str(uuid.uuid4()))]})
    assert bad.status_code == 400
    assert (await client.post(BATCH, json={"traces": [trace()]})).status_code == 204
    assert (await client.post(BATCH, json={"traces": [trace()]})).status_code == 500


@pytest.mark.anyio
async def test_rate_limit_counts_batch_items() -> None:
    clock = [T0]
    fake = OpikFake(rate_limit=3, now=lambda: clock[0])
    async with httpx.AsyncClient(transport=fake.transport, base_url=fake.base_url) as c:
        assert (await c.post(BATCH, json={"traces": [trace(), trace()]})).status_code == 204
        limited = await c.post(BATCH, json={"traces": [trace(), trace()]})
        assert limited.status_code == 429
        assert limited.headers["RateLimit-Reset"] == "60"
        clock[0] = T0 + dt.timedelta(seconds=61)
        assert (await c.post(BATCH, json={"traces": [trace(), trace()]})).status_code == 204
    assert len(fake.traces) == 4


# --- the change axis (ref §2.3, §2.5, §2.7, §3.3, §10, §11) ---------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


async def stream(client: httpx.AsyncClient, path: str = "/v1/private/traces/search", **body):
    response = await client.post(path, json={"project_name": "P", **body})
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


@pytest.mark.anyio
async def test_last_updated_at_moves_on_a_rewrite_and_on_nothing_else() -> None:
    """A re-write moves a trace's `last_updated_at` (server clock when the client sends none);
    a score (own table, own server-set time), a span written later (own table) and thread data
    do not; a thread's is its newest trace's; span scores average by name on the trace."""
    clock = Clock()
    fake = OpikFake(now=clock)
    async with httpx.AsyncClient(transport=fake.transport, base_url=fake.base_url) as c:
        t, s = trace(thread_id="th"), span(tid(), name="first")
        s["trace_id"] = t["id"]
        await c.post(BATCH, json={"traces": [t]})
        await c.post(SPANS, json={"spans": [s]})
        clock.now = T0 + dt.timedelta(minutes=5)
        late = span(t["id"], id=tid(2), name="late")
        assert (await c.post(SPANS, json={"spans": [late]})).status_code == 204
        scores = [score(t["id"], project_name="P")]
        assert (await c.put(TRACE_SCORES, json={"scores": scores})).status_code == 204
        for value, name in ((0.2, "relevance"), (0.6, "relevance")):
            item = score(late["id"] if value > 0.5 else s["id"], name, value, project_name="P")
            assert (await c.put(SPAN_SCORES, json={"scores": [item]})).status_code == 204
        item = {"thread_id": "th", "name": "csat", "value": 3, "source": "ui", "project_name": "P"}
        await c.put(THREAD_SCORES, json={"scores": [item]})
        await c.put(f"{THREADS}/close", json={"project_name": "P", "thread_id": "th"})
        (view,) = (await list_traces(c))["content"]
        assert view["last_updated_at"] == at(0)
        assert view["feedback_scores"][0]["last_updated_at"] == at(300)
        (averaged,) = view["span_feedback_scores"]
        assert (averaged["name"], averaged["value"]) == ("relevance", pytest.approx(0.4))
        assert averaged["last_updated_at"] == at(300)
        (thread,) = (await list_threads(c))["content"]
        assert thread["last_updated_at"] == at(0)
        clock.now = T0 + dt.timedelta(minutes=9)
        assert (await c.post(BATCH, json={"traces": [{**t, "name": "again"}]})).is_success
        (view,) = (await list_traces(c))["content"]
        assert (view["name"], view["last_updated_at"]) == ("again", at(540))
        (thread,) = (await list_threads(c))["content"]
        assert thread["last_updated_at"] == at(540)
        stale = {**t, "name": "stale", "last_updated_at": at(60)}  # older than the stored row
        await c.post(BATCH, json={"traces": [stale]})
        assert fake.traces[t["id"]]["name"] == "again"


@pytest.mark.anyio
async def test_streams_filter_on_last_updated_at_under_the_keyset(
    client: httpx.AsyncClient,
) -> None:
    """§2.7: a DATE_TIME filter on `last_updated_at`, inclusive, with `last_retrieved_id`."""
    await write_threads(client)  # last_updated_at 30, 10, 20, 20, 8
    window = [
        {"field": "last_updated_at", "operator": ">=", "value": at(10)},
        {"field": "last_updated_at", "operator": "<=", "value": at(20)},
    ]
    found = await stream(client, filters=window, limit=2)
    assert [t["start_time"] for t in found] == [at(5), at(3)]  # id DESC: newest first
    rest = await stream(client, filters=window, limit=2, last_retrieved_id=found[-1]["id"])
    assert [t["start_time"] for t in rest] == [at(0)]
    spans = await stream(client, "/v1/private/spans/search", filters=window)
    assert spans == []


@pytest.mark.anyio
async def test_sorting_honours_the_first_entry_and_drops_what_cannot_be_sorted(
    client: httpx.AsyncClient,
) -> None:
    """§2.7: only the first `sorting` entry counts; §2.5: traces cannot be sorted on
    `last_updated_at` (dropped silently: id DESC stays); threads can (§2.4)."""
    await write_threads(client)

    def sorting(field: str, direction: str = "ASC", *more: dict) -> str:
        return json.dumps([{"field": field, "direction": direction}, *more])

    by_start = await list_traces(client, sorting=sorting("start_time", "ASC", {"field": "id"}))
    assert [t["start_time"] for t in by_start["content"]] == [at(0), at(1), at(3), at(5), at(7)]
    assert "last_updated_at" not in by_start["sortableBy"]
    dropped = await list_traces(client, sorting=sorting("last_updated_at"))
    assert [t["start_time"] for t in dropped["content"]] == [at(7), at(5), at(3), at(1), at(0)]
    threads = await list_threads(client, sorting=sorting("start_time", "DESC"))
    assert [t["id"] for t in threads["content"]] == ["c", "a", "b"]
    assert "last_updated_at" in threads["sortableBy"]
    updated = await list_threads(client, sorting=sorting("last_updated_at", "ASC"))
    assert [t["id"] for t in updated["content"]] == ["b", "c", "a"]  # ties: default order
    bad = await client.get(
        THREADS, params={"project_name": "P", "sorting": sorting("usage")}
    )  # sortable on the server, not modelled here: said, not faked
    assert bad.status_code == 400


@pytest.mark.anyio
async def test_a_server_without_dynamic_sorting_keeps_its_default_order() -> None:
    """§2.5 `cannotUseDynamicSorting`: `sorting` dropped for very large workspaces."""
    fake = OpikFake(dynamic_sorting=False)
    async with httpx.AsyncClient(transport=fake.transport, base_url=fake.base_url) as c:
        await write_threads(c)
        asked = json.dumps([{"field": "start_time", "direction": "ASC"}])
        threads = await list_threads(c, sorting=asked)
        assert [t["id"] for t in threads["content"]] == ["a", "b", "c"]  # the default
        traces = await list_traces(c, sorting=asked)
        assert [t["start_time"] for t in traces["content"]] == [at(7), at(5), at(3), at(1), at(0)]


@pytest.mark.anyio
async def test_after_request_changes_state_between_two_answers(
    fake: OpikFake, client: httpx.AsyncClient
) -> None:
    """The hook runs after the n-th matching request is answered, once: that answer is from
    before the change, the next one from after it."""
    await write_threads(client)
    calls: list[int] = []

    def change() -> None:
        calls.append(len(fake.requests))
        fake.add_trace("P", {"id": tid(9), "start_time": at(9), "thread_id": "d"})

    fake.after_request(2, change, path_contains="/traces/threads", method="GET")
    first = await list_threads(client, size="1")
    await client.get("/v1/private/traces", params={"project_name": "P"})  # not counted
    second = await list_threads(client, size="1", page="2")
    third = await list_threads(client, size="1", page="3")
    assert (first["total"], second["total"], third["total"]) == (3, 3, 4)
    assert len(calls) == 1
    # "d" went first (newest `last_updated_at`): the pages shifted, b twice and c never.
    assert [x["content"][0]["id"] for x in (first, second, third)] == ["a", "b", "b"]


# --- bulk reads: spans by trace_id range, threads filtered, views only for what is returned ---


async def _spans_of_five_traces(client: httpx.AsyncClient) -> list[str]:
    """Five traces (ids at 0, 10, 20, 30, 40 s) of three spans each, a child under a root;
    their ids, oldest first."""
    ids = [tid(10 * i) for i in range(5)]
    await client.post(BATCH, json={"traces": [trace(id=i) for i in ids]})
    spans = []
    for n, trace_id in enumerate(ids):
        root = tid(10 * n + 1)
        spans += [span(trace_id, id=root), span(trace_id, id=tid(10 * n + 2), parent_span_id=root),
                  span(trace_id, id=tid(10 * n + 3), parent_span_id=root)]  # fmt: skip
    assert (await client.post(SPANS, json={"spans": spans})).status_code == 204
    return ids


async def list_spans(client: httpx.AsyncClient, filters: list[dict], **params: str) -> dict:
    query = {"project_name": "P", "filters": json.dumps(filters), **params}
    response = await client.get("/v1/private/spans", params=query)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.anyio
async def test_spans_filter_on_a_trace_id_range_in_table_order(client: httpx.AsyncClient) -> None:
    """ref §2.6, §11: `GET /spans` over the project with `trace_id` `>`/`<` (compared as text,
    as `opik export` sends them): the spans of the traces inside, in the table key order
    (trace_id, parent_span_id, id) DESC, paged by page/size with `total`; `>=`/`<=` include
    the bound."""
    ids = await _spans_of_five_traces(client)
    inside = [{"field": "trace_id", "operator": ">", "value": ids[0]},
              {"field": "trace_id", "operator": "<", "value": ids[4]}]  # fmt: skip
    page1 = await list_spans(client, inside, size="4")
    page2 = await list_spans(client, inside, size="4", page="2")
    page3 = await list_spans(client, inside, size="4", page="3")
    assert page1["total"] == page2["total"] == page3["total"] == 9
    rows = page1["content"] + page2["content"] + page3["content"]
    assert [s["trace_id"] for s in rows] == [ids[3]] * 3 + [ids[2]] * 3 + [ids[1]] * 3
    keys = [(s["trace_id"], s.get("parent_span_id", ""), s["id"]) for s in rows]
    assert keys == sorted(keys, reverse=True)
    bounds = [{"field": "trace_id", "operator": ">=", "value": ids[1]},
              {"field": "trace_id", "operator": "<=", "value": ids[2]}]  # fmt: skip
    assert {s["trace_id"] for s in (await list_spans(client, bounds))["content"]} == set(ids[1:3])
    below = [{"field": "trace_id", "operator": "<", "value": ids[0]}]
    assert (await list_spans(client, below))["total"] == 0
    # a bound that is no trace id (a UUID v7 floored to a millisecond) works the same way
    low = str(uuid.UUID(int=(uuid7_ms(ids[4]) << 80) | (0x7 << 76) | (0x2 << 62)))
    assert (await list_spans(client, [{"field": "trace_id", "operator": ">", "value": low}]))[
        "total"
    ] == 3


@pytest.mark.anyio
async def test_lists_turn_only_the_returned_rows_into_views(
    fake: OpikFake, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fake stays cheap: a page of a listing builds views (span counts, scores) for its own
    rows, not for every row of the project; `total` still counts them all."""
    await _spans_of_five_traces(client)
    built: list[str] = []
    view = fake._entity_view

    def counting(kind: str, row: dict, *args: object) -> dict:
        built.append(kind)
        return view(kind, row, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(fake, "_entity_view", counting)
    page = await list_traces(client, size="2")
    assert (page["total"], len(page["content"]), built) == (5, 2, ["trace", "trace"])
    assert [t["span_count"] for t in page["content"]] == [3, 3]
    built.clear()
    spans = await list_spans(client, [], size="4", page="2")
    assert (spans["total"], len(spans["content"]), built) == (15, 4, ["span"] * 4)


@pytest.mark.anyio
async def test_thread_listing_filters_on_start_end_and_last_updated(
    client: httpx.AsyncClient,
) -> None:
    """ref §2.4, §2.7: threads filter on their own `start_time`, `end_time` (first start, last
    end of their traces) and `last_updated_at` (newest trace's); a thread none of whose traces
    ended has no `end_time` and no end filter holds it."""
    await write_threads(client)
    ended_after = [{"field": "end_time", "operator": ">=", "value": at(3)}]
    assert [t["id"] for t in (await list_threads(client, filters=json.dumps(ended_after)))[
        "content"]] == ["a"]  # fmt: skip
    started = [{"field": "start_time", "operator": "<=", "value": at(1)}]
    found = await list_threads(client, filters=json.dumps(started), size="1")
    assert found["total"] == 2
    assert [t["id"] for t in found["content"]] == ["a"]
    changed = [{"field": "last_updated_at", "operator": ">=", "value": at(20)},
               {"field": "start_time", "operator": ">=", "value": at(1)}]  # fmt: skip
    assert {t["id"] for t in (await list_threads(client, filters=json.dumps(changed)))[
        "content"]} == {"a", "c"}  # fmt: skip


@pytest.mark.anyio
async def test_a_thread_score_written_after_a_read_shows_in_the_next(
    fake: OpikFake, client: httpx.AsyncClient
) -> None:
    """The fake's index is rebuilt after every change, thread scores included."""
    await write_threads(client)
    assert "feedback_scores" not in (await list_threads(client))["content"][0]
    body = {"scores": [{"thread_id": "a", "name": "csat", "value": 3, "source": "ui",
                        "project_name": "P"}]}  # fmt: skip
    assert (await client.put(THREAD_SCORES, json=body)).status_code == 204
    (a,) = [t for t in (await list_threads(client))["content"] if t["id"] == "a"]
    assert [s["value"] for s in a["feedback_scores"]] == [3]
    body["scores"][0]["value"] = 5
    assert (await client.put(THREAD_SCORES, json=body)).status_code == 204
    (a,) = [t for t in (await list_threads(client))["content"] if t["id"] == "a"]
    assert [s["value"] for s in a["feedback_scores"]] == [5]


def test_fixed_path_routes_answer_alike_by_lookup_and_through_respx() -> None:
    """`transport` finds a fixed-path route by lookup (cost only): every such route answers
    as respx's matching does, and a path of a route with an id still goes through respx."""
    from tests.fakes.opik import _ROUTES

    fixed = [(m, p) for m, p, *_ in _ROUTES if "(" not in p]
    assert len(fixed) > 15
    for method, path in fixed:
        via_lookup, via_respx = OpikFake(api_key="k"), OpikFake(api_key="k")
        request = httpx.Request(method, via_lookup.base_url + path, headers={"authorization": "k"})
        looked_up = via_lookup.sync_transport.handle_request(request)
        routed = via_respx.router.handler(request)
        assert (looked_up.status_code, looked_up.content) == (routed.status_code, routed.content)
        assert len(via_lookup.requests) == len(via_respx.requests) == 1
    fake = OpikFake()
    unknown = httpx.Request("GET", f"{fake.base_url}/v1/private/traces/{uuid7()}")
    assert fake.sync_transport.handle_request(unknown).status_code == 404
    https = httpx.Request("GET", fake.base_url.replace("http:", "https:") + "/is-alive/ver")
    with pytest.raises(respx.models.AllMockedAssertionError):
        fake.sync_transport.handle_request(https)  # another origin is not this server
