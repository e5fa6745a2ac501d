"""`langwatch` as a source: the LangWatch REST API's reads (`LangWatchApiSource`).

Contract (`reference/langwatch-api.md` §3, §6): `POST /api/traces/search` with `format: "json"`,
`includeSpans`, a date window, `dateField: "occurred"`, ascending, and the same `pageSize` on
every page (the scroll cursor silently restarts when they change). The cursor appears only on
full pages. A trace with a `metadata.thread_id` brings its whole thread with it, fetched once
(`GET /api/thread/{id}`, capped at 1000 traces: bigger threads are read by a search filtered on
the thread id); evaluations come from a search by trace ids, since the thread endpoint has none.
A trace outside threads whose text may be the 64 KB preview is fetched whole
(`GET /api/traces/{id}`). `pagination.skipped` is reported as a loss. On the update axis
(`Window(axis="updated")`) the same scroll runs on `dateField: "updated"`, threads come whole,
`pagination.updatedThrough` is the pass's high-water mark, and evaluations are re-read by their
own rule (`LangWatchApiSource`'s docstring).

We read the REST API over our own `_http.Api` rather than the `langwatch` SDK: the SDK is for
sending traces, not for resumable scroll reads, and this CLI needs only httpx. Split out of
`api.py` (which re-exports `LangWatchApiSource`).
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from .._errors import RecordError, ServerError
from .._http import Api, decode_json, error_message
from .._inflight import in_order
from .._interfaces import Page, Rejected, Window
from .._models import Thread, Trace
from .._time import from_ms, to_ms
from .convert import raw_counts, trace_from_wire

__all__ = ["DEFAULT_RESCAN", "PREVIEW_BYTES", "THREAD_CAP", "LangWatchApiSource"]

PREVIEW_BYTES = 65_536
THREAD_CAP = 1000
_HISTORY_START_MS = 946_684_800_000  # 2000-01-01: "the whole history"
#: How far before a pass's `since` the evaluation re-read looks, by trace start (class doc).
DEFAULT_RESCAN = timedelta(days=1)
_OTHER_AXIS = "the resume cursor belongs to a read on the other time axis: this read starts over"
_UNKNOWN_CURSOR = "the resume cursor names no phase of this read: the pass starts over"


def _maybe_truncated(value: Any) -> bool:
    """True when a string inside `value` is as long as LangWatch's 64 KB preview."""
    if isinstance(value, str):
        return len(value) * 4 >= PREVIEW_BYTES and len(value.encode()) >= PREVIEW_BYTES - 4
    if isinstance(value, dict):
        return any(_maybe_truncated(v) for v in value.values())
    if isinstance(value, list):
        return any(_maybe_truncated(v) for v in value)
    return False


def _thread_traces(response: httpx.Response, thread_id: str) -> list[Any]:
    """The traces of a `GET /api/thread/{id}` answer, in either shape LangWatch documents.

    The reference (§3.4, the handler's code) shows `{"traces": [...]}`; the published doc page
    (`seeds/langwatch-get-thread.txt`) shows a bare array of traces. Anything else is a
    `ServerError` naming the thread: guessing would lose the thread's traces silently.
    """
    try:
        data = decode_json(response)
    except ValueError:
        shape = "a body that is not JSON"
    else:
        if isinstance(data, list):
            return data
        if isinstance(data, dict) and isinstance(data.get("traces"), list):
            return list(data["traces"])
        shape = (
            f"an object with keys {sorted(data)[:8]}"
            if isinstance(data, dict)
            else f"JSON {json.dumps(data)[:80]}"
        )
    raise ServerError(
        f"LangWatch answered GET /api/thread/{thread_id} with neither a list of traces nor an "
        f"object holding a 'traces' list (got {shape}); its traces cannot be read"
    )


def _lower(current: int | None, value: int) -> int:
    return value if current is None else min(current, value)


def _thread_id(raw: dict[str, Any]) -> str | None:
    value = (raw.get("metadata") or {}).get("thread_id")
    return value if isinstance(value, str) and value else None


