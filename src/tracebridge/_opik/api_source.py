"""`opik` as a source: the Opik REST API's paged reads (`OpikApiSource` and its cursors).

Contract (`reference/opik-api.md` §2.4–§2.7, §9–§11): traces on the keyset NDJSON stream
(`id` DESC, `last_retrieved_id`) in large batches, their spans in bulk (`bulk_spans.py`: a
project-wide `GET /spans` on a `trace_id` range, checked against each trace's `span_count`),
threads gathered from the stream and their own data from the thread listing in bulk, with a
per-thread read where that cannot be trusted; on the start axis by `start_time`, on the update
axis by `last_updated_at` plus the re-read rules for what does not move it (`OpikApiSource`'s
docstring). Resume cursors are plain dicts the checkpoint stores.

We read the REST API over our own `_http.Api` rather than the `opik` SDK: the SDK exposes no
resumable keyset cursor and would pull its dependencies into a CLI that needs only httpx.
Split out of `api.py` (which re-exports `OpikApiSource`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import _json
from .._errors import RecordError, ServerError, UsageError
from .._http import Api, decode_json, error_message
from .._interfaces import Page, Rejected, Window
from .._mapping import Mappings
from .._models import Thread, Trace
from .._time import from_iso, to_iso
from .bulk_spans import BulkSpans, last_page, windows
from .convert import (
    raw_counts,
    thread_data_from_opik,
    trace_from_opik,
)

__all__ = ["DEFAULT_RESCAN", "OpikApiSource"]

Json = dict[str, Any]
_LIST_SIZE = 500  # traces or spans per read; Opik sets no maximum (reference §2.5)
_STREAM_LIMIT = 2000  # the NDJSON streams' maximum `limit` (§2.4–§2.6, the spec)
_THREAD_PAGE = 1000  # threads per `GET /traces/threads` page when their data is read in bulk
#: Bounds on the traces held for threads not complete yet (`OpikApiSource`, "Threads").
_HOLD_TRACES = 1000
_HOLD_SPANS = 20_000
_HOLD_DISTANCE = 2000  # stream traces a held thread may wait for its next turn
_TRACES_STREAM = "v1/private/traces/search"
_SPANS_STREAM = "v1/private/spans/search"
#: How far before a pass's `since` the score re-read looks (class doc of `OpikApiSource`).
DEFAULT_RESCAN = timedelta(days=1)
_OTHER_AXIS = "the resume cursor belongs to a read on the other time axis: this read starts over"
_PAGE_CURSOR = (
    "the resume cursor is a page number from an earlier tracebridge: its phase is read again "
    "from the start (records come twice, nothing is lost)"
)
_THREADS_CURSOR = (
    "the resume cursor is in the threads phase of an earlier tracebridge, which read threads "
    "and other traces apart: the read starts over (records come twice, nothing is lost)"
)
_MS = timedelta(milliseconds=1)


def _id(raw: Any) -> str | None:
    value = raw.get("id") if isinstance(raw, dict) else None
    return value.lower() if isinstance(value, str) and value else None


def _position(resume: dict[str, Any]) -> str | None:
    """A resume cursor's keyset position (a trace or span id), or None."""
    after = resume.get("after")
    return after.lower() if isinstance(after, str) and after else None


def _pinned(value: Any) -> datetime | None:
    """The `until` a resume cursor pinned, or None when it holds none that reads."""
    try:
        return from_iso(value) if value else None
    except ValueError:
        return None


def _moment(value: Any) -> datetime | None:
    try:
        return from_iso(value)
    except ValueError:
        return None


def _thread_of(raw: dict[str, Any]) -> str | None:
    value = raw.get("thread_id")
    return value if isinstance(value, str) and value else None


def _scored_between(raw: dict[str, Any], since: datetime, until: datetime) -> bool:
    """True when a feedback score of the record (a trace's own, its `span_feedback_scores`, or
    a thread's) was written in [since, until]: each score carries the server's
    `last_updated_at`, per author too (§2.3). For `span_feedback_scores`, averages by name, the
    aggregate's `last_updated_at` is taken to be its newest score's (UNVERIFIED)."""
    moments: list[Any] = []
    for key in ("feedback_scores", "span_feedback_scores"):
        scores = raw.get(key)
        for score in scores if isinstance(scores, list) else []:
            if not isinstance(score, dict):
                continue
            moments.append(score.get("last_updated_at"))
            by_author = score.get("value_by_author")
            if isinstance(by_author, dict):
                moments += [
                    v.get("last_updated_at") for v in by_author.values() if isinstance(v, dict)
                ]
    for moment in moments:
        try:
            if since <= from_iso(moment) <= until:
                return True
        except ValueError:
            continue
    return False


