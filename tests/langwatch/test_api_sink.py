"""`LangWatchApiSink` against `LangWatchFake`: the collector's rules (`reference/langwatch-api.md`
§5.1: auth header, 13-digit ms, ≤ 200 spans / ≤ 200 evaluations / ≤ 10 MB per request, 429 means
"split", 402, `partialSuccess`, the 31-day cutoff) and what a copy of an Opik trace looks like
in LangWatch (synthetic root span, evaluations, thread data on the last trace)."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from tracebridge import (
    Counts,
    ErrorInfo,
    IOValue,
    Page,
    Provenance,
    QuotaError,
    Report,
    Score,
    Span,
    Thread,
    Trace,
    Unit,
    Window,
    load_settings,
    run,
)
from tracebridge._http import RetryPolicy
from tracebridge._langwatch.api import LangWatchApiSink, LangWatchApiSource, langwatch_api
from tracebridge._langwatch.convert import (
    evaluation_id,
    trace_from_wire,
    trace_to_wire,
    with_root_span,
)
from tracebridge._mapping import default_mappings
from tracebridge._opik.api import OpikApiSource, opik_api
from tracebridge._opik.convert import trace_from_opik
from tracebridge._state import StateDir
from tracebridge._time import from_ms, to_ms

from ..factories import langwatch_trace, opik_trace, uuid7
from ..fakes.langwatch import LangWatchFake
from ..fakes.opik import OpikFake
from ..strategies import langwatch_traces, opik_traces

Json = dict[str, Any]
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
NOW_MS = to_ms(NOW)
DAY = timedelta(days=1)
CUTOFF_MS = 31 * 86_400_000  # §5.1 SPAN_MAX_PAST_MS
MAX_BODY = 10 * 1024 * 1024  # §5.1 bodyLimit
PROJECT = "support-bot"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ------------------------------------------------------------------------------------ helpers


def _fake(now_ms: int = NOW_MS) -> LangWatchFake:
    return LangWatchFake(now=lambda: now_ms)


def _sink(
    fake: LangWatchFake, waits: list[float] | None = None, now: datetime = NOW, **options: Any
) -> LangWatchApiSink:
    """A sink on the fake whose clock is `now`; retry waits are recorded, never slept."""

    async def sleep(seconds: float) -> None:
        (waits if waits is not None else []).append(seconds)

    settings = load_settings(
        None, {"langwatch_api_key": fake.api_key, "langwatch_endpoint": fake.base_url}, environ={}
    )
    api = langwatch_api(settings, fake.transport, RetryPolicy(sleep=sleep))
    return LangWatchApiSink(api, now=lambda: now, **options)


def _opik_records(
    rng: random.Random, start: datetime, thread_id: str | None = None, n_spans: int | None = None
) -> tuple[Json, list[Json], list[Json], dict[str, list[Json]]]:
    return opik_trace(
        rng,
        trace_id=uuid7(to_ms(start), rng),
        start=start,
        thread_id=thread_id,
        project_name=PROJECT,
        n_spans=n_spans,
    )


def _canonical(records: tuple[Json, list[Json], list[Json], dict[str, list[Json]]]) -> Trace:
    """An Opik trace (write shape + its scores) as the Opik source hands it to the sink."""
    trace, spans, trace_scores, span_scores = records
    public = {**trace, "feedback_scores": trace_scores} if trace_scores else trace
    public_spans = [
        {**s, "feedback_scores": span_scores[s["id"]]} if s["id"] in span_scores else s
        for s in spans
    ]
    return trace_from_opik(public, public_spans, project=PROJECT, mappings=default_mappings())


def _opik_trace(seed: int, start: datetime, **kw: Any) -> Trace:
    return _canonical(_opik_records(random.Random(seed), start, **kw))


def _ordered(trace: Trace) -> Trace:
    """`trace` with its spans by id: LangWatch returns spans by start time, Opik by its key."""
    return trace.model_copy(update={"spans": sorted(trace.spans, key=lambda s: s.id)})


def _bodies(fake: LangWatchFake) -> list[Json]:
    """Every collector body sent, answered or not, in order."""
    return [json.loads(r.content) for r in fake.requests if r.url.path == "/api/collector"]


def _timestamps(value: Any) -> list[Any]:
    """Every value under a `timestamps` key anywhere in `value`."""
    found: list[Any] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "timestamps" and isinstance(item, dict):
                found += list(item.values())
            else:
                found += _timestamps(item)
    elif isinstance(value, list):
        for item in value:
            found += _timestamps(item)
    return found


class _ListSource:
    """A source that yields the given units as one page (for running the engine)."""

    label = "test"

    def __init__(self, units: list[Unit]) -> None:
        self.units = units

    async def pages(self, window: Window, resume: dict[str, Any] | None) -> AsyncIterator[Page]:
        yield Page(units=list(self.units), cursor={"done": True})

    async def aclose(self) -> None:
        return None


def _dead_letters(report: Report) -> list[Json]:
    assert report.dead_letter_path is not None
    path = Path(report.dead_letter_path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------------------ requests


@pytest.mark.anyio
async def test_every_collector_request_carries_x_auth_token() -> None:
    """§2/§5.1: the key travels as `X-Auth-Token`, on every request, and nowhere else."""
    fake = _fake()
    sink = _sink(fake)
    result = await sink.write([_opik_trace(s, NOW - timedelta(hours=s)) for s in range(3)])
    await sink.aclose()
    assert result.written.traces == 3
    assert not result.rejected
    assert len(fake.requests) == 3
    for request in fake.requests:
        assert request.headers["x-auth-token"] == fake.api_key
        assert "authorization" not in request.headers
        assert "application/json" in request.headers["content-type"]


@pytest.mark.anyio
async def test_every_collector_timestamp_is_13_digit_epoch_ms() -> None:
    """§5.1: started_at/finished_at/first_token_at (and evaluation times) in 13-digit ms."""
    fake = _fake()
    sink = _sink(fake)
    traces = [_opik_trace(s, NOW - timedelta(hours=s), n_spans=8) for s in range(6)]
    await sink.write(traces)
    await sink.aclose()
    bodies = fake.collected_requests()
    assert len(bodies) == 6
    stamps = _timestamps(bodies)
    assert len(stamps) >= sum(2 * (len(t.spans) + 1) for t in traces)  # start and end each
    for value in stamps:
        assert type(value) is int, value
        assert 10**12 <= value < 10**13, value
    # and they are the canonical times, not some other unit
    for trace in traces:
        body = next(b for b in bodies if b["trace_id"] == trace.id)
        sent = {s["span_id"]: s["timestamps"] for s in body["spans"]}
        for span in trace.spans:
            assert sent[span.id]["started_at"] == to_ms(span.started_at)
            assert sent[span.id]["finished_at"] == to_ms(span.ended_at)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_450_span_trace_goes_as_several_requests_of_one_trace() -> None:
    """§5.1: ≤ 200 spans and ≤ 200 evaluations per request, same `trace_id`; LangWatch merges
    the requests into one trace holding every span."""
    trace = _opik_trace(7, NOW - DAY, n_spans=450)
    # 260 span scores besides the trace's own: the evaluations need splitting too
    spans = [
        s.model_copy(update={"scores": [Score(name="relevance", value=i / 450)]}) if i < 260 else s
        for i, s in enumerate(trace.spans)
    ]
    trace = trace.model_copy(update={"spans": spans})
    n_evaluations = len(trace.scores) + sum(len(s.scores) for s in trace.spans)
    assert n_evaluations > 260
    fake = _fake()
    sink = _sink(fake)
    result = await sink.write([trace])
    await sink.aclose()

    bodies = _bodies(fake)
    assert len(bodies) >= 3
    assert {b["trace_id"] for b in bodies} == {trace.id}
    for request, body in zip(
        [r for r in fake.requests if r.url.path == "/api/collector"], bodies, strict=True
    ):
        assert len(body.get("spans") or []) <= 200
        assert len(body.get("evaluations") or []) <= 200
        assert len(request.content) <= MAX_BODY
        assert {s["trace_id"] for s in body["spans"]} <= {trace.id}
    assert sum(len(b["spans"]) for b in bodies) == 451  # + the synthetic root span
    assert sum(len(b.get("evaluations") or []) for b in bodies) == n_evaluations
    assert len(fake.collected_requests()) == len(bodies)  # nothing was refused

    assert list(fake.traces) == [trace.id]
    stored = fake.traces[trace.id]
    assert {s["span_id"] for s in stored["spans"]} == {trace.id} | {s.id for s in trace.spans}
    assert len(stored["evaluations"]) == n_evaluations
    assert result.written.traces == 1
    assert result.written.spans == 450
    assert result.written.scores == n_evaluations
    assert not result.rejected


@pytest.mark.anyio
async def test_no_request_is_bigger_than_10_mb() -> None:
    """§5.1 `bodyLimit` 10 MB counts the whole body: spans, evaluations and metadata."""
    start = NOW - DAY
    blob = "log line ✓ " * 4_200  # ≈ 50 KB of UTF-8
    spans = [
        Span(
            id=f"span-{i:03d}",
            name="tool",
            kind="tool",
            started_at=start + timedelta(milliseconds=i),
            ended_at=start + timedelta(milliseconds=i + 1),
            input=IOValue(type="text", value=blob),
        )
        for i in range(170)
    ]
    reason = "the answer cites the log " * 640  # ≈ 16 KB
    trace = Trace(
        id=uuid7(to_ms(start), random.Random(1)),
        source=Provenance(platform="opik", project=PROJECT, id="t"),
        started_at=start,
        ended_at=start + timedelta(seconds=1),
        input=IOValue(type="text", value="what went wrong?"),
        spans=spans,
        scores=[Score(name=f"judge {i}", value=0.5, reason=reason) for i in range(120)],
    )
    trace = trace.model_copy(update={"source": trace.source.model_copy(update={"id": trace.id})})
    fake = _fake()
    sink = _sink(fake)
    result = await sink.write([trace])
    await sink.aclose()
    sizes = [len(r.content) for r in fake.requests if r.url.path == "/api/collector"]
    assert max(sizes) <= MAX_BODY, sizes
    assert len(fake.collected_requests()) == len(sizes)  # nothing refused, nothing resent
    assert not result.rejected
    assert len(fake.traces[trace.id]["spans"]) == 171
    assert len(fake.traces[trace.id]["evaluations"]) == 120


@pytest.mark.anyio
async def test_an_injected_429_splits_the_request_and_never_resends_it() -> None:
    """§5.1/DESIGN errors: the collector's 429 means "too many spans": split, do not retry."""
    trace = _opik_trace(11, NOW - DAY, n_spans=120)
    fake = _fake()
    fake.fail_next(
        429,
        json={"message": "Too many spans, maximum of 200 per trace"},
        path_contains="/api/collector",
    )
    waits: list[float] = []
    sink = _sink(fake, waits)
    result = await sink.write([trace])
    await sink.aclose()

    bodies = _bodies(fake)
    texts = [json.dumps(b, sort_keys=True) for b in bodies]
    assert len(texts) == len(set(texts)) >= 3  # refused once, then two halves
    assert len(bodies[1]["spans"]) < len(bodies[0]["spans"])
    assert waits == []  # no backoff: a 429 here is not a rate limit
    assert not result.rejected
    assert len(fake.traces[trace.id]["spans"]) == 121
    assert result.written.spans == 120