@dataclass
class _Pass:
    """What one pass has delivered so far: threads (read whole once), the traces a thread read
    delivered before the scroll reached them, and (update axis) the standalone traces."""

    seen_threads: set[str] = field(default_factory=set)
    pending: set[str] = field(default_factory=set)
    emitted: set[str] = field(default_factory=set)
    through: int | None = None  # update axis: `pagination.updatedThrough` of the change scroll


def _scroll_state(scroll_id: Any) -> dict[str, Any] | None:
    """The decoded scroll cursor (§3.1: stateless base64 JSON `{lastTimestamp, lastTraceId,
    pageSize, sortDirection, dateField, scrollStart?}`), or None when it is not one."""
    if not isinstance(scroll_id, str):
        return None
    try:
        state = json.loads(base64.b64decode(scroll_id, validate=True))
    except ValueError:
        return None
    return state if isinstance(state, dict) else None


def _follows(state: dict[str, Any] | None, raw: dict[str, Any]) -> bool:
    """False when `raw` cannot come after the cursor `state`: the server dropped the cursor and
    restarted from page 1 (§3.1). True when it cannot be told."""
    if state is None:
        return True
    at = (raw.get("timestamps") or {}).get(
        "updated_at" if state.get("dateField") == "updated" else "started_at"
    )
    last_at, last_id, trace_id = (
        state.get("lastTimestamp"),
        state.get("lastTraceId"),
        raw.get("trace_id"),
    )
    if not all(isinstance(v, int) for v in (at, last_at)) or not all(
        isinstance(v, str) for v in (last_id, trace_id)
    ):
        return True
    if state.get("sortDirection") == "desc":
        return bool((at, trace_id) < (last_at, last_id))
    return bool((at, trace_id) > (last_at, last_id))


def _judged_between(raw: dict[str, Any], since: int, upper: int) -> bool:
    """True when one of the trace's evaluations was recorded or changed in [since, upper]: its
    newest timestamp (§4 `inserted_at`, `started_at`, `finished_at`, `updated_at`; the collector
    stamps them with the ingestion time, §5.1)."""
    for evaluation in raw.get("evaluations") or []:
        stamps = (evaluation.get("timestamps") or {}) if isinstance(evaluation, dict) else {}
        moments = [v for v in stamps.values() if isinstance(v, int) and not isinstance(v, bool)]
        if moments and since <= max(moments) <= upper:
            return True
    return False