#: A trace as read: its wire record and its spans.
_Record = tuple[Json, list[Json]]


@dataclass
class _Held:
    """A thread whose traces are being gathered from the stream: `expected` of them (its
    `number_of_messages` / 2, §2.4), `resume` the stream position before its first one (a page
    cursor must not pass it while the thread is held), `first` that trace's stream index."""

    view: Json
    expected: int
    resume: str | None
    first: int
    records: list[_Record] = field(default_factory=list)


@dataclass
class _Pass:
    """What one pass has delivered: threads (read whole once), the traces a thread read
    delivered before the stream reached them, and, on the update axis, every trace delivered
    (the re-read phases skip those); the threads held for their next turns, and the warnings
    of span reads not yet put on a page."""

    seen_threads: set[str] = field(default_factory=set)
    pending: set[str] = field(default_factory=set)
    delivered: set[str] | None = None
    holds: dict[str, _Held] = field(default_factory=dict)
    held_traces: int = 0
    held_spans: int = 0
    notes: list[str] = field(default_factory=list)
    mismatched: int = 0  # span count mismatches reported so far
    spans: BulkSpans | None = None  # the pass's span reader (`OpikApiSource._pass`)


@dataclass
class _Members:
    """When a thread's traces can be gathered from the stream, and how many there are: on the
    start axis when the thread lies inside the window (its first start at or after `since`, its
    last end at or before `until`), on the update axis when the pass reads everything (no
    `since`) or the thread was created at or after `since` (so all its traces changed in the
    window, barring clock skew). Otherwise (and when its count is off) it is read on its own."""

    updated: bool
    since: datetime | None
    until: datetime | None

    def expected(self, view: Json | None) -> int | None:
        count = view.get("number_of_messages") if view else None
        if view is None or not isinstance(count, int) or isinstance(count, bool) or count < 2:
            return None
        if self.updated:
            created = _moment(view.get("created_at"))
            if self.since is not None and (created is None or created < self.since):
                return None
        else:
            first, last = _moment(view.get("start_time")), _moment(view.get("end_time"))
            if self.since is not None and (first is None or first < self.since):
                return None
            if self.until is not None and (last is None or last > self.until):
                return None
        return count // 2


