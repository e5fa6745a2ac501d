"""`langwatch` as a sink: canonical records through the LangWatch collector (`LangWatchApiSink`).

Each unit is mapped to the collector's wire shape (`convert.py`); LangWatch builds a trace from
its spans, so no trace is posted without one: a trace that has none gets the root span carrying
its IO (`convert.with_root_span`), as every copy of an Opik trace does. The 31-day ingestion
cutoff is a rule over the canonical traces (`cutoff.IngestionCutoff`: keep, skip, dead-letter or
shift each trace); evaluations the collector would refuse for their status are skipped by a
named rule; the packing of a trace into requests, their halving and `partialSuccess` are
`collector.py`'s. What is left here: the order of those steps, the dead letter of a thread whose
every turn was refused, and the requests in flight.

Requests in flight: the collector takes one trace per request, and traces are posted
`concurrency` at a time (`_inflight.InFlight`) while the next units are mapped; the requests of
one trace go in order (the first carries the trace's metadata). A thread's traces go together
too: LangWatch orders a thread by its traces' start times when it is read (§3.4) and builds each
trace on its own, so the order of the posts carries nothing (a thread of 47 turns posted in order
would be 47 round trips on the write's critical path); `thread_order=True` posts them one after
the other all the same. Each post keeps its outcome in a result of its own, merged in the order
of a sequential write (each unit's mapping and rules, then its posts): the result is the one a
sequential write gives, and a post that fails does not stop the others before its failure is
raised. The sink's first post goes alone: a refused key or a used-up quota (402) then costs one
request, not `concurrency`.

We post to the collector over our own `_http.Api` rather than the `langwatch` SDK (an
OpenTelemetry exporter): it has no per-request split, no dead letters and no way to write a
trace with the original ids and times. Split out of `api.py` (which re-exports
`LangWatchApiSink`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from .._http import Api, decode_json
from .._inflight import InFlight
from .._interfaces import Counts, Rejected, Unit, WriteResult
from .._models import Thread, Trace
from .._stash import STASH_KEY, parse_stash
from .._time import to_ms
from .api_source import _HISTORY_START_MS
from .collector import Collector, Limits
from .convert import (
    shift_timestamps,
    thread_to_wire,
    trace_to_wire,
    with_root_span,
)
from .cutoff import CUTOFF, OLD_ORIGINAL, TOO_OLD, IngestionCutoff

__all__ = ["CONCURRENCY", "CUTOFF", "LangWatchApiSink"]

CONCURRENCY = 32  # collector requests in flight (one trace each)

_Post = tuple[Trace, dict[str, Any]]  # a trace and the wire to post for it


class LangWatchApiSink:
    """Writes canonical records to the LangWatch project of the API key, through the collector."""

    #: The pages it writes best: a file source's pages grow to this many spans, so a page's
    #: posts (one per trace) keep the requests in flight busy.
    page_spans = 2000

    def __init__(
        self,
        api: Api,
        *,
        shift_old_timestamps: bool = False,
        project: str | None = None,
        now: Callable[[], datetime] | None = None,
        max_spans: int = 200,
        max_evaluations: int = 200,
        max_bytes: int = 9_500_000,
        concurrency: int = CONCURRENCY,
        thread_order: bool = False,
        cutoff: IngestionCutoff | None = None,
    ) -> None:
        """`project` is the id of the project the API key writes to, as configured: used only
        when the API cannot tell (`target_project`). `cutoff` replaces the 31-day rule built
        from `shift_old_timestamps` and `now`; `concurrency` is how many traces are posted at
        once; `thread_order` posts a thread's traces one after the other."""
        self.api = api
        self.project = project
        self._target: tuple[str, ...] | None = None  # the target project's id (and slug)
        self._now = now or (lambda: datetime.now(UTC))
        self.collector = Collector(api, Limits(max_spans, max_evaluations, max_bytes))
        self.cutoff = cutoff or IngestionCutoff(
            now=self._now, shift=shift_old_timestamps, target_project=self.target_project
        )
        self.concurrency = concurrency
        self.thread_order = thread_order
        self._answered = False  # a post was answered: the next ones may go together
        self.label = "langwatch"

    @property
    def shifted(self) -> int:
        """Traces moved into the window by `--shift-old-timestamps` so far."""
        return self.cutoff.shifted

    async def write(self, units: list[Unit], *, dry_run: bool = False) -> WriteResult:
        # What mapping and the rules said of each unit, then what each post did: merged in
        # that order, it is the result of a sequential write.
        own: list[list[WriteResult]] = []
        async with InFlight(self.concurrency, first_alone=not self._answered) as flight:
            for unit in units:
                own.append([WriteResult()])
                posts = await self._prepare(unit, own[-1][0], dry_run)
                chains = [posts] if self.thread_order else [[post] for post in posts]
                for chain in chains:
                    own[-1].append(WriteResult())
                    await flight.start(self._poster(chain, own[-1][-1]))
                    self._answered = True
        result = WriteResult()
        for mine in own:
            for part in mine:
                result.merge(part)
        return result

    def _poster(self, posts: list[_Post], result: WriteResult) -> Callable[[], Awaitable[None]]:
        """A call that posts `posts` (traces), one after the other."""

        async def post() -> None:
            for trace, wire in posts:
                await self.collector.write_trace(trace, wire, result)

        return post

    async def _prepare(self, unit: Unit, result: WriteResult, dry_run: bool) -> list[_Post]:
        """Map `unit`, apply the cutoff and the evaluation rule; what is left to post (nothing
        on a dry run, which plans it instead)."""
        traces = unit.traces if isinstance(unit, Thread) else [unit]
        try:
            wires = thread_to_wire(unit) if isinstance(unit, Thread) else [trace_to_wire(unit)]
            wires = [with_root_span(t, w) for t, w in zip(traces, wires, strict=True)]
        except ValueError as exc:
            result.rejected.append(
                Rejected(
                    "trace",
                    f"{type(unit).__name__.lower()} {unit.id}",
                    f"cannot map: {exc}",
                    None,
                    Counts.of(unit),
                )
            )
            return []
        kept = await self._apply_cutoff(traces, wires, result)
        if isinstance(unit, Thread) and len(result.rejected) == len(traces):
            # Every turn refused: the thread is the dead letter (its own scores and tags
            # with it), so the counts add up and a retry sends it whole.
            reason = result.rejected[0].reason
            result.rejected = [
                Rejected("thread", f"thread {unit.id}", reason, None, Counts.of(unit))
            ]
        accepted = [_finished_only(w, result) for w in kept]
        if isinstance(unit, Thread) and any(accepted):
            result.written.threads += 1
        posts: list[_Post] = []
        for trace, wire in zip(traces, accepted, strict=True):
            if wire is None:
                continue
            if dry_run:
                result.plan.append(
                    f"trace {trace.id}: {len(wire['spans'])} spans, "
                    f"{len(wire['evaluations'])} evaluations"
                )
                result.written.add(
                    Counts(traces=1, spans=len(trace.spans), scores=len(wire["evaluations"]))
                )
                continue
            posts.append((trace, wire))
        return posts

    async def target_project(self) -> tuple[str, ...]:
        """The names of the project this sink writes to: its id (and slug), or () if unknown.

        Asked once: `GET /api/me/project` (the key's project, in the OpenAPI document), else the
        `project_id` of any trace a one-trace search returns (§3.1, §4), else the configured
        project. An older server without the first and an empty project leave only the last.
        """
        if self._target is not None:
            return self._target
        names: tuple[str, ...] = ()
        response = await self.api.send("GET", "api/me/project")
        body = _json_or_none(response) if response.is_success else None
        if isinstance(body, dict) and isinstance(body.get("id"), str) and body["id"]:
            slug = body.get("slug")
            names = (body["id"], slug) if isinstance(slug, str) and slug else (body["id"],)
        else:
            found = await self.api.send(
                "POST",
                "api/traces/search",
                json_body={
                    "startDate": _HISTORY_START_MS,
                    "endDate": to_ms(self._now() + timedelta(days=1)),
                    "pageSize": 1,
                    "format": "json",
                    "includeSpans": False,
                },
            )
            data = _json_or_none(found) if found.is_success else None
            traces = data.get("traces") if isinstance(data, dict) else None
            project_id = (
                traces[0].get("project_id") if traces and isinstance(traces[0], dict) else None
            )
            if isinstance(project_id, str) and project_id:
                names = (project_id,)
            elif self.project:
                names = (self.project,)
        self._target = names
        return names

    async def _apply_cutoff(
        self, traces: list[Trace], wires: list[dict[str, Any]], result: WriteResult
    ) -> list[dict[str, Any] | None]:
        """The wires the 31-day rule keeps (shifted where it says so); None where it skips or
        dead-letters the trace (`cutoff.py`)."""
        out: list[dict[str, Any] | None] = []
        for trace, wire, verdict in zip(
            traces, wires, await self.cutoff.judge(traces), strict=True
        ):
            if verdict.action == "keep":
                out.append(wire)
            elif verdict.action == "shift":
                out.append(_shifted(wire, verdict.shift_ms))
            elif verdict.action == "skip":
                result.skip(1, "traces", OLD_ORIGINAL)
                out.append(None)
            else:
                counts = Counts.of(trace)
                result.rejected.append(
                    Rejected("trace", f"trace {trace.id}", TOO_OLD, None, counts)
                )
                out.append(None)
        return out

    async def aclose(self) -> None:
        await self.api.aclose()


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return decode_json(response)
    except ValueError:
        return None


_COLLECTED_STATUSES = frozenset({"processed", "skipped", "error"})
_PENDING = (
    "evaluations still scheduled or in progress: the collector takes finished ones only, and "
    "LangWatch runs pending evaluations itself"
)


def _finished_only(wire: dict[str, Any] | None, result: WriteResult) -> dict[str, Any] | None:
    """The wire without evaluations the collector would refuse for their status (§5.1)."""
    if wire is None:
        return None
    kept = [e for e in wire["evaluations"] if e.get("status", "processed") in _COLLECTED_STATUSES]
    result.skip(len(wire["evaluations"]) - len(kept), "scores", _PENDING)
    return {**wire, "evaluations": kept}


def _shifted(wire: dict[str, Any], delta_ms: int) -> dict[str, Any]:
    """The wire moved by `delta_ms`, with the shift recorded in its stash so a read undoes it."""
    shifted = shift_timestamps(wire, delta_ms)
    stash = parse_stash(shifted["metadata"].get(STASH_KEY)) or {}
    stash["shift_ms"] = delta_ms
    shifted["metadata"] = {
        **shifted["metadata"],
        STASH_KEY: json.dumps(stash, ensure_ascii=False, sort_keys=True),
    }
    return shifted
