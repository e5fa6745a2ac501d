"""`OpikApiSink` against the stateful Opik fake: what goes over the wire and what lands.

Rules pinned (`reference/opik-api.md`): §5 auth headers; §2.1–§2.3 and §4 batch limits (1000
items), absent fields omitted, `project_name` on every score (§10); §3.1 one bad id refuses a
whole batch, so the sink bisects down to the item and dead-letters it with the server's
message (DESIGN.md invariant 4); §3.1/§10 the UUID v7 time window (`too_old` names the
option to use) and the write-time id map that makes reruns idempotent (DESIGN.md invariant 1);
§9 the write order.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.factories import langwatch_trace
from tests.fakes.opik import OpikFake, is_uuid7, uuid7_ms
from tests.fakes.rate_limit import RateLimitedTransport, VirtualClock
from tests.opik_spec import require_spec, validate_httpx_request
from tracebridge import (
    AuthError,
    Counts,
    Page,
    RetriesExhausted,
    Score,
    Thread,
    Trace,
    Unit,
    UsageError,
    Window,
    load_settings,
    run,
)
from tracebridge._http import RetryPolicy
from tracebridge._langwatch.convert import trace_from_wire
from tracebridge._mapping import default_mappings
from tracebridge._models import Span
from tracebridge._opik.api import OpikApiSink, is_opik_cloud, opik_api
from tracebridge._opik.convert import OpikIds, SourceTimeIds
from tracebridge._opik.ids import MintedIds
from tracebridge._pacing import Pacer
from tracebridge._state import StateDir

KEY = "opik-key-7f3a9c"
WORKSPACE = "team-ws"
PROJECT = "support-bot"
NOW = datetime.now(UTC)
RECENT_MS = int((NOW - timedelta(hours=2)).timestamp() * 1000)
OLD_MS = int((NOW - timedelta(days=10)).timestamp() * 1000)
NOT_V7 = "0b5c7a52-2f5e-4c1e-9a59-5e0c9b8d3f11"  # a version 4 UUID
FREE_FORM = frozenset({"input", "output", "metadata"})  # user JSON: may hold nulls of its own


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _no_sleep(seconds: float) -> None:
    return None


def make_sink(
    fake: OpikFake,
    *,
    key: str = KEY,
    ids: OpikIds | None = None,
    **limits: int,
) -> OpikApiSink:
    settings = load_settings(
        None,
        {"opik_url": fake.base_url, "opik_api_key": key, "opik_workspace": WORKSPACE},
        environ={},
    )
    policy = RetryPolicy(attempts=2, sleep=_no_sleep)
    return OpikApiSink(
        opik_api(settings, fake.transport, policy),
        project=PROJECT,
        mappings=default_mappings(),
        ids=ids,
        **limits,
    )


def make_fake(**options: Any) -> OpikFake:
    return OpikFake(api_key=KEY, workspace=WORKSPACE, **options)


def canonical(
    rng: random.Random,
    i: int,
    *,
    start_ms: int = RECENT_MS,
    thread_id: str | None = None,
    n_spans: int | None = None,
) -> Trace:
    """A LangWatch trace as the source hands it over; every third one has an error."""
    raw = langwatch_trace(
        rng,
        trace_id=f"trace_{i:04d}",
        started_at_ms=start_ms + i * 1000,
        thread_id=thread_id,
        n_spans=n_spans,
        with_error=i % 3 == 0,
        evaluation_statuses=("processed", "processed", "skipped"),
    )
    trace, _ = trace_from_wire(raw, project="project_test")
    return trace


def traces(n: int, *, seed: int = 7, **kw: Any) -> list[Trace]:
    rng = random.Random(seed)
    return [canonical(rng, i, **kw) for i in range(n)]


def bodies(fake: OpikFake, path: str) -> list[Any]:
    return [b for b in fake.request_bodies(path) if b is not None]


def items(fake: OpikFake, path: str, key: str) -> list[list[dict[str, Any]]]:
    """The item lists of every request to `path` (the exact path, not a prefix)."""
    return [
        json_body[key]
        for request, json_body in zip(fake.requests, _decoded(fake), strict=True)
        if request.url.path.endswith(path) and isinstance(json_body, dict) and key in json_body
    ]


def _decoded(fake: OpikFake) -> list[Any]:
    import gzip

    out = []
    for request in fake.requests:
        raw = request.content
        if request.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        out.append(json.loads(raw) if raw else None)
    return out


def _nulls(node: Any, path: str = "$") -> Iterator[str]:
    """Paths of JSON nulls, not descending into the user's own input/output/metadata JSON."""
    if node is None:
        yield path
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in FREE_FORM and value is not None:
                continue
            yield from _nulls(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _nulls(value, f"{path}[{i}]")


def with_span_score(trace: Trace) -> Trace:
    span = trace.spans[0]
    scored = span.model_copy(update={"scores": [Score(name="span quality", value=0.25)]})
    return trace.model_copy(update={"spans": [scored, *trace.spans[1:]]})


def thread_with_data(members: list[Trace], thread_id: str) -> Thread:
    """A thread with Opik thread-level data (scores, tags, status), as an Opik copy has."""
    return Thread(
        id=thread_id,
        traces=members,
        scores=[Score(name="resolved", value=1.0, reason="customer confirmed")],
        tags=["escalated", "vip"],
        status="active",
    )


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_requests_carry_the_bare_key_and_the_workspace() -> None:
    """§5: `authorization: <key>` with no `Bearer ` prefix, plus `Comet-Workspace`."""
    fake = make_fake()
    sink = make_sink(fake)
    result = await sink.write(traces(3))
    await sink.aclose()
    assert result.written.traces == 3
    assert len(fake.traces) == 3
    assert fake.requests
    for request in fake.requests:
        assert request.headers["authorization"] == KEY
        assert request.headers["comet-workspace"] == WORKSPACE


@pytest.mark.anyio
async def test_a_refused_key_raises_auth_error_and_writes_nothing() -> None:
    """§5 and DESIGN.md errors: a refused key is fatal and names the variable, not the key."""
    fake = make_fake()
    sink = make_sink(fake, key="wrong-key-123")
    with pytest.raises(AuthError) as caught:
        await sink.write(traces(2))
    await sink.aclose()
    assert "OPIK_API_KEY" in str(caught.value)
    assert "wrong-key-123" not in str(caught.value)
    assert fake.row_count() == 0
    assert len(fake.requests) == 1


# --- batch limits -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_no_request_holds_more_than_1000_items() -> None:
    """§2.2/§4: a batch holds 1 to 1000 items, so 1,500 spans take two requests or more."""
    fake = make_fake()
    sink = make_sink(fake)
    (trace,) = traces(1, n_spans=1500)
    result = await sink.write([trace])
    await sink.aclose()
    span_batches = items(fake, "/v1/private/spans/batch", "spans")
    assert len(span_batches) >= 2
    assert all(1 <= len(batch) <= 1000 for batch in span_batches)
    assert sum(map(len, span_batches)) == 1500  # no request was refused and resent
    assert result.written.spans == 1500
    assert len(fake.spans) == 1500
    assert not result.rejected


@pytest.mark.anyio
async def test_the_byte_cap_splits_batches() -> None:
    """§4 payload size: no request body (as sent, before gzip) holds more than `max_bytes`
    unless it carries one item only."""
    fake = make_fake()
    max_bytes = 12_000
    sink = make_sink(fake, max_bytes=max_bytes)
    batch = traces(30)
    result = await sink.write(batch)
    await sink.aclose()
    for path, key in (("/v1/private/traces/batch", "traces"), ("/v1/private/spans/batch", "spans")):
        requests = items(fake, path, key)
        assert len(requests) > 1
        sent = [gzip.decompress(r.content) for r in fake.requests if r.url.path.endswith(path)]
        assert len(sent) == len(requests)
        for body, chunk in zip(sent, requests, strict=True):
            if len(chunk) > 1:  # one item bigger than the cap still goes, alone
                assert len(body) <= max_bytes
        assert max(map(len, sent)) > max_bytes * 0.8  # batches are filled, not cut short
    assert result.written.traces == len(fake.traces) == 30
    assert result.written.spans == len(fake.spans) == sum(len(t.spans) for t in batch)


# --- request bodies ---------------------------------------------------------------------------


def _mixed_units() -> list[Trace | Thread]:
    """Standalone traces (some with errors, one with a span score) and a thread with data."""
    rng = random.Random(11)
    standalone = [canonical(rng, i) for i in range(6)]
    standalone[1] = with_span_score(standalone[1])
    members = [canonical(rng, 10 + i, thread_id="thread_ab12") for i in range(3)]
    return [*standalone, thread_with_data(members, "thread_ab12")]


@pytest.mark.anyio
async def test_absent_fields_are_omitted_not_null() -> None:
    """§10: the spec allows no `null`; a careful client omits absent fields."""
    fake = make_fake()
    sink = make_sink(fake)
    units = _mixed_units()
    await sink.write(units)
    await sink.aclose()
    decoded = [b for b in _decoded(fake) if b is not None]
    assert decoded
    for body in decoded:
        assert list(_nulls(body)) == []
    trace_items = [t for batch in items(fake, "/v1/private/traces/batch", "traces") for t in batch]
    standalone = [t for t in trace_items if "thread_id" not in t]
    assert len(standalone) == 6  # standalone traces go without a thread_id key
    # LangWatch traces have no name: they take their root span's name, else its kind (never
    # nameless: `opik import` would call them `imported_trace`).
    roots = {
        t.id: next((s.name for s in t.spans if s.parent_id is None and s.name), None)
        or next((s.kind for s in t.spans if s.parent_id is None), "trace")
        for u in units
        for t in (u.traces if isinstance(u, Thread) else [u])
    }
    assert sorted(t["name"] for t in trace_items) == sorted(roots.values())
    assert any("error_info" not in t for t in trace_items)
    span_items = [s for batch in items(fake, "/v1/private/spans/batch", "spans") for s in batch]
    assert any("parent_span_id" not in s for s in span_items)
    assert any("model" not in s for s in span_items)


@pytest.mark.anyio
async def test_every_score_carries_the_project_name() -> None:
    """§10: a score without `project_name` lands in "Default Project", invisible on the entity."""
    fake = make_fake()
    sink = make_sink(fake)
    await sink.write(_mixed_units())
    await sink.aclose()
    paths = (
        "/v1/private/traces/feedback-scores",
        "/v1/private/spans/feedback-scores",
        "/v1/private/traces/threads/feedback-scores",
    )
    for path in paths:
        scores = [s for batch in items(fake, path, "scores") for s in batch]
        assert scores, f"no score was sent to {path}"
        assert all(s["project_name"] == PROJECT for s in scores)
    assert [p["name"] for p in fake.projects.values()] == [PROJECT]
    assert fake.trace_scores
    assert fake.span_scores
    assert fake.thread_scores


@pytest.mark.anyio
async def test_every_request_matches_the_opik_spec() -> None:
    """§1/§10: every request the sink sends validates against the official spec (strict: no
    undeclared property, no null, formats checked)."""
    require_spec()
    fake = make_fake()
    sink = make_sink(fake)
    result = await sink.write(_mixed_units())
    await sink.aclose()
    assert not result.rejected
    operations = {validate_httpx_request(r, strict=True) for r in fake.requests}
    assert {"createTraces", "createSpans", "scoreBatchOfTraces", "scoreBatchOfSpans"} <= operations
    assert "scoreBatchOfThreads" in operations


@pytest.mark.anyio
async def test_writes_go_traces_then_spans_then_scores_then_threads() -> None:
    """§9 sink order: traces before anything else; spans before span scores; the thread closed
    before its scores (§3.5: safe on every server version). Spans, trace scores and thread data
    need only the traces: they go side by side."""
    fake = make_fake()
    sink = make_sink(fake)
    await sink.write(_mixed_units())
    await sink.aclose()

    def first(path: str) -> int:
        return next(i for i, r in enumerate(fake.requests) if r.url.path.endswith(path))

    def last(path: str) -> int:
        return max(i for i, r in enumerate(fake.requests) if r.url.path.endswith(path))

    assert last("/traces/batch") < min(
        first(p)
        for p in (
            "/spans/batch",
            "/traces/feedback-scores",
            "/threads/close",
            "/spans/feedback-scores",
        )
    )
    assert last("/spans/batch") < first("/spans/feedback-scores")
    assert last("/threads/close") < first("/threads/feedback-scores")
    thread = next(iter(fake.threads.values()))
    assert thread["tags"] == ["escalated", "vip"]
    assert thread["status"] == "active"


# --- one bad item -----------------------------------------------------------------------------


class _BadIds:
    """Source-time ids, except that one span or trace gets a version 4 UUID."""

    def __init__(self, *, span: str | None = None, trace: str | None = None) -> None:
        self.inner, self.span, self.trace = SourceTimeIds(), span, trace

    def trace_id(self, trace: Trace) -> str:
        return NOT_V7 if trace.id == self.trace else self.inner.trace_id(trace)

    def span_id(self, trace: Trace, span: Span) -> str:
        return NOT_V7 if span.id == self.span else self.inner.span_id(trace, span)


def _leaf(batch: list[Trace]) -> tuple[Trace, Span]:
    """A span no other span names as parent (so only its own id is bad)."""
    for trace in batch:
        parents = {s.parent_id for s in trace.spans}
        for span in trace.spans:
            if span.id not in parents and span.parent_id is not None:
                return trace, span
    raise AssertionError("no leaf span")


@pytest.mark.anyio
async def test_one_refused_span_is_bisected_out_and_dead_lettered() -> None:
    """§3.1: one bad id refuses the whole batch; the sink halves it until the bad span is
    alone, dead-letters it with the server's message and writes every other item."""
    fake = make_fake()
    batch = traces(40)
    owner, bad = _leaf(batch[17:])
    sink = make_sink(fake, ids=_BadIds(span=bad.id))
    result = await sink.write(batch)
    await sink.aclose()
    n_spans = sum(len(t.spans) for t in batch)
    (rejected,) = result.rejected
    assert rejected.kind == "span"
    assert f"trace {owner.id}" in rejected.where
    assert "version 7" in rejected.reason
    assert rejected.record["id"] == NOT_V7
    assert result.written.spans == n_spans - 1
    assert len(fake.spans) == n_spans - 1
    assert NOT_V7 not in fake.spans
    assert len(fake.traces) == 40
    # Halving, not item-by-item: about two requests per level of the bisection.
    span_requests = items(fake, "/v1/private/spans/batch", "spans")
    assert len(span_requests) <= 2 * math.ceil(math.log2(n_spans)) + 1


@pytest.mark.anyio
async def test_a_refused_trace_takes_its_spans_and_scores_with_it() -> None:
    """DESIGN.md invariant 4: a refused trace is dead-lettered with what it holds; its spans and
    scores are not sent on their own (they would be orphans), everything else is written."""
    fake = make_fake()
    batch = traces(12)
    victim = batch[5]
    sink = make_sink(fake, ids=_BadIds(trace=victim.id))
    result = await sink.write(batch)
    await sink.aclose()
    (rejected,) = result.rejected
    assert rejected.kind == "trace"
    assert rejected.where == f"trace {victim.id}"
    assert "Trace id must be a version 7 UUID" in rejected.reason
    assert rejected.contains is not None
    assert rejected.contains.traces == 1
    assert rejected.contains.spans == len(victim.spans)
    assert len(fake.traces) == 11
    sent_spans = [s for b in items(fake, "/v1/private/spans/batch", "spans") for s in b]
    assert all(s["trace_id"] != NOT_V7 for s in sent_spans)
    sent_scores = [
        s for b in items(fake, "/v1/private/traces/feedback-scores", "scores") for s in b
    ]
    assert all(s["id"] != NOT_V7 for s in sent_scores)
    assert len(fake.spans) == sum(len(t.spans) for t in batch) - len(victim.spans)


# --- the UUID v7 time window ------------------------------------------------------------------


@pytest.mark.anyio
async def test_too_old_names_the_write_time_option() -> None:
    """§3.1/§10 and DESIGN.md invariant 1: a server enforcing the time window refuses ids
    derived from old start times; the run stops (exit 2) and says which option to use."""
    fake = make_fake(enforce_time_window=True)
    sink = make_sink(fake)
    with pytest.raises(UsageError) as caught:
        await sink.write(traces(3, start_ms=OLD_MS))
    await sink.aclose()
    assert "--opik-ids write-time" in str(caught.value)
    assert "too_old" in str(caught.value)
    assert caught.value.exit_code == 2
    assert fake.row_count() == 0


def _opik_rows(fake: OpikFake) -> tuple[set[str], set[str], set[tuple[str, str]]]:
    return set(fake.traces), set(fake.spans), set(fake.trace_scores)


@pytest.mark.anyio
async def test_write_time_ids_take_old_data_and_a_rerun_reuses_them(tmp_path: Path) -> None:
    """DESIGN.md invariant 1 (write-time mode): ids are minted now, so the window accepts them;
    the map in the state directory gives a rerun the same ids: no new rows."""
    fake = make_fake(enforce_time_window=True)
    batch = traces(8, start_ms=OLD_MS)
    map_file = tmp_path / "ids.sqlite"
    sink = make_sink(fake, ids=MintedIds(map_file))
    result = await sink.write(batch)
    await sink.aclose()
    assert not result.rejected
    assert map_file.is_file()
    assert len(fake.traces) == 8
    assert len(fake.spans) == sum(len(t.spans) for t in batch)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    for trace_id in fake.traces:
        assert is_uuid7(trace_id)
        assert abs(uuid7_ms(trace_id) - now_ms) < 3_600_000  # minted now, not 10 days ago
    rows, before = fake.row_count(), _opik_rows(fake)
    sent = len(fake.requests)

    again = make_sink(fake, ids=MintedIds(map_file))
    result = await again.write(batch)
    await again.aclose()
    assert not result.rejected
    assert len(fake.requests) > sent  # it did write again...
    assert fake.row_count() == rows  # ...onto the same rows
    assert fake.duplicate_rows == {}
    assert _opik_rows(fake) == before


@pytest.mark.anyio
async def test_write_time_rerun_after_the_window_skips_what_was_written(tmp_path: Path) -> None:
    """ids.py: an acknowledged id is kept even when it grows old; when the server then refuses
    it as `too_old`, the record counts as written by the earlier run, not as lost."""
    map_file = tmp_path / "ids.sqlite"
    later = datetime.now(UTC) + timedelta(days=2)
    fake = make_fake(enforce_time_window=True)
    batch = traces(4, start_ms=OLD_MS)
    sink = make_sink(fake, ids=MintedIds(map_file))
    await sink.write(batch)
    await sink.aclose()
    rows, before = fake.row_count(), _opik_rows(fake)

    fake.now = lambda: later
    newcomer = canonical(random.Random(99), 500, start_ms=OLD_MS)
    again = make_sink(fake, ids=MintedIds(map_file, now=lambda: later))
    result = await again.write([*batch, newcomer])
    await again.aclose()
    assert not result.rejected
    assert result.skipped.traces == 4
    assert result.skipped.spans == sum(len(t.spans) for t in batch)
    assert result.written.traces == 1
    assert fake.duplicate_rows == {}
    assert before[0] < set(fake.traces)
    assert len(fake.traces) == 5
    assert fake.row_count() > rows


@pytest.mark.anyio
async def test_write_time_mode_through_settings_writes_old_data(tmp_path: Path) -> None:
    """`--opik-ids write-time` (settings `opik_ids`) switches `open_sink` to minted ids kept
    in the state directory."""
    from tracebridge._endpoint_specs import open_sink, parse_endpoint

    fake = make_fake(enforce_time_window=True)
    settings = load_settings(
        None,
        {
            "opik_url": fake.base_url,
            "opik_api_key": KEY,
            "opik_workspace": WORKSPACE,
            "opik_ids": "write-time",
            "state_dir": tmp_path,
        },
        environ={},
    )
    transports: dict[str, httpx.AsyncBaseTransport] = {"opik": fake.transport}
    sink = open_sink(
        parse_endpoint("opik"),
        settings=settings,
        mappings=default_mappings(),
        project=PROJECT,
        transports=transports,
    )
    result = await sink.write(traces(3, start_ms=OLD_MS))
    await sink.aclose()
    assert not result.rejected
    assert len(fake.traces) == 3
    assert list(tmp_path.glob("opik-ids-*.sqlite"))
    assert all(uuid.UUID(t).version == 7 for t in fake.traces)


# --- a lost write-time id map -----------------------------------------------------------------


def _trace_lists(fake: OpikFake) -> list[httpx.Request]:
    """The `GET /traces` requests: the new-map check's lookups."""
    return [r for r in fake.requests if r.method == "GET" and r.url.path.endswith("/traces")]


@pytest.mark.anyio
async def test_a_new_id_map_stops_when_the_project_already_holds_copies_of_the_source(
    tmp_path: Path,
) -> None:
    """Write-time mode with a lost state directory: the new map would mint new ids for
    records the project already holds (their metadata names the source), so the run stops
    with exit 2 and says what to do, after one filtered lookup and before any write."""
    fake = make_fake(enforce_time_window=True)
    batch = traces(6, start_ms=OLD_MS)
    sink = make_sink(fake, ids=MintedIds(tmp_path / "first" / "ids.sqlite"))
    await sink.write(batch)
    await sink.aclose()
    rows, sent = fake.row_count(), len(fake.requests)

    lost = make_sink(fake, ids=MintedIds(tmp_path / "lost" / "ids.sqlite"))
    with pytest.raises(UsageError) as caught:
        await lost.write(batch)
    await lost.aclose()
    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert f"Opik project {PROJECT!r} already holds 6 traces" in message
    assert "copied from langwatch project 'project_test'" in message
    assert "is new and knows none of them" in message
    assert str(tmp_path / "lost" / "ids.sqlite") in message
    for remedy in ("--state-dir", "--since", "--force"):
        assert remedy in message
    assert fake.row_count() == rows
    (lookup,) = fake.requests[sent:]
    assert lookup in _trace_lists(fake)
    filters = json.loads(lookup.url.params["filters"])
    assert {(f["key"], f["value"]) for f in filters} == {
        ("tracebridge.source.platform", "langwatch"),
        ("tracebridge.source.project", "project_test"),
    }
    assert lookup.url.params["size"] == "1"
    if require_spec():
        assert validate_httpx_request(lookup, strict=True) == "getTracesByProject"


@pytest.mark.anyio
async def test_force_writes_past_the_new_map_check_with_a_warning(tmp_path: Path) -> None:
    """`--force`: the run goes on and the summary warns that the records written again get
    new ids (the duplicates the check is there to prevent)."""
    fake = make_fake()
    batch = traces(4, start_ms=OLD_MS)
    first = make_sink(fake, ids=MintedIds(tmp_path / "a.sqlite"))
    await first.write(batch)
    await first.aclose()
    settings = load_settings(
        None,
        {"opik_url": fake.base_url, "opik_api_key": KEY, "opik_workspace": WORKSPACE},
        environ={},
    )
    forced = OpikApiSink(
        opik_api(settings, fake.transport, RetryPolicy(attempts=2, sleep=_no_sleep)),
        project=PROJECT,
        mappings=default_mappings(),
        ids=MintedIds(tmp_path / "b.sqlite"),
        force=True,
    )
    result = await forced.write(batch)
    await forced.aclose()
    (warning,) = result.warnings
    assert warning.startswith("--force: ")
    assert "already holds 4 traces" in warning
    assert "duplicates" in warning
    assert result.written.traces == 4
    assert len(fake.traces) == 8  # what --force was warned about


@pytest.mark.anyio
async def test_a_new_id_map_goes_on_where_the_project_holds_no_copy_of_this_source(
    tmp_path: Path,
) -> None:
    """No copy of this source in the project (none at all, or copies of another LangWatch
    project): a new map is simply new. A map that is not new costs no lookup."""
    fake = make_fake()
    other = [
        t.model_copy(update={"source": t.source.model_copy(update={"project": "elsewhere"})})
        for t in traces(3, seed=11)
    ]
    sink = make_sink(fake, ids=MintedIds(tmp_path / "other.sqlite"))
    assert not (await sink.write(other)).warnings
    await sink.aclose()
    assert len(_trace_lists(fake)) == 1  # project did not exist yet: 404, nothing held

    map_file = tmp_path / "mine.sqlite"
    sink = make_sink(fake, ids=MintedIds(map_file))
    result = await sink.write(traces(3))
    await sink.aclose()
    assert not result.warnings
    assert not result.rejected
    assert len(_trace_lists(fake)) == 2
    again = make_sink(fake, ids=MintedIds(map_file))
    await again.write(traces(3))
    await again.aclose()
    assert len(_trace_lists(fake)) == 2  # the map knows them: no lookup
    assert len(fake.traces) == 6


@pytest.mark.anyio
async def test_a_write_time_dry_run_keeps_no_id(tmp_path: Path) -> None:
    """A dry run mints ids to show the plan but sends nothing: the map keeps none of them,
    so it is still new (and checked) on the real run."""
    fake = make_fake()
    map_file = tmp_path / "ids.sqlite"
    sink = make_sink(fake, ids=MintedIds(map_file))
    result = await sink.write(traces(3), dry_run=True)
    await sink.aclose()
    assert len(result.plan) == 3
    assert fake.traces == {}
    assert MintedIds(map_file).started_empty


# --- no id mode chosen: the target decides ----------------------------------------------------


def _auto_sink(fake: OpikFake, map_file: Path, **limits: int) -> OpikApiSink:
    """The sink `open_sink` builds when the user chose no id mode on a self-hosted server."""
    settings = load_settings(
        None,
        {"opik_url": fake.base_url, "opik_api_key": KEY, "opik_workspace": WORKSPACE},
        environ={},
    )
    return OpikApiSink(
        opik_api(settings, fake.transport, RetryPolicy(attempts=2, sleep=_no_sleep)),
        project=PROJECT,
        mappings=default_mappings(),
        switch_to=lambda: MintedIds(map_file),
        **limits,
    )


@pytest.mark.anyio
async def test_too_old_without_a_chosen_mode_switches_to_write_time_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """§3.1/§10: the first `too_old` refusal in source-time mode, when the user chose no mode,
    switches the sink to write-time: the batch is sent again with minted ids, what the server
    had already taken keeps its source-time id (no second row), a warning says so, and a
    rerun with the map writes onto the same rows."""
    fake = make_fake(enforce_time_window=True)
    rng = random.Random(3)
    recent = [canonical(rng, i, start_ms=RECENT_MS) for i in range(5)]
    old = [canonical(rng, 100 + i, start_ms=OLD_MS) for i in range(5)]
    batch = [*recent, *old]
    map_file = tmp_path / "ids.sqlite"
    sink = _auto_sink(fake, map_file, max_items=5)  # the recent traces go first, and pass
    result = await sink.write(batch)
    await sink.aclose()
    assert not result.rejected
    assert result.written.traces == 10
    assert result.written.spans == sum(len(t.spans) for t in batch)
    (warning,) = result.warnings
    assert "too_old" in warning
    assert "switched to --opik-ids write-time" in warning
    assert str(map_file) in warning
    assert "--opik-ids" in warning
    assert len(fake.traces) == 10
    assert fake.duplicate_rows == {}
    by_start = {
        t["metadata"]["tracebridge"]["source"]["id"]: uuid7_ms(t["id"])
        for t in fake.traces.values()
    }
    for trace in recent:  # taken before the switch: source-time ids, kept
        assert by_start[trace.id] == int(trace.started_at.timestamp() * 1000)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    for trace in old:  # refused, then sent with ids minted now
        assert abs(by_start[trace.id] - now_ms) < 3_600_000
    assert isinstance(sink.ids, MintedIds)

    rows = fake.row_count()
    again = make_sink(fake, ids=MintedIds(map_file))
    result = await again.write(batch)
    await again.aclose()
    assert not result.rejected
    assert not result.warnings
    assert fake.row_count() == rows
    assert fake.duplicate_rows == {}


@pytest.mark.anyio
async def test_a_chosen_source_time_mode_still_stops_at_too_old() -> None:
    """The switch is for users who chose no mode: `--opik-ids source-time` (no `switch_to`)
    keeps stopping with exit 2 and the option to use (`test_too_old_names_the_write_time_
    option`); an Opik-born record's own old id is no reason to switch either."""
    fake = make_fake(enforce_time_window=True)
    sink = make_sink(fake, ids=SourceTimeIds())
    with pytest.raises(UsageError) as caught:
        await sink.write(traces(2, start_ms=OLD_MS))
    await sink.aclose()
    assert "--opik-ids write-time" in str(caught.value)
    assert sink.switch_to is None


def _settings_for(fake: OpikFake, state: Path, **extra: Any) -> Any:
    return load_settings(
        None,
        {
            "opik_url": fake.base_url,
            "opik_api_key": KEY,
            "opik_workspace": WORKSPACE,
            "state_dir": state,
            **extra,
        },
        environ={},
    )


def _open(fake: OpikFake, state: Path, **extra: Any) -> OpikApiSink:
    from tracebridge._endpoint_specs import open_sink, parse_endpoint

    sink = open_sink(
        parse_endpoint("opik"),
        settings=_settings_for(fake, state, **extra),
        mappings=default_mappings(),
        project=PROJECT,
        transports={"opik": fake.transport},
    )
    assert isinstance(sink, OpikApiSink)
    return sink


def test_opik_cloud_is_recognised_by_its_host() -> None:
    """Reference §1/§5: Opik Cloud is `https://www.comet.com/opik/api`."""
    assert is_opik_cloud("https://www.comet.com/opik/api")
    assert is_opik_cloud("https://www.comet.com/opik/api/")
    assert is_opik_cloud("https://comet.com/opik/api")
    assert not is_opik_cloud("http://localhost:5173/api")
    assert not is_opik_cloud("https://opik.example.com/api")
    assert not is_opik_cloud("https://www.comet.com.example.org/opik/api")


@pytest.mark.anyio
async def test_opik_cloud_defaults_to_write_time_unless_the_user_chose(tmp_path: Path) -> None:
    """§11: Opik Cloud has the UUID v7 window on, so with no `--opik-ids` the sink mints ids
    from the start (and says so once, on a new map); a user's explicit choice is kept."""
    cloud = make_fake(base_url="https://www.comet.com/opik/api", enforce_time_window=True)
    sink = _open(cloud, tmp_path)
    assert isinstance(sink.ids, MintedIds)
    assert sink.switch_to is None
    result = await sink.write(traces(3, start_ms=OLD_MS))
    await sink.aclose()
    assert not result.rejected
    (notice,) = result.warnings
    assert "Opik Cloud" in notice
    assert "--opik-ids source-time" in notice
    assert len(cloud.traces) == 3
    again = _open(cloud, tmp_path)  # the map exists now: no notice
    assert isinstance(again.ids, MintedIds)
    assert not (await again.write(traces(3, start_ms=OLD_MS))).warnings
    await again.aclose()
    assert len(cloud.traces) == 3

    chosen = _open(cloud, tmp_path / "chosen", opik_ids="source-time")
    assert isinstance(chosen.ids, SourceTimeIds)
    assert chosen.switch_to is None
    await chosen.aclose()


@pytest.mark.anyio
async def test_open_sink_without_a_mode_switches_once_then_follows_its_map(
    tmp_path: Path,
) -> None:
    """A self-hosted server with the window on and no `--opik-ids`: the first run switches
    (warning), the map it leaves makes later runs start in write-time; without the window, no
    map is ever made and ids stay derived from the source (reference §3.1: off by default)."""
    fake = make_fake(enforce_time_window=True)
    batch = traces(4, start_ms=OLD_MS)
    first = _open(fake, tmp_path)
    assert isinstance(first.ids, SourceTimeIds)
    assert first.switch_to is not None
    result = await first.write(batch)
    await first.aclose()
    assert not result.rejected
    assert any("switched to --opik-ids write-time" in w for w in result.warnings)
    assert list(tmp_path.glob("opik-ids-*.sqlite"))
    later = _open(fake, tmp_path)
    assert isinstance(later.ids, MintedIds)
    result = await later.write(batch)
    await later.aclose()
    assert not result.warnings
    assert len(fake.traces) == 4
    assert fake.duplicate_rows == {}

    plain = make_fake()
    sink = _open(plain, tmp_path / "plain")
    result = await sink.write(batch)
    await sink.aclose()
    assert not result.warnings
    assert not list((tmp_path / "plain").glob("opik-ids-*.sqlite"))
    assert all(
        uuid7_ms(t["id"]) == int(datetime.fromisoformat(t["start_time"]).timestamp() * 1000)
        for t in plain.traces.values()
    )


@pytest.mark.anyio
async def test_a_switch_checks_the_map_it_opens_against_earlier_copies(tmp_path: Path) -> None:
    """Records an earlier run wrote with source-time ids are not in the map a later switch
    opens: minting for the project from then on would duplicate them, so the switch stops
    (exit 2) and says it switched. Records the switching batch re-sent keep their ids and
    raise no alarm (the previous test)."""
    fake = make_fake(enforce_time_window=True)
    rng = random.Random(9)
    recent = [canonical(rng, i, start_ms=RECENT_MS) for i in range(3)]
    old = [canonical(rng, 100 + i, start_ms=OLD_MS) for i in range(3)]
    first = _auto_sink(fake, tmp_path / "ids.sqlite")
    assert not (await first.write(recent)).warnings  # in the window: no switch, no map
    await first.aclose()
    assert not (tmp_path / "ids.sqlite").exists()

    later = _auto_sink(fake, tmp_path / "ids.sqlite")
    with pytest.raises(UsageError) as caught:
        await later.write(old)
    await later.aclose()
    message = str(caught.value)
    assert "already holds 3 traces" in message
    assert "this run switched to it when Opik refused source-time ids as too_old" in message
    assert len(fake.traces) == 3


# ------------------------------------------------------------------ batches in flight, pacing


class _InFlight(httpx.AsyncBaseTransport):
    """`inner` behind a short real wait, counting the most requests in flight at once, in all
    (`most`) and to one endpoint (`most_per_path`)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, fail: str | None = None) -> None:
        self.inner, self.fail = inner, fail
        self.now = self.most = self.most_per_path = 0
        self.per_path: dict[str, int] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.now += 1
        self.per_path[path] = self.per_path.get(path, 0) + 1
        self.most = max(self.most, self.now)
        self.most_per_path = max(self.most_per_path, self.per_path[path])
        try:
            await anyio.sleep(0.002)
            if self.fail is not None and self.fail in _body_text(request):
                return httpx.Response(503, json={"message": "down"})
            return await self.inner.handle_async_request(request)
        finally:
            self.now -= 1
            self.per_path[path] -= 1


def _body_text(request: httpx.Request) -> str:
    content = request.content
    if request.headers.get("Content-Encoding") == "gzip":
        content = gzip.decompress(content)
    return content.decode()


class _ManyBadIds:
    """Source-time ids, except version 4 UUIDs for the traces and spans named."""

    def __init__(self, bad: set[str]) -> None:
        self.inner, self.bad = SourceTimeIds(), bad

    @staticmethod
    def _v4(name: str) -> str:
        return str(uuid.UUID(hashlib.sha256(name.encode()).hexdigest()[:32], version=4))

    def trace_id(self, trace: Trace) -> str:
        return self._v4(trace.id) if trace.id in self.bad else self.inner.trace_id(trace)

    def span_id(self, trace: Trace, span: Span) -> str:
        return self._v4(span.id) if span.id in self.bad else self.inner.span_id(trace, span)


def _sink_on(transport: httpx.AsyncBaseTransport, fake: OpikFake, **options: Any) -> OpikApiSink:
    settings = load_settings(
        None,
        {"opik_url": fake.base_url, "opik_api_key": KEY, "opik_workspace": WORKSPACE},
        environ={},
    )
    api = opik_api(settings, transport, RetryPolicy(attempts=2, sleep=_no_sleep))
    return OpikApiSink(api, project=PROJECT, mappings=default_mappings(), **options)


@pytest.mark.anyio
async def test_batches_in_flight_give_exactly_what_a_sequential_write_gives() -> None:
    """Several batches of one endpoint in flight at once (bounded by `concurrency`), and the
    result, bisections of refused batches included, is item for item the sequential one."""
    batch = traces(60, n_spans=4)
    bad = {batch[7].id, batch[41].spans[2].id, batch[50].spans[0].id, batch[23].spans[3].id}
    outcomes = []
    for concurrency in (1, 4):
        fake = make_fake()
        wire = _InFlight(fake.transport)
        sink = _sink_on(wire, fake, ids=_ManyBadIds(bad), max_items=8, concurrency=concurrency)
        result = await sink.write(batch)
        await sink.aclose()
        assert wire.most_per_path == concurrency  # batches of one endpoint
        assert wire.most == (1 if concurrency == 1 else wire.most)  # 1: one request at a time
        assert concurrency == 1 or wire.most > concurrency  # the endpoints side by side
        outcomes.append(
            (
                [(r.kind, r.where, r.reason, r.record) for r in result.rejected],
                result.written,
                result.skipped,
                sorted(fake.traces),
                sorted(fake.spans),
                sorted(fake.trace_scores),
                sorted(fake.span_scores),
            )
        )
    sequential, concurrent = outcomes
    assert concurrent == sequential
    assert len(sequential[0]) >= 4  # the refused trace, the three spans (and their children)


@pytest.mark.anyio
async def test_a_failing_batch_does_not_lose_what_the_others_wrote(tmp_path: Path) -> None:
    """A batch that fails for good (503 until the retries are spent) is raised, but only once
    the batches in flight beside it were answered: their ids reach the write-time map, so a
    rerun reuses them (DESIGN.md invariant 1) rather than minting duplicates."""
    batch = traces(40, n_spans=1)
    fake = make_fake()
    wire = _InFlight(fake.transport, fail=batch[25].id)
    ids = MintedIds(tmp_path / "ids.sqlite")
    sink = _sink_on(wire, fake, ids=ids, max_items=5, concurrency=4)
    with pytest.raises(RetriesExhausted):
        await sink.write(batch)
    assert wire.most > 1
    written = set(fake.traces)
    assert len(written) == 35  # every batch but the failing one
    assert all(ids.was_acknowledged(i) for i in written)
    await sink.aclose()


@pytest.mark.anyio
async def test_the_first_batch_goes_alone() -> None:
    """A refused key costs one request, not `concurrency` of them."""
    fake = make_fake()
    wire = _InFlight(fake.transport)
    sink = _sink_on(wire, fake, max_items=2, concurrency=4)
    sink.api._client.headers["authorization"] = "wrong"
    with pytest.raises(AuthError):
        await sink.write(traces(20))
    await sink.aclose()
    assert len(fake.requests) == 1


@pytest.mark.anyio
async def test_a_run_into_a_rate_limited_opik_uses_the_budget_without_429s(
    tmp_path: Path,
) -> None:
    """Issue #10: into an Opik that limits events per minute (`tests/fakes/rate_limit.py`, in
    virtual time), a run writes every item, spends at least 90 % of every full window, and fewer
    than 1 % of its requests are answered 429."""
    clock = VirtualClock()
    fake = make_fake()
    limited = RateLimitedTransport(
        fake.transport, budgets={"User": 600, "Workspace": 300}, clock=clock.now
    )
    settings = load_settings(
        None,
        {"opik_url": fake.base_url, "opik_api_key": KEY, "opik_workspace": WORKSPACE},
        environ={},
    )
    api = opik_api(settings, limited, RetryPolicy(sleep=clock.sleep, clock=clock.now))
    api.pacer = Pacer(clock=clock.now, sleep=clock.sleep)
    sink = OpikApiSink(api, project=PROJECT, mappings=default_mappings())
    rng = random.Random(5)
    units: list[Unit] = [
        Thread(
            id=f"thread-{i}",
            traces=[canonical(rng, 3 * i + k, thread_id=f"thread-{i}") for k in range(3)],
        )
        for i in range(40)
    ]
    units += [canonical(rng, 200 + i) for i in range(180)]
    report = await run(_Pages(units, 25), sink, state=StateDir(tmp_path, {"job": "paced"}))
    assert not report.lossy
    held = Counts()
    for unit in units:
        held.add(Counts.of(unit))
    assert report.written.traces == len(fake.traces) == held.traces == 300
    assert report.written.spans == len(fake.spans) == held.spans
    assert len(fake.trace_scores) + len(fake.span_scores) + len(fake.thread_scores) > 0
    assert limited.events > 5 * 300  # the run needed several windows
    assert limited.refused < 0.01 * limited.requests
    full = limited.use("Workspace")[:-1]
    assert len(full) >= 5
    assert min(full) >= 0.9, full
    assert api.pacer.waited > 0


class _Pages:
    """A source yielding `units` in pages of `size`."""

    label = "test"

    def __init__(self, units: list[Unit], size: int) -> None:
        self.units, self.size = units, size

    async def pages(self, window: Window, resume: dict[str, Any] | None) -> AsyncIterator[Page]:
        for start in range(0, len(self.units), self.size):
            yield Page(units=self.units[start : start + self.size], cursor={"at": start})

    async def aclose(self) -> None:
        return None
