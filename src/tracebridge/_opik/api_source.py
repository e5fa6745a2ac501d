"""`opik` as a source: the Opik REST API's paged reads (`OpikApiSource` and its cursors).

Contract (`reference/opik-api.md` §2.4–§2.7, §9, §10): traces on the keyset NDJSON stream
(`id` DESC, `last_retrieved_id`), a thread whole through its traces (no thread listing has a
working cursor), spans per trace; on the start axis by `start_time`, on the update axis by
`last_updated_at` plus the re-read rules for what does not move it (`OpikApiSource`'s
docstring). Resume cursors are plain dicts the checkpoint stores.

We read the REST API over our own `_http.Api` rather than the `opik` SDK: the SDK exposes no
resumable keyset cursor and would pull its dependencies into a CLI that needs only httpx.
Split out of `api.py` (which re-exports `OpikApiSource`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .._errors import RecordError, ServerError, UsageError
from .._http import Api, error_message
from .._interfaces import Page, Rejected, Window
from .._mapping import Mappings
from .._models import Thread, Trace
from .._time import from_iso, to_iso
from .convert import (
    raw_counts,
    thread_data_from_opik,
    trace_from_opik,
)

__all__ = ["DEFAULT_RESCAN", "OpikApiSource"]

_LIST_SIZE = 500  # traces or spans per read; Opik sets no maximum (reference §2.5)
_STREAM_LIMIT = 2000  # the NDJSON streams' maximum `limit` (§2.4–§2.6, the spec)
_TRACES_STREAM = "v1/private/traces/search"
_SPANS_STREAM = "v1/private/spans/search"
#: How far before a pass's `since` the score re-read looks (class doc of `OpikApiSource`).
DEFAULT_RESCAN = timedelta(days=1)
_OTHER_AXIS = "the resume cursor belongs to a read on the other time axis: this read starts over"
_PAGE_CURSOR = (
    "the resume cursor is a page number from an earlier tracebridge: its phase is read again "
    "from the start (records come twice, nothing is lost)"
)


def _last_page(body: dict[str, Any], read: int, size: int) -> bool:
    """True after the last page: an empty one, or once `read` (items so far) reaches `total`.

    Without `total`, a short page ends it. A server that pages by a smaller `size` than asked
    for still reports `total`, so nothing is cut short.
    """
    if not body["content"]:
        return True
    total = body.get("total")
    if isinstance(total, int):
        return read >= total
    return len(body["content"]) < size


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


@dataclass
class _Pass:
    """What one pass has delivered: threads (read whole once), the traces a thread read
    delivered before the stream reached them, and, on the update axis, every trace delivered
    (the re-read phases skip those)."""

    seen_threads: set[str] = field(default_factory=set)
    pending: set[str] = field(default_factory=set)
    delivered: set[str] | None = None


class OpikApiSource:
    """Reads one Opik project, on either time axis, with keyset cursors.

    Every trace listing is the NDJSON stream `POST /v1/private/traces/search` (§2.5, §9): ordered
    by `id` DESC (UUID v7, time-ordered), resumed with `last_retrieved_id` (`id < last`), so a
    record written during the read shifts nothing: one changed in place keeps its place, a new
    one lands before the cursor. Each answer must come in strictly descending ids below the
    cursor, else the read stops with a `ServerError` rather than trust it; an `ErrorMessage`
    line in the stream (§2.4) is one too. A batch shorter than `limit` ends a listing (the spec
    bounds `limit` to 1–2000, and the server sends that many when it has them).

    Threads are read through their traces, not listed: the thread stream's cursor repeats its
    first page (§10) and `GET /traces/threads` has page numbers only, under which a thread updated
    mid-read shifted the pages (one thread skipped, another read twice). A trace with a
    `thread_id` brings its whole thread once per pass (its traces by the stream filtered on
    `thread_id`, its own data — scores, tags, status — from `POST /traces/threads/retrieve`; a
    thread Opik has not created yet, §3.2, comes without them and with a warning). A trace of a
    thread read earlier in the pass that the thread read did not return comes on its own. Spans
    are read per trace with `GET /spans` page/size (the span stream's rate limit is far lower,
    §11), and a span count that changes during that read is reported in a warning.

    **Start axis** (`axis="started"`, what `migrate` copies): traces started in the window, first
    those in threads (each thread with its traces started in the window), then the others.
    Cursor `{"phase": "threads" | "traces", "after": <last id>}`, then `{"done": true}`. A
    page-number cursor of an earlier version restarts its phase.

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
    ) -> None:
        self.api = api
        self.project = project
        self.mappings = mappings
        self.page_size = page_size
        self.rescan = rescan
        self._now = now or (lambda: datetime.now(UTC))
        self.label = f"opik ({api.name} project {project!r})"

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
        body = response.json()
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
            if _last_page(body, read, _LIST_SIZE):
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
        for line in response.text.splitlines():
            if not line.strip():
                continue
            try:
                item = json.loads(line)
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

    async def _trace(
        self, raw: dict[str, Any], warnings: list[str]
    ) -> tuple[Trace | None, Rejected | None]:
        spans = [
            s
            async for s in self._all("v1/private/spans", [], warnings, trace_id=str(raw.get("id")))
        ]
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
        phases = ("threads", "traces")
        phase, after = resume.get("phase", "threads"), _position(resume)
        if phase not in phases or (after is None and "page" in resume):
            notes.append(_PAGE_CURSOR)
            phase = phase if phase in phases else "threads"
        window_filters = self._window_filters(window)
        state = _Pass()
        for name in phases[phases.index(phase) :]:
            operator = "is_not_empty" if name == "threads" else "is_empty"
            filters = [{"field": "thread_id", "operator": operator, "value": ""}, *window_filters]
            async for batch, position in self._keyset(
                _TRACES_STREAM, filters, after, self.page_size
            ):
                page = Page(cursor={"phase": name, "after": position}, warnings=notes)
                notes = []
                await self._units(batch, page, state, window_filters)
                yield page
            after = None

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
        state = _Pass(delivered=set())

        def cursor(name: str, position: str | None) -> dict[str, Any]:
            return {"axis": "updated", "phase": name, "after": position, "until": to_iso(until)}

        for name in phases[phases.index(phase) :]:
            if name == "changed":
                async for batch, position in self._keyset(
                    _TRACES_STREAM, changed, after, self.page_size
                ):
                    page = Page(cursor=cursor(name, position), warnings=notes)
                    notes = []
                    await self._units(batch, page, state, [])
                    yield page
            elif name == "spans" and since is not None:  # without, "changed" read it all
                async for batch, position in self._keyset(
                    _SPANS_STREAM, changed, after, _STREAM_LIMIT, truncate=True
                ):
                    page = Page(cursor=cursor(name, position), warnings=notes)
                    notes = []
                    for trace_id in dict.fromkeys(str(s.get("trace_id")).lower() for s in batch):
                        await self._by_id(trace_id, page, state)
                    yield page
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
                    yield page
            elif rescan is not None and since is not None and name == "thread_scores":
                async for page in self._thread_scores(since, until, rescan, state, notes):
                    page.cursor = cursor(name, None)
                    notes = []
                    yield page
            after = None

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
            done = _last_page(body, read, _LIST_SIZE)
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

    async def _units(
        self,
        batch: list[dict[str, Any]],
        page: Page,
        state: _Pass,
        member_filters: list[dict[str, str]],
    ) -> None:
        """Units of a stream answer: a trace outside threads alone, a thread whole (once per
        pass), a trace its thread read did not return on its own (keeping its thread id)."""
        for raw in batch:
            trace_id, thread_id = _id(raw), _thread_of(raw)
            if trace_id in state.pending:
                state.pending.discard(trace_id)  # delivered with its thread
            elif thread_id is not None and thread_id not in state.seen_threads:
                await self._thread(thread_id, page, state, member_filters, known=raw)
            else:
                await self._one(raw, page, state)

    async def _one(self, raw: dict[str, Any], page: Page, state: _Pass) -> None:
        trace, rejected = await self._trace(raw, page.warnings)
        if trace is not None:
            page.units.append(trace)
        if rejected is not None:
            page.rejected.append(rejected)
        if state.delivered is not None:
            state.delivered.add(_id(raw) or "")

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
        raw = response.json()
        if not isinstance(raw, dict):
            raise ServerError(f"Opik answered GET trace {trace_id} with no trace")
        thread = _thread_of(raw)
        if thread is not None and thread not in state.seen_threads:
            await self._thread(thread, page, state, [], known=raw)
        else:
            await self._one(raw, page, state)

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
        view = response.json()
        return view if isinstance(view, dict) else None

    async def _thread(
        self,
        thread_id: str,
        page: Page,
        state: _Pass,
        member_filters: list[dict[str, str]],
        *,
        known: dict[str, Any] | None = None,
        view: dict[str, Any] | None = None,
    ) -> None:
        """The thread as one unit: its traces that `member_filters` hold (all of them on the
        update axis), with `known` (a trace already read) if the member read missed it."""
        state.seen_threads.add(thread_id)
        filters = [{"field": "thread_id", "operator": "=", "value": thread_id}, *member_filters]
        raws: list[dict[str, Any]] = []
        async for batch, _ in self._keyset(_TRACES_STREAM, filters, None, _STREAM_LIMIT):
            raws += batch
        ids = {_id(r) for r in raws}
        known_id = _id(known)
        if known is not None and known_id not in ids:
            raws.append(known)
        state.pending |= {i for i in ids if i is not None} - {known_id}
        if state.delivered is not None:
            state.delivered |= {i for i in (*ids, known_id) if i is not None}
        if view is None:
            view = await self._retrieve(thread_id)
            if view is None:
                page.warnings.append(
                    f"Opik has no thread record for {thread_id!r} yet (threads appear "
                    "asynchronously): its traces are read without the thread's scores, tags "
                    "and status"
                )
        traces: list[Trace] = []
        for raw in raws:
            trace, rejected = await self._trace(raw, page.warnings)
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
