"""A stateful in-memory fake of the LangWatch REST API, served through respx.

Section numbers (§) refer to /work/shared/reference/langwatch-api.md, the source of truth.
Usage::

    fake = LangWatchFake()
    async with httpx.AsyncClient(transport=fake.transport, base_url=fake.base_url) as client:
        await client.post("/api/collector", json={...}, headers={"X-Auth-Token": fake.api_key})

`with fake.router:` also patches httpx globally. A request to another host raises respx's
AllMockedAssertionError; an unknown path on this host answers 404.

State lives in `fake.traces` (trace_id -> trace in the READ shape of §4, with "spans" and
"evaluations"); reads render from it, the collector folds writes into it.

The change axis (§3.1 `dateField: "updated"`, §3.6, §5.1) as modelled:

* a trace's `timestamps.updated_at` moves when a collector write changes it (new or changed spans,
  metadata) or a metadata PATCH (§3.5) changes its metadata; an identical re-send does not move it;
* `span_dedupe_ms` (opt-in, e.g. 3_600_000): §5.1's dedupe per (trace_id, span_id), "kept 1 h after
  success" — any re-send of a span id within the window is answered 200 and changes nothing, even
  with new content; after it the span is re-recorded and `updated_at` moves, content unchanged or
  not. Off by default (then only identical re-sends are deduped), which older tests rely on;
* whether a later evaluation (collector `{trace_id, spans: [], evaluations}`) moves the trace's
  `updated_at` is UNVERIFIED in the reference (§5.1: attaching results is "UNVERIFIED in
  practice"; evaluations live in their own store, §3.4/§4): `evaluations_move_updated_at=False`
  is the pessimistic reading, under which only a re-read rule finds them; the default keeps the
  older behaviour (they move it);
* annotations (Postgres, §4) are not modelled: their edits do not move `updated_at` (#4736, §3.6);
* `ingest_delay_ms` (§5.1 "processing is asynchronous"): a collector write becomes readable that
  long after it was answered, yet carries the write's time as its `updated_at` (the pessimistic
  reading: a reader whose pass ended before it became readable needs a lookback to meet it);
* `after_request(n, callback)`: state changed *during* a read, e.g. between two pages of a scroll.

Cost: the fake is indexed so that a request costs what its answer holds, not what the project
holds (benchmarks time the bridge against it). Search bisects a sorted (date, trace_id) index per
date field; a thread read looks its traces up by thread id; answers are built from shallow copies
(the response body is encoded at once, so nothing aliases state after the request). The index
follows every change the fake makes, and a test's direct edit of a stored trace's
`timestamps` (e.g. `fake.traces[id]["timestamps"]["updated_at"] = ...`) or a trace added to or
removed from `fake.traces`; after editing a stored trace's `metadata["thread_id"]` by hand, call
`fake.reindex()`. Filtered searches (`filters`, `query`) still test every trace of the date window.
"""

from __future__ import annotations

import base64
import bisect
import copy
import hashlib
import json as jsonlib
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import respx

from tests.fakes import fastjson

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


_AFTER_ANY_ID = "\U0010ffff"  # sorts after every trace id: (date, _AFTER_ANY_ID) ends a date


class _Stamps(dict[str, Any]):
    """A stored trace's `timestamps`: a dict that calls `on_change` after every change, so the
    fake's date index follows the fake's own writes and a test's direct edits alike. Copies
    (`copy`, `deepcopy`, pickling) are plain dicts."""

    __slots__ = ("on_change",)

    def __init__(self, values: dict[str, Any], on_change: Callable[[], None]) -> None:
        super().__init__(values)
        self.on_change = on_change

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.on_change()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.on_change()

    def __ior__(self, other: Any) -> _Stamps:  # type: ignore[override,misc]
        super().update(other)
        self.on_change()
        return self

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self.on_change()

    def setdefault(self, key: str, default: Any = None) -> Any:
        value = super().setdefault(key, default)
        self.on_change()
        return value

    def pop(self, key: str, *default: Any) -> Any:
        value = super().pop(key, *default)
        self.on_change()
        return value

    def popitem(self) -> tuple[str, Any]:
        item = super().popitem()
        self.on_change()
        return item

    def clear(self) -> None:
        super().clear()
        self.on_change()

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return copy.deepcopy(dict(self), memo)

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))


class _Traces(dict[str, dict[str, Any]]):
    """`fake.traces`: a dict that calls `on_change(trace_id)` when a trace is put in or taken
    out (`on_change(None)`: anything may have changed), so the index follows a test's direct
    edits. Copies are plain dicts."""

    __slots__ = ("on_change",)

    def __init__(self, on_change: Callable[[str | None], None]) -> None:
        super().__init__()
        self.on_change = on_change

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        super().__setitem__(key, value)
        self.on_change(key)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.on_change(key)

    def pop(self, key: str, *default: Any) -> Any:
        value = super().pop(key, *default)
        self.on_change(key)
        return value

    def popitem(self) -> tuple[str, dict[str, Any]]:
        item = super().popitem()
        self.on_change(item[0])
        return item

    def setdefault(self, key: str, default: Any = None) -> Any:
        value = super().setdefault(key, default)
        self.on_change(key)
        return value

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self.on_change(None)

    def __ior__(self, other: Any) -> _Traces:  # type: ignore[override,misc]
        super().update(other)
        self.on_change(None)
        return self

    def clear(self) -> None:
        super().clear()
        self.on_change(None)

    def __copy__(self) -> dict[str, dict[str, Any]]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(dict(self), memo)

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


