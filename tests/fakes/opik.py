"""A stateful fake of the Opik REST API, served through respx/httpx.

Behaviour follows /work/shared/reference/opik-api.md ("ref §N" below). Design choices:

* Every route is a named respx route on `router`; `transport` serves both sync and async httpx
  clients, so production code runs unchanged against `AsyncClient(transport=fake.transport)`.
* Storage mirrors the real ClickHouse keys (ref §3.3). `traces`/`spans`/`*_scores` hold the row
  of the *first* key written for an id. Re-sending an id under another project (or, for spans,
  another trace_id/parent_span_id; for scores, another project) does not overwrite it: as in the
  real server a second row appears, stored in `duplicate_rows[full_key]` and counted by
  `row_count()`. A correct sink keeps `duplicate_rows == {}`.
* Upserts replace the whole row; the highest `last_updated_at` wins, ties go to the later write.
* Optional fields that are absent or null in a write are absent from the stored row.
* Threads are created synchronously on trace write (the real server does it asynchronously) and
  every trace write naming a thread sets it back to "active" (ref §3.5 reopen).
* Fault injection (`fail_next`, `fail_after_writes`) runs before auth and changes no state.
* The change axis (ref §2.7, §3.2, §3.3, §10, §11): a trace's or span's `last_updated_at` is the
  client's value, else the server's clock at the write, and moves when the row is written again
  (an upsert with an older client value loses and changes nothing). Nothing else moves it:
  feedback scores live in their own table (each score row has its own server-set
  `last_updated_at`), spans in theirs (a span written later leaves its trace's value alone), and a
  thread's `last_updated_at` is its newest trace's, so thread tags, status and thread scores do
  not move it. `after_request(n, callback)` changes state *during* a read (between two pages).
* Ordering (ref §2.4, §2.5, §2.7): traces `id` DESC, threads `last_updated_at` DESC, `start_time`
  ASC, `end_time` DESC, `thread_model_id` DESC. A `sorting` parameter is honoured on its first
  entry only, ties kept in the default order; a field the server cannot sort by (traces:
  `last_updated_at`) is dropped silently, as the server does. The NDJSON streams ignore it.
  `dynamic_sorting=False` is a server that drops every `sorting` (`cannotUseDynamicSorting`,
  which the reference reports for very large workspaces, §2.5).
* Reads stay cheap next to the code under test: an index (traces per project, spans per trace
  in the table key order, the sorted trace ids a `trace_id` range bisects, scores per entity and
  per thread) is built once per change of the tables, and views (span counts, aggregates,
  scores) are built only for the rows an answer returns.
* `GET /is-alive/ping` and `/is-alive/ver` (the server's health resource, outside
  `/v1/private`) need no credentials. The Python SDK pings the first before it sends: a failed
  ping parks its messages for a later replay, so a fake without it loses an SDK's writes.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import datetime as dt
import gzip
import json
import math
import operator
import os
import uuid
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import httpx
import respx

from tests.fakes import fastjson

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

UTC = dt.UTC
DEFAULT_PROJECT = "Default Project"
MAX_BATCH = 1000
TRUNCATE_AT = 10_000  # truncate=true cuts string values in input/output/metadata to this length
SPAN_TYPES = frozenset({"general", "tool", "llm", "guardrail"})
SCORE_SOURCES = frozenset({"ui", "sdk", "online_scoring"})
ENTITY_SOURCES = frozenset({"sdk", "experiment", "playground", "optimization"})
# Trace_Write / Span_Write fields; anything else is ignored, as the server does (ref §2)
TRACE_FIELDS = ("id", "project_name", "name", "start_time", "end_time", "input", "output",
                "metadata", "tags", "error_info", "last_updated_at", "ttft", "thread_id",
                "source")  # fmt: skip
SPAN_FIELDS = ("id", "project_name", "trace_id", "parent_span_id", "name", "type", "start_time",
               "end_time", "input", "output", "metadata", "model", "provider", "tags", "usage",
               "error_info", "last_updated_at", "total_estimated_cost",
               "total_estimated_cost_version", "ttft", "source")  # fmt: skip


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


DERIVED_FIELDS = frozenset({"duration", "number_of_messages"})  # computed in views, not stored


TIME_FIELDS = ("start_time", "end_time", "last_updated_at", "created_at")
FILTER_FIELDS = {
    "trace": {"id", "name", "thread_id", "tags", "duration", "metadata", *TIME_FIELDS},
    "span": {
        "id",
        "name",
        "type",
        "trace_id",
        "model",
        "provider",
        "tags",
        "metadata",
        *TIME_FIELDS,
    },
    "thread": {"id", "status", "tags", "number_of_messages", "duration", *TIME_FIELDS},
}
# Sortable fields (ref §2.4 TraceThreadSortingFactory, §2.5 TraceSortingFactory) the fake models;
# any other sortable field is a 400 naming it (not modelled), a field not sortable is dropped.
SORTABLE = {
    "trace": frozenset(_words("id name input output start_time end_time duration ttft metadata "
                              "thread_id span_count llm_span_count usage total_estimated_cost tags "
                              "error_info created_by feedback_scores experiment_id")),
    "thread": frozenset(_words("id start_time end_time duration number_of_messages "
                               "last_updated_at created_by created_at usage total_estimated_cost "
                               "feedback_scores status tags")),
}  # fmt: skip
MODELLED_SORTS = frozenset(
    _words("id name start_time end_time duration thread_id created_by created_at last_updated_at "
           "number_of_messages status span_count")
)  # fmt: skip
_U = "[0-9a-fA-F-]{36}"


# --- ids and time ----------------------------------------------------------------------------


def uuid7(ms: int | None = None) -> str:
    """UUID v7: 48-bit unix-ms timestamp, random rest, version 7, variant 0b10 (ref §3.1)."""
    if ms is None:
        ms = int(dt.datetime.now(UTC).timestamp() * 1000)
    raw = bytearray(ms.to_bytes(6, "big") + os.urandom(10))
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    return str(uuid.UUID(bytes=bytes(raw)))


def is_uuid7(value: Any) -> bool:
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return parsed.version == 7 and parsed.variant == uuid.RFC_4122


def uuid7_ms(value: str) -> int:
    return uuid.UUID(value).int >> 80


def iso(t: dt.datetime) -> str:
    """Like Java's Instant.toString(): UTC, `Z`, fraction in groups of 3 digits, if any."""
    t = t.astimezone(UTC)
    us = t.microsecond
    frac = "" if not us else f".{us // 1000:03d}" if us % 1000 == 0 else f".{us:06d}"
    return t.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