class OpikApiSource:
    """Reads one Opik project, on either time axis, with keyset cursors.

    Every trace listing is the NDJSON stream `POST /v1/private/traces/search` (§2.5, §9): ordered
    by `id` DESC (UUID v7, time-ordered), resumed with `last_retrieved_id` (`id < last`), so a
    record written during the read shifts nothing: one changed in place keeps its place, a new
    one lands before the cursor. Each answer must come in strictly descending ids below the
    cursor, else the read stops with a `ServerError` rather than trust it; an `ErrorMessage`
    line in the stream (§2.4) is one too. A batch shorter than `limit` ends a listing (the spec
    bounds `limit` to 1–2000, and the server sends that many when it has them). The main
    listings ask for `batch` traces (2000) per answer and yield pages of `page_size` of them.

    **Spans** come in bulk (`bulk_spans.py`): the spans of a window of consecutive traces (up to
    5,000 spans) in one `GET /spans` on a `trace_id` range, grouped locally and checked against
    each trace's `span_count`; a trace that disagrees is read again on its own (`GET /spans?
    trace_id=`, page/size), and a count that changes during that read is reported in a warning.
    A page says how many traces disagreed.

    **Threads** are read through their traces: the thread stream's cursor repeats its first page
    (§10) and `GET /traces/threads` has page numbers only, under which a thread updated mid-read
    shifts the pages, so it is never the listing of what to copy. It gives, in bulk, the thread
    data (scores, tags, status; one filtered listing per stream batch, narrowed to the batch's
    start times) and `number_of_messages` (twice the thread's trace count). A thread's traces
    are gathered from the stream as it reaches them and the thread is delivered whole once all
    have come (`_Members` says when that can be trusted): a conversation whose turns are near in
    time costs no request of its own. Held traces are bounded (`_HOLD_TRACES` traces,
    `_HOLD_SPANS` spans, `_HOLD_DISTANCE` stream traces of waiting); a thread past a bound, one
    not found in the listing or not trusted, and every thread still held at the end of a
    listing is read on its own: its traces by the stream filtered on `thread_id` (spans in
    bulk), its data from `POST /traces/threads/retrieve` when the listing did not give it (a
    thread Opik has not created yet, §3.2, comes without them and with a warning). Each thread
    comes once per pass; a trace of a thread read earlier in the pass that the thread read did
    not return comes on its own. A page's cursor never passes the first trace of a thread
    still held, so a resumed read loses nothing (it may repeat units).

    **Memory** does not grow with the project: one stream answer (`batch` traces), one span
    window (5,000 spans), the held threads (the bounds above), and the ids of the threads read
    in the pass.

    **Start axis** (`axis="started"`, what `migrate` copies): traces started in the window, in
    one listing; a thread brings its traces started in the window. Cursor `{"phase": "all",
    "after": <trace id>}`, then `{"done": true}`. Cursors of earlier versions: a page number
    restarts its phase, the `threads` phase restarts the read (both with a warning), the
    `traces` phase (threads all read) resumes the traces outside threads.

    **Update axis** (`axis="updated"`, what `sync` follows): `until` is the window's, or now when
    it has none (pinned in the cursor). Phases, each a keyset stream:

    1. `changed`: traces with `last_updated_at` in [since, until] (a DATE_TIME filter, §2.7;
       `last_updated_at` cannot be sorted on, so the keyset runs on `id`); threads come whole
       (all their traces). A trace updated during the read moves past `until` and out of the
       filter: it is left to the next pass, whose window starts at or before this one's `until`.
    2. `spans`: spans with `last_updated_at` in [since, until] (the span stream, one request a
       pass when nothing changed): a span written after its trace does not move the trace's
       `last_updated_at` (separate tables, §3.3), so such a trace is read again here.
    3. `scores`, the re-read rule for feedback scores, which do not move `last_updated_at` (§2.3,
       §11): the traces *started* in [since - `rescan`, until], read slim (`truncate`), are read
       again whole when a score of theirs, or of their spans, was written in [since, until] (each
       score carries its own server-set `last_updated_at`).
    4. `thread_scores`: the threads whose `last_updated_at` (their newest trace's, §10) is at or
       after since - `rescan`, listed with `GET /traces/threads` page/size (no keyset exists for
       threads: a count that changes between pages is reported in a warning; the phase restarts
       whole on resume), are read again whole when a thread score was written in [since, until].

    Phase 2 runs only with a `since` (without one, phase 1 read everything through `until`),
    phases 3 and 4 only with a `since` and a `rescan`. Limits of the re-read rule: a score on a
    trace that started (a thread that was last active) more than `rescan` before `since` is not
    seen until the record changes; a deleted score leaves no timestamp; thread **tags and
    status** carry no timestamp at all, so a change of only those is carried when the thread is
    next read for another reason, not before. The last page of the pass carries
    `Page.high_water = until` (every change through `until` was listed; `last_updated_at` is the
    writer's clock, so the next window needs a lookback for skew) and the cursor
    `{"axis": "updated", "done": true}`; pages before carry None. Cursor during the pass:
    `{"axis": "updated", "phase", "after", "until"}`. Reads are at-least-once: a resumed pass may
    repeat units.
    """

    def __init__(
        self,
        api: Api,
        *,
        project: str,
        mappings: Mappings,
        page_size: int = 100,
        rescan: timedelta | None = DEFAULT_RESCAN,
        now: Callable[[], datetime] | None = None,
        batch: int = _STREAM_LIMIT,
    ) -> None:
        self.api = api
        self.project = project
        self.mappings = mappings
        self.page_size = page_size
        self.batch = batch
        self.rescan = rescan
        self._now = now or (lambda: datetime.now(UTC))
        self.label = f"opik ({api.name} project {project!r})"
        #: The span reader of the latest pass (its `stats` say what bulk reads cost).
        self.spans: BulkSpans = self._reader(self._pass())

    def _pass(self, *, updated: bool = False) -> _Pass:
        """A pass's state, with its span reader."""
        state = _Pass(delivered=set() if updated else None)
        state.spans = self.spans = self._bulk_spans(state)
        return state

    @staticmethod
    def _reader(state: _Pass) -> BulkSpans:
        assert state.spans is not None  # set by `_pass`
        return state.spans

    def _bulk_spans(self, state: _Pass) -> BulkSpans:
        """Span reads whose per-trace warnings land in `state.notes` (put on the next page)."""

        async def page(number: int, size: int, filters: list[dict[str, str]]) -> Json:
            return await self._get_page("v1/private/spans", number, size, filters)

        async def per_trace(trace_id: str) -> list[Json]:
            found = self._all("v1/private/spans", [], state.notes, trace_id=trace_id)
            return [s async for s in found]

        return BulkSpans(page, per_trace)

    def _window_filters(self, window: Window) -> list[dict[str, str]]:
        filters = []
        if window.since is not None:
            filters.append({"field": "start_time", "operator": ">=", "value": to_iso(window.since)})
        if window.until is not None:
            filters.append({"field": "start_time", "operator": "<=", "value": to_iso(window.until)})
        return filters

    def _not_found(self) -> UsageError:
        return UsageError(
            f"Opik has no project {self.project!r} in this workspace (--source-project)"
        )

    async def _get_page(
        self, path: str, page: int, size: int, filters: list[dict[str, str]], **params: str
    ) -> dict[str, Any]:
        query = {
            "project_name": self.project,
            "page": str(page),
            "size": str(size),
            "truncate": "false",
            **params,
        }
        if filters:
            query["filters"] = json.dumps(filters)
        response = await self.api.send("GET", path, params=query)
        if response.status_code == 404:
            raise self._not_found()
        if not response.is_success:
            raise ServerError(
                f"Opik answered {response.status_code} to GET {path}: {error_message(response)}"
            )
        body = decode_json(response)
        if not isinstance(body, dict) or not isinstance(body.get("content"), list):
            raise ServerError(f"Opik answered GET {path} with no 'content' list")
        return body

    async def _all(
        self, path: str, filters: list[dict[str, str]], warnings: list[str], **params: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a page/size listing (no cursor exists for it): an item repeated by a
        shift is yielded once, and a `total` that changes between pages is reported."""
        page, read, totals, seen = 1, 0, set[Any](), set[str]()
        while True:
            body = await self._get_page(path, page, _LIST_SIZE, filters, **params)
            totals.add(body.get("total"))
            for item in body["content"]:
                item_id = _id(item)
                if item_id is not None and item_id in seen:
                    continue
                if item_id is not None:
                    seen.add(item_id)
                yield item
            read += len(body["content"])
            if last_page(body, read, _LIST_SIZE):
                break
            page += 1
        if len(totals) > 1:
            where = ", ".join(f"{k}={v}" for k, v in params.items() if k != "truncate")
            warnings.append(
                f"Opik's count of {path.rsplit('/', 1)[-1]}{f' ({where})' if where else ''} "
                f"changed while it was read page by page ({sorted(map(str, totals))}): that "
                "listing has no cursor, so an item may have been missed; rerun to read it again"
            )

    async def _stream(
        self,
        path: str,
        filters: list[dict[str, str]],
        after: str | None,
        limit: int,
        *,
        truncate: bool = False,
    ) -> list[dict[str, Any]]:
        """One answer of an NDJSON stream (§2.4–§2.6): items below `after`, newest id first."""
        body: dict[str, Any] = {
            "project_name": self.project,
            "filters": filters,
            "limit": limit,
            "truncate": truncate,
        }
        if after is not None:
            body["last_retrieved_id"] = after
        response = await self.api.send("POST", path, json_body=body)
        if response.status_code == 404:
            raise self._not_found()
        if not response.is_success:
            raise ServerError(
                f"Opik answered {response.status_code} to POST {path}: {error_message(response)}"
            )
        items: list[dict[str, Any]] = []
        for line in response.content.split(b"\n"):  # not splitlines: JSON text holds U+2028
            if not line.strip():
                continue
            try:
                item = _json.loads(line)
            except ValueError:
                raise ServerError(f"Opik's stream {path} sent a line that is not JSON") from None
            if _id(item) is None:  # an ErrorMessage line (§2.4): the stream broke off
                raise ServerError(f"Opik's stream {path} broke off: {json.dumps(item)[:200]}")
            items.append(item)
        ids = [_id(i) or "" for i in items]
        bound = after.lower() if after is not None else None
        if any(a <= b for a, b in itertools.pairwise(ids)) or (
            bound is not None and ids and ids[0] >= bound
        ):
            raise ServerError(
                f"Opik's stream {path} did not answer in descending ids below its cursor: a "
                "keyset read cannot be trusted on it"
            )
        return items

    async def _keyset(
        self,
        path: str,
        filters: list[dict[str, str]],
        after: str | None,
        limit: int,
        *,
        truncate: bool = False,
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str | None]]:
        """Every answer of a stream from `after` on, with the cursor after each."""
        while True:
            items = await self._stream(path, filters, after, limit, truncate=truncate)
            if items:
                after = _id(items[-1])
            yield items, after
            if len(items) < limit:
                return

    def _trace(
        self, raw: dict[str, Any], spans: list[Json]
    ) -> tuple[Trace | None, Rejected | None]:
        try:
            return trace_from_opik(raw, spans, project=self.project, mappings=self.mappings), None
        except RecordError as exc:
            record = {"trace": raw, "spans": spans}
            return None, Rejected("trace", exc.where, exc.reason, record, raw_counts(raw, spans))

    async def pages(self, window: Window, resume: dict[str, Any] | None) -> AsyncIterator[Page]:
        notes: list[str] = []
        updated = window.axis == "updated"
        if resume and (resume.get("axis") == "updated") != updated:
            notes.append(_OTHER_AXIS)
            resume = None
        resume = resume or {}
        if resume.get("done"):
            return
        if updated:
            until = window.until or _pinned(resume.get("until")) or self._now()
            reads = self._changes(window.since, until, resume, notes)
        else:
            until = None
            reads = self._starts(window, resume, notes)
        held: Page | None = None  # the last page is held back: it closes the pass
        async for page in reads:
            if held is not None:
                yield held
            held = page
        last = held or Page(warnings=notes)
        last.cursor = {"axis": "updated", "done": True} if updated else {"done": True}
        last.high_water = until
        yield last

    async def _starts(
        self, window: Window, resume: dict[str, Any], notes: list[str]
    ) -> AsyncIterator[Page]:
        phase, after = resume.get("phase", "all"), _position(resume)
        if ("page" in resume and after is None) or phase not in ("all", "threads", "traces"):
            notes.append(_PAGE_CURSOR)
            phase, after = ("traces" if phase == "traces" else "all"), None
        elif phase == "threads":
            notes.append(_THREADS_CURSOR)
            phase, after = "all", None
        window_filters = self._window_filters(window)
        filters = list(window_filters)
        if phase == "traces":  # an earlier version's second phase: the threads are all read
            filters.insert(0, {"field": "thread_id", "operator": "is_empty", "value": ""})
        members = _Members(updated=False, since=window.since, until=window.until)
        state = self._pass()

        def cursor(position: str | None) -> dict[str, Any]:
            return {"phase": phase, "after": position}

        async for page in self._gather(
            filters, after, state, notes, cursor, members, window_filters, None
        ):
            yield page

    async def _changes(
        self, since: datetime | None, until: datetime, resume: dict[str, Any], notes: list[str]
    ) -> AsyncIterator[Page]:
        phases = ("changed", "spans", "scores", "thread_scores")
        phase, after = resume.get("phase", "changed"), _position(resume)
        if phase not in phases:
            notes.append(_PAGE_CURSOR)
            phase, after = "changed", None
        rescan = self.rescan if since is not None and self.rescan else None
        changed = [{"field": "last_updated_at", "operator": "<=", "value": to_iso(until)}]
        if since is not None:
            changed.insert(
                0, {"field": "last_updated_at", "operator": ">=", "value": to_iso(since)}
            )
        state = self._pass(updated=True)

        def cursor(name: str, position: str | None) -> dict[str, Any]:
            return {"axis": "updated", "phase": name, "after": position, "until": to_iso(until)}

        for name in phases[phases.index(phase) :]:
            if name == "changed":
                members = _Members(updated=True, since=since, until=until)
                async for page in self._gather(
                    changed,
                    after,
                    state,
                    notes,
                    lambda position: cursor("changed", position),
                    members,
                    [],
                    since,
                ):
                    notes = []
                    yield page
            elif name == "spans" and since is not None:  # without, "changed" read it all
                async for batch, position in self._keyset(
                    _SPANS_STREAM, changed, after, _STREAM_LIMIT, truncate=True
                ):
                    page = Page(cursor=cursor(name, position), warnings=notes)
                    notes = []
                    for trace_id in dict.fromkeys(str(s.get("trace_id")).lower() for s in batch):
                        await self._by_id(trace_id, page, state)
                    yield self._noted(page, state)
            elif rescan is not None and since is not None and name == "scores":
                horizon = [
                    {"field": "start_time", "operator": ">=", "value": to_iso(since - rescan)},
                    {"field": "start_time", "operator": "<=", "value": to_iso(until)},
                ]
                async for batch, position in self._keyset(
                    _TRACES_STREAM, horizon, after, _STREAM_LIMIT, truncate=True
                ):
                    page = Page(cursor=cursor(name, position), warnings=notes)
                    notes = []
                    for raw in batch:
                        if _scored_between(raw, since, until):
                            await self._by_id(_id(raw) or "", page, state, raw.get("thread_id"))
                    yield self._noted(page, state)
            elif rescan is not None and since is not None and name == "thread_scores":
                async for page in self._thread_scores(since, until, rescan, state, notes):
                    page.cursor = cursor(name, None)
                    notes = []
                    yield self._noted(page, state)
            after = None

    def _noted(self, page: Page, state: _Pass) -> Page:
        """The page with the span reads' warnings gathered since the last one."""
        mismatched = self._reader(state).stats.mismatched - state.mismatched
        if mismatched:
            state.mismatched += mismatched
            page.warnings.append(
                f"{mismatched} trace(s) had another span count than their spans read in bulk "
                "(spans written or deleted during the read): read again one by one"
            )
        page.warnings += state.notes
        state.notes.clear()
        return page

    async def _gather(
        self,
        filters: list[dict[str, str]],
        after: str | None,
        state: _Pass,
        notes: list[str],
        cursor: Callable[[str | None], dict[str, Any]],
        members: _Members,
        member_filters: list[dict[str, str]],
        since: datetime | None,
    ) -> AsyncIterator[Page]:
        """The units of one trace listing (the class doc's "Spans" and "Threads"): a page per
        `page_size` stream traces, its cursor at the last position nothing held is above."""
        reader = self._reader(state)
        position, index, taken = after, 0, 0
        page = Page(warnings=notes)
        async for batch, _ in self._keyset(_TRACES_STREAM, filters, after, self.batch):
            views = await self._views(batch, state, since)
            alone = {  # threads read on their own: their spans come with their other traces
                t
                for t in map(_thread_of, batch)
                if t is not None
                and t not in state.seen_threads
                and t not in state.holds
                and members.expected(views.get(t)) is None
            }
            wanted = [
                r for r in batch if _id(r) not in state.pending and _thread_of(r) not in alone
            ]
            ahead = windows(wanted, reader.budget)
            window_of = {_id(r): n for n, group in enumerate(ahead) for r in group}
            spans: dict[str, list[Json]] = {}
            loaded = -1
            for raw in batch:
                trace_id, thread_id = _id(raw) or "", _thread_of(raw)
                if trace_id in state.pending:
                    state.pending.discard(trace_id)  # delivered with its thread
                elif thread_id in alone and thread_id not in state.seen_threads:
                    view = views.get(thread_id)
                    await self._thread(thread_id, page, state, member_filters, view=view, also=raw)
                    state.pending.discard(trace_id)
                else:
                    if trace_id in window_of:
                        while trace_id not in spans:  # the next window: the last one's go
                            loaded += 1
                            spans = await reader.read_window(ahead[loaded])
                        own = spans[trace_id]
                    else:  # a trace its thread's own read did not return
                        own = (await reader.read([raw]))[trace_id]
                    at = (position, index)
                    await self._place(raw, own, at, page, state, views, members, member_filters)
                position, index, taken = trace_id, index + 1, taken + 1
                await self._bound_holds(index, page, state, member_filters)
                if taken >= self.page_size:
                    page.cursor = cursor(self._settled(state, position))
                    yield self._noted(page, state)
                    page, taken = Page(), 0
        for thread_id in list(state.holds):  # what the listing did not complete
            await self._fall_back(thread_id, page, state, member_filters)
        page.cursor = cursor(position)
        yield self._noted(page, state)

    @staticmethod
    def _settled(state: _Pass, position: str | None) -> str | None:
        """Where a resume may start: before the first trace of the oldest held thread."""
        first = next(iter(state.holds.values()), None)
        return first.resume if first is not None else position

    async def _place(
        self,
        raw: Json,
        spans: list[Json],
        at: tuple[str | None, int],
        page: Page,
        state: _Pass,
        views: dict[str, Json],
        members: _Members,
        member_filters: list[dict[str, str]],
    ) -> None:
        """One stream trace, with its spans: alone, or into its held thread (delivered once all
        its traces have come), or its thread read on its own when `_Members` cannot count it."""
        thread_id = _thread_of(raw)
        if thread_id is None or thread_id in state.seen_threads:
            self._deliver(raw, spans, page, state)
            return
        held = state.holds.get(thread_id)
        if held is None:
            view = views.get(thread_id)
            expected = members.expected(view)
            if view is None or expected is None:
                known = [(raw, spans)]
                await self._thread(thread_id, page, state, member_filters, known=known, view=view)
                return
            held = state.holds[thread_id] = _Held(view, expected, *at)
        held.records.append((raw, spans))
        state.held_traces += 1
        state.held_spans += len(spans)
        if len(held.records) >= held.expected:
            self._release(thread_id, state)
            state.seen_threads.add(thread_id)
            self._unit(thread_id, held.records, held.view, page)

    def _release(self, thread_id: str, state: _Pass) -> _Held:
        held = state.holds.pop(thread_id)
        state.held_traces -= len(held.records)
        state.held_spans -= sum(len(spans) for _, spans in held.records)
        if state.delivered is not None:
            state.delivered |= {_id(raw) or "" for raw, _ in held.records}
        return held

    async def _bound_holds(
        self, index: int, page: Page, state: _Pass, member_filters: list[dict[str, str]]
    ) -> None:
        """Past a bound on what is held, the oldest held threads are read on their own."""
        while state.holds:
            thread_id, oldest = next(iter(state.holds.items()))
            if (
                state.held_traces <= _HOLD_TRACES
                and state.held_spans <= _HOLD_SPANS
                and index - oldest.first <= _HOLD_DISTANCE
            ):
                return
            await self._fall_back(thread_id, page, state, member_filters)

    async def _fall_back(
        self, thread_id: str, page: Page, state: _Pass, member_filters: list[dict[str, str]]
    ) -> None:
        held = self._release(thread_id, state)
        await self._thread(
            thread_id, page, state, member_filters, known=held.records, view=held.view
        )

    async def _views(
        self, batch: list[Json], state: _Pass, since: datetime | None
    ) -> dict[str, Json]:
        """The thread data (`TraceThread`, §2.4) of the threads new in a stream batch, from
        `GET /traces/threads` filtered to threads that can hold one of its traces (started by
        the batch's last start, ended at or after its first; changed since `since`). A thread
        not found there is read on its own."""
        needed: set[str] = set()
        starts: list[datetime] = []
        for raw in batch:
            thread_id = _thread_of(raw)
            if thread_id is None or thread_id in state.seen_threads or thread_id in state.holds:
                continue
            start = _moment(raw.get("start_time"))
            if start is not None:
                needed.add(thread_id)
                starts.append(start)
        if not needed:
            return {}
        filters = [
            {"field": "start_time", "operator": "<=", "value": to_iso(max(starts) + _MS)},
            {"field": "end_time", "operator": ">=", "value": to_iso(min(starts) - _MS)},
        ]
        if since is not None:
            filters.append({"field": "last_updated_at", "operator": ">=", "value": to_iso(since)})
        found: dict[str, Json] = {}
        number, read = 1, 0
        while True:
            body = await self._get_page(
                "v1/private/traces/threads", number, _THREAD_PAGE, filters, truncate="true"
            )
            for view in body["content"]:
                thread_id = view.get("id") if isinstance(view, dict) else None
                if isinstance(thread_id, str) and thread_id in needed:
                    found[thread_id] = {
                        k: v for k, v in view.items() if k not in ("first_message", "last_message")
                    }
            read += len(body["content"])
            if len(found) == len(needed) or last_page(body, read, _THREAD_PAGE):
                return found
            number += 1

    def _deliver(self, raw: Json, spans: list[Json], page: Page, state: _Pass) -> None:
        trace, rejected = self._trace(raw, spans)
        if trace is not None:
            page.units.append(trace)
        if rejected is not None:
            page.rejected.append(rejected)
        if state.delivered is not None:
            state.delivered.add(_id(raw) or "")

    async def _thread_scores(
        self,
        since: datetime,
        until: datetime,
        rescan: timedelta,
        state: _Pass,
        notes: list[str],
    ) -> AsyncIterator[Page]:
        """Phase 4: threads active since `since - rescan` whose thread scores were written in
        [since, until], read again whole (page/size: threads have no working cursor, §10)."""
        filters = [{"field": "last_updated_at", "operator": ">=", "value": to_iso(since - rescan)}]
        page_no, read, totals = 1, 0, set[Any]()
        while True:
            body = await self._get_page(
                "v1/private/traces/threads", page_no, _LIST_SIZE, filters, truncate="true"
            )
            page = Page(warnings=notes)
            notes = []
            totals.add(body.get("total"))
            for view in body["content"]:
                thread_id = view.get("id") if isinstance(view, dict) else None
                if (
                    isinstance(thread_id, str)
                    and thread_id not in state.seen_threads
                    and _scored_between(view, since, until)
                ):
                    await self._thread(thread_id, page, state, [], view=view)
            read += len(body["content"])
            done = last_page(body, read, _LIST_SIZE)
            if done and len(totals) > 1:
                page.warnings.append(
                    "Opik's count of threads changed while they were listed page by page "
                    f"({sorted(map(str, totals))}): that listing has no cursor, so a thread "
                    "whose score changed may have been missed; rerun to read it again"
                )
            yield page
            if done:
                return
            page_no += 1

    async def _by_id(self, trace_id: str, page: Page, state: _Pass, thread_id: Any = None) -> None:
        """Read a trace again, whole (or its thread, when `thread_id` or the trace names one),
        unless the pass delivered it already."""
        assert state.delivered is not None
        if not trace_id or trace_id in state.delivered:
            return
        if isinstance(thread_id, str) and thread_id:
            if thread_id not in state.seen_threads:
                await self._thread(thread_id, page, state, [])
            return
        response = await self.api.send("GET", f"v1/private/traces/{trace_id}")
        if response.status_code == 404:
            state.delivered.add(trace_id)  # deleted since: nothing left to copy
            return
        if not response.is_success:
            raise ServerError(
                f"Opik answered {response.status_code} to GET trace {trace_id}: "
                f"{error_message(response)}"
            )
        raw = decode_json(response)
        if not isinstance(raw, dict):
            raise ServerError(f"Opik answered GET trace {trace_id} with no trace")
        found = await self._reader(state).read([raw]) if _id(raw) else {}
        spans = found.get(_id(raw) or "", [])
        thread = _thread_of(raw)
        if thread is not None and thread not in state.seen_threads:
            await self._thread(thread, page, state, [], known=[(raw, spans)])
        else:
            self._deliver(raw, spans, page, state)

    async def _retrieve(self, thread_id: str) -> dict[str, Any] | None:
        """The thread's own record (`POST /traces/threads/retrieve`, §2.4); None when Opik has
        not created it (yet: threads appear asynchronously, §3.2)."""
        response = await self.api.send(
            "POST",
            "v1/private/traces/threads/retrieve",
            json_body={"project_name": self.project, "thread_id": thread_id, "truncate": True},
        )
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise ServerError(
                f"Opik answered {response.status_code} retrieving thread {thread_id}: "
                f"{error_message(response)}"
            )
        view = decode_json(response)
        return view if isinstance(view, dict) else None

    async def _thread(
        self,
        thread_id: str,
        page: Page,
        state: _Pass,
        member_filters: list[dict[str, str]],
        *,
        known: Sequence[_Record] = (),
        view: dict[str, Any] | None = None,
        also: Json | None = None,
    ) -> None:
        """The thread read on its own, as one unit: its traces that `member_filters` hold (all
        of them on the update axis), their spans in bulk, with `known` (traces read already,
        with their spans) kept as read and `also` (a trace read already, without its spans)
        part of it even when the member read misses it; its data from `view`, else retrieved."""
        state.seen_threads.add(thread_id)
        filters = [{"field": "thread_id", "operator": "=", "value": thread_id}, *member_filters]
        raws: list[dict[str, Any]] = []
        async for batch, _ in self._keyset(_TRACES_STREAM, filters, None, _STREAM_LIMIT):
            raws += batch
        have = {_id(raw): (raw, spans) for raw, spans in known}
        ids = {i for i in map(_id, raws) if i is not None}
        if also is not None and _id(also) not in ids | set(have):
            raws.append(also)
        missing = [r for r in raws if _id(r) not in have]
        spans = await self._reader(state).read(missing) if missing else {}
        records = [*have.values(), *((r, spans.get(_id(r) or "", [])) for r in missing)]
        state.pending |= ids - set(have)
        if state.delivered is not None:
            state.delivered |= {i for i in (*ids, *have) if i is not None}
        if view is None:
            view = await self._retrieve(thread_id)
            if view is None:
                page.warnings.append(
                    f"Opik has no thread record for {thread_id!r} yet (threads appear "
                    "asynchronously): its traces are read without the thread's scores, tags "
                    "and status"
                )
        self._unit(thread_id, records, view, page)

    def _unit(
        self, thread_id: str, records: Sequence[_Record], view: Json | None, page: Page
    ) -> None:
        traces: list[Trace] = []
        for raw, spans in records:
            trace, rejected = self._trace(raw, spans)
            if trace is not None:
                traces.append(trace)
            if rejected is not None:
                page.rejected.append(rejected)
        if traces:
            traces.sort(key=lambda t: t.started_at)
            data = thread_data_from_opik(view or {"id": thread_id}, self.mappings)
            page.units.append(Thread(id=thread_id, traces=traces, **data))

    async def aclose(self) -> None:
        await self.api.aclose()