DAY_MS = 86_400_000
SPAN_MAX_PAST_MS = 31 * DAY_MS  # §5.1 age cutoff
MAX_BODY_BYTES = 10 * 1024 * 1024  # §5.1 bodyLimit
MAX_ITEMS_PER_REQUEST = 200  # §5.1 spans / evaluations per collector request
MAX_PAGE_SIZE = 1000  # §3.1
SPAN_TYPES = _words(
    "span llm chain tool agent rag guardrail evaluation workflow component module server client "
    "producer consumer task unknown"
)  # §4
IO_TYPES = _words("text chat_messages json raw list guardrail_result evaluation_result")  # §4
SPAN_KEYS = _words(
    "span_id parent_id trace_id name type input output error timestamps metrics params model "
    "vendor contexts"
)
SPAN_METRIC_KEYS = _words(
    "prompt_tokens completion_tokens reasoning_tokens cache_read_input_tokens "
    "cache_creation_input_tokens tokens_estimated cost"
)
TOKEN_KEYS = _words(
    "prompt_tokens completion_tokens reasoning_tokens cache_read_input_tokens "
    "cache_creation_input_tokens"
)
RESERVED_LIST_KEYS = ("labels", "prompt_ids", "prompt_version_ids")
FILTER_KEYS = _words(
    "topics.topics topics.subtopics metadata.user_id metadata.thread_id metadata.customer_id "
    "metadata.labels metadata.key metadata.value metadata.prompt_ids traces.origin traces.error "
    "traces.name spans.type spans.model evaluations.evaluator_id "
    "evaluations.evaluator_id.guardrails_only evaluations.evaluator_id.has_passed "
    "evaluations.evaluator_id.has_score evaluations.evaluator_id.has_label evaluations.passed "
    "evaluations.score evaluations.state evaluations.label events.event_type "
    "events.metrics.key events.metrics.value events.event_details.key "
    "annotations.hasAnnotation"
)  # §3.1 closed enum
MODELLED_FILTER_KEYS = _words(
    "metadata.thread_id metadata.user_id metadata.customer_id metadata.labels metadata.prompt_ids "
    "metadata.key metadata.value traces.name spans.type spans.model"
)
# §3.1 projection catalog; the column types are the fake's guess
SELECT_SCALARS = dict.fromkeys(_words("trace_id project_id input output"), "string")
SELECT_SCALARS |= dict.fromkeys(_words("started_at inserted_at updated_at"), "number")
SELECT_EVALUATION = dict.fromkeys(_words("name label details status evaluator_id type"), "string")
SELECT_EVALUATION |= {"score": "number", "passed": "boolean", "is_guardrail": "boolean"}
MISSING_TOKEN = (
    "Authentication token is required. Use X-Auth-Token header, Authorization: Bearer token, "
    "or Authorization: Basic base64(projectId:token)."
)


class HTTPError(Exception):
    """Raised by handlers and validators; turned into a JSON response by `_serve`."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.body = status, {"message": message, **extra}


def _stringify(value: Any) -> str:
    """How a ClickHouse `Map(String,String)` attribute comes back (§4): JSON-ish text."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # JS String(2.0) == "2"
    return jsonlib.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _is_ms(value: Any) -> bool:
    """13-digit epoch milliseconds (§5.1)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 1e12 <= value < 1e13


def _io_text(typed: Any, role: str) -> str | None:
    """Trace-level `{value}` text from a span's typed value (§4 derived input/output).

    text/raw values as-is; chat_messages -> content of the last message of `role` when it is a
    string (what the seed trace shows); anything else -> JSON text.
    """
    if not isinstance(typed, dict) or "value" not in typed:
        return None
    value = typed["value"]
    if typed.get("type") in ("text", "raw") and isinstance(value, str):
        return value
    if typed.get("type") == "chat_messages" and isinstance(value, list):
        for message in reversed(value):
            if isinstance(message, dict) and message.get("role") == role:
                if isinstance(message.get("content"), str):
                    return str(message["content"])
                break
    return _stringify(value)


def _check_ms(where: str, timestamps: dict[str, Any]) -> dict[str, Any]:
    """§5.1: every timestamp must be 13-digit epoch ms, else 400."""
    for name, value in timestamps.items():
        if value is not None and not _is_ms(value):
            message = "Timestamps should be in milliseconds not in seconds"
            raise HTTPError(400, f"{where}.timestamps.{name}: {message}")
    return timestamps


def _check_error(where: str, error: Any) -> Any:
    """§4: an error on write needs `message` and a `stacktrace` array."""
    ok = (
        isinstance(error, dict) and "message" in error and isinstance(error.get("stacktrace"), list)
    )
    if error is not None and not ok:
        raise HTTPError(400, f"{where}.error: message and stacktrace[] required")
    return error


def _without_ingest_times(span: dict[str, Any]) -> dict[str, Any]:
    """A stored span as the collector would have received it (for the dedup comparison)."""
    ts = {k: v for k, v in span["timestamps"].items() if k not in ("inserted_at", "updated_at")}
    return {**span, "timestamps": ts}


def _truncate(value: Any, limit: int) -> Any:
    """The 64 KB search preview (§6): every string leaf longer than `limit` bytes is cut."""
    if isinstance(value, str):
        raw = value.encode()
        return raw[:limit].decode(errors="ignore") if len(raw) > limit else value
    if isinstance(value, list):
        return [_truncate(v, limit) for v in value]
    if isinstance(value, dict):
        return {k: _truncate(v, limit) for k, v in value.items()}
    return value


def _preview(value: Any, limit: int) -> Any:
    """`_truncate`, skipped when the value's JSON text fits in `limit` (then no string in it
    can be longer: ASCII-escaped JSON is never shorter than a string's UTF-8 bytes)."""
    if value is None or len(jsonlib.dumps(value)) <= limit:
        return value
    return _truncate(value, limit)