@pytest.mark.anyio
async def test_the_collectors_own_429_splits_until_requests_fit() -> None:
    """A sink set to send more than 200 spans gets the fake's real 429 and halves, each body
    sent once, until LangWatch takes them (§5.1)."""
    trace = _opik_trace(12, NOW - DAY, n_spans=449)
    fake = _fake()
    sink = _sink(fake, max_spans=1000)
    result = await sink.write([trace])
    await sink.aclose()
    bodies = _bodies(fake)
    texts = [json.dumps(b, sort_keys=True) for b in bodies]
    assert len(texts) == len(set(texts))
    assert len(bodies[0]["spans"]) == 450  # the first try was refused with 429 ...
    accepted = fake.collected_requests()
    assert all(len(b["spans"]) <= 200 for b in accepted)  # ... the halves were taken
    assert sum(len(b["spans"]) for b in accepted) == 450
    assert not result.rejected
    assert len(fake.traces[trace.id]["spans"]) == 450


@pytest.mark.anyio
async def test_402_stops_the_run_with_a_quota_error() -> None:
    """§5.1: plan quota exceeded is 402 (`PlanLimitExceededError`): fatal, exit code 3, not
    retried, and the message says what happened."""
    fake = _fake()
    fake.plan_limit_reached = True
    waits: list[float] = []
    sink = _sink(fake, waits)
    with pytest.raises(QuotaError) as caught:
        await run(_ListSource([_opik_trace(1, NOW - DAY), _opik_trace(2, NOW - DAY)]), sink)
    assert caught.value.exit_code == 3
    message = str(caught.value)
    assert "402" in message
    assert "quota" in message
    assert "LangWatch" in message
    assert len(fake.requests) == 1
    assert waits == []
    assert fake.traces == {}


