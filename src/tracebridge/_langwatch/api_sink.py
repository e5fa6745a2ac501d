"""`langwatch` as a sink: the LangWatch collector (`LangWatchApiSink`, request splitting).

Contract (`reference/langwatch-api.md` §5.1): `POST /api/collector`, ≤ 200 spans, ≤ 200
evaluations and ≤ 10 MB per request (a big trace is several requests with the same `trace_id`,
which LangWatch merges). A 429 there means "too large": the request is split, never resent
unchanged; 402 (plan quota) is fatal. `partialSuccess` is read on every answer and rejected spans
are dead-lettered. LangWatch builds a trace from its spans, so no trace is posted without one: a
trace that has none gets the root span carrying its IO (`convert.with_root_span`), as every copy
of an Opik trace does. Spans that started more than 31 days ago are dropped by LangWatch: such a
trace is dead-lettered with the reason, or, with `shift_old_timestamps`, moved into the accepted
window with the shift kept in its stash.

We post to the collector over our own `_http.Api` rather than the `langwatch` SDK (an
OpenTelemetry exporter): it has no per-request split, no dead letters and no way to write a
trace with the original ids and times. Split out of `api.py` (which re-exports
`LangWatchApiSink`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from .._errors import QuotaError, ServerError
from .._http import TRANSIENT_STATUSES, Api, error_message
from .._interfaces import Counts, Rejected, Unit, WriteResult
from .._models import Thread, Trace
from .._stash import STASH_KEY, parse_stash
from .._time import to_ms
from .api_source import _HISTORY_START_MS
from .convert import (
    shift_timestamps,
    thread_to_wire,
    trace_to_wire,
    with_root_span,
)

__all__ = ["CUTOFF", "LangWatchApiSink"]

CUTOFF = timedelta(days=31)
_SAFE_AGE = timedelta(days=30)  # where shifted traces start: a day inside the cutoff
_OLD_ORIGINAL = (
    "traces born in this LangWatch project and older than its 31-day ingestion cutoff: the "
    "original is still there, so it is not written again"
)


_SPAN_FIELDS = frozenset(
    "span_id trace_id parent_id name type input output timestamps model vendor metrics params "
    "contexts error".split()
)
_EVALUATION_FIELDS = frozenset(
    "evaluation_id evaluator_id name type is_guardrail status passed score label details error "
    "timestamps".split()
)


def _span_body(span: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in span.items() if k in _SPAN_FIELDS and v is not None}
    body["timestamps"] = {
        k: v
        for k, v in span["timestamps"].items()
        if k in ("started_at", "finished_at", "first_token_at")
    }
    return body


def _evaluation_body(evaluation: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in evaluation.items() if k in _EVALUATION_FIELDS and v is not None}
    if isinstance(body.get("timestamps"), dict):
        body["timestamps"] = {
            k: v
            for k, v in body["timestamps"].items()
            if k in ("started_at", "finished_at") and v is not None
        }
    if isinstance(body.get("error"), dict):
        error = body["error"]
        body["error"] = {
            "message": error.get("message") or "",
            "stacktrace": list(error.get("stacktrace") or []),
        }
    return body


@dataclass
class _Request:
    """One collector request of a trace, and what it carries."""

    body: dict[str, Any]
    spans: int
    evaluations: int


class LangWatchApiSink:
    """Writes canonical records to the LangWatch project of the API key, through the collector."""

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
    ) -> None:
        """`project` is the id of the project the API key writes to, as configured: used only
        when the API cannot tell (`target_project`)."""
        self.api = api
        self.shift = shift_old_timestamps
        self.project = project
        self._target: tuple[str, ...] | None = None  # the target project's id (and slug)
        self._now = now or (lambda: datetime.now(UTC))
        self.max_spans = max_spans
        self.max_evaluations = max_evaluations
        self.max_bytes = max_bytes
        self.label = "langwatch"
        self.shifted = 0

    async def write(self, units: list[Unit], *, dry_run: bool = False) -> WriteResult:
        result = WriteResult()
        for unit in units:
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
                continue
            before = len(result.rejected)
            kept = await self._apply_cutoff(traces, wires, result)
            refused = result.rejected[before:]
            if isinstance(unit, Thread) and len(refused) == len(traces):
                # Every turn refused: the thread is the dead letter (its own scores and tags
                # with it), so the counts add up and a retry sends it whole.
                del result.rejected[before:]
                result.rejected.append(
                    Rejected(
                        "thread", f"thread {unit.id}", refused[0].reason, None, Counts.of(unit)
                    )
                )
            accepted = [_finished_only(w, result) for w in kept]
            if isinstance(unit, Thread) and any(accepted):
                result.written.threads += 1
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
                await self._write_trace(trace, wire, result)
        return result

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
        """LangWatch drops spans older than 31 days: skip, shift or dead-letter such traces.

        Skipped: a trace born in the very project this sink writes to (its provenance names
        the target project: the original is still there). That premise is checked: when the
        target project cannot be established, or is another one, a LangWatch-born trace is a
        copy like any other (dead-lettered, or moved with `shift_old_timestamps`).
        """
        cutoff = to_ms(self._now() - CUTOFF) + 60_000  # a minute of margin for the trip

        def oldest(wire: dict[str, Any]) -> int:
            starts = [wire["timestamps"]["started_at"]]
            starts += [s["timestamps"]["started_at"] for s in wire["spans"]]
            return int(min(starts))

        old = [oldest(w) < cutoff for w in wires]
        if not any(old):
            return [*wires]
        out: list[dict[str, Any] | None] = []
        # Copies are moved together: one shift for every copied trace of the thread, fresh
        # turns included, keeps its turns in order and spacing when they fit in the window; a
        # longer thread is compressed into it, still in order. Traces born in the target
        # project never move.
        starts = [oldest(w) for w in wires]
        here = await self.target_project() if any(_born_in_langwatch(traces)) else ()
        copied = [t.source.platform != "langwatch" or t.source.project not in here for t in traces]
        moving = [s for s, c in zip(starts, copied, strict=True) if c]
        shift = self.shift and any(o and c for o, c in zip(old, copied, strict=True))
        first = min(moving, default=0)
        span = max(moving, default=0) - first
        room = (_SAFE_AGE - timedelta(days=1)) // timedelta(milliseconds=1)
        target = to_ms(self._now() - _SAFE_AGE)
        for trace, wire, is_old, start, is_copy in zip(
            traces, wires, old, starts, copied, strict=True
        ):
            if shift and is_copy:
                offset = start - first if span < room else (start - first) * room // span
                out.append(_shifted(wire, target + offset - start))
                self.shifted += 1
            elif not is_old:
                out.append(wire)
            elif not is_copy:
                result.skip(1, "traces", _OLD_ORIGINAL)
                out.append(None)
            else:
                result.rejected.append(
                    Rejected(
                        "trace",
                        f"trace {trace.id}",
                        "it started more than 31 days ago and LangWatch drops spans older "
                        "than that; "
                        "rerun with --shift-old-timestamps to move it into the accepted window "
                        "(the original times are kept in its metadata)",
                        None,
                        Counts.of(trace),
                    )
                )
                out.append(None)
        return out

    def _requests(self, wire: dict[str, Any]) -> list[_Request]:
        spans = [_span_body(s) for s in wire["spans"]]
        evaluations = [_evaluation_body(e) for e in wire["evaluations"]]
        requests: list[_Request] = []
        i = j = 0
        while i < len(spans) or j < len(evaluations) or not requests:
            body: dict[str, Any] = {"trace_id": wire["trace_id"]}
            if not requests:
                body["metadata"] = wire["metadata"]
            chunk_spans = spans[i : i + self.max_spans]
            chunk_evals = evaluations[j : j + self.max_evaluations]
            # The limit is on the whole body: halve the bigger part until it fits.
            while (
                len(chunk_spans) + len(chunk_evals) > 1
                and _size({**body, "spans": chunk_spans, "evaluations": chunk_evals})
                > self.max_bytes
            ):
                if len(chunk_spans) <= 1 or _size(chunk_evals) > _size(chunk_spans):
                    chunk_evals = chunk_evals[: len(chunk_evals) // 2]
                else:
                    chunk_spans = chunk_spans[: len(chunk_spans) // 2]
            body["spans"] = chunk_spans
            if chunk_evals:
                body["evaluations"] = chunk_evals
            requests.append(_Request(body, len(chunk_spans), len(chunk_evals)))
            i += len(chunk_spans)
            j += len(chunk_evals)
        return requests

    async def _write_trace(self, trace: Trace, wire: dict[str, Any], result: WriteResult) -> None:
        synthetic = len(wire["spans"]) - _source_spans(wire)  # the root span tracebridge adds
        rejected_spans = rejected_evaluations = 0
        for request in self._requests(wire):
            spans, evaluations = await self._post(request, f"trace {trace.id}", result)
            rejected_spans += spans
            rejected_evaluations += evaluations
        result.written.add(
            Counts(
                traces=1,
                spans=max(0, len(wire["spans"]) - synthetic - rejected_spans),
                scores=len(wire["evaluations"]) - rejected_evaluations,
            )
        )

    async def _post(self, request: _Request, owner: str, result: WriteResult) -> tuple[int, int]:
        """Send one request (splitting it when LangWatch says it is too large or bad).

        Returns the numbers of spans and evaluations LangWatch refused.
        """
        response = await self.api.send(
            "POST",
            "api/collector",
            json_body=request.body,
            retry_statuses=TRANSIENT_STATUSES - {429},
        )
        if response.status_code == 402:
            raise QuotaError(
                "LangWatch refused the data: the plan's quota is used up "
                f"(402: {error_message(response)})"
            )
        if response.is_success:
            partial = (response.json() or {}).get("partialSuccess") or {}
            spans, evaluations = (
                int(partial.get("rejectedSpans") or 0),
                int(partial.get("rejectedEvaluations") or 0),
            )
            if spans or evaluations:
                reason = (
                    f"LangWatch accepted the request but dropped {spans} spans and "
                    f"{evaluations} evaluations: {partial.get('errorMessage', '')}"
                )
                # The synthetic root span is no source span: count at most the source's.
                spans = min(spans, _source_spans(request.body)) or spans
                result.rejected.append(
                    Rejected("span", owner, reason, None, Counts(spans=spans, scores=evaluations))
                )
            return spans, evaluations
        if response.status_code not in (400, 413, 422, 429):
            raise ServerError(
                f"LangWatch answered {response.status_code} to POST /api/collector: "
                f"{error_message(response)}"
            )
        halves = _split(request)
        if halves is None:
            reason = f"LangWatch refused it ({response.status_code}): {error_message(response)}"
            kind = "span" if request.spans else "score"
            result.rejected.append(
                Rejected(
                    kind,
                    owner,
                    reason,
                    request.body,
                    Counts(spans=request.spans, scores=request.evaluations),
                )
            )
            return request.spans, request.evaluations
        first = await self._post(halves[0], owner, result)
        second = await self._post(halves[1], owner, result)
        return first[0] + second[0], first[1] + second[1]

    async def aclose(self) -> None:
        await self.api.aclose()


def _born_in_langwatch(traces: list[Trace]) -> list[bool]:
    return [t.source.platform == "langwatch" for t in traces]


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
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


def _source_spans(body: dict[str, Any]) -> int:
    """How many spans of a collector body came from the source (not the synthetic root)."""
    return sum(
        not (parse_stash((span.get("params") or {}).get(STASH_KEY)) or {}).get("trace_span")
        for span in body.get("spans") or []
    )


def _size(value: Any) -> int:
    """Bytes of `value` as JSON (a little more than the compact body `Api.send` sends)."""
    return len(json.dumps(value, ensure_ascii=False).encode())


def _split(request: _Request) -> tuple[_Request, _Request] | None:
    """Two requests carrying what `request` did, or None when it holds one item only."""
    body = request.body
    spans, evaluations = body.get("spans", []), body.get("evaluations", [])
    head = {k: v for k, v in body.items() if k not in ("spans", "evaluations")}
    if len(spans) > 1:
        half = len(spans) // 2
        return (
            _Request({**head, "spans": spans[:half]}, half, 0),
            _Request(
                {
                    **head,
                    "spans": spans[half:],
                    **({"evaluations": evaluations} if evaluations else {}),
                },
                len(spans) - half,
                len(evaluations),
            ),
        )
    if len(evaluations) > 1 or (spans and evaluations):
        half = len(evaluations) // 2
        return (
            (
                _Request(
                    {**head, "spans": spans, "evaluations": evaluations[:half]}, len(spans), half
                ),
                _Request(
                    {**head, "spans": [], "evaluations": evaluations[half:]},
                    0,
                    len(evaluations) - half,
                ),
            )
            if half
            else (
                _Request({**head, "spans": spans}, len(spans), 0),
                _Request({**head, "spans": [], "evaluations": evaluations}, 0, len(evaluations)),
            )
        )
    return None


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