class LangWatchFake:
    """Stateful LangWatch: search (§3.1), single trace (§3.3), thread (§3.4), metadata PATCH
    (§3.5), collector (§5.1) and the key's project (`GET /api/me/project`, OpenAPI document).
    Every request is appended to `requests`."""

    def __init__(
        self,
        *,
        base_url: str = "http://langwatch.test",
        api_key: str = "sk-lw-test",
        project_id: str = "project_test",
        now: Callable[[], int] | None = None,
        thread_cap: int = 1000,
        preview_bytes: int = 65536,
        thread_shape: str = "object",
        project_slug: str = "project-test",
        me_endpoint: bool = True,
        evaluations_move_updated_at: bool = True,
        span_dedupe_ms: int | None = None,
        ingest_delay_ms: int = 0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.project_id = project_id
        self.now: Callable[[], int] = now or (lambda: time.time_ns() // 1_000_000)
        self.thread_cap = thread_cap
        # §3.4 says `{"traces": [...]}`; the published doc page (seeds/langwatch-get-thread.txt)
        # shows a bare array. "array" answers as the doc page does.
        self.thread_shape = thread_shape
        # GET /api/me/project (OpenAPI `getApiMeProject`); `me_endpoint=False` is an older
        # server without it (404, as any unknown path).
        self.project_slug, self.me_endpoint = project_slug, me_endpoint
        self.preview_bytes = preview_bytes
        self.traces: dict[str, dict[str, Any]] = _Traces(self._traces_changed)
        self.requests: list[httpx.Request] = []
        self.plan_limit_reached = False
        self.unserializable: set[str] = set()
        self._collected: list[bytes] = []  # bodies of accepted collector posts
        self._pending_evaluations: dict[str, list[dict[str, Any]]] = {}
        self._faults: list[dict[str, Any]] = []
        self._writes_left: int | None = None
        self._write_fault_status = 503
        self.evaluations_move_updated_at = evaluations_move_updated_at
        self.span_dedupe_ms = span_dedupe_ms
        self.ingest_delay_ms = ingest_delay_ms
        self._span_recorded: dict[tuple[str, str], int] = {}  # (trace, span) -> last recorded
        self._in_flight: list[tuple[int, tuple[Any, ...]]] = []  # (readable at, _store args)
        self._hooks: list[dict[str, Any]] = []
        # The index (see the module docstring): trace id -> (started_at, updated_at, thread id)
        # as indexed; per date field a sorted list of (date, trace id); thread id -> trace ids.
        self._indexed: dict[str, tuple[Any, Any, Any]] = {}
        self._by_date: dict[str, list[tuple[Any, str]]] = {"started_at": [], "updated_at": []}
        self._by_thread: dict[str, set[str]] = {}
        self._stale: set[str] = set()
        self._rebuild = False
        self._watched = self.traces  # another dict put in `traces` is indexed anew

        self.router = respx.MockRouter(base_url=self.base_url, assert_all_called=False)
        # respx tries the routes in order: the busiest first (no two match one request).
        routes: list[tuple[str, str, Callable[..., httpx.Response]]] = [
            ("POST", r"^/api/collector$", self._collector),
            ("POST", r"^/api/traces/search$", self._search),
            ("GET", r"^/api/thread/(?P<thread_id>.+)$", self._get_thread),
            ("PATCH", r"^/api/traces/(?P<trace_id>.+)/metadata$", self._patch_metadata),
            ("GET", r"^/api/traces/(?P<trace_id>.+)$", self._get_trace),
            ("GET", r"^/api/me/project$", self._me_project),
        ]
        base = httpx.URL(self.base_url)
        #: Routes with a fixed path, answered by `transport` without respx's matching (a
        #: dict lookup instead of a regex per route); respx still serves every request when
        #: the router patches httpx (`with fake.router:`), and the others always.
        self._exact: dict[tuple[str, str, str, str], Callable[..., httpx.Response]] = {}
        for method, path, handler in routes:
            side_effect = self._serve(handler)
            self.router.route(method=method, path__regex=path).mock(side_effect=side_effect)
            if re.fullmatch(r"\^[\w/-]+\$", path):
                self._exact[(method, base.scheme, base.host, path[1:-1])] = side_effect
        self.router.route().mock(side_effect=self._serve(self._not_found))
        self.transport: httpx.MockTransport = httpx.MockTransport(self._dispatch)

    # ---- test controls -------------------------------------------------------------------------

    def add_trace(self, trace: dict[str, Any]) -> None:
        """Seed a trace given in the read shape (as GET /api/traces/{id} returns it)."""
        stored = copy.deepcopy(trace)
        stored.pop("platformUrl", None)
        stored.pop("ascii_tree", None)
        stored.setdefault("project_id", self.project_id)
        stored.setdefault("metadata", {})
        stored.setdefault("spans", [])
        stored.setdefault("evaluations", [])
        starts = [s["timestamps"]["started_at"] for s in stored["spans"]]
        ts = stored.setdefault("timestamps", {})
        ts.setdefault("started_at", min(starts) if starts else self.now())
        ts.setdefault("inserted_at", self.now())
        ts.setdefault("updated_at", ts["inserted_at"])
        self._keep(stored)

    def after_request(
        self,
        n: int,
        callback: Callable[[], None],
        *,
        path_contains: str = "",
        method: str | None = None,
    ) -> None:
        """Run `callback` right after the `n`-th request (counted from now) whose path contains
        `path_contains` (and whose method is `method`) has been answered, before its response is
        returned: a record changed mid-read (between two pages of a scroll)."""
        self._hooks.append(
            {"left": n, "callback": callback, "path": path_contains, "method": method}
        )

    def reindex(self) -> None:
        """Rebuild the search and thread index from `traces` (only needed after editing a
        stored trace's `metadata["thread_id"]` by hand; everything else is followed)."""
        self._indexed.clear()
        self._by_thread.clear()
        for dates in self._by_date.values():
            dates.clear()
        self._stale = set(self.traces)
        self._refresh()

    def settle(self) -> None:
        """Make every write still in flight (`ingest_delay_ms`) readable now."""
        for _, args in self._in_flight:
            self._store(*args)
        self._in_flight.clear()

    def fail_next(
        self, status: int, *, times: int = 1, json: Any = None, path_contains: str | None = None
    ) -> None:
        """The next `times` requests (whose path contains `path_contains`, if given) get `status`
        with body `json` before any handling: no state change."""
        body = json if json is not None else {"message": f"Injected fault ({status})"}
        self._faults.append({"status": status, "times": times, "json": body, "path": path_contains})

    def fail_after_writes(self, n: int, status: int = 503) -> None:
        """Let `n` more writes (collector posts, metadata PATCHes) through, then fail every
        further write with `status` until `clear_faults()`."""
        self._writes_left, self._write_fault_status = n, status

    def clear_faults(self) -> None:
        self._faults.clear()
        self._writes_left = None

    def collected_requests(self) -> list[dict[str, Any]]:
        """Parsed bodies of collector posts that were accepted (answered 200)."""
        return [fastjson.loads(content) for content in self._collected]

    # ---- plumbing ------------------------------------------------------------------------------

    def _dispatch(self, request: httpx.Request) -> httpx.Response:
        """`transport`'s handler: a fixed-path route by lookup, anything else through respx."""
        url = request.url
        side_effect = self._exact.get((request.method, url.scheme, url.host, url.path))
        return side_effect(request) if side_effect is not None else self.router.handler(request)

    def _serve(self, handler: Callable[..., httpx.Response]) -> Callable[..., httpx.Response]:
        def side_effect(request: httpx.Request, **kwargs: Any) -> httpx.Response:
            self.requests.append(request)
            self._ingest()
            fault = self._take_fault(request)
            if fault is not None:
                return fault
            try:
                response = handler(request, **kwargs)
            except HTTPError as error:
                response = httpx.Response(error.status, json=error.body)
            self._run_hooks(request)
            return response

        return side_effect

    def _keep(self, trace: dict[str, Any]) -> None:
        """Store `trace` (new, or replacing one); the index follows it."""
        self.traces[trace["trace_id"]] = trace
        self._stale.add(trace["trace_id"])

    def _traces_changed(self, trace_id: str | None) -> None:
        if trace_id is None:
            self._rebuild = True
        else:
            self._stale.add(trace_id)

    def _refresh(self) -> None:
        """Bring the index up to date: re-file the traces whose dates or thread changed since
        (rebuilt whole after a bulk change of `traces`, or when another dict was put there)."""
        if self._rebuild or self.traces is not self._watched:
            self._rebuild, self._watched = False, self.traces
            self._stale = set(self.traces)
            self._indexed.clear()
            self._by_thread.clear()
            for dates in self._by_date.values():
                dates.clear()
        for trace_id in self._stale:
            old = self._indexed.pop(trace_id, None)
            if old is not None:
                for field, date in zip(("started_at", "updated_at"), old[:2], strict=True):
                    if date is not None:
                        dates = self._by_date[field]
                        del dates[bisect.bisect_left(dates, (date, trace_id))]
                if old[2] is not None:
                    self._by_thread[old[2]].discard(trace_id)
            trace = dict.get(self.traces, trace_id)
            if trace is None:
                continue
            ts, thread = trace["timestamps"], trace["metadata"].get("thread_id")
            if not isinstance(ts, _Stamps):  # stored by the fake or by hand: follow its dates
                ts = trace["timestamps"] = _Stamps(ts, self._date_changed(trace_id))
            new = (ts.get("started_at"), ts.get("updated_at"), thread)
            for field, date in zip(("started_at", "updated_at"), new[:2], strict=True):
                if date is not None:
                    bisect.insort(self._by_date[field], (date, trace_id))
            if isinstance(thread, str):
                self._by_thread.setdefault(thread, set()).add(trace_id)
            self._indexed[trace_id] = new if isinstance(thread, str) else (*new[:2], None)
        self._stale = set()

    def _date_changed(self, trace_id: str) -> Callable[[], None]:
        def changed() -> None:
            self._stale.add(trace_id)

        return changed

    def _ingest(self) -> None:
        """Apply the writes whose processing delay has passed (§5.1: ingestion is asynchronous)."""
        if not self._in_flight:
            return
        now = self.now()
        due = [item for item in self._in_flight if item[0] <= now]
        self._in_flight = [item for item in self._in_flight if item[0] > now]
        for _, args in due:
            self._store(*args)

    def _run_hooks(self, request: httpx.Request) -> None:
        for hook in list(self._hooks):
            if hook["path"] not in request.url.path or hook["method"] not in (None, request.method):
                continue
            hook["left"] -= 1
            if hook["left"] <= 0:
                self._hooks.remove(hook)
                hook["callback"]()

    def _take_fault(self, request: httpx.Request) -> httpx.Response | None:
        for fault in self._faults:
            if fault["path"] is None or fault["path"] in request.url.path:
                fault["times"] -= 1
                if fault["times"] <= 0:
                    self._faults.remove(fault)
                return httpx.Response(fault["status"], json=fault["json"])
        is_write = request.method == "PATCH" or request.url.path == "/api/collector"
        if is_write and self._writes_left is not None:
            if self._writes_left <= 0:
                return httpx.Response(self._write_fault_status, json={"message": "Injected fault"})
            self._writes_left -= 1
        return None

    def _authenticate(self, request: httpx.Request, *, collector: bool = False) -> None:
        """§2: Basic base64(projectId:key) > Bearer key > X-Auth-Token; a malformed Basic or an
        empty Bearer falls through to X-Auth-Token."""
        token: str | None = None
        scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() == "basic":
            try:
                _, sep, token = base64.b64decode(value.strip()).decode().partition(":")
                token = token if sep else None
            except ValueError:
                token = None
        elif scheme.lower() == "bearer" and value.strip():
            token = value.strip()
        if token is None:
            token = request.headers.get("x-auth-token") or None
        if token == self.api_key:
            return
        if collector:
            raise HTTPError(401, "Invalid credentials", error="Unauthorized")
        raise HTTPError(401, MISSING_TOKEN if token is None else "Invalid auth token.")

    @staticmethod
    def _json_body(request: httpx.Request, status: int = 400) -> dict[str, Any]:
        try:
            body = fastjson.loads(request.content or b"null")
        except ValueError as error:
            raise HTTPError(status, f"Invalid JSON body: {error}") from error
        if not isinstance(body, dict):
            raise HTTPError(status, "Request body must be a JSON object")
        return body

    def _find(self, trace_id: str) -> dict[str, Any]:
        """§3.3: exact id first, else a unique >=8-char hex prefix (ambiguous -> 409)."""
        if trace_id in self.traces:
            return self.traces[trace_id]
        if 8 <= len(trace_id) < 32 and re.fullmatch(r"[0-9a-fA-F]+", trace_id):
            hits = sorted(t for t in self.traces if t.startswith(trace_id))
            if len(hits) == 1:
                return self.traces[hits[0]]
            if hits:
                raise HTTPError(409, "Ambiguous trace ID prefix.", candidateTraceIds=hits)
        raise HTTPError(404, "Trace not found.")

    def _render(self, trace: dict[str, Any], *, spans: bool, preview: bool) -> dict[str, Any]:
        """The answer's copy of a stored trace. Shallow: callers only set top-level keys, and
        the response encodes it at once (`httpx.Response(json=...)`)."""
        out = dict(trace)
        if not spans:
            out["spans"] = []
        elif preview:
            out["spans"] = [dict(s) for s in trace["spans"]]
        if preview:
            for holder in [out, *out["spans"]]:
                for key in ("input", "output"):
                    holder[key] = _preview(holder.get(key), self.preview_bytes)
        return out

    def _platform_url(self, trace_id: str) -> str:
        return f"{self.base_url}/{self.project_id}/messages/{trace_id}"

    # ---- routes --------------------------------------------------------------------------------

    def _not_found(self, request: httpx.Request) -> httpx.Response:
        raise HTTPError(404, f"Not found: {request.method} {request.url.path}")

    def _get_trace(self, request: httpx.Request, trace_id: str) -> httpx.Response:
        """§3.3 GET /api/traces/{traceId}: full IO, all spans, evaluations, ascii_tree."""
        self._authenticate(request)
        if request.url.params.get("format", "json") != "json":
            raise HTTPError(400, "The fake only serves format=json", error="Bad Request")
        trace = self._render(self._find(trace_id), spans=True, preview=False)
        trace["ascii_tree"] = "\n".join(
            f"{s.get('type', 'span')}: {s.get('name') or s['span_id']}" for s in trace["spans"]
        )
        trace["platformUrl"] = self._platform_url(trace["trace_id"])
        return fastjson.response(200, trace)

    def _me_project(self, request: httpx.Request) -> httpx.Response:
        """GET /api/me/project (specs/langwatch-openapiLangWatch.json, `getApiMeProject`): the
        project the calling key belongs to, `{id, name, slug, isPersonal}`."""
        if not self.me_endpoint:
            return self._not_found(request)
        self._authenticate(request)
        body = {
            "id": self.project_id,
            "name": self.project_slug.replace("-", " ").title(),
            "slug": self.project_slug,
            "isPersonal": False,
        }
        return fastjson.response(200, body)

    def _get_thread(self, request: httpx.Request, thread_id: str) -> httpx.Response:
        """§3.4 GET /api/thread/{id}: traces of the thread ascending by started_at, capped at
        `thread_cap`, spans and full IO, no evaluations, no pagination, no date window.

        `{"traces": [...]}` (§3.4), or a bare array with `thread_shape="array"` (the doc page)."""
        self._authenticate(request)
        self._refresh()
        hits = [self.traces[i] for i in self._by_thread.get(thread_id, ())]
        hits.sort(key=lambda t: (t["timestamps"]["started_at"], t["trace_id"]))
        traces = [self._render(t, spans=True, preview=False) for t in hits[: self.thread_cap]]
        for trace in traces:
            trace["evaluations"] = []
        if self.thread_shape == "array":
            return fastjson.response(200, traces)
        return fastjson.response(200, {"traces": traces})

    def _search(self, request: httpx.Request) -> httpx.Response:
        """§3.1 POST /api/traces/search: keyset paging over (date, trace_id)."""
        self._authenticate(request)
        body = self._json_body(request, 422)
        q = _SearchQuery(body)
        date_key = "updated_at" if q.date_field == "updated" else "started_at"
        cursor = q.cursor()
        scroll_start = cursor.get("scrollStart") if cursor else None
        if q.date_field == "updated" and scroll_start is None:
            scroll_start = self.now()  # PR #6812: page 1 pins the snapshot
        upper = q.end if scroll_start is None else min(q.end, scroll_start)

        def key(t: dict[str, Any]) -> tuple[int, str]:
            return (t["timestamps"][date_key], t["trace_id"])

        def hit(t: dict[str, Any]) -> bool:
            return q.matches(t) and q.query_matches(t)

        # Keys (date, trace_id) in the window, ascending: the asked ids, or a slice of the index.
        self._refresh()
        keys: list[tuple[Any, str]]
        if q.trace_ids is not None:
            asked = (self.traces.get(i) for i in set(q.trace_ids) if isinstance(i, str))
            keys = sorted(key(t) for t in asked if t is not None and q.start <= key(t)[0] <= upper)
            lo, hi = 0, len(keys)
        else:
            keys = self._by_date[date_key]
            lo = bisect.bisect_left(keys, (q.start,))
            hi = bisect.bisect_right(keys, (upper, _AFTER_ANY_ID))
        unfiltered = q.trace_ids is None and not q.filters and q.query is None
        total = max(0, hi - lo) if unfiltered else sum(hit(self.traces[k[1]]) for k in keys[lo:hi])
        start, stop = lo, hi  # the part after the cursor
        if cursor:
            last = (cursor["lastTimestamp"], cursor["lastTraceId"])
            if q.descending:
                stop = max(lo, min(hi, bisect.bisect_left(keys, last, lo, hi)))
            else:
                start = min(hi, max(lo, bisect.bisect_right(keys, last, lo, hi)))
        order = range(stop - 1, start - 1, -1) if q.descending else range(start, stop)
        page: list[dict[str, Any]] = []
        for i in order:
            if len(page) == q.page_size:
                break
            trace = self.traces[keys[i][1]]
            if unfiltered or hit(trace):
                page.append(trace)
        pagination: dict[str, Any] = {"totalHits": total}
        if len(page) == q.page_size:  # a scrollId only on full pages
            state = {
                "lastTimestamp": key(page[-1])[0],
                "lastTraceId": page[-1]["trace_id"],
                "pageSize": q.page_size,
                "sortDirection": "desc" if q.descending else "asc",
                "dateField": q.date_field,
            }
            if scroll_start is not None:
                state["scrollStart"] = scroll_start
            pagination["scrollId"] = base64.b64encode(jsonlib.dumps(state).encode()).decode()
        traces = []
        for t in page:
            if t["trace_id"] in self.unserializable:
                continue
            traces.append(q.project(self._render(t, spans=q.include_spans, preview=True)))
            if q.select is None:
                traces[-1]["platformUrl"] = self._platform_url(t["trace_id"])
        if skipped := len(page) - len(traces):
            pagination["skipped"] = skipped
        if q.date_field == "updated":
            pagination["updatedThrough"] = upper
        result: dict[str, Any] = {"traces": traces, "pagination": pagination}
        if q.select is not None:
            result["schema"] = {"from": "traces", "columns": q.columns}
        return fastjson.response(200, result)

    def _patch_metadata(self, request: httpx.Request, trace_id: str) -> httpx.Response:
        """§3.5 PATCH /api/traces/{traceId}/metadata: keys merge, labels replace."""
        self._authenticate(request)
        body = self._json_body(request)
        metadata = body.get("metadata")
        if not isinstance(metadata, dict):
            raise HTTPError(400, "metadata: Required", error="Bad Request")
        sizes = [len(_stringify(v).encode()) for v in metadata.values()]
        if any(size > 4096 for size in sizes) or sum(sizes) > 32768:
            raise HTTPError(400, "metadata too large (4 KB per value, 32 KB total)")
        trace = self._find(trace_id)
        if self._merge_metadata(trace, metadata):
            trace["timestamps"]["updated_at"] = self.now()
        return fastjson.response(200, {"traceId": trace["trace_id"]})

    def _collector(self, request: httpx.Request) -> httpx.Response:
        """§5.1 POST /api/collector. Validation happens before any state change."""
        self._authenticate(request, collector=True)
        if "application/json" not in request.headers.get("content-type", "").lower():
            raise HTTPError(400, "Content-Type must be application/json")
        if len(request.content) > MAX_BODY_BYTES:
            raise HTTPError(413, "Payload Too Large")
        body = self._json_body(request)
        if self.plan_limit_reached:
            raise HTTPError(402, "Plan limit reached", error="PlanLimitExceededError")
        spans = body.get("spans") or []
        evaluations = body.get("evaluations") or []
        if not isinstance(spans, list) or not isinstance(evaluations, list):
            raise HTTPError(400, "spans and evaluations must be arrays")
        if len(spans) > MAX_ITEMS_PER_REQUEST:
            raise HTTPError(429, "Too many spans, maximum of 200 per trace")
        if len(evaluations) > MAX_ITEMS_PER_REQUEST:
            raise HTTPError(429, "Too many evaluations, maximum of 200 per trace")
        metadata = body.get("metadata")
        if metadata is None:  # back-compat: top-level reserved keys move into metadata
            metadata = {
                k: body[k] for k in ("thread_id", "user_id", "customer_id", "labels") if k in body
            }
        if not isinstance(metadata, dict):
            raise HTTPError(400, "metadata must be an object")
        spans = [self._normalize_span(s, i) for i, s in enumerate(spans)]
        trace_ids = {s["trace_id"] for s in spans if s.get("trace_id") is not None}
        if body.get("trace_id") is not None:
            trace_ids.add(body["trace_id"])
        if len(trace_ids) != 1 or not isinstance(next(iter(trace_ids)), str):
            raise HTTPError(400, "All spans must share one trace_id (and a trace_id is required)")
        trace_id = trace_ids.pop()
        for span in spans:
            span["trace_id"] = trace_id
        evaluations = [
            self._normalize_evaluation(e, i, trace_id) for i, e in enumerate(evaluations)
        ]

        now = self.now()
        kept = [s for s in spans if s["timestamps"]["started_at"] >= now - SPAN_MAX_PAST_MS]
        if body.get("expected_output") is not None:
            metadata = {**metadata, "langwatch.expected_output": body["expected_output"]}
        if self.ingest_delay_ms > 0:
            self._in_flight.append(
                (now + self.ingest_delay_ms, (trace_id, kept, metadata, evaluations, now))
            )
        else:
            self._store(trace_id, kept, metadata, evaluations, now)
        self._collected.append(request.content)  # parsed again when asked: `body` is stored
        result: dict[str, Any] = {"message": "Trace received successfully."}
        if rejected := len(spans) - len(kept):
            result["partialSuccess"] = {
                "rejectedSpans": rejected,
                "rejectedEvaluations": 0,
                "errorMessage": f"{rejected} span(s) dropped: start time is more than 31 days "
                "in the past",
            }
        return fastjson.response(200, result)

    # ---- collector helpers ---------------------------------------------------------------------

    def _normalize_span(self, raw: Any, i: int) -> dict[str, Any]:
        """Collector span -> stored read shape (§4, §5.1 back-compat rules); 400 on bad input."""
        if not isinstance(raw, dict):
            raise HTTPError(400, f"spans[{i}] must be an object")
        raw = dict(raw)
        if "span_id" not in raw and "id" in raw:
            raw["span_id"] = raw.pop("id")
        if "outputs" in raw and raw.get("output") is None and raw["outputs"]:
            outs = raw["outputs"]
            raw["output"] = outs[0] if len(outs) == 1 else {"type": "list", "value": outs}
        if not isinstance(raw.get("span_id"), str):
            raise HTTPError(400, f"spans[{i}].span_id: Required")
        span: dict[str, Any] = {"parent_id": None, "name": None, "type": "span", "input": None}
        span |= {"output": None, "error": None, "metrics": {}, "params": {}}
        span |= {k: raw[k] for k in SPAN_KEYS if k in raw}  # the body is this request's own
        if span["type"] not in SPAN_TYPES:
            raise HTTPError(400, f"spans[{i}].type: invalid span type {span['type']!r}")
        for key in ("input", "output"):
            typed = span[key]
            if typed is not None and not (
                isinstance(typed, dict) and typed.get("type") in IO_TYPES
            ):
                raise HTTPError(400, f"spans[{i}].{key}: invalid typed value")
        ts = span.get("timestamps")
        if not isinstance(ts, dict) or "started_at" not in ts or "finished_at" not in ts:
            raise HTTPError(400, f"spans[{i}].timestamps: started_at and finished_at required")
        ts = {k: ts[k] for k in ("started_at", "finished_at", "first_token_at") if k in ts}
        span["timestamps"] = _check_ms(f"spans[{i}]", ts)
        if (err := _check_error(f"spans[{i}]", span["error"])) is not None:
            span["error"] = {"has_error": True, **{k: err[k] for k in ("message", "stacktrace")}}
        metrics = span["metrics"] or {}
        span["metrics"] = {k: v for k, v in metrics.items() if k in SPAN_METRIC_KEYS}
        span["params"] = {
            **(span["params"] or {}),
            **{k: v for k, v in metrics.items() if k not in SPAN_METRIC_KEYS},
        }
        for ctx in span.get("contexts") or []:
            if not isinstance(ctx, dict):
                raise HTTPError(400, f"spans[{i}].contexts: items must be objects")
            for key in ("document_id", "chunk_id"):
                if isinstance(ctx.get(key), int | float):
                    ctx[key] = str(ctx[key])
            if "content" in ctx and not isinstance(ctx["content"], str):
                ctx["content"] = _stringify(ctx["content"])
        span["project_id"] = self.project_id
        return span

    def _normalize_evaluation(self, raw: Any, i: int, trace_id: str) -> dict[str, Any]:
        """RESTEvaluation (§5.1) -> stored evaluation (§4); timestamps become ingestion time."""
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise HTTPError(400, f"evaluations[{i}].name: Required")
        _check_ms(f"evaluations[{i}]", raw.get("timestamps") or {})
        error = _check_error(f"evaluations[{i}]", raw.get("error"))
        status = raw.get("status") or ("error" if error else "processed")
        if status not in ("processed", "skipped", "error"):
            raise HTTPError(400, f"evaluations[{i}].status: invalid {status!r}")
        verdict = {k: raw.get(k) for k in ("passed", "score", "label", "details")}
        if status == "processed" and all(verdict[k] is None for k in ("passed", "score", "label")):
            raise HTTPError(400, f"evaluations[{i}]: one of passed, score or label is required")
        name = raw["name"]
        digest = hashlib.md5((trace_id + name).encode()).hexdigest()
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        evaluation = {
            "evaluation_id": raw.get("evaluation_id") or f"eval_md5_{digest}",
            "evaluator_id": raw.get("evaluator_id") or slug,
            "name": name,
            "type": raw.get("type") or "custom",
            "is_guardrail": raw.get("is_guardrail"),
            "trace_id": trace_id,
            "project_id": self.project_id,
            "status": status,
            **(verdict if status == "processed" else dict.fromkeys(verdict)),
            "error": None if error is None else {**error, "has_error": True, "stacktrace": []},
        }
        if raw.get("evaluation_thread_id") is not None:
            evaluation["evaluation_thread_id"] = raw["evaluation_thread_id"]
        return evaluation

    def _merge_metadata(self, trace: dict[str, Any], incoming: dict[str, Any]) -> bool:
        """Fold metadata into the read shape (§4): list keys stay lists (labels replace), every
        other value is stored as a string. Returns whether anything changed."""
        stored = trace["metadata"]
        before = copy.deepcopy(stored)
        for key, value in incoming.items():
            if value is None:
                continue
            if key in RESERVED_LIST_KEYS:
                if isinstance(value, str):
                    value = [value]
                elif isinstance(value, dict):
                    value = [f"{k}: {v}" for k, v in value.items()]
                stored[key] = [_stringify(v) for v in value]
            else:
                stored[key] = _stringify(value)
        if stored.get("thread_id") != before.get("thread_id") and "trace_id" in trace:
            self._stale.add(trace["trace_id"])  # filed under another thread now
        return stored != before

    def _store(
        self,
        trace_id: str,
        spans: list[dict[str, Any]],
        metadata: dict[str, Any],
        evaluations: list[dict[str, Any]],
        now: int,
    ) -> None:
        """Upsert spans by span_id and evaluations by evaluation_id into one trace (§5.1)."""
        trace = self.traces.get(trace_id)
        if trace is None:
            if not spans:  # nothing to build a trace from: evaluations wait for their trace
                self._pending_evaluations.setdefault(trace_id, []).extend(evaluations)
                return
            trace = {"trace_id": trace_id, "project_id": self.project_id, "metadata": {}}
            trace |= {"timestamps": {"inserted_at": now, "updated_at": now}}
            trace |= {"spans": [], "evaluations": []}
            evaluations = self._pending_evaluations.pop(trace_id, []) + evaluations
            self._keep(trace)
        changed = self._merge_metadata(trace, metadata)
        by_id = {s["span_id"]: s for s in trace["spans"]}
        for span in spans:
            old = by_id.get(span["span_id"])
            old_ts = (old or {}).get("timestamps", {})
            recorded = self._span_recorded.get((trace_id, span["span_id"]))
            if old is not None and self.span_dedupe_ms is not None and recorded is not None:
                if now - recorded < self.span_dedupe_ms:
                    continue  # §5.1: the dedupe key is kept 1 h: counted as success, no update
            elif old is not None and _without_ingest_times(old) == span:
                continue  # identical re-send: deduped, no update
            span["timestamps"] |= {"inserted_at": old_ts.get("inserted_at", now), "updated_at": now}
            by_id[span["span_id"]] = span
            self._span_recorded[(trace_id, span["span_id"])] = now
            changed = True
        evals = {e["evaluation_id"]: e for e in trace["evaluations"]}
        for evaluation in evaluations:
            old_inserted = evals.get(evaluation["evaluation_id"], {}).get("timestamps", {})
            evaluation["timestamps"] = {
                "inserted_at": old_inserted.get("inserted_at", now),
                "started_at": now,
                "finished_at": now,
                "updated_at": now,
            }
            evals[evaluation["evaluation_id"]] = evaluation
            changed = changed or self.evaluations_move_updated_at
        trace["spans"] = sorted(
            by_id.values(), key=lambda s: (s["timestamps"]["started_at"], s["span_id"])
        )
        trace["evaluations"] = list(evals.values())
        if changed:
            trace["timestamps"]["updated_at"] = now
            self._derive(trace)

    @staticmethod
    def _derive(trace: dict[str, Any]) -> None:
        """Recompute the span-derived trace fields of §4 (started_at, input/output, metrics,
        error). Root = no parent, or a parent that is not in the trace."""
        spans = trace["spans"]
        if not spans:
            return
        ids = {s["span_id"] for s in spans}
        roots = [s for s in spans if s.get("parent_id") is None or s["parent_id"] not in ids]
        start = min(s["timestamps"]["started_at"] for s in spans)
        trace["timestamps"]["started_at"] = start
        src_in = next((s for s in roots + spans if s.get("input") is not None), None)
        by_finish = sorted(spans, key=lambda s: s["timestamps"]["finished_at"], reverse=True)
        src_out = next((s for s in roots + by_finish if s.get("output") is not None), None)
        text_in = _io_text(src_in["input"], "user") if src_in else None
        text_out = _io_text(src_out["output"], "assistant") if src_out else None
        trace["input"] = None if text_in is None else {"value": text_in}
        trace["output"] = None if text_out is None else {"value": text_out}
        metrics: dict[str, Any] = {
            "total_time_ms": max(s["timestamps"]["finished_at"] for s in spans) - start
        }
        firsts = [s["timestamps"].get("first_token_at") for s in spans]
        firsts = [f for f in firsts if f is not None]
        metrics["first_token_ms"] = min(firsts) - start if firsts else None
        for key in (*TOKEN_KEYS, "cost"):
            values = [
                s["metrics"][key] for s in spans if (s.get("metrics") or {}).get(key) is not None
            ]
            metrics["total_cost" if key == "cost" else key] = sum(values) if values else None
        metrics["tokens_estimated"] = any(
            (s.get("metrics") or {}).get("tokens_estimated") for s in spans
        )
        trace["metrics"] = metrics
        root_error = next((s["error"] for s in roots if s.get("error")), None)
        trace["error"] = copy.deepcopy(root_error)


class _SearchQuery:
    """A validated POST /api/traces/search body (§3.1); every violation is a 422."""

    def __init__(self, body: dict[str, Any]) -> None:
        def bad(message: str) -> HTTPError:
            return HTTPError(422, message, error="Unprocessable Entity")

        for name in ("startDate", "endDate"):
            if body.get(name) is None:
                raise bad(f"{name}: Required")
        self.start, self.end = self._date(body["startDate"], bad), self._date(body["endDate"], bad)
        if body.get("pageOffset") not in (None, 0):
            raise bad("pageOffset is no longer supported; page with scrollId instead")
        self.date_field = body.get("dateField") or "occurred"
        if self.date_field not in ("occurred", "updated"):
            raise bad(f"dateField: invalid {self.date_field!r}")
        size = body.get("pageSize", MAX_PAGE_SIZE)
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise bad("pageSize: must be a positive integer")
        self.page_size = min(size, MAX_PAGE_SIZE)
        direction = body.get("sortDirection") or "desc"
        if direction not in ("asc", "desc"):
            raise bad(f"sortDirection: invalid {direction!r}")
        self.descending = direction == "desc"
        if body.get("format", "json") == "digest":
            raise HTTPError(400, "The fake only serves format=json", error="Bad Request")
        if body.get("format", "json") != "json":
            raise bad("format: must be json or digest")
        self.include_spans = bool(body.get("includeSpans", False))
        self.trace_ids = body.get("traceIds")
        self.query = body.get("query") if len(body.get("query") or "") >= 3 else None
        self.negate = bool(body.get("negateFilters", False))
        self.filters: dict[str, Any] = body.get("filters") or {}
        for key in self.filters:
            if key not in FILTER_KEYS:
                raise bad(f"filters: unknown key {key!r}")
            if key not in MODELLED_FILTER_KEYS:
                raise HTTPError(400, f"filter {key!r} is not modelled by the fake")
            if not isinstance(self.filters[key], dict if key == "metadata.value" else list):
                raise bad(f"filters.{key}: wrong shape")
        self.scroll_id = body.get("scrollId")
        self.select: list[str] | None = body.get("select")
        nested = ("evaluations", "events", "annotations")
        self.columns = [
            {"path": p, "type": self._column_type(p, bad), "collection": p.split(".")[0] in nested}
            for p in self.select or []
        ]

    @staticmethod
    def _date(value: Any, bad: Callable[[str], HTTPError]) -> int:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise bad(f"invalid date {value!r}") from None
            parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            return int(parsed.timestamp() * 1000)
        raise bad(f"invalid date {value!r}")

    @staticmethod
    def _column_type(path: str, bad: Callable[[str], HTTPError]) -> str:
        root, _, rest = path.partition(".")
        if path in SELECT_SCALARS:
            return SELECT_SCALARS[path]
        if root == "metadata" and rest:
            return "string"
        if root == "metrics" and rest:
            return "boolean" if rest == "tokens_estimated" else "number"
        if root == "evaluations" and rest in SELECT_EVALUATION:
            return SELECT_EVALUATION[rest]
        if root in ("events", "annotations") and rest:
            return "unknown"
        raise bad(f"select: unknown path {path!r}")

    def cursor(self) -> dict[str, Any] | None:
        """Decode scrollId; a bad or mismatched cursor is silently ignored -> page 1 (§3.1)."""
        if not self.scroll_id:
            return None
        try:
            cursor = jsonlib.loads(base64.b64decode(self.scroll_id, validate=True))
            ok = (
                cursor["pageSize"] == self.page_size
                and cursor["sortDirection"] == ("desc" if self.descending else "asc")
                and cursor["dateField"] == self.date_field
                and isinstance(cursor["lastTimestamp"], int)
                and isinstance(cursor["lastTraceId"], str)
            )
        except (ValueError, TypeError, KeyError):
            return None
        return cursor if ok else None

    def matches(self, trace: dict[str, Any]) -> bool:
        if self.trace_ids is not None and trace["trace_id"] not in self.trace_ids:
            return False
        if not self.filters:
            return True
        return self._filters_match(trace) != self.negate

    def _filters_match(self, trace: dict[str, Any]) -> bool:
        md, spans = trace["metadata"], trace["spans"]
        for key, wanted in self.filters.items():
            field = key.split(".", 1)[1]
            values: Iterable[Any]
            if key == "metadata.value":
                if not all(md.get(k) in v for k, v in wanted.items()):
                    return False
                continue
            if key == "metadata.key":
                values = md.keys()
            elif key.startswith("metadata."):
                value = md.get(field)
                values = value if isinstance(value, list) else [value]
            elif key == "traces.name":
                values = [s.get("name") for s in spans if s.get("parent_id") is None]
            else:
                values = [s.get(field) for s in spans]
            if not set(values) & set(wanted):
                return False
        return True

    def query_matches(self, trace: dict[str, Any]) -> bool:
        if self.query is None:
            return True
        haystack = [jsonlib.dumps(trace.get("input")), jsonlib.dumps(trace.get("output"))]
        haystack += [str(s.get("name")) for s in trace["spans"]]
        return any(self.query.lower() in h.lower() for h in haystack)

    def project(self, trace: dict[str, Any]) -> dict[str, Any]:
        """Apply `select` (§3.1 projection DSL): scalars top-level, metadata/metrics nested,
        evaluations/events/annotations as arrays of objects."""
        if self.select is None:
            return trace
        out: dict[str, Any] = {}
        scalars = {**trace["timestamps"], **{k: trace.get(k) for k in ("trace_id", "project_id")}}
        scalars |= {k: (trace.get(k) or {}).get("value") for k in ("input", "output")}
        for path in self.select:
            root, _, rest = path.partition(".")
            if path in SELECT_SCALARS:
                out[path] = scalars.get(path)
            elif root in ("metadata", "metrics"):
                out.setdefault(root, {})[rest] = (trace.get(root) or {}).get(rest)
            elif root == "evaluations":
                rows = out.setdefault(root, [{} for _ in trace["evaluations"]])
                for row, evaluation in zip(rows, trace["evaluations"], strict=True):
                    row[rest] = evaluation.get(rest)
            else:
                out.setdefault(root, [])
        return out