@pytest.mark.anyio
async def test_partial_success_rejected_spans_are_dead_lettered(tmp_path: Path) -> None:
    """§5.1: a 200 with `partialSuccess.rejectedSpans` is a loss (DESIGN invariant 4): the
    dropped spans are dead-lettered with LangWatch's message and the run exits 1.

    LangWatch's clock is two days ahead of the bridge's: spans the bridge thinks are 30 days
    old are more than 31 days old for LangWatch, which drops them.
    """
    fake = _fake(NOW_MS + 2 * 86_400_000)
    trace = _opik_trace(21, NOW - timedelta(days=30), n_spans=4)
    fresh = _opik_trace(22, NOW - DAY, n_spans=3)
    sink = _sink(fake)
    report = await run(
        _ListSource([trace, fresh]), sink, state=StateDir(tmp_path, {"job": "partial"})
    )
    assert report.exit_code == 1
    assert report.lossy
    # the four spans are lost; the synthetic root LangWatch also dropped was never read
    assert report.dead_lettered.spans == 4
    assert report.read.spans == report.written.spans + report.dead_lettered.spans
    letters = _dead_letters(report)
    assert len(letters) == 1
    assert letters[0]["where"] == f"trace {trace.id}"
    assert "dropped 5 spans" in letters[0]["reason"]
    assert "31 days" in letters[0]["reason"]  # LangWatch's own errorMessage
    assert report.written.traces == 2
    assert report.written.spans == 3  # only the fresh trace's spans


# ------------------------------------------------------------------------------- the records


def _trace_with_distinct_root() -> Trace:
    """An Opik trace whose root span's IO is not the trace's IO."""
    start = NOW - DAY
    rng = random.Random(5)
    trace_id = uuid7(to_ms(start), rng)
    at = [start + timedelta(milliseconds=ms) for ms in (0, 5, 900, 1000)]
    return Trace(
        id=trace_id,
        source=Provenance(platform="opik", project=PROJECT, id=trace_id),
        name="chat_turn",
        started_at=at[0],
        ended_at=at[3],
        input=IOValue(type="text", value="Where is my refund RF-88213?"),
        output=IOValue(type="text", value="It reaches your card in 3–5 business days."),
        error=ErrorInfo(message="late", exception_type="TimeoutError", stacktrace=["tb"]),
        spans=[
            Span(
                id=uuid7(to_ms(at[1]), rng),
                name="planner",
                kind="span",
                started_at=at[1],
                ended_at=at[2],
                input=IOValue(type="json", value={"plan": "look up the refund"}),
                output=IOValue(type="json", value={"tool": "lookup_refund"}),
            )
        ],
    )


@pytest.mark.anyio
async def test_a_copied_opik_trace_gets_a_synthetic_root_span() -> None:
    """§5.1: trace IO is derived from the root span, so the copy's root span (id = trace id,
    `params.tracebridge.trace_span`) carries the Opik trace's IO; the real roots hang below."""
    trace = _trace_with_distinct_root()
    fake = _fake()
    sink = _sink(fake)
    await sink.write([trace])
    await sink.aclose()
    stored = fake.traces[trace.id]
    root = next(s for s in stored["spans"] if s["span_id"] == trace.id)
    assert root["parent_id"] is None
    assert json.loads(root["params"]["tracebridge"]) == {"trace_span": True}
    assert root["name"] == "chat_turn"
    assert root["timestamps"]["started_at"] == to_ms(trace.started_at)
    assert root["timestamps"]["finished_at"] == to_ms(trace.ended_at)  # type: ignore[arg-type]
    assert root["error"]["message"] == "late"
    for span in stored["spans"]:
        if span["span_id"] != trace.id:
            assert span["parent_id"] == trace.id
    # what LangWatch derives for the trace is the Opik trace's own input and output
    assert stored["input"] == {"value": "Where is my refund RF-88213?"}
    assert stored["output"] == {"value": "It reaches your card in 3–5 business days."}
    assert stored["timestamps"]["started_at"] == to_ms(trace.started_at)
    # and reading it back folds the root span into the trace again
    back, thread = trace_from_wire(stored)
    assert thread is None
    assert back == trace


