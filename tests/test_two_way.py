"""Two-way flow over the API fakes, with the pieces sync is built from: a feedback score a
reviewer adds on the Opik copy of a LangWatch trace reaches LangWatch (not lost, as with stash
v1), nothing else is written back (echo suppression), and after one more pass each way both
sides verify equal and a further pass writes nothing (SkipUnchanged).

The `sync` command and its step seam are built elsewhere; this drives them by hand: read every
page, apply the step, write what is left.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.factories import langwatch_project
from tests.fakes.langwatch import LangWatchFake
from tests.fakes.opik import OpikFake
from tracebridge import (
    Report,
    Settings,
    SkipUnchanged,
    Thread,
    Unit,
    Window,
    WriteResult,
    default_mappings,
    load_settings,
    suppress_echoes,
    sync,
)
from tracebridge._echo import EchoSuppression
from tracebridge._endpoint_specs import open_sink, open_source, parse_endpoint
from tracebridge._time import to_ms
from tracebridge._verify import format_verify, verify_endpoints

MIRROR = "mirror"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class World:
    def __init__(
        self, tmp_path: Path, started: timedelta = timedelta(days=3), seed: int = 21
    ) -> None:
        self.lw, self.opik = LangWatchFake(), OpikFake()
        start_ms = to_ms(datetime.now(UTC) - started)
        for trace in langwatch_project(10, 3, seed=seed, start_ms=start_ms):
            trace["evaluations"] = [
                e for e in trace["evaluations"] if e["status"] in ("processed", "skipped")
            ]
            self.lw.add_trace(trace)
        self.state = tmp_path
        self.settings: Settings = load_settings(
            None,
            {
                "langwatch_api_key": self.lw.api_key,
                "langwatch_endpoint": self.lw.base_url,
                "opik_url": self.opik.base_url,
                "state_dir": tmp_path,
                "opik_ids": "source-time",
            },
            environ={},
        )
        self.transports: dict[str, httpx.AsyncBaseTransport] = {
            "langwatch": self.lw.transport,
            "opik": self.opik.transport,
        }

    async def one_way(
        self, from_: str, to: str, step: EchoSuppression | None = None
    ) -> tuple[list[Unit], WriteResult]:
        """One pass: read everything, apply `step`, write the rest through SkipUnchanged."""
        mappings = default_mappings()
        project_from = MIRROR if from_ == "opik" else None
        project_to = MIRROR if to == "opik" else None
        source = open_source(
            parse_endpoint(from_),
            settings=self.settings,
            mappings=mappings,
            project=project_from,
            transports=self.transports,
        )
        sink = SkipUnchanged(
            open_sink(
                parse_endpoint(to),
                settings=self.settings,
                mappings=mappings,
                project=project_to,
                transports=self.transports,
            ),
            self.state,
        )
        units: list[Unit] = []
        try:
            async for page in source.pages(Window(), None):
                units += page.units
        finally:
            await source.aclose()
        kept = [u for u in (step(u) if step else u for u in units) if u is not None]
        try:
            result = await sink.write(kept) if kept else WriteResult()
        finally:
            await sink.aclose()
        assert result.rejected == []
        return kept, result

    async def add_reviewer_score(self, trace_id: str) -> None:
        async with httpx.AsyncClient(
            transport=self.opik.transport, base_url=self.opik.base_url
        ) as client:
            response = await client.put(
                "/v1/private/traces/feedback-scores",
                json={
                    "scores": [
                        {
                            "id": trace_id,
                            "project_name": MIRROR,
                            "name": "helpfulness",
                            "value": 0.8,
                            "source": "ui",
                        }
                    ]
                },
            )
            assert response.is_success, response.text


def _evaluations(trace: dict[str, Any]) -> dict[str, Any]:
    return {e["evaluation_id"]: e for e in trace["evaluations"]}


@pytest.mark.anyio
async def test_a_reviewer_score_on_opik_reaches_langwatch_and_nothing_echoes(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    lw, opik = world.lw, world.opik
    written, _ = await world.one_way("langwatch", "opik")
    assert len(written) > 0
    assert opik.traces
    before = copy.deepcopy(lw.traces)

    # a reviewer scores one trace of the Opik copy
    row = sorted(opik.traces.values(), key=lambda r: r["start_time"])[0]
    original_id = row["metadata"]["tracebridge"]["source"]["id"]
    await world.add_reviewer_score(row["id"])

    echoes = suppress_echoes("langwatch", lw.project_id)
    carried, result = await world.one_way("opik", "langwatch", echoes)
    carried_ids = [t.id for u in carried for t in (u.traces if isinstance(u, Thread) else [u])]
    assert carried_ids == [original_id]  # only the changed trace goes back
    assert result.written.traces == 1
    home = lw.traces[original_id]
    new = [e for e in home["evaluations"] if e["name"] == "helpfulness"]
    assert [e["score"] for e in new] == [0.8]
    old = _evaluations(before[original_id])
    now = _evaluations(home)
    for key, evaluation in old.items():  # nothing reverted (the collector restamps the times)
        for field in ("name", "status", "score", "passed", "label", "details"):
            assert now[key].get(field) == evaluation.get(field), (key, field)
    for trace_id, trace in before.items():
        if trace_id != original_id:
            assert lw.traces[trace_id] == trace  # nothing else written back

    # one more pass each way: the change reaches the copy's stash, then everything is an echo
    await world.one_way("langwatch", "opik")
    carried, result = await world.one_way("opik", "langwatch", echoes)
    assert carried == []
    report = await verify_endpoints(
        "langwatch",
        "opik",
        target_project=MIRROR,
        settings=world.settings,
        transports=world.transports,
    )
    assert report.ok, format_verify(report)

    # and a pass over unchanged records writes nothing at all
    requests = len(opik.requests)
    _, result = await world.one_way("langwatch", "opik")
    assert result.written.traces == 0
    assert result.skipped.traces == len(lw.traces)
    writes = [r for r in opik.requests[requests:] if r.method != "GET"]
    assert writes == []


class SyncWorld(World):
    """The same two fakes, driven by the real `sync()` both ways (change axis, checkpoints,
    echo suppression and skip-unchanged built in). The traces started two hours ago: a live
    project, inside the sources' re-read horizon for scores added later."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path, started=timedelta(hours=2), seed=22)

    async def to_opik(self) -> Report:
        return await self._sync("langwatch", "opik", target_project=MIRROR)

    async def to_langwatch(self) -> Report:
        return await self._sync("opik", "langwatch", source_project=MIRROR)

    async def _sync(self, from_: str, to: str, **projects: str) -> Report:
        """One `sync()` pass; every pass of this world must be clean (exit 0)."""
        report = await sync(
            from_, to, settings=self.settings, transports=self.transports, **projects
        )
        assert report.exit_code == 0, report.result.warnings
        return report

    async def add_langwatch_evaluation(self, trace_id: str) -> None:
        body = {
            "trace_id": trace_id,
            "spans": [],
            "evaluations": [
                {"evaluation_id": "eval_late_1", "name": "tone", "status": "processed", "score": 1}
            ],
        }
        async with httpx.AsyncClient(
            transport=self.lw.transport, base_url=self.lw.base_url
        ) as client:
            response = await client.post(
                "/api/collector", json=body, headers={"X-Auth-Token": self.lw.api_key}
            )
            assert response.is_success, response.text