class LangWatchApiSource:
    """Reads the LangWatch project the API key belongs to.

    **Start axis** (`Window(axis="started")`, what `migrate` copies): one scroll on
    `dateField: "occurred"`; a thread brings its traces started in the window.

    **Update axis** (`Window(axis="updated")`, what `sync` follows; §3.1, §3.6). Yields, as whole
    units, every trace whose `updated_at` lies in [since, until], in one scroll with
    `dateField: "updated"`, ascending (ties by trace id), the same `pageSize` on every page (the
    cursor restarts silently from page 1 when pageSize, sortDirection or dateField change; a
    resumed cursor keeps its own pageSize, and a restart on resume is reported). A changed trace
    in a thread brings the whole thread, read once per pass (`GET /api/thread/{id}`, no start
    window). The server pins a snapshot on page 1: a trace changed during the scroll is left to
    the next pass, and `pagination.updatedThrough` is the moment through which the scroll saw
    every change; the last page of the pass carries it as `Page.high_water` (pages before carry
    None: what they saw is safe only with the cursor). A server that sends no `updatedThrough`
    does not know the update axis (it would strip the field silently and read the start axis):
    that is a `ServerError`. `totalHits` is exact on this axis: a scroll that returns fewer
    traces than it counts says so in a warning.

    **Re-read rule for what does not move `updated_at`.** Whether a later evaluation moves the
    trace's `updated_at` is not established (§5.1 "UNVERIFIED"; evaluations live in their own
    store). So each update pass with a `since` also scans the traces *started* in
    [since - `rescan`, updatedThrough] (`dateField: "occurred"`, no spans, `rescan_page_size` a
    page) and re-reads, whole, every trace with an evaluation whose newest timestamp lies in
    [since, updatedThrough] and that the pass has not delivered yet. Limits: an evaluation added
    to a trace that started more than `rescan` before `since` is not seen until the trace
    changes; removing an evaluation leaves no timestamp and is not seen; the scan costs one
    request per `rescan_page_size` traces started in the horizon, every pass. Annotations (§4,
    Postgres; edits do not move `updated_at`, #4736) are not read by tracebridge at all, so
    they need no rule here; reading them would need one (`GET /api/annotations`, `updatedAt`).

    Cursors: start axis `{"scroll_id"}` then `{"done": true}`; update axis
    `{"axis": "updated", "phase": "changed" | "evaluations", "scroll_id", "end", "through"}`
    then `{"axis": "updated", "done": true, "through"}`. `end` pins the search's `endDate` when
    the window has no `until`. Reads are at-least-once: a resumed pass may repeat units.
    """

    def __init__(
        self,
        api: Api,
        *,
        project: str | None = None,
        page_size: int = 200,
        now: Callable[[], datetime] | None = None,
        rescan: timedelta | None = DEFAULT_RESCAN,
        rescan_page_size: int = 1000,
        concurrency: int = 32,
    ) -> None:
        self.api = api
        self.project = project or ""
        self.page_size = page_size
        self.concurrency = concurrency  # thread reads of one page in flight at once
        self.rescan = rescan
        self.rescan_page_size = rescan_page_size
        self._now = now or (lambda: datetime.now(UTC))
        self.label = "langwatch"

    async def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.api.send(
            "POST", "api/traces/search", json_body={"format": "json", **body}
        )
        if not response.is_success:
            raise ServerError(
                f"LangWatch answered {response.status_code} to a trace search: "
                f"{error_message(response)}"
            )
        data = decode_json(response)
        if not isinstance(data, dict) or not isinstance(data.get("traces"), list):
            raise ServerError("LangWatch answered a trace search without a 'traces' list")
        return data

    async def _scroll(
        self, body: dict[str, Any], scroll_id: str | None = None, notes: list[str] | None = None
    ) -> AsyncIterator[tuple[list[dict[str, Any]], dict[str, Any]]]:
        """Every page of one search: same pageSize, sortDirection and dateField on each.

        Resuming from `scroll_id`, the cursor's own pageSize is sent (any other makes the server
        drop it, §3.1); a server that drops it all the same restarts from page 1, which loses
        nothing (records come twice) and is said in `notes`.
        """
        first_id: str | None = None
        seen_scrolls: set[str] = set()
        resumed = _scroll_state(scroll_id)
        size = resumed.get("pageSize") if resumed else None
        if isinstance(size, int) and not isinstance(size, bool) and size != body.get("pageSize"):
            body = {**body, "pageSize": size}
        while True:
            data = await self._search({**body, **({"scrollId": scroll_id} if scroll_id else {})})
            traces, pagination = data["traces"], data.get("pagination") or {}
            restarted = resumed is not None and traces and not _follows(resumed, traces[0])
            if restarted and notes is not None:
                notes.append(
                    "LangWatch did not take the resume cursor and restarted the search "
                    "from its first page: what was read before is read again"
                )
            resumed = None
            if traces and first_id is not None and traces[0].get("trace_id") == first_id:
                raise ServerError(
                    "LangWatch restarted the scroll from its first page; rerun to resume"
                )
            if first_id is None and traces:
                first_id = traces[0].get("trace_id")
            yield traces, pagination
            scroll_id = pagination.get("scrollId")
            if not scroll_id:
                return
            if scroll_id in seen_scrolls:
                raise ServerError(
                    "LangWatch returned the same scroll cursor twice; rerun to resume"
                )
            seen_scrolls.add(scroll_id)

    def _window(self, window: Window, date_field: str = "occurred") -> dict[str, Any]:
        start = to_ms(window.since) if window.since else _HISTORY_START_MS
        end = to_ms(window.until) if window.until else to_ms(self._now() + timedelta(minutes=1))
        return {
            "startDate": start,
            "endDate": end,
            "dateField": date_field,
            "sortDirection": "asc",
            "pageSize": self.page_size,
        }

    async def pages(self, window: Window, resume: dict[str, Any] | None) -> AsyncIterator[Page]:
        if window.axis == "updated":
            async for page in self._changes(window, resume):
                yield page
            return
        notes: list[str] = []
        if resume and resume.get("axis") == "updated":
            notes.append(_OTHER_AXIS)
            resume = None
        if resume and resume.get("done"):
            return
        body = {**self._window(window), "includeSpans": True}
        state = _Pass()
        async for traces, pagination in self._scroll(body, (resume or {}).get("scroll_id"), notes):
            page = Page(lost=int(pagination.get("skipped") or 0), warnings=notes)
            notes = []
            if isinstance(hits := pagination.get("totalHits"), int):
                page.expected_traces = hits  # the window's, for the progress's ETA only
            await self._collect(traces, page, state, window)
            next_scroll = pagination.get("scrollId")
            page.cursor = {"scroll_id": next_scroll} if next_scroll else {"done": True}
            yield page

    async def _changes(self, window: Window, resume: dict[str, Any] | None) -> AsyncIterator[Page]:
        """The update axis: changed traces, then the evaluation re-read (see the class doc)."""
        notes: list[str] = []
        if resume and resume.get("axis") != "updated":
            notes.append(_OTHER_AXIS)
            resume = None
        resume = resume or {}
        if resume.get("done"):
            return
        since = to_ms(window.since) if window.since else None
        end = (
            to_ms(window.until)
            if window.until
            else int(resume.get("end") or to_ms(self._now() + timedelta(minutes=1)))
        )
        state = _Pass(through=resume.get("through"))
        rescan = since is not None and bool(self.rescan)
        phase = resume.get("phase", "changed")
        scroll_id = resume.get("scroll_id") if isinstance(resume.get("scroll_id"), str) else None
        if phase not in ("changed", "evaluations"):
            notes.append(_UNKNOWN_CURSOR)
            phase, scroll_id, state.through = "changed", None, None
        held: Page | None = None  # the last page is held back: it carries the high-water mark

        def cursor(phase: str, scroll: str | None) -> dict[str, Any]:
            return {
                "axis": "updated",
                "phase": phase,
                "scroll_id": scroll,
                "end": end,
                "through": state.through,
            }

        if phase == "changed":
            body = {
                "startDate": since if since is not None else _HISTORY_START_MS,
                "endDate": end,
                "dateField": "updated",
                "sortDirection": "asc",
                "pageSize": self.page_size,
                "includeSpans": True,
            }
            read, counted = 0, None
            async for traces, pagination in self._scroll(body, scroll_id, notes):
                page = Page(lost=int(pagination.get("skipped") or 0), warnings=notes)
                notes = []
                self._note_through(pagination)
                state.through = _lower(state.through, pagination["updatedThrough"])
                read += len(traces) + page.lost
                counted = pagination.get("totalHits")
                await self._collect(traces, page, state, Window())
                next_scroll = pagination.get("scrollId")
                page.cursor = cursor("changed" if next_scroll else "evaluations", next_scroll)
                if held is not None:
                    yield held
                held = page
            if scroll_id is None and isinstance(counted, int) and read < counted and held:
                held.warnings.append(
                    f"LangWatch counted {counted} traces changed in the window but its scroll "
                    f"returned {read}: the next pass reads the window again"
                )
            scroll_id = None
        if rescan and since is not None and self.rescan is not None:
            upper = state.through if state.through is not None else end
            body = {
                "startDate": since - self.rescan // timedelta(milliseconds=1),
                "endDate": upper,
                "dateField": "occurred",
                "sortDirection": "asc",
                "pageSize": self.rescan_page_size,
                "includeSpans": False,
            }
            async for traces, pagination in self._scroll(body, scroll_id, notes):
                page = Page(warnings=notes)
                notes = []
                if skipped := int(pagination.get("skipped") or 0):
                    page.warnings.append(
                        f"LangWatch could not send {skipped} traces of the evaluation re-read: "
                        "evaluations added to them since the last pass are not seen"
                    )
                await self._judged(traces, page, state, since, upper)
                page.cursor = cursor("evaluations", pagination.get("scrollId"))
                if held is not None:
                    yield held
                held = page
        last = held or Page(warnings=notes)
        last.cursor = {"axis": "updated", "done": True, "through": state.through}
        last.high_water = None if state.through is None else from_ms(state.through)
        yield last

    @staticmethod
    def _note_through(pagination: dict[str, Any]) -> None:
        through = pagination.get("updatedThrough")
        if isinstance(through, bool) or not isinstance(through, int):
            raise ServerError(
                "LangWatch answered a search on the update axis without "
                "pagination.updatedThrough: this server does not know dateField 'updated' (it "
                "drops unknown fields silently and would read by start time); sync needs a "
                "LangWatch version that has it"
            )

    async def _collect(
        self, traces: list[dict[str, Any]], page: Page, state: _Pass, members: Window
    ) -> None:
        """The page's units: a trace outside threads alone, a thread whole (once per pass,
        its traces that `members` holds), a trace its thread read did not return on its own."""
        threads: dict[str, list[dict[str, Any]]] = {}
        read = await self._threads_read(traces, state, members)
        for raw in traces:
            trace_id, thread_id = raw.get("trace_id"), _thread_id(raw)
            if trace_id in state.pending:
                state.pending.discard(trace_id)  # already delivered with its thread
            elif thread_id is None:
                state.emitted.add(str(trace_id))
                self._convert(await self._whole(raw), page, into=page.units)
            elif thread_id not in state.seen_threads:
                state.seen_threads.add(thread_id)
                members_read = read[thread_id]
                ids = {m.get("trace_id") for m in members_read}
                if trace_id not in ids:  # the thread read does not know it (§3.4)
                    members_read.append(await self._whole(raw))
                state.pending |= {i for i in ids if isinstance(i, str)} - {trace_id}
                threads[thread_id] = members_read
            else:
                # Of a thread read earlier, which did not return it: it comes on its own,
                # keeping its thread id, rather than be lost.
                state.emitted.add(str(trace_id))
                self._convert(await self._whole(raw), page, into=page.units)
        await self._add_threads(threads, page)

    async def _threads_read(
        self, traces: list[dict[str, Any]], state: _Pass, members: Window
    ) -> dict[str, list[dict[str, Any]]]:
        """The reads of the threads the page meets for the first time in the pass, up to
        `concurrency` in flight at once (each is one `GET /api/thread/{id}`: a round trip each,
        which sequential reads would put end to end); the page is then built in its own order
        from them, exactly as with one read after another."""
        new: list[str] = []
        for raw in traces:
            thread_id = _thread_id(raw)
            if (
                thread_id is not None
                and raw.get("trace_id") not in state.pending
                and thread_id not in state.seen_threads
                and thread_id not in new
            ):
                new.append(thread_id)
        calls = [functools.partial(self._thread, thread_id, members) for thread_id in new]
        return dict(zip(new, await in_order(calls, self.concurrency), strict=True))

    async def _judged(
        self, traces: list[dict[str, Any]], page: Page, state: _Pass, since: int, upper: int
    ) -> None:
        """Units for the traces of the evaluation re-read whose evaluations changed in
        [since, upper] and that the pass has not delivered (search results here have no
        spans: a trace is read by id, a thread whole)."""
        threads: dict[str, list[dict[str, Any]]] = {}
        for raw in traces:
            if not _judged_between(raw, since, upper):
                continue
            trace_id, thread_id = raw.get("trace_id"), _thread_id(raw)
            if thread_id is not None:
                if thread_id in state.seen_threads:
                    continue
                state.seen_threads.add(thread_id)
                members_read = await self._thread(thread_id, Window())
                if trace_id not in {m.get("trace_id") for m in members_read}:
                    found = await self._get_trace(trace_id)
                    members_read += [found] if found else []
                threads[thread_id] = members_read
            elif str(trace_id) not in state.emitted:
                state.emitted.add(str(trace_id))
                found = await self._get_trace(trace_id)
                if found is not None:  # else deleted since the scan: nothing to copy
                    self._convert(found, page, into=page.units)
        await self._add_threads(threads, page)

    async def _whole(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The trace with its full text when the search may have given a 64 KB preview."""
        spans = raw.get("spans") or []
        if _maybe_truncated(
            [
                raw.get("input"),
                raw.get("output"),
                [(s.get("input"), s.get("output")) for s in spans],
            ]
        ):
            return await self._get_trace(raw.get("trace_id")) or raw
        return raw

    async def _add_threads(self, threads: dict[str, list[dict[str, Any]]], page: Page) -> None:
        """Thread units for the page, with one evaluation lookup for all their traces."""
        missing = [
            r.get("trace_id")
            for members in threads.values()
            for r in members
            if not r.get("evaluations")
        ]
        evaluations = await self._evaluations(missing)
        for thread_id, members in threads.items():
            traces: list[Trace] = []
            thread_data: Thread | None = None
            for raw in members:
                if not raw.get("evaluations"):
                    raw = {**raw, "evaluations": evaluations.get(str(raw.get("trace_id")), [])}
                thread_data = self._convert(raw, page, into=traces) or thread_data
            if traces:
                extra = thread_data.model_dump(exclude={"id", "traces"}) if thread_data else {}
                traces.sort(key=lambda t: t.started_at)
                page.units.append(Thread(id=thread_id, traces=traces, **extra))

    async def _get_trace(self, trace_id: Any) -> dict[str, Any] | None:
        response = await self.api.send("GET", f"api/traces/{quote(str(trace_id), safe='')}")
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise ServerError(
                f"LangWatch answered {response.status_code} to GET trace {trace_id}: "
                f"{error_message(response)}"
            )
        data = decode_json(response)
        return data if isinstance(data, dict) else None

    def _convert(self, raw: dict[str, Any], page: Page, *, into: list[Any]) -> Thread | None:
        try:
            trace, thread_data = trace_from_wire(raw, project=self.project)
        except RecordError as exc:
            page.rejected.append(Rejected("trace", exc.where, exc.reason, raw, raw_counts(raw)))
            return None
        into.append(trace)
        return thread_data

    async def _thread(self, thread_id: str, window: Window) -> list[dict[str, Any]]:
        """The thread's traces in the window, with spans and full text (no evaluations)."""
        response = await self.api.send("GET", f"api/thread/{quote(thread_id, safe='')}")
        if not response.is_success:
            raise ServerError(
                f"LangWatch answered {response.status_code} to GET thread {thread_id}: "
                f"{error_message(response)}"
            )
        raws = _thread_traces(response, thread_id)
        if len(raws) >= THREAD_CAP:  # the endpoint's cap: read the whole thread by search
            raws = []
            body = {
                **self._window(Window()),
                "includeSpans": True,
                "filters": {"metadata.thread_id": [thread_id]},
            }
            async for found, _ in self._scroll(body):
                raws += [await self._whole(raw) for raw in found]
        return [r for r in raws if isinstance(r, dict) and self._in_window(r, window)]

    @staticmethod
    def _in_window(raw: dict[str, Any], window: Window) -> bool:
        started = (raw.get("timestamps") or {}).get("started_at")
        if not isinstance(started, int):
            return True  # the conversion names the problem
        try:
            return window.holds(from_ms(started))
        except ValueError:
            return True

    async def _evaluations(self, trace_ids: list[Any]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        ids = [t for t in trace_ids if isinstance(t, str)]
        for start in range(0, len(ids), 1000):
            body = {
                **self._window(Window()),
                "pageSize": 1000,
                "includeSpans": False,
                "traceIds": ids[start : start + 1000],
            }
            async for traces, _ in self._scroll(body):
                for raw in traces:
                    found[str(raw.get("trace_id"))] = raw.get("evaluations") or []
        return found

    async def aclose(self) -> None:
        await self.api.aclose()