def _spanless(seed: int, start_ms: int, **kw: Any) -> Trace:
    """A LangWatch-born trace read from an export made without spans (`spans: []`), as the
    `langwatch trace export` default writes it (reference §9)."""
    raw = langwatch_trace(
        random.Random(seed),
        trace_id=f"trace_spanless_{seed}",
        started_at_ms=start_ms,
        evaluation_statuses=("processed", "error"),
        with_error=True,
        **kw,
    )
    trace, _ = trace_from_wire({**raw, "spans": []}, project="project_test")
    assert trace.spans == []
    assert trace.input is not None
    assert trace.output is not None
    return trace


def _content(trace: Trace) -> Json:
    """A canonical trace without `extras`: what the server stamps itself (ingestion times,
    derived metrics, evaluation stamps) differs between any two LangWatch projects."""
    data = trace.model_dump(mode="json", exclude={"extras"})
    for score in data["scores"]:
        score.pop("extras")
    return data


@pytest.mark.anyio
async def test_a_trace_without_spans_gets_the_root_span_that_carries_its_io() -> None:
    """§4/§5.1: LangWatch builds a trace from its spans, so `spans: []` is answered 200 and the
    trace never appears (its metadata gone, its evaluations waiting for it). The sink gives it
    the synthetic root span that carries its IO, error and times, as a copy of an Opik trace
    has: the trace appears with its metadata and evaluations, and reads back without spans."""
    trace = _spanless(61, NOW_MS - 3_600_000, thread_id=None)
    fake = _fake()
    sink = _sink(fake)
    result = await sink.write([trace])
    await sink.aclose()
    assert not result.rejected
    assert result.written == Counts(traces=1, spans=0, scores=len(trace.scores))
    assert all(b["spans"] for b in _bodies(fake))  # never posted without spans

    stored = fake.traces[trace.id]
    (root,) = stored["spans"]
    assert root["span_id"] == trace.id
    assert root["parent_id"] is None
    assert json.loads(root["params"]["tracebridge"]) == {"trace_span": True}
    assert stored["input"] == {"value": trace.input.value}  # type: ignore[union-attr]
    assert stored["output"] == {"value": trace.output.value}  # type: ignore[union-attr]
    assert stored["error"]["message"] == trace.error.message  # type: ignore[union-attr]
    assert stored["metadata"]["user_id"] == trace.metadata["user_id"]
    assert stored["metadata"]["labels"] == trace.tags
    assert {e["evaluation_id"] for e in stored["evaluations"]} == {s.id for s in trace.scores}

    back, _ = trace_from_wire(stored, project="project_test")
    assert back.spans == []
    assert _content(back) == _content(trace)
    settings = load_settings(
        None, {"langwatch_api_key": fake.api_key, "langwatch_endpoint": fake.base_url}, environ={}
    )
    source = LangWatchApiSource(langwatch_api(settings, fake.transport), now=lambda: NOW)
    (read,) = _traces(await _units(source)).values()
    assert _content(read) == _content(trace)


@pytest.mark.anyio
async def test_a_spanless_thread_turn_and_a_trace_without_an_end_time_are_taken() -> None:
    """The collector needs `finished_at` on every span (§4): a trace with no end time gets a root
    span that ends where it starts, and its stash restores "no end time" on read. Opik copies
    without `end_time` (optional in Opik) go the same way instead of being refused (400)."""
    trace = _spanless(62, NOW_MS - 7_200_000, thread_id="thread-spanless")
    endless = trace.model_copy(update={"id": "trace_endless", "ended_at": None})
    endless = endless.model_copy(
        update={"source": endless.source.model_copy(update={"id": endless.id})}
    )
    opik_copy = _opik_trace(63, NOW - timedelta(hours=3)).model_copy(
        update={"ended_at": None, "spans": []}
    )
    fake = _fake()
    sink = _sink(fake)
    result = await sink.write([Thread(id="thread-spanless", traces=[trace, endless]), opik_copy])
    await sink.aclose()
    assert not result.rejected, result.rejected
    assert result.written.traces == 3
    assert set(fake.traces) == {trace.id, endless.id, opik_copy.id}
    for original in (trace, endless, opik_copy):
        back, _ = trace_from_wire(fake.traces[original.id], project="project_test")
        assert back.ended_at == original.ended_at
        assert back.spans == []
        assert _content(back) == _content(original)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(langwatch_traces(), opik_traces())
def test_any_trace_without_spans_reads_back_as_it_was_written(
    raw: Json, opik: tuple[Json, list[Json]]
) -> None:
    """Property (DESIGN.md invariant 2): for any LangWatch-born or Opik-born trace without
    spans, the collector wire has exactly one span, the root that carries it, and reading that
    wire back (through JSON) gives the trace again, without spans."""
    lw_trace, _ = trace_from_wire({**raw, "spans": []})
    opik_trace_ = trace_from_opik(opik[0], [], project="p", mappings=default_mappings())
    for trace in (lw_trace, opik_trace_):
        wire = json.loads(json.dumps(with_root_span(trace, trace_to_wire(trace))))
        (root,) = wire["spans"]
        assert root["span_id"] == trace.id
        assert "finished_at" in root["timestamps"]
        back, _ = trace_from_wire(wire, project=trace.source.project)
        assert back.spans == []
        assert _content(back) == _content(trace)