def _opik_writes(opik: OpikFake) -> list[httpx.Request]:
    return [r for r in opik.requests if r.url.path.endswith(("/batch", "/feedback-scores"))]


@pytest.mark.anyio
async def test_sync_both_ways_carries_each_sides_scores_and_never_echoes(
    tmp_path: Path,
) -> None:
    """DESIGN.md "Sync", through `sync()` itself: the first pass copies everything; the way
    back writes nothing (every trace is an echo); a reviewer's Opik score reaches LangWatch
    and a late LangWatch evaluation reaches Opik, each alone; then quiet passes both ways make
    no write, and `verify` finds both sides equal."""
    world = SyncWorld(tmp_path)
    lw, opik = world.lw, world.opik
    first = await world.to_opik()
    assert first.written.traces == len(lw.traces) == 10
    back = await world.to_langwatch()
    assert back.written.total() == 0
    assert back.skipped == back.read  # every unit an echo
    assert "echo: came from langwatch unchanged" in back.result.skip_reasons

    row = sorted(opik.traces.values(), key=lambda r: r["start_time"])[0]
    reviewed = row["metadata"]["tracebridge"]["source"]["id"]
    await world.add_reviewer_score(row["id"])
    carried = await world.to_langwatch()
    assert carried.written.traces == 1
    assert [
        e["score"] for e in lw.traces[reviewed]["evaluations"] if e["name"] == "helpfulness"
    ] == [0.8]

    late = sorted(lw.traces)[-1]
    await world.add_langwatch_evaluation(late)
    forward = await world.to_opik()
    assert forward.written.traces >= 1  # the late evaluation (and the carried score's trace)
    copy_of_late = next(
        r for r in opik.traces.values() if r["metadata"]["tracebridge"]["source"]["id"] == late
    )
    assert (copy_of_late["id"], "tone") in opik.trace_scores

    await world.to_langwatch()
    writes, posts = len(_opik_writes(opik)), len(lw.collected_requests())
    quiet_lw_to_opik, quiet_opik_to_lw = await world.to_opik(), await world.to_langwatch()
    assert quiet_lw_to_opik.written.total() == quiet_opik_to_lw.written.total() == 0
    assert len(_opik_writes(opik)) == writes  # not one request that writes, either way
    assert len(lw.collected_requests()) == posts
    report = await verify_endpoints(
        "langwatch",
        "opik",
        target_project=MIRROR,
        settings=world.settings,
        transports=world.transports,
    )
    assert report.ok, format_verify(report)


