"""`opik` as a sink: the Opik REST API's batch upserts (`OpikApiSink`, its batching).

Contract (DESIGN.md invariant 1, `reference/opik-api.md` §2–§4, §9): only the batch upsert
endpoints: traces first, then spans (then span scores), trace scores and thread data (close, tags,
thread scores) side by side; ≤ 1000 items and a byte cap per request, gzip bodies, absent fields
omitted; every score carries the entity's `project_name`. A batch the server refuses with 400/422
is halved until the bad item is alone; that item is dead-lettered with the server's message and the
rest is written. A `too_old` refusal means the server enforces the UUID v7 time window (§3.1, §10):
in `source-time` mode chosen by the user that stops the run with the option to use; when the user
chose no mode, the sink switches to `write-time` (minted ids, kept in the state directory), sends
the batch again with them and says so in a warning. On Opik Cloud, which has the window on (§11),
`write-time` is the default (`_endpoint_specs.py`).

Requests in flight: the batches of one endpoint go `concurrency` at a time (`_inflight.in_order`).
The endpoints go in the order above where one depends on another: every trace batch is answered
before anything else is sent (a refused trace's spans and scores are not sent), span scores after
the span batches; the spans, the trace scores and the thread data go side by side (with
`concurrency` 1, one request at a time, as a sequential write). Results are those of a sequential
write: each batch keeps its own outcome (written, refused, the halving of a refused batch, in the
order of the batches), and a batch that fails does not stop the others (their acknowledgements
reach the id map) before its failure is raised. With a pacer on the API (`_pacing.Pacer`: Opik
Cloud's event budget, `--max-events-per-minute`) each batch costs its items as events, and batches
are no larger than the pacer's `batch_cap`. The sink's first batch goes alone: a refused key or id
window then costs one request, not `concurrency`.

A write-time id map that is new while the target project already holds copies from the same
source (their `metadata.tracebridge.source` names it; one filtered trace list answers) would
mint new ids for records already there: the run stops (exit 2) unless `force` is set.

We speak the REST API over our own `_http.Api` rather than the `opik` SDK: the SDK has no
batch-halving, no dead letters, no id-window handling, and would pull its dependencies into a
CLI that needs only httpx. Split out of `api.py` (which re-exports `OpikApiSink`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .._decoding import describe_validation_error
from .._errors import ServerError, UsageError
from .._http import Api, decode_json, encode_json, error_message
from .._inflight import in_order
from .._interfaces import Counts, Rejected, Unit, WriteResult
from .._mapping import Mappings
from .._models import Thread, Trace
from .._stash import STASH_KEY
from .convert import (
    SCORES_IN_METADATA,
    thread_data_to_opik,
    trace_to_opik,
)
from .ids import MintedIds, OpikIds, SourceTimeIds

__all__ = ["CONCURRENCY", "MAX_BYTES", "MAX_ITEMS", "OpikApiSink"]

_TRACE_FIELDS = frozenset(
    "id project_name name start_time end_time input output metadata tags error_info "
    "last_updated_at ttft thread_id source".split()
)
_SPAN_FIELDS = frozenset(
    "id project_name trace_id parent_span_id name type start_time end_time input output metadata "
    "model provider tags usage error_info last_updated_at total_estimated_cost "
    "total_estimated_cost_version ttft source".split()
)
_SCORE_FIELDS = frozenset({"name", "category_name", "value", "reason", "source"})
_ALREADY_WRITTEN = (
    "already written by an earlier run; the server refuses updates of ids older than its window"
)
MAX_ITEMS = 1000
MAX_BYTES = 10_000_000  # before gzip; well under every proxy limit the reference lists
CONCURRENCY = 4  # batches in flight per endpoint


def _only(record: dict[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k in fields and v is not None}


@dataclass
class _Item:
    """One item of a batch request and the record it belongs to."""

    body: dict[str, Any]
    owner: str  # "trace <source id>" — what is dead-lettered if the item is refused
    kind: str
    contains: Counts | None = None
    derived: bool = False  # an id tracebridge gave (not an Opik-born record's own)
    encoded: bytes = b""  # `body` as sent (`encode_json`), set when the item is batched


class _WindowRefused(Exception):
    """The server refused ids tracebridge derived from source start times (`too_old`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Batch:
    """Everything one `write` sends, by endpoint."""

    traces: list[_Item] = field(default_factory=list)
    spans: list[_Item] = field(default_factory=list)
    trace_scores: list[_Item] = field(default_factory=list)
    span_scores: list[_Item] = field(default_factory=list)
    threads: list[dict[str, Any]] = field(default_factory=list)


class OpikApiSink:
    """Writes canonical records to one Opik project through the batch upsert endpoints."""

    #: The pages it writes best: a file source's pages grow to this many spans (two full span
    #: batches in flight), since every page's write costs a few round trips.
    page_spans = 2 * MAX_ITEMS

    def __init__(
        self,
        api: Api,
        *,
        project: str,
        mappings: Mappings,
        ids: OpikIds | None = None,
        switch_to: Callable[[], MintedIds] | None = None,
        force: bool = False,
        notice: str | None = None,
        max_items: int = MAX_ITEMS,
        max_bytes: int = MAX_BYTES,
        concurrency: int = CONCURRENCY,
    ) -> None:
        """`switch_to` opens the write-time id map to switch to at the first `too_old` refusal
        (given when the user chose no id mode); `force` turns the new-map check's stop into a
        warning; `notice` is a warning the first write reports (how the id mode was chosen);
        `concurrency` is how many batches of one endpoint are in flight at once."""
        self.api = api
        self.project = project
        self.mappings = mappings
        self.ids = ids or SourceTimeIds()
        self.switch_to = switch_to
        self.force = force
        self.notice = notice
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.concurrency = concurrency
        self._answered = False  # a batch was answered: the next ones may go together
        self.label = f"opik ({api.name} project {project!r})"
        self._checked: set[tuple[str, str]] = set()  # sources the new-map check looked up
        self._switched = False
        self._accepted: set[str] = set()  # ids of this write the server took (before a switch)

    def _collect(self, units: list[Unit], result: WriteResult) -> _Batch:
        batch = _Batch()
        for unit in units:
            for trace in unit.traces if isinstance(unit, Thread) else [unit]:
                self._add_trace(trace, batch, result)
            if isinstance(unit, Thread):
                result.written.threads += 1
                data = thread_data_to_opik(unit, self.mappings)
                if data is not None:
                    batch.threads.append(data)
        return batch

    def _add_trace(self, trace: Trace, batch: _Batch, result: WriteResult) -> None:
        owner = f"trace {trace.id}"
        try:
            record = trace_to_opik(trace, mappings=self.mappings, ids=self.ids)
        except (ValidationError, ValueError) as exc:
            result.rejected.append(
                Rejected(
                    "trace", owner, f"cannot map: {_mapping_problem(exc)}", None, Counts.of(trace)
                )
            )
            return
        result.warnings += record.warnings
        project = {"project_name": self.project}
        scores = [
            _Item({"id": record.trace["id"], **project, **_only(s, _SCORE_FIELDS)}, owner, "score")
            for s in record.trace.get("feedback_scores", [])
        ]
        for span in record.spans:
            scores += [
                _Item({"id": span["id"], **project, **_only(s, _SCORE_FIELDS)}, owner, "score")
                for s in span.get("feedback_scores", [])
            ]
        n_trace_scores = len(record.trace.get("feedback_scores", []))
        batch.trace_scores += scores[:n_trace_scores]
        batch.span_scores += scores[n_trace_scores:]
        contains = Counts(traces=1, spans=len(record.spans), scores=len(scores))
        derived = trace.source.platform != "opik"
        batch.traces.append(
            _Item(
                {**_only(record.trace, _TRACE_FIELDS), **project},
                owner,
                "trace",
                contains,
                derived,
            )
        )
        batch.spans += [
            _Item({**_only(s, _SPAN_FIELDS), **project}, owner, "span", None, derived)
            for s in record.spans
        ]
        result.skip(Counts.of(trace).scores - len(scores), "scores", SCORES_IN_METADATA)

    async def write(self, units: list[Unit], *, dry_run: bool = False) -> WriteResult:
        result = WriteResult()
        if self.notice is not None:
            result.warnings.append(self.notice)
            self.notice = None
        await self._check_id_map(units, result)
        before = list(result.warnings)
        self._accepted = set()
        try:
            return await self._write(units, result, dry_run=dry_run)
        except _WindowRefused as refused:
            warning = self._switch(units, refused.reason)
        # The server enforces the UUID v7 window: the whole batch again, with minted ids (what
        # it already took keeps its ids: `_switch` adopted them).
        result = WriteResult(warnings=[*before, warning])
        await self._check_id_map(units, result)
        return await self._write(units, result, dry_run=dry_run)

    def _switch(self, units: list[Unit], reason: str) -> str:
        """Switch to write-time ids; returns the warning that says so."""
        assert self.switch_to is not None
        minted = self.switch_to()
        derived = SourceTimeIds()
        for unit in units:
            for trace in unit.traces if isinstance(unit, Thread) else [unit]:
                if trace.source.platform == "opik":
                    continue
                if (trace_id := derived.trace_id(trace)) in self._accepted:
                    minted.adopt(trace, trace_id)
                for span in trace.spans:
                    if (span_id := derived.span_id(trace, span)) in self._accepted:
                        minted.adopt(trace, span_id, span)
        minted.commit()
        self.ids, self.switch_to, self._switched = minted, None, True
        return (
            f"Opik refused ids derived from source start times ({reason}): this server enforces "
            "the UUID v7 ingestion window, so this run switched to --opik-ids write-time: ids are "
            f"minted now and kept in {minted.path}, and later runs to this project use that map "
            "(keep the state directory). Pass --opik-ids to choose the mode yourself."
        )

    async def _check_id_map(self, units: list[Unit], result: WriteResult) -> None:
        """Stop (exit 2) when a new write-time id map meets a project that already holds
        copies from the same source: minting again would duplicate them. One lookup per source
        project the batch holds (a run reads one), only while the map is the new one."""
        ids = self.ids
        if not isinstance(ids, MintedIds) or not ids.started_empty:
            return
        traces = (t for u in units for t in (u.traces if isinstance(u, Thread) else [u]))
        sources = dict.fromkeys(
            (t.source.platform, t.source.project) for t in traces if t.source.platform != "opik"
        )
        for platform, project in sources:
            if (platform, project) in self._checked:
                continue
            self._checked.add((platform, project))
            held = await self._copies_held(platform, project)
            known = ids.known_traces(platform, project)
            if held > known:
                self._found_copies(ids, platform, project, held, known, result)

    def _found_copies(
        self,
        ids: MintedIds,
        platform: str,
        project: str,
        held: int,
        known: int,
        result: WriteResult,
    ) -> None:
        what = (
            f"Opik project {self.project!r} already holds {held} traces copied from {platform} "
            f"project {project!r} (their metadata names it)"
        )
        where = f"the write-time id map {ids.path}"
        if self._switched:
            where += " (this run switched to it when Opik refused source-time ids as too_old)"
        knows = f"knows only {known} of them" if known else "is new and knows none of them"
        if self.force:
            result.warnings.append(
                f"--force: {what}, and {where} {knows}: those written again get new ids, "
                "as duplicates"
            )
            return
        raise UsageError(
            f"{what}, but {where} {knows}: writing them again with ids minted now would "
            "duplicate them. If an earlier run's state directory holds the map, rerun with it "
            "(--state-dir); to copy only newer traces, use --since; to write anyway, pass --force"
        )

    async def _copies_held(self, platform: str, project: str) -> int:
        """How many traces of the target project name `platform`/`project` as their source
        (one `GET /traces` filtered on `metadata.tracebridge.source`, reference §2.7)."""
        filters = [
            {"field": "metadata", "key": f"{STASH_KEY}.source.{key}", "operator": "=", "value": v}
            for key, v in (("platform", platform), ("project", project))
        ]
        params = {
            "project_name": self.project,
            "page": "1",
            "size": "1",
            "truncate": "true",
            "filters": json.dumps(filters),
        }
        response = await self.api.send("GET", "v1/private/traces", params=params)
        if response.status_code == 404:
            return 0  # no such project yet: it holds nothing
        if not response.is_success:
            raise ServerError(
                f"Opik answered {response.status_code} looking for traces already copied into "
                f"project {self.project!r}: {error_message(response)}"
            )
        body = decode_json(response)
        total = body.get("total") if isinstance(body, dict) else None
        if isinstance(total, int) and not isinstance(total, bool):
            return total
        content = body.get("content") if isinstance(body, dict) else None
        return len(content) if isinstance(content, list) else 0

    async def _write(self, units: list[Unit], result: WriteResult, *, dry_run: bool) -> WriteResult:
        batch = self._collect(units, result)
        if dry_run:
            if isinstance(self.ids, MintedIds):
                self.ids.rollback()  # nothing is sent: the map keeps no id for it
            for item in batch.traces:
                result.plan.append(f"{item.owner} -> Opik trace {item.body['id']}")
            result.written.add(
                Counts(
                    traces=len(batch.traces),
                    spans=len(batch.spans),
                    scores=len(batch.trace_scores) + len(batch.span_scores),
                )
            )
            return result
        if isinstance(self.ids, MintedIds):
            self.ids.commit()  # the ids exist before anything that uses them is sent
        refused: set[str] = set()
        result.written.traces += await self._send(
            "POST", "v1/private/traces/batch", "traces", batch.traces, result, refused
        )
        # What needs only the traces goes together: the spans (then their scores), the trace
        # scores, the thread data. Each keeps a result of its own, merged in the order of a
        # sequential write. Only a refused trace filters what follows (`refused`): it is final
        # once the trace batches were answered.
        spans, span_scores, trace_scores, threads = (WriteResult() for _ in range(4))

        async def spans_then_their_scores() -> None:
            live = [i for i in batch.spans if i.owner not in refused]
            spans.written.spans += await self._send(
                "POST", "v1/private/spans/batch", "spans", live, spans, refused
            )
            live = [i for i in batch.span_scores if i.owner not in refused]
            span_scores.written.scores += await self._send(
                "PUT", "v1/private/spans/feedback-scores", "scores", live, span_scores, refused
            )

        async def scores_of_traces() -> None:
            live = [i for i in batch.trace_scores if i.owner not in refused]
            trace_scores.written.scores += await self._send(
                "PUT", "v1/private/traces/feedback-scores", "scores", live, trace_scores, refused
            )

        async def thread_data() -> None:
            if batch.threads:
                threads.written.scores += await self._write_threads(batch.threads, threads)

        side_by_side = 3 if self.concurrency > 1 else 1  # 1: one request at a time
        await in_order([spans_then_their_scores, scores_of_traces, thread_data], side_by_side)
        for part in (spans, trace_scores, span_scores, threads):
            result.merge(part)
        return result

    def _chunks(self, key: str, items: list[_Item]) -> Iterator[list[_Item]]:
        """`items` in chunks of at most `max_items` (or the pacer's cap) whose request body,
        as sent (`{"key":[item,item]}`, before gzip), holds at most `max_bytes`; an item
        larger than that goes alone. Each item is encoded here, once, and sent as encoded."""
        chunk: list[_Item] = []
        empty = len(_envelope(key, [])) - 1  # the first item has no comma before it
        size = empty
        cap = self.api.pacer.batch_cap() if self.api.pacer is not None else None
        max_items = min(self.max_items, cap) if cap is not None else self.max_items
        for item in items:
            if not item.encoded:
                item.encoded = encode_json(item.body)
            item_size = len(item.encoded) + 1  # and its comma
            if chunk and (len(chunk) >= max_items or size + item_size > self.max_bytes):
                yield chunk
                chunk, size = [], empty
            chunk.append(item)
            size += item_size
        if chunk:
            yield chunk

    async def _send(
        self,
        method: str,
        path: str,
        key: str,
        items: list[_Item],
        result: WriteResult,
        refused: set[str],
    ) -> int:
        """Send `items` in chunks, `concurrency` at a time; return how many the server accepted.

        Each chunk notes what it refused in a result of its own, merged into `result` in the
        order of the chunks, as a sequential loop would have."""
        chunks = list(self._chunks(key, items))
        own = [WriteResult() for _ in chunks]

        def call(chunk: list[_Item], mine: WriteResult) -> Callable[[], Awaitable[int]]:
            return lambda: self._send_chunk(method, path, key, chunk, mine, refused)

        calls = [call(c, r) for c, r in zip(chunks, own, strict=True)]
        counts = await in_order(calls, self.concurrency, first_alone=not self._answered)
        self._answered = self._answered or bool(calls)
        for mine in own:
            result.merge(mine)
        return sum(counts)

    async def _send_chunk(
        self,
        method: str,
        path: str,
        key: str,
        chunk: list[_Item],
        result: WriteResult,
        refused: set[str],
    ) -> int:
        response = await self.api.send(
            method,
            path,
            json_bytes=_envelope(key, [i.encoded for i in chunk]),
            compress=True,
            events=len(chunk),
        )
        if response.is_success:
            if isinstance(self.ids, MintedIds) and key in ("traces", "spans"):
                self.ids.acknowledge([i.body["id"] for i in chunk])
            elif self.switch_to is not None and key in ("traces", "spans"):
                self._accepted.update(i.body["id"] for i in chunk)
            return len(chunk)
        if response.status_code not in (400, 413, 422):
            raise ServerError(
                f"Opik answered {response.status_code} to {method} {path}: "
                f"{error_message(response)}"
            )
        message = error_message(response)
        if "too_old" in message or "too_far_future" in message:
            if self.switch_to is not None and any(i.derived for i in chunk):
                reason = "too_old" if "too_old" in message else "too_far_future"
                raise _WindowRefused(reason)
            if not any(i.derived for i in chunk):
                raise UsageError(
                    f"Opik refused {method} {path}: {message}. These records were born in Opik "
                    "and keep their own ids, which this server's UUID v7 ingestion window no "
                    "longer admits (no --opik-ids mode changes an Opik-born id): load them "
                    "into a server without the window, or with `opik import` (new ids)"
                )
            if not isinstance(self.ids, MintedIds):
                raise UsageError(
                    f"Opik refused {method} {path}: {message}. This server enforces the UUID v7 "
                    "time window, so ids derived from old start times are refused: rerun with "
                    '--opik-ids write-time (or ids = "write-time" under [opik] in the config file)'
                )
            if len(chunk) == 1 and self.ids.was_acknowledged(chunk[0].body["id"]):
                # Written by an earlier run; the server no longer takes updates of this id.
                result.skip(1, f"{chunk[0].kind}s", _ALREADY_WRITTEN)
                return 0
        if len(chunk) > 1:
            half = len(chunk) // 2
            first = await self._send_chunk(method, path, key, chunk[:half], result, refused)
            return first + await self._send_chunk(method, path, key, chunk[half:], result, refused)
        item = chunk[0]
        where = item.owner
        if item.kind != "trace":
            where += f": {item.kind} {item.body.get('id', item.body.get('name'))}"
        reason = f"Opik refused it ({response.status_code}): {message}"
        result.rejected.append(Rejected(item.kind, where, reason, item.body, item.contains))
        if item.kind == "trace":
            refused.add(item.owner)
        return 0

    async def _write_threads(self, threads: list[dict[str, Any]], result: WriteResult) -> int:
        """Close the threads, set their tags, then write thread scores (safe on every version)."""
        ids = [t["thread_id"] for t in threads]
        for start in range(0, len(ids), MAX_ITEMS):
            response = await self.api.send(
                "PUT",
                "v1/private/traces/threads/close",
                json_body={
                    "project_name": self.project,
                    "thread_ids": ids[start : start + MAX_ITEMS],
                },
            )
            if not response.is_success and response.status_code != 404:
                raise ServerError(
                    f"Opik answered {response.status_code} closing threads: "
                    f"{error_message(response)}"
                )
        own = [WriteResult() for _ in threads]

        def call(thread: dict[str, Any], mine: WriteResult) -> Callable[[], Awaitable[None]]:
            return lambda: self._thread_state(thread, mine)

        await in_order([call(t, r) for t, r in zip(threads, own, strict=True)], self.concurrency)
        for mine in own:
            result.merge(mine)
        scores: list[_Item] = []
        for thread in threads:
            owner = f"thread {thread['thread_id']}"
            scores += [
                _Item(
                    {
                        "thread_id": thread["thread_id"],
                        "project_name": self.project,
                        **_only(s, _SCORE_FIELDS),
                    },
                    owner,
                    "score",
                )
                for s in thread.get("feedback_scores", [])
            ]
        return await self._send(
            "PUT", "v1/private/traces/threads/feedback-scores", "scores", scores, result, set()
        )

    async def _thread_state(self, thread: dict[str, Any], result: WriteResult) -> None:
        """A closed thread's tags, and its reopening when it is active."""
        if thread.get("tags"):
            await self._tag_thread(thread, f"thread {thread['thread_id']}", result)
        if thread.get("status") == "active":
            await self.api.send(
                "PUT",
                "v1/private/traces/threads/open",
                json_body={"project_name": self.project, "thread_id": thread["thread_id"]},
            )

    async def _tag_thread(self, thread: dict[str, Any], owner: str, result: WriteResult) -> None:
        response = await self.api.send(
            "POST",
            "v1/private/traces/threads/retrieve",
            json_body={"project_name": self.project, "thread_id": thread["thread_id"]},
        )
        if not response.is_success:
            result.rejected.append(
                Rejected(
                    "thread",
                    owner,
                    f"cannot tag the thread: Opik answered {response.status_code} "
                    f"({error_message(response)})",
                    thread,
                )
            )
            return
        model_id = decode_json(response).get("thread_model_id")
        response = await self.api.send(
            "PATCH", f"v1/private/traces/threads/{model_id}", json_body={"tags": thread["tags"]}
        )
        if not response.is_success:
            result.rejected.append(
                Rejected(
                    "thread",
                    owner,
                    f"Opik refused the thread's tags ({response.status_code}): "
                    f"{error_message(response)}",
                    thread,
                )
            )

    async def aclose(self) -> None:
        if isinstance(self.ids, MintedIds):
            self.ids.close()
        await self.api.aclose()


def _envelope(key: str, encoded: list[bytes]) -> bytes:
    """The body of a batch request: `{"key":[...]}` around items already encoded."""
    return b'{"%s":[%s]}' % (key.encode(), b",".join(encoded))


def _mapping_problem(exc: Exception) -> str:
    """Why a trace cannot be mapped: pydantic's errors in the package's one format."""
    return describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