@pytest.mark.anyio
async def test_scores_become_evaluations_with_stable_ids() -> None:
    """§5.1 RESTEvaluation: feedback scores are evaluations (value → score, category_name →
    label, reason → details); their `evaluation_id` is derived, so a rerun updates them."""
    trace = _opik_trace(31, NOW - DAY, n_spans=6)
    span = trace.spans[2]
    trace = trace.model_copy(
        update={
            "scores": [
                Score(name="hallucination", value=0.12, reason="grounded in the context"),
                Score(name="user_feedback", value=1, label="👍"),
            ],
            "spans": [
                s.model_copy(update={"scores": [Score(name="answer_relevance", value=0.8)]})
                if s.id == span.id
                else s
                for s in trace.spans
            ],
        }
    )
    fake = _fake()
    for _ in range(2):  # a rerun is a new sink writing the same records
        sink = _sink(fake)
        result = await sink.write([trace])
        await sink.aclose()
        assert result.written.scores == 3
    stored = {e["name"]: e for e in fake.traces[trace.id]["evaluations"]}
    assert len(fake.traces[trace.id]["evaluations"]) == 3
    assert stored["hallucination"]["evaluation_id"] == evaluation_id(trace.id, "hallucination")
    assert stored["answer_relevance"]["evaluation_id"] == evaluation_id(
        trace.id, "answer_relevance", span.id
    )
    assert stored["hallucination"]["score"] == 0.12
    assert stored["hallucination"]["details"] == "grounded in the context"
    assert stored["user_feedback"]["label"] == "👍"
    assert stored["user_feedback"]["score"] == 1
    assert {e["status"] for e in stored.values()} == {"processed"}
    ids = [b["evaluations"] for b in fake.collected_requests()]
    assert [e["evaluation_id"] for e in ids[0]] == [e["evaluation_id"] for e in ids[1]]


@pytest.mark.anyio
async def test_thread_scores_and_tags_are_kept_on_the_threads_last_trace() -> None:
    """DESIGN mapping table: Opik thread scores, tags and status have no LangWatch equivalent;
    they ride on the thread's last trace (by start time), as `thread: <name>` evaluations and
    in its metadata, and reading that trace back returns them."""
    thread_id = "3b9a5c1e-2f4d-4a8b-9c7e-1d2f3a4b5c6d"
    traces = [
        _opik_trace(40 + i, NOW - timedelta(hours=h), thread_id=thread_id)
        for i, h in enumerate((5, 1, 3))  # handed over out of order
    ]
    scores = [
        Score(name="resolved", value=1.0, reason="customer confirmed"),
        Score(name="csat", value=4, label="good", source="ui"),
    ]
    thread = Thread(
        id=thread_id, traces=traces, scores=scores, tags=["vip", "refund"], status="inactive"
    )
    fake = _fake()
    sink = _sink(fake)
    result = await sink.write([thread])
    await sink.aclose()
    assert result.written.threads == 1
    assert not result.rejected

    last = traces[1]
    stored = fake.traces[last.id]
    thread_evals = {e["name"]: e for e in stored["evaluations"] if e["name"].startswith("thread")}
    assert set(thread_evals) == {"thread: resolved", "thread: csat"}
    assert thread_evals["thread: resolved"]["evaluation_id"] == evaluation_id(
        last.id, "resolved", thread=True
    )
    assert thread_evals["thread: resolved"]["score"] == 1.0
    assert thread_evals["thread: csat"]["label"] == "good"
    assert json.loads(stored["metadata"]["thread_tags"]) == ["vip", "refund"]
    assert stored["metadata"]["thread_id"] == thread_id
    for other in (traces[0], traces[2]):
        record = fake.traces[other.id]
        assert not any(e["name"].startswith("thread") for e in record["evaluations"])
        assert "thread_tags" not in record["metadata"]
        assert trace_from_wire(record)[1] is None
    back, data = trace_from_wire(stored)
    assert back == last
    assert data is not None
    assert data.scores == scores
    assert data.tags == ["vip", "refund"]
    assert data.status == "inactive"


@pytest.mark.anyio
async def test_a_pending_evaluation_is_skipped_by_a_named_rule() -> None:
    """§5.1: the collector takes evaluation statuses processed|skipped|error only; a LangWatch
    `scheduled` evaluation (no result yet) is left out by a rule the summary names, never sent
    (a refused request would cost a bisection), and the rest is written."""
    raw = langwatch_trace(
        random.Random(3),
        trace_id="trace_pending_eval",
        started_at_ms=NOW_MS - 3_600_000,
        thread_id=None,
        n_spans=3,
        evaluation_statuses=("processed", "scheduled"),
    )
    trace, _ = trace_from_wire(raw)
    fake = _fake()
    sink = _sink(fake)
    result = await sink.write([trace])
    await sink.aclose()
    stored = fake.traces["trace_pending_eval"]
    assert len(stored["spans"]) == 3
    assert [e["status"] for e in stored["evaluations"]] == ["processed"]
    assert result.rejected == []
    assert result.skipped.scores == 1
    assert any("scheduled" in rule for rule in result.skip_reasons)
    bodies = [json.loads(r.content) for r in fake.requests if r.url.path == "/api/collector"]
    assert bodies  # requests were sent, and none carried the pending evaluation
    assert all(e["status"] != "scheduled" for b in bodies for e in b.get("evaluations", []))


# --------------------------------------------------------------------------- the 31-day rule


async def _units(source: Any) -> list[Unit]:
    units: list[Unit] = []
    async for page in source.pages(Window(), None):
        units += page.units
    await source.aclose()
    return units


def _traces(units: list[Unit]) -> dict[str, Trace]:
    traces = [t for u in units for t in (u.traces if isinstance(u, Thread) else [u])]
    return {t.id: t for t in traces}


def _opik_source(opik: OpikFake) -> OpikApiSource:
    settings = load_settings(None, {"opik_url": opik.base_url}, environ={})
    return OpikApiSource(
        opik_api(settings, opik.transport), project=PROJECT, mappings=default_mappings()
    )