@pytest.mark.anyio
async def test_a_reviewers_thread_score_on_opik_reaches_langwatch(tmp_path: Path) -> None:
    """README "Copies that change": a reviewer's feedback score on the copy side is carried to
    the original by sync. A thread score is one: Opik → LangWatch keeps it on the thread's last
    trace as the evaluation `thread: <name>`."""
    world = SyncWorld(tmp_path)
    lw, opik = world.lw, world.opik
    await world.to_opik()
    await world.to_langwatch()
    thread_id = next(r["thread_id"] for r in opik.traces.values() if r.get("thread_id"))
    opik.add_thread_data(
        MIRROR, thread_id, scores=[{"name": "resolved", "value": 1.0, "source": "ui"}]
    )
    await world.to_langwatch()
    names = [
        e["name"]
        for t in lw.traces.values()
        if (t.get("metadata") or {}).get("thread_id") == thread_id
        for e in t["evaluations"]
    ]
    assert "thread: resolved" in names  # read, then skipped as an echo (it must land)


@pytest.mark.anyio
async def test_records_a_pass_lost_are_read_again_by_a_later_pass(tmp_path: Path) -> None:
    """README: `pagination.skipped` is counted as lost, exit 1. A lost record has no dead
    letter to retry, so the job must not move its mark past it: once LangWatch serializes the
    trace again, a later pass copies it. Here the mark moves and the trace never arrives."""
    world = SyncWorld(tmp_path)
    lw, opik = world.lw, world.opik
    lost_id = next(i for i, t in sorted(lw.traces.items()) if "thread_id" not in t["metadata"])
    half_an_hour_ago = to_ms(datetime.now(UTC) - timedelta(minutes=30))
    lw.traces[lost_id]["timestamps"]["updated_at"] = half_an_hour_ago
    lw.unserializable.add(lost_id)
    first = await sync(
        "langwatch",
        "opik",
        target_project=MIRROR,
        settings=world.settings,
        transports=world.transports,
    )
    assert first.lost == 1
    assert first.exit_code == 1
    assert lost_id not in _copied(opik)
    lw.unserializable.discard(lost_id)
    await world.to_opik()
    assert lost_id in _copied(opik)


def _copied(opik: OpikFake) -> set[str]:
    return {r["metadata"]["tracebridge"]["source"]["id"] for r in opik.traces.values()}


@pytest.mark.anyio
async def test_opik_copies_of_one_langwatch_project_sync_into_another(tmp_path: Path) -> None:
    """An echo is a copy going back to where it came from (DESIGN.md invariant 2). Project B
    never held these traces: they are no echoes there. (The LangWatch sink already tells its
    own project from others for the 31-day rule: `target_project`.)"""
    world = SyncWorld(tmp_path)
    await world.to_opik()
    other = LangWatchFake(api_key="sk-lw-project-b", project_id="project_b", project_slug="b")
    settings = world.settings.model_copy(
        update={"langwatch_api_key": SecretStr(other.api_key), "langwatch_endpoint": other.base_url}
    )
    report = await sync(
        "opik",
        "langwatch",
        source_project=MIRROR,
        settings=settings,
        transports={"langwatch": other.transport, "opik": world.opik.transport},
    )
    assert report.exit_code == 0
    assert report.written.traces == 10, report.result.skip_reasons
    assert sorted(other.traces) == sorted(world.lw.traces)