def parse_time(value: Any) -> dt.datetime:
    """ISO-8601 with an explicit zone (ref §4); raises ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(value)
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"no time zone in {value!r}")
    return parsed


def _duration_iso(delta: dt.timedelta) -> str:
    hours, rest = divmod(int(delta.total_seconds()), 3600)
    minutes, seconds = divmod(rest, 60)
    parts = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    return "PT" + (parts + (f"{seconds}S" if seconds else "") or "0S")


def _truncate(value: Any) -> Any:
    if isinstance(value, str):
        return value[:TRUNCATE_AT]
    if isinstance(value, list):
        return [_truncate(v) for v in value]
    if isinstance(value, dict):
        return {k: _truncate(v) for k, v in value.items()}
    return value


class _Reject(Exception):
    """Raised by handlers; carries the error response. Handlers validate before mutating."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
        super().__init__(status, body)
        self.response = httpx.Response(status, json=body, headers=headers)


def _errors(status: int, *messages: str) -> _Reject:  # Opik's own ErrorMessage (ref §2.11)
    return _Reject(status, {"errors": list(messages)})


def _bad_json() -> _Reject:
    return _Reject(400, {"code": 400, "message": "Unable to process JSON"})


class _Transport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """The fake's routes for sync and async clients. A route with a fixed path is found by a
    lookup in `exact` ((method, scheme, host, path) -> its side effect) instead of respx's regex per
    route; the others, and every request when the router patches httpx, go through respx."""

    def __init__(self, router: respx.MockRouter, exact: dict[tuple[str, ...], Any]) -> None:
        self._router = router
        self._exact = exact

    def _fixed(self, request: httpx.Request) -> Any:
        url = request.url
        return self._exact.get((request.method, url.scheme, url.host, url.path))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        side_effect = self._fixed(request)
        return side_effect(request) if side_effect is not None else self._router.handler(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        side_effect = self._fixed(request)
        if side_effect is not None:
            return side_effect(request)
        return await self._router.async_handler(request)


# --- the fake ---------------------------------------------------------------------------------

# (method, path relative to base_url, handler, is_write, *handler args); first match wins, and
# no two match one request: the busiest come first (respx tries them in order).
_ROUTES: list[tuple] = [
    ("POST", "/v1/private/traces/batch", "_traces_batch", True),
    ("POST", "/v1/private/spans/batch", "_spans_batch", True),
    ("PUT", "/v1/private/traces/feedback-scores", "_scores_batch", True, "trace"),
    ("PUT", "/v1/private/spans/feedback-scores", "_scores_batch", True, "span"),
    ("POST", "/v1/private/traces/search", "_search", False, "trace"),
    ("GET", "/v1/private/spans", "_list", False, "span"),
    ("GET", "/v1/private/traces/threads", "_threads_list", False),
    ("GET", "/v1/private/traces", "_list", False, "trace"),
    ("GET", "/v1/private/auth/workspace", "_auth_workspace", False),
    ("POST", "/v1/private/auth", "_auth_check", False),
    ("POST", "/v1/private/projects/retrieve", "_project_retrieve", False),
    ("GET", "/v1/private/projects", "_projects_list", False),
    ("POST", "/v1/private/projects", "_project_create", True),
    ("GET", f"/v1/private/projects/(?P<pid>{_U})", "_project_get", False),
    ("PUT", "/v1/private/traces/threads/feedback-scores", "_scores_batch", True, "thread"),
    ("PUT", "/v1/private/traces/threads/close", "_threads_status", True, "inactive"),
    ("PUT", "/v1/private/traces/threads/open", "_threads_status", True, "active"),
    ("PATCH", f"/v1/private/traces/threads/(?P<tmid>{_U})", "_thread_patch", True),
    ("POST", "/v1/private/traces/threads/retrieve", "_thread_retrieve", False),
    ("POST", "/v1/private/traces/threads/search", "_threads_search", False),
    ("GET", f"/v1/private/traces/(?P<id>{_U})", "_get", False, "trace"),
    ("POST", "/v1/private/spans/search", "_search", False, "span"),
    ("GET", f"/v1/private/spans/(?P<id>{_U})", "_get", False, "span"),
    ("GET", "/is-alive/ping", "_is_alive", False),
    ("GET", "/is-alive/ver", "_version", False),
]
# Handlers of routes outside /v1/private: answered without credentials, as the server does.
_PUBLIC = frozenset({"_is_alive", "_version"})


class OpikFake:
    """In-memory Opik server. See the module docstring for the modelling choices."""

    user = "admin"  # the authenticated user name; authors scores (ref §2.3)
    server_version = "2.2.122"  # what GET /is-alive/ver reports (the SDK the tests pin)

    def __init__(
        self,
        *,
        base_url: str = "http://opik.test/api",
        api_key: str | None = None,
        workspace: str = "default",
        enforce_time_window: bool = False,
        window: dt.timedelta = dt.timedelta(hours=24),
        now: Callable[[], dt.datetime] | None = None,
        rate_limit: int | None = None,
        rate_window: dt.timedelta = dt.timedelta(minutes=1),
        dynamic_sorting: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key, self.workspace = api_key, workspace
        self.enforce_time_window, self.window = enforce_time_window, window
        self.now = now or (lambda: dt.datetime.now(UTC))
        self.rate_limit, self.rate_window = rate_limit, rate_window
        self.dynamic_sorting = dynamic_sorting
        self._rate: tuple[dt.datetime, int] | None = None  # (window start, events used)
        self.requests: list[httpx.Request] = []
        self.projects: dict[str, dict] = {}
        self.traces: dict[str, dict] = {}
        self.spans: dict[str, dict] = {}
        self.trace_scores: dict[tuple[str, str], dict] = {}
        self.span_scores: dict[tuple[str, str], dict] = {}
        self.thread_scores: dict[tuple[str, str, str, str], dict] = {}
        self.threads: dict[tuple[str, str], dict] = {}
        self.duplicate_rows: dict[tuple, dict] = {}
        self._faults: list[dict] = []
        self._hooks: list[dict] = []
        self._generation = 0  # bumped by every stored row: `_index` is rebuilt after a change
        self._indexed: tuple[tuple[int, ...], _Index] | None = None
        self._writes_left: int | None = None
        self._outage_status = 503
        self.router = respx.MockRouter(base_url=self.base_url, assert_all_called=False)
        url = httpx.URL(self.base_url)
        exact: dict[tuple[str, ...], Any] = {}
        for method, path, handler, is_write, *args in _ROUTES:
            name = "_".join([handler[1:], *args])
            route = self.router.route(method=method, path__regex=f"{path}$", name=name)
            route.side_effect = self._endpoint(
                getattr(self, handler), is_write, *args, public=handler in _PUBLIC
            )
            if "(" not in path:
                key = (method, url.scheme, url.host, url.path.rstrip("/") + path)
                exact[key] = route.side_effect
        # anything else on this host: 404 (absolute, not merged)
        self.router.route(
            scheme=url.scheme, host=url.host, name="unknown"
        ).side_effect = self._endpoint(self._unknown, False)
        self.transport: httpx.AsyncBaseTransport = _Transport(self.router, exact)
        self.sync_transport: httpx.BaseTransport = self.transport  # same object, both protocols

    # --- public helpers ---------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        json: Any = None,
        path_contains: str | None = None,
    ) -> None:
        """The next `times` requests (whose path contains `path_contains`) get this response."""
        body = json if json is not None else _status_body(status)
        self._faults.append({"times": times, "path": path_contains or "", "status": status,
                             "headers": headers or {}, "json": body})  # fmt: skip

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
        returned: a record changed mid-read, between two pages (e.g. through `add_trace`)."""
        self._hooks.append({"left": n, "callback": callback, "path": path_contains,
                            "method": method})  # fmt: skip

    def fail_after_writes(self, n: int, status: int = 503) -> None:
        """After `n` more successful write requests, every write request fails with `status`."""
        self._writes_left, self._outage_status = n, status

    def clear_faults(self) -> None:
        self._faults.clear()
        self._writes_left = None

    def project_id(self, name: str) -> str | None:
        project = self._project(name, create=False)
        return project["id"] if project else None

    def add_trace(
        self,
        project_name: str,
        trace: dict,
        spans: Iterable[dict] = (),
        trace_scores: Iterable[dict] = (),
        span_scores: dict[str, list[dict]] | None = None,
    ) -> None:
        """Seed data, bypassing HTTP, faults and the time window (Trace_Write/Span_Write shape)."""
        try:
            (row,) = self._valid_traces([{**trace, "project_name": project_name}])
            self._store_trace(row)
            tid = row["id"]
            span_items = [{"trace_id": tid, **s, "project_name": project_name} for s in spans]
            for item in self._valid_spans(span_items):
                self._store_span(item)
            scores = [{"id": tid, **s} for s in trace_scores]
            self._store_scores("trace", self._seed_scores("trace", scores, project_name))
            for span_id, items in (span_scores or {}).items():
                scores = [{"id": span_id, **s} for s in items]
                self._store_scores("span", self._seed_scores("span", scores, project_name))
        except _Reject as exc:
            raise ValueError(f"invalid seed data: {exc.response.json()}") from None

    def add_thread_data(
        self,
        project_name: str,
        thread_id: str,
        *,
        scores: Iterable[dict] = (),
        tags: Iterable[str] = (),
        status: str | None = None,
    ) -> None:
        """Seed thread-level data. Call after add_trace: trace writes reopen threads."""
        thread = self._thread(self._project(project_name, create=True)["id"], thread_id)
        if tags:
            thread["tags"] = list(dict.fromkeys(tags))
        if status:
            thread["status"] = status
        items = [{"thread_id": thread_id, **s} for s in scores]
        try:
            self._store_scores("thread", self._seed_scores("thread", items, project_name))
        except _Reject as exc:
            raise ValueError(f"invalid seed data: {exc.response.json()}") from None

    def row_count(self) -> int:
        tables = (self.traces, self.spans, self.trace_scores, self.span_scores,
                  self.thread_scores, self.duplicate_rows)  # fmt: skip
        return sum(map(len, tables))

    def request_bodies(self, path_contains: str = "") -> list[Any]:
        """Decoded (gunzipped, parsed) JSON bodies of received requests, for assertions."""
        return [_decode(r) for r in self.requests if path_contains in r.url.path and r.content]

    # --- request pipeline -------------------------------------------------------------------

    def _endpoint(
        self,
        handler: Callable[..., httpx.Response],
        is_write: bool,
        *args: str,
        public: bool = False,
    ) -> Callable:
        def side_effect(request: httpx.Request, **path_args: str) -> httpx.Response:
            with contextlib.suppress(RuntimeError):  # an async-only stream stays unread
                request.read()
            self.requests.append(request)
            for fault in self._faults:
                if fault["times"] > 0 and fault["path"] in request.url.path:
                    fault["times"] -= 1
                    self._faults = [f for f in self._faults if f["times"] > 0]
                    return httpx.Response(
                        fault["status"], headers=fault["headers"], json=fault["json"]
                    )
            if (not public and self.api_key is not None) and (
                request.headers.get("authorization") != self.api_key
                or request.headers.get("comet-workspace") != self.workspace
            ):  # ref §5: the bare key, no "Bearer " prefix, plus Comet-Workspace
                return httpx.Response(
                    401, json={"code": 401, "message": "User not allowed to access workspace!"}
                )
            if is_write and self._writes_left is not None and self._writes_left <= 0:
                return httpx.Response(self._outage_status, json=_status_body(self._outage_status))
            try:
                body = _decode(request)
                self._count_events(body)
                response = handler(request, body, *args, **path_args)
            except _Reject as exc:
                return exc.response
            if is_write and response.is_success and self._writes_left is not None:
                self._writes_left -= 1
            self._run_hooks(request)
            return response

        return side_effect

    def _run_hooks(self, request: httpx.Request) -> None:
        for hook in list(self._hooks):
            if hook["path"] not in request.url.path or hook["method"] not in (None, request.method):
                continue
            hook["left"] -= 1
            if hook["left"] <= 0:
                self._hooks.remove(hook)
                hook["callback"]()

    def _count_events(self, body: Any) -> None:
        """Optional rate limit: each batch item is one event (ref §6); 429 + RateLimit-Reset."""
        if self.rate_limit is None:
            return
        now = self.now()
        if self._rate is None or now - self._rate[0] >= self.rate_window:
            self._rate = (now, 0)
        lists = [v for v in body.values() if isinstance(v, list)] if isinstance(body, dict) else []
        events = len(lists[0]) if lists else 1
        start, used = self._rate
        if used + events > self.rate_limit:
            reset = max(1, math.ceil((start + self.rate_window - now).total_seconds()))
            body = {"code": 429, "message": "Too Many Requests: General events"}
            raise _Reject(429, body, headers={"RateLimit-Reset": str(reset)})
        self._rate = (start, used + events)

    def _now_iso(self) -> str:
        return iso(self.now())

    def _audit(self) -> dict[str, str]:
        return {
            "created_at": self._now_iso(),
            "created_by": self.user,
            "last_updated_by": self.user,
        }

    def _new_id(self) -> str:
        return uuid7(int(self.now().timestamp() * 1000))

    def _unknown(self, request: httpx.Request, body: Any) -> httpx.Response:
        return httpx.Response(404, json={"code": 404, "message": "HTTP 404 Not Found"})

    # --- projects (ref §2.8) ------------------------------------------------------------------

    def _project(self, name: str | None, *, create: bool) -> dict | None:
        """Case-insensitive lookup; None/"" means Default Project; optionally auto-create."""
        if name is not None and not isinstance(name, str):
            raise _bad_json()
        name = name or DEFAULT_PROJECT
        if not name.strip():
            raise _errors(422, "projectName must not be blank")
        for project in self.projects.values():
            if project["name"].lower() == name.lower():
                return project
        if not create:
            return None
        project = {"id": self._new_id(), "name": name, "visibility": "private", **self._audit()}
        project["last_updated_at"] = project["created_at"]
        self.projects[project["id"]] = project
        return project

    def _read_project(self, source: Any) -> dict:
        """project_name or project_id is required on reads (ref §2.5, §2.6); 404 if unknown."""
        source = source if isinstance(source, dict | httpx.QueryParams) else {}
        name, pid = source.get("project_name"), source.get("project_id")
        if not name and not pid:
            message = "Either 'project_name' or 'project_id' must be provided"
            raise _Reject(400, {"code": 400, "message": message})
        project = self.projects.get(pid) if pid else self._project(name, create=False)
        if project is None:
            raise _errors(404, "Project not found")
        return project

    def _is_alive(self, request: httpx.Request, body: Any) -> httpx.Response:
        """IsAliveResource.isAlive: 200 with IsAliveResponse(message, healthy)."""
        return fastjson.response(200, {"message": "Healthy Server", "healthy": True})

    def _version(self, request: httpx.Request, body: Any) -> httpx.Response:
        """IsAliveResource.version: VersionResponse(version)."""
        return fastjson.response(200, {"version": self.server_version})

    def _auth_workspace(self, request: httpx.Request, body: Any) -> httpx.Response:
        return fastjson.response(200, {"workspace_name": self.workspace})

    def _auth_check(self, request: httpx.Request, body: Any) -> httpx.Response:
        return httpx.Response(204)

    def _project_retrieve(self, request: httpx.Request, body: Any) -> httpx.Response:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise _errors(422, "name must not be blank")
        project = self._project(body["name"], create=False)
        if project is None:
            raise _errors(404, "Project not found")
        return fastjson.response(200, project)

    def _projects_list(self, request: httpx.Request, body: Any) -> httpx.Response:
        needle = (request.url.params.get("name") or "").lower()
        found = [p for p in reversed(self.projects.values()) if needle in p["name"].lower()]
        return self._page(request, found, sortable=["name", "created_at", "last_updated_at"])

    def _project_create(self, request: httpx.Request, body: Any) -> httpx.Response:
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise _errors(422, "name must not be blank")
        if self._project(name, create=False):
            raise _errors(409, "Project already exists")
        project = self._project(name, create=True)
        project.update({k: body[k] for k in ("visibility", "description") if body.get(k)})
        location = f"{self.base_url}/v1/private/projects/{project['id']}"
        return httpx.Response(201, headers={"Location": location})

    def _project_get(self, request: httpx.Request, body: Any, pid: str) -> httpx.Response:
        if pid not in self.projects:
            raise _errors(404, "Project not found")
        return fastjson.response(200, self.projects[pid])

    # --- writes: traces and spans (ref §2.1, §2.2, §3) --------------------------------------------

    def _batch(self, body: Any, key: str) -> list[dict]:
        items = body.get(key) if isinstance(body, dict) else None
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            raise _errors(422, f"{key} size must be between 1 and {MAX_BATCH}")
        if not all(isinstance(i, dict) for i in items):
            raise _bad_json()
        return items

    def _clean(self, item: dict, fields: tuple[str, ...], where: str) -> dict:
        """Known fields only (unknown ones are ignored, ref §2), nulls dropped, formats checked."""
        row = {k: item[k] for k in fields if item.get(k) is not None}
        if "start_time" not in row:
            raise _errors(422, f"{where}.startTime must not be null")
        try:
            for key in ("start_time", "end_time", "last_updated_at"):
                if key in row:
                    parse_time(row[key])
        except ValueError:
            raise _bad_json() from None
        if row.get("source") is not None and row["source"] not in ENTITY_SOURCES:
            raise _bad_json()
        if len(row.get("tags", [])) > 50:
            raise _errors(422, "Tag limit exceeded: maximum 50 tags per item")
        info = row.get("error_info")
        if info is not None and not (
            isinstance(info, dict)
            and all(str(info.get(k) or "").strip() for k in ("exception_type", "traceback"))
        ):
            raise _errors(422, f"{where}.errorInfo exception_type and traceback must not be blank")
        if row.get("project_name") is not None:
            self._project(row["project_name"], create=False)  # blank check only
        return row

    def _check_v7(self, kind: str, ids: Iterable[Any]) -> None:
        """Every id must be a UUID v7, else the whole batch fails (ref §3.1)."""
        if not all(is_uuid7(i) for i in ids):
            raise _errors(400, f"{kind} id must be a version 7 UUID")

    def _check_window(self, ids: Iterable[str], *, future_only: bool = False) -> None:
        """With enforce_time_window, id times must lie in now±window (ref §3.1, §10)."""
        if not self.enforce_time_window:
            return
        now = self.now()
        for value in ids:
            at = dt.datetime.fromtimestamp(uuid7_ms(value) / 1000, UTC)
            if at > now + self.window:
                reason = "too_far_future"
            elif at < now - self.window and not future_only:
                reason = "too_old"
            else:
                continue
            details = (
                f"id with timestamp '{iso(at)}' must be in the allowed ingestion window "
                f"of '{_duration_iso(self.window)}' around now, reason '{reason}'"
            )
            raise _Reject(400, {"code": 400, "message": "Invalid UUID for id", "details": details})

    def _valid_traces(self, items: list[dict]) -> list[dict]:
        rows = [self._clean(item, TRACE_FIELDS, f"traces[{i}]") for i, item in enumerate(items)]
        self._check_v7("Trace", (r.setdefault("id", self._new_id()) for r in rows))
        return rows

    def _valid_spans(self, items: list[dict]) -> list[dict]:
        rows = [self._clean(item, SPAN_FIELDS, f"spans[{i}]") for i, item in enumerate(items)]
        for i, row in enumerate(rows):
            if "trace_id" not in row:
                raise _errors(422, f"spans[{i}].traceId must not be null")
            if row.get("type", "general") not in SPAN_TYPES:
                raise _errors(422, f"spans[{i}].type must be one of {sorted(SPAN_TYPES)}")
            usage = row.get("usage", {})
            if not isinstance(usage, dict) or not all(
                type(v) is int and -(2**31) <= v < 2**31 for v in usage.values()
            ):
                raise _bad_json()  # usage is string -> int32 (ref §4)
        self._check_v7("Span", (r.setdefault("id", self._new_id()) for r in rows))
        self._check_v7(
            "Span", [r[k] for r in rows for k in ("trace_id", "parent_span_id") if k in r]
        )  # PR #7553: referenced ids must be v7 too
        return rows

    def _traces_batch(self, request: httpx.Request, body: Any) -> httpx.Response:
        rows = self._valid_traces(self._batch(body, "traces"))
        self._check_window(r["id"] for r in rows)
        for row in rows:
            self._store_trace(row)
        return httpx.Response(204)

    def _spans_batch(self, request: httpx.Request, body: Any) -> httpx.Response:
        rows = self._valid_spans(self._batch(body, "spans"))
        self._check_window(r["id"] for r in rows)
        self._check_window(
            (r[k] for r in rows for k in ("trace_id", "parent_span_id") if k in r), future_only=True
        )  # PR #7553: refs must not be in the future
        for row in rows:
            self._store_span(row)
        return httpx.Response(204)

    def _full_key(self, kind: str, row: dict, pk: tuple | str) -> tuple:
        """The real table key of a row (ref §3.3): project is part of every key."""
        if kind == "trace":
            return ("trace", row["project_id"], row["id"])
        if kind == "span":
            return (
                "span",
                row["project_id"],
                row["trace_id"],
                row.get("parent_span_id"),
                row["id"],
            )
        return (kind, row["project_id"], *pk)

    def _upsert(self, kind: str, table: dict, pk: Any, row: dict) -> None:
        """Replace the whole row unless the stored one has a newer last_updated_at."""
        self._generation += 1
        key = self._full_key(kind, row, pk)
        old = table.get(pk)
        if old is not None and self._full_key(kind, old, pk) != key:
            table, pk = self.duplicate_rows, key  # a second row in the real server
            old = table.get(pk)
        if old is not None:
            if parse_time(row["last_updated_at"]) < parse_time(old["last_updated_at"]):
                return
            row["created_at"] = old["created_at"]
        table[pk] = row

    def _store_trace(self, item: dict) -> None:
        project = self._project(item.pop("project_name", None), create=True)
        row = {**item, "project_id": project["id"], **self._audit()}
        row.setdefault("last_updated_at", row["created_at"])
        self._upsert("trace", self.traces, row["id"], row)
        if row.get("thread_id"):
            self._thread(project["id"], row["thread_id"])["status"] = "active"

    def _store_span(self, item: dict) -> None:
        project = self._project(item.pop("project_name", None), create=True)
        row = {"type": "unknown", **item, "project_id": project["id"], **self._audit()}
        row.setdefault("last_updated_at", row["created_at"])
        self._upsert("span", self.spans, row["id"], row)

    # --- writes: feedback scores (ref §2.3, §10) -------------------------------------------

    def _valid_scores(self, body: Any, kind: str) -> list[dict]:
        items = self._batch(body, "scores")
        ref = "thread_id" if kind == "thread" else "id"
        for i, s in enumerate(items):
            value = s.get("value")
            if not isinstance(s.get("name"), str) or not s["name"].strip():
                raise _errors(422, f"scores[{i}].name must not be blank")
            if isinstance(value, bool) or not isinstance(value, int | float) or abs(value) > 1e9:
                raise _errors(422, f"scores[{i}].value must be between -1e9 and 1e9")
            if s.get("source") not in SCORE_SOURCES:
                raise _errors(422, f"scores[{i}].source must be one of {sorted(SCORE_SOURCES)}")
            if not isinstance(s.get(ref), str) or not s[ref]:
                raise _errors(422, f"scores[{i}].{ref} must not be blank")
            if s.get("project_name") is not None:
                self._project(s["project_name"], create=False)  # blank check
        if kind != "thread":
            self._check_v7(kind.capitalize(), (s["id"] for s in items))  # version only (§10)
        return items

    def _store_scores(self, kind: str, items: list[dict]) -> None:
        now = self._now_iso()
        for s in items:
            project = self.projects.get(s.get("project_id") or "") or self._project(
                s.get("project_name"), create=True
            )
            extra = {k: s[k] for k in ("category_name", "reason") if s.get(k) is not None}
            entry = {"value": s["value"], "source": s["source"], **extra, "last_updated_at": now}
            row = {"name": s["name"], **entry, **self._audit(), "project_id": project["id"],
                   "value_by_author": {self.user: entry}}  # fmt: skip
            if kind == "thread":
                self._thread(project["id"], s["thread_id"])  # get-or-create
                self.thread_scores[(project["id"], s["thread_id"], s["name"])] = row
                self._generation += 1
            else:
                table = self.trace_scores if kind == "trace" else self.span_scores
                self._upsert(f"{kind}_score", table, (s["id"], s["name"]), row)

    def _seed_scores(self, kind: str, items: list[dict], project_name: str) -> list[dict]:
        items = [{"source": "sdk", "project_name": project_name, **s} for s in items]
        return self._valid_scores({"scores": items}, kind) if items else []

    def _scores_batch(self, request: httpx.Request, body: Any, kind: str) -> httpx.Response:
        self._store_scores(kind, self._valid_scores(body, kind))
        return httpx.Response(204)

    # --- threads (ref §2.4, §2.9, §3.2, §10) ---------------------------------------------------

    def _thread(self, project_id: str, thread_id: str) -> dict:
        key = (project_id, thread_id)
        if key not in self.threads:
            self.threads[key] = {"thread_model_id": self._new_id(), "status": "active",
                                 "tags": [], **self._audit()}  # fmt: skip
        return self.threads[key]

    def _threads_status(self, request: httpx.Request, body: Any, status: str) -> httpx.Response:
        """close: {project, thread_id XOR thread_ids}; open: {project, thread_id} (ref §2.9)."""
        project = self._read_project(body)
        one = body.get("thread_id")
        several = body.get("thread_ids") if status == "inactive" else None
        if (one is None) == (several is None) or not (one or several):
            raise _errors(422, "Exactly one of 'thread_id' or 'thread_ids' must be provided")
        keys = [(project["id"], t) for t in ([one] if one is not None else several)]
        if any(k not in self.threads for k in keys):
            raise _errors(404, "Thread not found")
        for key in keys:
            self.threads[key]["status"] = status
        return httpx.Response(204)

    def _thread_patch(self, request: httpx.Request, body: Any, tmid: str) -> httpx.Response:
        """TraceThreadUpdate by thread_model_id: `tags` replaces, else add/remove (ref §2.9)."""
        thread = next(
            (t for t in self.threads.values() if t["thread_model_id"] == tmid.lower()), None
        )
        if thread is None:
            raise _errors(404, "Thread not found")
        if not isinstance(body, dict):
            raise _bad_json()
        for key in ("tags", "tags_to_add", "tags_to_remove"):
            tags = body.get(key) or []
            if len(tags) > 50 or any(not isinstance(t, str) or len(t) > 100 for t in tags):
                raise _errors(422, "Tag limit exceeded: maximum 50 tags per item")
        tags = list(body["tags"]) if body.get("tags") is not None else list(thread["tags"])
        removed = set(body.get("tags_to_remove") or [])
        tags += body.get("tags_to_add") or []
        thread["tags"] = [t for t in dict.fromkeys(tags) if t not in removed]
        return httpx.Response(204)

    def _thread_view(
        self, project_id: str, thread_id: str, truncate: bool, index: _Index | None = None
    ) -> dict | None:
        """TraceThread: aggregates of member traces; last_updated_at = max of theirs (ref §10)."""
        index = index or self._index()
        members = index.members.get((project_id, thread_id), [])
        if not members or (project_id, thread_id) not in self.threads:
            return None
        thread = self.threads[(project_id, thread_id)]
        first = min(members, key=lambda t: parse_time(t["start_time"]))
        ended = [t for t in members if "end_time" in t]
        last = max(ended or members, key=lambda t: parse_time(t.get("end_time", t["start_time"])))
        view: dict[str, Any] = {
            "id": thread_id,
            "project_id": project_id,
            "thread_model_id": thread["thread_model_id"],
            "start_time": first["start_time"],
            "number_of_messages": 2 * len(members),
            "status": thread["status"],
            "tags": list(thread["tags"]),
            "last_updated_at": max((t["last_updated_at"] for t in members), key=parse_time),
            "created_at": thread["created_at"],
            "created_by": thread["created_by"],
            "last_updated_by": self.user,
        }
        if ended:
            view["end_time"] = last["end_time"]
            view["duration"] = (
                parse_time(last["end_time"]) - parse_time(first["start_time"])
            ).total_seconds() * 1000
        for out, trace, field in (
            ("first_message", first, "input"),
            ("last_message", last, "output"),
        ):
            if field in trace:
                view[out] = _truncate(trace[field]) if truncate else trace[field]
        spans = [s for t in members for s in index.spans.get((project_id, t["id"]), [])]
        view.update(_span_totals(spans))
        scores = [_public_score(s) for s in index.thread_scores.get((project_id, thread_id), [])]
        if scores:
            view["feedback_scores"] = scores
        return view

    def _thread_views(self, project: dict, truncate: bool) -> list[dict]:
        index = self._index()
        views = [
            self._thread_view(project["id"], tid, truncate, index)
            for pid, tid in self.threads
            if pid == project["id"]
        ]
        return [v for v in views if v is not None]

    def _threads_list(self, request: httpx.Request, body: Any) -> httpx.Response:
        params = request.url.params
        views = self._thread_views(self._read_project(params), _flag(params, "truncate", False))
        views = _filtered(views, params.get("filters"), "thread")
        # ThreadDAO: last_updated_at DESC, start_time ASC, end_time DESC, thread_model_id DESC
        views.sort(key=lambda v: v["thread_model_id"], reverse=True)
        views.sort(
            key=lambda v: parse_time(v.get("end_time", "1970-01-01T00:00:00Z")), reverse=True
        )
        views.sort(key=lambda v: parse_time(v["start_time"]))
        views.sort(key=lambda v: parse_time(v["last_updated_at"]), reverse=True)
        if self.dynamic_sorting:
            views = _sorted(views, params.get("sorting"), "thread")
        return self._page(request, views, sortable=sorted(SORTABLE["thread"]))

    def _thread_retrieve(self, request: httpx.Request, body: Any) -> httpx.Response:
        project = self._read_project(body)
        view = self._thread_view(
            project["id"], body.get("thread_id"), bool(body.get("truncate", False))
        )
        if view is None:
            raise _errors(404, "Thread not found")
        return fastjson.response(200, view)

    def _threads_search(self, request: httpx.Request, body: Any) -> httpx.Response:
        """NDJSON stream with the real server's bug (ref §10): the cursor keeps
        `thread_model_id > last_retrieved` while ordering DESC, so page 2 repeats page 1."""
        project = self._read_project(body)
        views = _filtered(
            self._thread_views(project, bool(body.get("truncate", True))),
            body.get("filters"),
            "thread",
        )
        views.sort(key=lambda v: v["thread_model_id"], reverse=True)
        cursor = body.get("last_retrieved_thread_model_id")
        if cursor:
            views = [v for v in views if v["thread_model_id"] > cursor.lower()]
        return _ndjson(views[: _limit(body)])

    # --- reads: traces and spans (ref §2.5, §2.6, §2.7) -----------------------------------------

    def _rows(self, kind: str) -> list[dict]:
        table = self.traces if kind == "trace" else self.spans
        return [*table.values(), *(r for k, r in self.duplicate_rows.items() if k[0] == kind)]

    def _index(self) -> _Index:
        """What the views derive from, grouped once per change of the tables (the fake stays
        fast). Rows changed in place by a test, not through a write or a seeding helper, are
        not seen by it: change state through those."""
        stamp = (self._generation, *map(len, (self.traces, self.spans, self.trace_scores,
                                           self.span_scores, self.duplicate_rows,
                                           self.thread_scores)))  # fmt: skip
        if self._indexed is not None and self._indexed[0] == stamp:
            return self._indexed[1]
        index = _Index()
        for span in self._rows("span"):
            index.spans.setdefault((span["project_id"], span["trace_id"]), []).append(span)
        for spans in index.spans.values():  # the table key order, (trace, parent, id) DESC
            spans.sort(key=lambda r: (r.get("parent_span_id", ""), r["id"]), reverse=True)
        for project_id, trace_id in index.spans:
            index.span_traces.setdefault(project_id, []).append(trace_id)
        for keys in index.span_traces.values():
            keys.sort()
        for trace in self._rows("trace"):
            index.traces.setdefault(trace["project_id"], []).append(trace)
            if trace.get("thread_id"):
                key = (trace["project_id"], trace["thread_id"])
                index.members.setdefault(key, []).append(trace)
        for (project_id, thread_id, _), score in self.thread_scores.items():
            index.thread_scores.setdefault((project_id, thread_id), []).append(score)
        for kind, table in (("trace", self.trace_scores), ("span", self.span_scores)):
            for (entity, _), score in table.items():
                index.scores.setdefault((kind, entity), []).append(score)
        for key, score in self.duplicate_rows.items():
            if key[0] in ("trace_score", "span_score"):
                index.scores.setdefault((key[0][:-6], key[2]), []).append(score)
        self._indexed = (stamp, index)
        return index

    def _entity_scores(self, kind: str, entity_id: str, project_id: str, index: _Index) -> list:
        """Only scores of the entity's own project are visible (ref §10)."""
        rows = index.scores.get((kind, entity_id), [])
        return [_public_score(s) for s in rows if s["project_id"] == project_id]

    def _span_score_averages(self, spans: list[dict], project_id: str, index: _Index) -> list:
        """`span_feedback_scores` (ref §2.3): the trace's span scores averaged by name. The
        aggregate's `last_updated_at` is taken as its newest score's (UNVERIFIED: the reference
        names the average only)."""
        by_name: dict[str, list[dict]] = {}
        for span in spans:
            for score in self._entity_scores("span", span["id"], project_id, index):
                by_name.setdefault(score["name"], []).append(score)
        return [
            {
                "name": name,
                "value": sum(s["value"] for s in scores) / len(scores),
                "source": scores[0]["source"],
                "created_at": min((s["created_at"] for s in scores), key=parse_time),
                "last_updated_at": max((s["last_updated_at"] for s in scores), key=parse_time),
            }
            for name, scores in sorted(by_name.items())
        ]

    def _entity_view(self, kind: str, row: dict, truncate: bool, index: _Index) -> dict:
        view = dict(row)
        if truncate:
            view.update({k: _truncate(row[k]) for k in ("input", "output", "metadata") if k in row})
        if "end_time" in row:
            view["duration"] = (
                parse_time(row["end_time"]) - parse_time(row["start_time"])
            ).total_seconds() * 1000
        if kind == "trace":
            spans = index.spans.get((row["project_id"], row["id"]), [])
            view["span_count"] = len(spans)
            view["llm_span_count"] = sum(s["type"] == "llm" for s in spans)
            view.update(_span_totals(spans))
            averaged = self._span_score_averages(spans, row["project_id"], index)
            if averaged:
                view["span_feedback_scores"] = averaged
        scores = self._entity_scores(kind, row["id"], row["project_id"], index)
        if scores:
            view["feedback_scores"] = scores
        return view

    def _candidates(self, kind: str, project: dict, source: Any, stored: list[dict]) -> list:
        """The project's rows a read can match, narrowed by the index (`trace_id=`, a
        `thread_id` filter, a `trace_id` range on spans) before the filters run on them."""
        index = self._index()
        if kind == "span" and source.get("trace_id"):
            return list(index.spans.get((project["id"], source["trace_id"]), []))
        thread = next(
            (f["value"] for f in stored if f["field"] == "thread_id" and f["operator"] == "="),
            None,
        )
        if kind == "trace" and isinstance(thread, str):
            return list(index.members.get((project["id"], thread), []))
        if kind == "trace":
            return list(index.traces.get(project["id"], []))
        keys = index.span_traces.get(project["id"], [])
        low, high = 0, len(keys)
        for f in stored:  # a range on trace_id: bisect the sorted trace ids
            value = f.get("value")
            if f["field"] != "trace_id" or not isinstance(value, str):
                continue
            if f["operator"] == ">":
                low = max(low, bisect.bisect_right(keys, value))
            elif f["operator"] == ">=":
                low = max(low, bisect.bisect_left(keys, value))
            elif f["operator"] == "<":
                high = min(high, bisect.bisect_left(keys, value))
            elif f["operator"] == "<=":
                high = min(high, bisect.bisect_right(keys, value))
        return [s for key in keys[low:high] for s in index.spans[(project["id"], key)]]

    def _matching(
        self, kind: str, project: dict, source: Any, *, before: str | None = None
    ) -> tuple[list[dict], list[dict]]:
        """Rows of the project that pass the stored-field filters, in the table's order (a
        stream's cursor, `before`: ids below it), and the filters on derived fields, left to
        run on views."""
        filters = _parse_filters(source.get("filters"), kind)
        derived = [f for f in filters if f["field"] in DERIVED_FIELDS]
        stored = [f for f in filters if f["field"] not in DERIVED_FIELDS]
        rows = self._candidates(kind, project, source, stored)
        for field in ("trace_id", "type") if kind == "span" else ():
            if source.get(field):
                rows = [r for r in rows if r[field] == source[field]]
        rows = _filtered(rows, stored, kind)
        if before is not None:
            rows = [r for r in rows if r["id"] < before]
        if kind == "span" and before is None:  # table key order (trace_id, parent, id) DESC
            rows.sort(key=lambda r: (r["trace_id"], r.get("parent_span_id", ""), r["id"]))
            rows.reverse()
        else:
            rows.sort(key=lambda r: r["id"], reverse=True)  # id DESC = newest first
        return rows, derived

    def _select(
        self,
        kind: str,
        project: dict,
        source: Any,
        truncate: bool,
        *,
        before: str | None = None,
        limit: int | None = None,
    ) -> list[dict]:
        """Rows of the project that pass the filters, as views, in the table's order; a
        stream's cursor (`before`: ids below it) and `limit` cut the id DESC order. Views are
        built only for the rows returned (and for those a derived-field filter looks at)."""
        rows, derived = self._matching(kind, project, source, before=before)
        index = self._index()
        views = []
        for row in rows:
            view = self._entity_view(kind, row, truncate, index)
            if _filtered([view], derived, kind):
                views.append(view)
                if limit is not None and len(views) >= limit:
                    break
        return views

    def _list(self, request: httpx.Request, body: Any, kind: str) -> httpx.Response:
        params = request.url.params
        project = self._read_project(params)
        truncate = _flag(params, "truncate", False)
        sortable = sorted(SORTABLE["trace"]) if kind == "trace" else []
        sorting = kind == "trace" and self.dynamic_sorting and params.get("sorting")
        rows, derived = self._matching(kind, project, params)
        if not derived and not sorting:  # views for the page's rows only
            index = self._index()
            return self._page(
                request,
                rows,
                sortable=sortable,
                view=lambda row: self._entity_view(kind, row, truncate, index),
            )
        views = self._select(kind, project, params, truncate)
        if sorting:
            views = _sorted(views, params.get("sorting"), "trace")
        return self._page(request, views, sortable=sortable)

    def _search(self, request: httpx.Request, body: Any, kind: str) -> httpx.Response:
        """Keyset NDJSON stream: id DESC, `id < last_retrieved_id`; truncate defaults to true."""
        project = self._read_project(body)
        cursor = body.get("last_retrieved_id")
        limit = _limit(body)
        views = self._select(
            kind,
            project,
            body,
            bool(body.get("truncate", True)),
            before=cursor.lower() if cursor else "~",  # "~" sorts after every hex id
            limit=limit,
        )
        return _ndjson(views)

    def _get(self, request: httpx.Request, body: Any, kind: str, id: str) -> httpx.Response:
        row = (self.traces if kind == "trace" else self.spans).get(id.lower())
        if row is None:
            raise _errors(404, f"{kind.capitalize()} not found")
        return fastjson.response(200, self._entity_view(kind, row, False, self._index()))

    def _page(
        self,
        request: httpx.Request,
        items: list[dict],
        sortable: list[str] | None = None,
        view: Callable[[dict], dict] | None = None,
    ) -> httpx.Response:
        """One page of `items` (`page`, `size`, `total`), through `view` if given: only the
        page's items are turned into views."""
        try:
            page = int(request.url.params.get("page", 1))
            size = int(request.url.params.get("size", 10))
        except ValueError:
            raise _bad_json() from None
        if page < 1 or size < 1:
            raise _errors(400, "page and size must be at least 1")
        content = items[(page - 1) * size : page * size]
        if view is not None:
            content = [view(item) for item in content]
        body = {"page": page, "size": len(content), "total": len(items), "content": content,
                "sortableBy": sortable or []}  # fmt: skip
        return fastjson.response(200, body)


# --- module helpers ---------------------------------------------------------------------------


def _decode(request: httpx.Request) -> Any:
    """The JSON body, gunzipped when Content-Encoding says gzip (ref §4, §10)."""
    raw = request.content
    if "gzip" in request.headers.get("content-encoding", "").lower():
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            raise _bad_json() from None
    if not raw:
        return None
    try:
        return fastjson.loads(raw)
    except ValueError:
        raise _bad_json() from None


_COMPARE = {"=": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge,
            "<": operator.lt, "<=": operator.le}  # fmt: skip


def _status_body(status: int) -> dict:
    try:
        return {"code": status, "message": HTTPStatus(status).phrase}
    except ValueError:
        return {"code": status, "message": "Error"}


def _public_score(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "project_id"}


def _sorted(views: list[dict], raw: Any, kind: str) -> list[dict]:
    """`sorting` (ref §2.7): a JSON array, first entry used; ties keep the default order; a field
    that is not sortable is dropped silently (`SortingFactory`), as the server does."""
    if not raw:
        return views
    try:
        entries = json.loads(raw)
        first = entries[0] if isinstance(entries, list) and entries else None
        field, direction = first["field"], str(first.get("direction", "ASC")).upper()
    except (ValueError, TypeError, KeyError, IndexError):
        raise _errors(400, f"Invalid sorting query parameter: {raw}") from None
    if field not in SORTABLE[kind]:
        return views
    if field not in MODELLED_SORTS:
        raise _errors(400, f"sorting on {field!r} is not modelled by the fake")
    if direction not in ("ASC", "DESC"):
        raise _errors(400, f"Invalid sorting direction {direction!r}")

    def key(view: dict) -> Any:
        value = view.get(field)
        if field in TIME_FIELDS:
            return parse_time(value or "1970-01-01T00:00:00Z")
        return (value is not None, value if value is not None else 0)

    return sorted(views, key=key, reverse=direction == "DESC")


def _flag(params: httpx.QueryParams, name: str, default: bool) -> bool:
    value = params.get(name)
    return default if value is None else value.lower() == "true"


def _limit(body: dict) -> int:
    limit = body.get("limit", 500)
    if not isinstance(limit, int) or not 1 <= limit <= 2000:
        raise _errors(422, "limit must be between 1 and 2000")
    return limit


def _ndjson(items: list[dict]) -> httpx.Response:
    content = b"".join(fastjson.dumps(i) + b"\n" for i in items)
    return httpx.Response(
        200, content=content, headers={"Content-Type": "application/octet-stream"}
    )


def _parse_filters(raw: Any, kind: str) -> list[dict]:
    """Filters (ref §2.7): JSON array (URL-encoded on GET) of {field, operator, value}."""
    if raw is None or raw == "":
        return []
    try:
        filters = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(filters, list) or not all(isinstance(f, dict) for f in filters):
            raise ValueError(raw)
        for f in filters:
            if f.get("field") not in FILTER_FIELDS[kind]:
                raise ValueError(f"unsupported filter field {f.get('field')!r}")
    except (ValueError, TypeError) as exc:
        raise _errors(400, f"Invalid filters query parameter: {exc}") from None
    return filters


def _filtered(views: list[dict], raw: Any, kind: str) -> list[dict]:
    """The views (or stored rows) that pass every filter of `raw` (parsed or not)."""
    filters = _parse_filters(raw, kind)
    try:
        return [v for v in views if all(_matches(v, f) for f in filters)]
    except (ValueError, TypeError) as exc:
        raise _errors(400, f"Invalid filters query parameter: {exc}") from None


def _span_totals(spans: list[dict]) -> dict:
    """A trace's (or thread's) usage and cost: sums over its spans (ref §2.1, §4)."""
    usage: dict[str, int] = {}
    for span in spans:
        for key, value in span.get("usage", {}).items():
            usage[key] = usage.get(key, 0) + value
    out: dict[str, Any] = {"usage": usage} if usage else {}
    costs = [s["total_estimated_cost"] for s in spans if "total_estimated_cost" in s]
    if costs:
        out["total_estimated_cost"] = sum(costs)
    return out


@dataclasses.dataclass
class _Index:
    """What reads look rows up by, built once per change of the tables (`OpikFake._index`)."""

    spans: dict[tuple[str, str], list[dict]] = dataclasses.field(
        default_factory=dict
    )  # (project, trace) -> its spans in the table key order
    span_traces: dict[str, list[str]] = dataclasses.field(
        default_factory=dict
    )  # project -> ids of the traces that have spans, sorted (for trace_id ranges)
    traces: dict[str, list[dict]] = dataclasses.field(default_factory=dict)  # project -> rows
    thread_scores: dict[tuple[str, str], list[dict]] = dataclasses.field(
        default_factory=dict
    )  # (project, thread)
    members: dict[tuple[str, str], list[dict]] = dataclasses.field(
        default_factory=dict
    )  # (project, thread)
    scores: dict[tuple[str, str], list[dict]] = dataclasses.field(
        default_factory=dict
    )  # (kind, entity)


def _json_value(document: Any, key: str) -> str:
    """ClickHouse `JSON_VALUE(document, '$.<key>')`, as Opik filters a dictionary field on a
    key (ref §2.7; `JsonPathUtils.toAnalyticsDbJsonPath`: a dotted key is a nested path): a
    scalar as text, '' for a missing path or an object/array."""
    node = document
    for part in key.removeprefix("$").removeprefix(".").split("."):
        if not isinstance(node, dict) or part not in node:
            return ""
        node = node[part]
    if isinstance(node, dict | list) or node is None:
        return ""
    return node if isinstance(node, str) else json.dumps(node)


def _matches_key(view: dict, f: dict) -> bool:
    """A dictionary field (metadata) filtered on `key`: Opik's DICTIONARY operators."""
    actual, value, op = (
        _json_value(view.get(f["field"]), f["key"]),
        f.get("value") or "",
        f["operator"],
    )
    a, b = actual.lower(), str(value).lower()
    empty = actual in ("", "null")
    tests = {
        "=": a == b,
        "!=": a != b,
        "contains": b in a,
        "not_contains": b not in a,
        "starts_with": a.startswith(b),
        "ends_with": a.endswith(b),
        "is_empty": empty,
        "is_not_empty": not empty,
    }
    if op in (">", "<"):
        try:
            return bool(_COMPARE[op](float(actual), float(value)))
        except ValueError:
            return False
    if op not in tests:
        raise ValueError(f"unsupported operator {op!r} for {f['field']}")
    return tests[op]


def _matches(view: dict, f: dict) -> bool:
    field, op, value = f["field"], f.get("operator"), f.get("value")
    if field == "metadata":
        if not f.get("key"):
            raise ValueError("a metadata filter needs a key")
        return _matches_key(view, f)
    actual = view.get(field)
    if op in ("is_empty", "is_not_empty"):
        return (actual in (None, "", [], {})) == (op == "is_empty")
    if actual is None:
        return False
    if field in TIME_FIELDS:
        actual, value = parse_time(actual), parse_time(value)
    elif field in ("duration", "number_of_messages"):
        value = float(value)
    elif field == "tags":
        present = value in actual
        if op in ("contains", "="):
            return present
        if op in ("not_contains", "!="):
            return not present
        raise ValueError(f"operator {op!r} not supported for tags")
    if op in _COMPARE:
        return bool(_COMPARE[op](actual, value))
    a, b = str(actual), str(value)
    text_ops = {"contains": b.lower() in a.lower(), "not_contains": b.lower() not in a.lower(),
                "starts_with": a.startswith(b), "ends_with": a.endswith(b)}  # fmt: skip
    if op not in text_ops:
        raise ValueError(f"unsupported operator {op!r}")
    return text_ops[op]