async def _old_project() -> tuple[OpikFake, list[Trace], list[Trace]]:
    """An Opik project with a 4-turn thread and 3 standalone traces from 40–60 days ago, and one
    trace from yesterday. Returns it, and its (old, fresh) traces as the Opik source reads them.
    """
    opik = OpikFake()
    rng = random.Random(77)
    thread_id = "7e1c2a9b-4d3f-4c5e-8a6b-0f1e2d3c4b5a"
    starts = [NOW - timedelta(days=45, hours=h, minutes=m) for h, m in ((3, 0), (2, 40), (1, 5))]
    starts.append(NOW - timedelta(days=44, hours=23))
    plan: list[tuple[datetime, str | None]] = [(s, thread_id) for s in starts]
    plan += [(NOW - timedelta(days=d), None) for d in (60, 52, 40)]
    plan.append((NOW - DAY, None))
    for start, thread in plan:
        opik.add_trace(PROJECT, *_opik_records(rng, start, thread_id=thread))
    opik.add_thread_data(PROJECT, thread_id, scores=[{"name": "resolved", "value": 1}], tags=["x"])
    traces = sorted(_traces(await _units(_opik_source(opik))).values(), key=lambda t: t.started_at)
    old = [t for t in traces if t.started_at < NOW - timedelta(days=30)]
    return opik, old, [t for t in traces if t not in old]


def _span_starts(record: Json) -> list[int]:
    return [s["timestamps"]["started_at"] for s in record["spans"]]


@pytest.mark.anyio
async def test_traces_older_than_31_days_are_dead_lettered_by_default(tmp_path: Path) -> None:
    """§5.1 age cutoff: LangWatch would silently drop spans that started more than 31 days ago,
    so by default such a trace is not sent at all: it is dead-lettered with a reason naming the
    cutoff and `--shift-old-timestamps`, and the run is lossy."""
    opik, old, fresh = await _old_project()
    fake = _fake()
    report = await run(_opik_source(opik), _sink(fake), state=StateDir(tmp_path, {"job": "cutoff"}))
    assert report.exit_code == 1
    assert report.read.traces == len(old) + len(fresh) == 8
    assert report.dead_lettered.traces == len(old)
    assert report.dead_lettered.spans == sum(len(t.spans) for t in old)
    letters = _dead_letters(report)
    # a thread whose every turn is refused is one dead letter (with its own scores and tags)
    threads = {t.thread_id for t in old if t.thread_id}
    expected = {f"trace {t.id}" for t in old if not t.thread_id} | {f"thread {i}" for i in threads}
    assert sorted(entry["where"] for entry in letters) == sorted(expected)
    for entry in letters:
        assert "31 days" in entry["reason"]
        assert "--shift-old-timestamps" in entry["reason"]
    # nothing partial: no old trace was sent, the fresh one was written whole
    sent = {b["trace_id"] for b in _bodies(fake)}
    assert sent == {t.id for t in fresh}
    assert set(fake.traces) == {t.id for t in fresh}
    assert len(fake.traces[fresh[0].id]["spans"]) == len(fresh[0].spans) + 1


@pytest.mark.anyio
async def test_shift_old_timestamps_writes_inside_the_window_and_reads_back_the_originals(
    tmp_path: Path,
) -> None:
    """`--shift-old-timestamps` (DESIGN, §5.1): old traces move inside the 31-day window, a
    thread's turns keep their order and spacing, and a read (`trace_from_wire`, and the live
    LangWatch source) restores the original timestamps exactly."""
    opik, old, fresh = await _old_project()
    originals = {t.id: t for t in old + fresh}
    fake = _fake()
    sink = _sink(fake, shift_old_timestamps=True)
    report = await run(_opik_source(opik), sink, state=StateDir(tmp_path, {"job": "shift"}))
    assert report.exit_code == 0, _dead_letters(report)
    assert set(fake.traces) == set(originals)
    assert sink.shifted == len(old)
    for record in fake.traces.values():
        assert min(_span_starts(record)) >= NOW_MS - CUTOFF_MS
        assert max(_span_starts(record)) <= NOW_MS
    for trace in fresh:  # what is inside the window is not moved
        assert fake.traces[trace.id]["timestamps"]["started_at"] == to_ms(trace.started_at)

    thread = sorted((t for t in old if t.thread_id), key=lambda t: t.started_at)
    assert len(thread) == 4
    moved = [fake.traces[t.id]["timestamps"]["started_at"] for t in thread]
    original = [to_ms(t.started_at) for t in thread]
    assert [b - a for a, b in itertools.pairwise(moved)] == [
        b - a for a, b in itertools.pairwise(original)
    ]
    for trace in old:  # inside one trace, every span keeps its offset
        record = fake.traces[trace.id]
        delta = record["timestamps"]["started_at"] - to_ms(trace.started_at)
        assert delta > 0
        by_id = {s["span_id"]: s["timestamps"] for s in record["spans"]}
        for span in trace.spans:
            assert by_id[span.id]["started_at"] - to_ms(span.started_at) == delta

    # read back from the stored records ...
    for trace_id, record in fake.traces.items():
        back, _ = trace_from_wire(record)
        assert _ordered(back) == _ordered(originals[trace_id])
    # ... and through the live API
    settings = load_settings(
        None, {"langwatch_api_key": fake.api_key, "langwatch_endpoint": fake.base_url}, environ={}
    )
    units = await _units(
        LangWatchApiSource(langwatch_api(settings, fake.transport), now=lambda: NOW)
    )
    read = _traces(units)
    assert read.keys() == originals.keys()
    for trace_id, trace in read.items():
        assert _ordered(trace) == _ordered(originals[trace_id])
    thread_data = [u for u in units if isinstance(u, Thread)]
    assert [t.id for t in thread_data[0].traces] == [t.id for t in thread]
    assert thread_data[0].tags == ["x"]


@pytest.mark.anyio
async def test_shift_keeps_the_order_of_a_thread_that_straddles_the_cutoff() -> None:
    """A thread whose first turn is 32 days old and whose second is 30.9 days old: shifting
    only the old turn would put it after the next one. Turns keep their order and spacing."""
    thread_id = "thread-straddle"
    starts = [NOW - timedelta(days=32), NOW - timedelta(days=30, hours=21)]
    traces = [_opik_trace(90 + i, s, thread_id=thread_id) for i, s in enumerate(starts)]
    fake = _fake()
    sink = _sink(fake, shift_old_timestamps=True)
    result = await sink.write([Thread(id=thread_id, traces=traces)])
    await sink.aclose()
    assert not result.rejected
    moved = [fake.traces[t.id]["timestamps"]["started_at"] for t in traces]
    assert moved[1] - moved[0] == to_ms(starts[1]) - to_ms(starts[0])
    for trace in traces:
        record = fake.traces[trace.id]
        assert min(_span_starts(record)) >= NOW_MS - CUTOFF_MS
        assert _ordered(trace_from_wire(record)[0]) == _ordered(trace)


@pytest.mark.anyio
async def test_shift_keeps_the_order_of_a_thread_longer_than_the_window() -> None:
    """A thread spanning 50 days cannot keep its spacing inside a 31-day window, but its turns
    must stay in order (LangWatch sorts a thread by start time, §3.4)."""
    thread_id = "thread-long"
    starts = [NOW - timedelta(days=d) for d in (70, 55, 41, 33, 20)]
    traces = [_opik_trace(95 + i, s, thread_id=thread_id) for i, s in enumerate(starts)]
    fake = _fake()
    sink = _sink(fake, shift_old_timestamps=True)
    result = await sink.write([Thread(id=thread_id, traces=traces)])
    await sink.aclose()
    assert not result.rejected
    moved = [fake.traces[t.id]["timestamps"]["started_at"] for t in traces]
    assert moved == sorted(moved)
    assert len(set(moved)) == len(moved)
    for trace in traces:
        record = fake.traces[trace.id]
        assert min(_span_starts(record)) >= NOW_MS - CUTOFF_MS
        assert max(s["timestamps"]["finished_at"] for s in record["spans"]) <= NOW_MS
        assert _ordered(trace_from_wire(record)[0]) == _ordered(trace)
    assert from_ms(moved[-1]) <= NOW


# ------------------------------------------- the 31-day rule for traces born in LangWatch


def _born_in_langwatch(n: int, days: float, project: str = "project_test") -> list[Trace]:
    """LangWatch-born traces of `project` that started `days` ago (in no thread)."""
    rng = random.Random(81)
    start = NOW_MS - int(days * 86_400_000)
    raws = [
        langwatch_trace(
            rng,
            trace_id=f"lw_old_{i}",
            started_at_ms=start + i * 60_000,
            thread_id=None,
            evaluation_statuses=("processed",),
        )
        for i in range(n)
    ]
    return [trace_from_wire(raw, project=project)[0] for raw in raws]


def _content_of(span: Span) -> Json:
    """A span without `extras` (ingestion times and the project the server stamps)."""
    return span.model_dump(mode="json", exclude={"extras"})


def _me_requests(fake: LangWatchFake) -> int:
    return sum(r.url.path == "/api/me/project" for r in fake.requests)


@pytest.mark.anyio
async def test_old_traces_born_in_the_target_project_are_skipped_by_a_named_rule() -> None:
    """The target project is the traces' origin (`GET /api/me/project` names it): their
    originals are still there, so they are skipped by the rule the summary names, not
    written and not lost, even with --shift-old-timestamps. The project is asked once."""
    old = _born_in_langwatch(3, 40)
    fake = _fake()  # project_test: the origin
    sink = _sink(fake, shift_old_timestamps=True)
    first = await sink.write(old[:2])
    second = await sink.write(old[2:])
    await sink.aclose()
    for result in (first, second):
        assert not result.rejected
        assert result.written.traces == 0
    assert first.skipped.traces + second.skipped.traces == 3
    assert "the original is still there" in next(iter(first.skip_reasons))
    assert _bodies(fake) == []
    assert _me_requests(fake) == 1


@pytest.mark.anyio
async def test_old_langwatch_traces_copied_to_another_project_are_not_skipped() -> None:
    """The premise of the skip is checked: copied into another (empty) project, LangWatch-born
    traces older than 31 days are treated as any other old trace: dead-lettered by default,
    moved into the window with --shift-old-timestamps (and read back at their original
    times)."""
    old = _born_in_langwatch(3, 40)
    other = LangWatchFake(now=lambda: NOW_MS, project_id="another_project")
    sink = _sink(other)
    result = await sink.write(list(old))
    await sink.aclose()
    assert result.skipped.traces == 0
    assert sorted(r.where for r in result.rejected) == sorted(f"trace {t.id}" for t in old)
    for rejected in result.rejected:
        assert "31 days" in rejected.reason
        assert "--shift-old-timestamps" in rejected.reason
    assert other.traces == {}

    moved = LangWatchFake(now=lambda: NOW_MS, project_id="another_project")
    sink = _sink(moved, shift_old_timestamps=True)
    result = await sink.write(list(old))
    await sink.aclose()
    assert not result.rejected
    assert result.skipped.traces == 0
    assert result.written.traces == 3
    assert sink.shifted == 3
    for trace in old:
        record = moved.traces[trace.id]
        assert min(_span_starts(record)) >= NOW_MS - CUTOFF_MS
        back, _ = trace_from_wire(record, project="project_test")
        assert back.started_at == trace.started_at
        assert [_content_of(s) for s in _ordered(back).spans] == [
            _content_of(s) for s in _ordered(trace).spans
        ]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("seeded", "configured", "skipped"),
    [
        (False, None, False),  # nothing tells: not skipped
        (True, None, True),  # a trace of the project names it (its `project_id`, §4)
        (False, "project_test", True),  # the configured target project
        (False, "another_project", False),
    ],
)
async def test_without_the_me_endpoint_the_target_is_found_or_the_rule_is_not_applied(
    seeded: bool, configured: str | None, skipped: bool
) -> None:
    """An older server without `GET /api/me/project`: the target project comes from a trace
    it holds (one-trace search), else from the configuration; when neither tells, the skip
    is not applied and an old LangWatch-born trace is dead-lettered like any other."""
    old = _born_in_langwatch(2, 45)
    fake = LangWatchFake(now=lambda: NOW_MS, me_endpoint=False)
    if seeded:
        fake.add_trace(
            langwatch_trace(
                random.Random(5),
                trace_id="resident",
                started_at_ms=NOW_MS - 3_600_000,
                thread_id=None,
            )
        )
    sink = _sink(fake, project=configured)
    result = await sink.write(list(old))
    await sink.aclose()
    assert result.skipped.traces == (2 if skipped else 0)
    assert len(result.rejected) == (0 if skipped else 2)
    assert set(fake.traces) <= {"resident"}


@pytest.mark.anyio
async def test_a_dead_lettered_threads_own_scores_are_counted_and_kept(tmp_path: Path) -> None:
    """Nothing lost silently: read = written + skipped + dead-lettered for every kind, and a
    dead letter holds what `--retry-dead-letters` needs to send the record again. Every turn of
    the old thread is refused; its thread score `resolved` must be in a dead letter (the
    thread's unit), not only in the read counts."""
    opik, _, _ = await _old_project()
    report = await run(_opik_source(opik), _sink(_fake()), state=StateDir(tmp_path, {"job": "t"}))
    for kind in ("threads", "traces", "spans", "scores"):
        accounted = sum(
            getattr(c, kind) for c in (report.written, report.skipped, report.dead_lettered)
        )
        assert getattr(report.read, kind) == accounted, kind
    held = [entry["unit"] for entry in _dead_letters(report) if entry.get("unit")]
    assert any("resolved" in json.dumps(unit) for unit in held)


# ------------------------------------------------------------------------- posts in flight


class _InFlight(httpx.AsyncBaseTransport):
    """`inner` behind a short real wait, counting the most requests in flight at once."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.now = self.most = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await anyio.sleep(0.02)
            return await self.inner.handle_async_request(request)
        finally:
            self.now -= 1


def _sink_in_flight(fake: LangWatchFake, **options: Any) -> tuple[LangWatchApiSink, _InFlight]:
    settings = load_settings(
        None, {"langwatch_api_key": fake.api_key, "langwatch_endpoint": fake.base_url}, environ={}
    )
    wire = _InFlight(fake.transport)
    api = langwatch_api(settings, wire, RetryPolicy(sleep=_no_sleep))
    return LangWatchApiSink(api, now=lambda: NOW, **options), wire


async def _no_sleep(seconds: float) -> None:
    return None


@pytest.mark.anyio
async def test_posts_in_flight_give_exactly_what_a_sequential_write_gives() -> None:
    """Traces go to the collector `concurrency` at a time, and the result (written, skipped,
    dead letters of the 31-day rule, of `partialSuccess` and of requests split on 429, in
    order) is the one posting them one by one gives."""
    thread_id = "thread-in-flight"
    units: list[Unit] = [
        Thread(
            id=thread_id,
            traces=[
                _opik_trace(300 + i, NOW - timedelta(hours=5 - i), thread_id=thread_id)
                for i in range(4)
            ],
        )
    ]
    for i in range(30):
        age = timedelta(days=40) if i % 9 == 4 else timedelta(days=30) if i % 7 == 3 else DAY
        units.append(_opik_trace(400 + i, NOW - age - timedelta(minutes=i)))
    units.append(_opik_trace(500, NOW - DAY, n_spans=450))  # more than 200 spans: split
    outcomes = []
    for concurrency in (1, 8):
        fake = _fake(NOW_MS + 2 * 86_400_000)  # LangWatch's clock ahead: 30 days is too old
        sink, wire = _sink_in_flight(fake, concurrency=concurrency, max_spans=500)
        result = await sink.write(units)
        await sink.aclose()
        assert wire.most == 1 if concurrency == 1 else 1 < wire.most <= concurrency
        outcomes.append(
            (
                [(r.kind, r.where, r.reason, r.contains, r.record) for r in result.rejected],
                result.written,
                result.skipped,
                result.skip_reasons,
                fake.traces,
            )
        )
    sequential, concurrent = outcomes
    assert concurrent == sequential
    reasons = [r[2] for r in sequential[0]]
    assert any("31 days ago" in r for r in reasons)  # the rule's dead letters
    assert any("dropped" in r for r in reasons)  # partialSuccess
    big = fake.traces[units[-1].id]  # posted whole, split on the collector's 429s
    assert len(big["spans"]) == 451


@pytest.mark.anyio
async def test_a_threads_traces_are_posted_together_unless_asked_in_order() -> None:
    """LangWatch orders a thread by start time when read (§3.4): its turns go together; with
    `thread_order=True` one after the other."""
    thread_id = "thread-order"
    thread = Thread(
        id=thread_id,
        traces=[
            _opik_trace(600 + i, NOW - timedelta(hours=9 - i), thread_id=thread_id)
            for i in range(6)
        ],
    )
    for ordered, most in ((False, 6), (True, 1)):
        fake = _fake()
        sink, wire = _sink_in_flight(fake, thread_order=ordered)
        await sink.write([_opik_trace(700, NOW - DAY)])  # the first post goes alone
        result = await sink.write([thread])
        await sink.aclose()
        assert wire.most == most
        assert result.written.traces == 6
        assert len(fake.traces) == 7
