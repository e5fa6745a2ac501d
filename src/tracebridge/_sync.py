"""`sync`: follow change from one endpoint to another, pass after pass (DESIGN.md, "Sync").

A **job** is its two endpoints and projects plus the fingerprint of the mapping in force, never
a window (`SyncJob.key`). A **pass** is the engine's `run()` over the window of what changed
since the job's high-water mark, minus a lookback, up to the moment the pass started, with the
job's steps and its `SyncState` as the checkpoint (`_sync_state` has the schema and the rules:
the mark moves only when a pass completes, never past the pass's start). An interrupted pass
resumes from its cursor with the same window. With `every`, passes repeat until `stop` is set;
a stop lets the page in flight finish and be checkpointed.

The steps every pass runs, and the wrapper around every sink, are built in one place,
`pipeline`: echo suppression and skip-unchanged go there.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx

from ._config import Settings, load_settings
from ._echo import EchoSuppression, suppress_echoes
from ._endpoint_specs import (
    Endpoint,
    mappings_for,
    open_endpoints,
    parse_endpoint,
    refuse_self_copy,
)
from ._engine import Report, Step, run, step_rule
from ._errors import UsageError
from ._hashing import digest
from ._interfaces import Sink, Source, Window
from ._mapping import Mappings
from ._replay import Replay, retry_dead_letters
from ._sync_state import SyncState, _utcnow
from ._unchanged import INDEX_FILE, UNCHANGED_RULE, HashIndex, SkipUnchanged

__all__ = [
    "DEFAULT_LOOKBACK",
    "PassResult",
    "SyncJob",
    "mapping_fingerprint",
    "parse_duration",
    "pipeline",
    "sync",
]

DEFAULT_LOOKBACK = timedelta(minutes=10)


# ------------------------------------------------------------------------------------ the job


def _canonical(value: Any) -> Any:
    """`value` with sets as sorted lists, so its JSON does not depend on hash order."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((_canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def mapping_fingerprint(mappings: Mappings) -> str:
    """A digest of the effective mapping tables (both directions: the Opik converter uses both).

    Another mapping is another job: what it writes differs, so its mark is its own.
    """
    text = json.dumps(_canonical(mappings.model_dump()), sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _public_url(url: str) -> str:
    """`url` without credentials, query or fragment (a job key is shown and stored)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _location(endpoint: Endpoint, settings: Settings) -> str | None:
    """Which server and account an API endpoint reaches (None for files).

    A LangWatch API key belongs to one project, and the API shows no other: two keys on one
    server are two jobs, told apart by a digest of the key (never the key).
    """
    if endpoint.kind == "opik":
        return f"{_public_url(settings.opik_url)} workspace {settings.opik_workspace}"
    if endpoint.kind == "langwatch":
        key = settings.langwatch_api_key.get_secret_value() if settings.langwatch_api_key else ""
        digest = hashlib.sha256(f"tracebridge job\x1f{key}".encode()).hexdigest()[:12]
        return f"{_public_url(settings.langwatch_endpoint)} key sha256:{digest}"
    return None


@dataclass(frozen=True)
class SyncJob:
    """What a sync follows: the checkpoint is keyed on this (module docstring)."""

    source: Endpoint
    sink: Endpoint
    source_project: str | None
    target_project: str | None
    mapping: str
    source_at: str | None = None
    sink_at: str | None = None

    @classmethod
    def of(
        cls,
        source: Endpoint,
        sink: Endpoint,
        source_project: str | None,
        target_project: str | None,
        settings: Settings,
        mappings: Mappings,
    ) -> SyncJob:
        """The job, with file paths made absolute and the projects the endpoints will use."""

        def absolute(endpoint: Endpoint) -> Endpoint:
            path = endpoint.path.resolve() if endpoint.path else None
            return Endpoint(endpoint.kind, endpoint.platform, path)

        if source.kind == "opik":
            source_project = source_project or settings.opik_project
        if sink.kind in ("opik", "opik-dir"):
            target_project = target_project or settings.opik_project or "Default Project"
        return cls(
            absolute(source),
            absolute(sink),
            source_project,
            target_project,
            mapping_fingerprint(mappings),
            _location(source, settings),
            _location(sink, settings),
        )

    def key(self) -> dict[str, str | None]:
        return {
            "kind": "sync",
            "from": str(self.source),
            "to": str(self.sink),
            "source_project": self.source_project,
            "target_project": self.target_project,
            "from_at": self.source_at,
            "to_at": self.sink_at,
            "mapping": self.mapping,
        }


#: LangWatch's collector ignores a span id re-sent within an hour of its last write, even with
#: changed content (reference/langwatch-api.md §5.1): see `SkipUnchanged(settle=)`.
LANGWATCH_SPAN_DEDUPE = timedelta(hours=1)


def _step_name(step: Step) -> str:
    """A step as a job key names it: its module and qualified name, and its rule."""
    kind = step if callable(step) and hasattr(step, "__qualname__") else type(step)
    return (
        f"{getattr(kind, '__module__', '')}.{getattr(kind, '__qualname__', '')}:{step_rule(step)}"
    )


def unchanged_destination(job: SyncJob) -> str:
    """How the skip-unchanged index names the job's destination."""
    return json.dumps(
        {"to": str(job.sink), "at": job.sink_at, "project": job.target_project}, sort_keys=True
    )


def skip_unchanged(
    sink: Sink,
    job: SyncJob,
    settings: Settings,
    *,
    fingerprint: str,
    rewrite: bool = False,
    rule: str = UNCHANGED_RULE,
) -> SkipUnchanged:
    """`sink` behind the skip-unchanged index of the job's destination (what `sync` and
    `migrate` both keep), with LangWatch's one-hour settle where the destination is LangWatch."""
    return SkipUnchanged(
        sink,
        settings.state_dir,
        destination=unchanged_destination(job),
        fingerprint=fingerprint,
        settle=LANGWATCH_SPAN_DEDUPE if job.sink.kind == "langwatch" else None,
        rewrite=rewrite,
        rule=rule,
    )


def pipeline(
    job: SyncJob,
    settings: Settings,
    steps: Sequence[Step] = (),
    wrap_sink: Callable[[Sink], Sink] | None = None,
) -> tuple[list[Step], Callable[[Sink], Sink]]:
    """The steps of every pass (the job's own first, then the caller's) and the sink wrapper.

    Built in: echo suppression (a copy that came from the destination and did not change
    there is not written back, DESIGN.md invariant 2), and skip-unchanged around the sink (a
    unit whose content hash was acknowledged by this destination before costs no write; the
    index lives in the state directory). The caller's wrapper sits inside skip-unchanged.
    """
    # The destination project as provenance names it: an Opik project name; a LangWatch
    # file's --target-project; a LangWatch API sink's project is asked per pass (`sync`).
    project = job.target_project if job.sink.kind != "langwatch" else ()
    built_in: list[Step] = [suppress_echoes(job.sink.platform, project or ())]

    def wrap(sink: Sink) -> Sink:
        inner = wrap_sink(sink) if wrap_sink is not None else sink
        return skip_unchanged(inner, job, settings, fingerprint=job.mapping)

    return [*built_in, *steps], wrap


# ----------------------------------------------------------------------------------- durations

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> timedelta:
    """`10m`, `90s`, `1h30m`, `2d`, `500ms`, or a bare number of seconds; UsageError otherwise."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return timedelta(seconds=float(value))
    if not value or _DURATION.sub("", value):
        raise UsageError(
            f"{text!r} is not a duration: write a number and a unit, e.g. 30s, 10m, 1h30m, 2d"
        )
    return timedelta(seconds=sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(value)))


# ---------------------------------------------------------------------------------- the passes


@dataclass
class PassResult:
    """One step of a sync command: a retry of the dead letters, or a pass."""

    kind: Literal["retry", "pass"]
    report: Report
    #: The pass's window (None for a retry).
    window: Window | None = None
    #: The job's high-water mark after the pass (moved only when it completed).
    high_water: datetime | None = None
    #: The pass resumed an interrupted one.
    resumed: bool = False
    #: A retry's dead letters that cannot be re-sent, kept, by why.
    kept: dict[str, int] = field(default_factory=dict)
    #: The job's high-water mark before the pass (None: the first pass, or a retry).
    high_water_before: datetime | None = None
    #: When the step started and ended (the sync clock; None where not measured).
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def lossy(self) -> bool:
        return self.report.lossy or bool(self.kept)


async def sync(
    from_: str,
    to: str,
    *,
    source_project: str | None = None,
    target_project: str | None = None,
    lookback: timedelta = DEFAULT_LOOKBACK,
    every: timedelta | None = None,
    reset: bool = False,
    retry_dead_letters: bool = False,
    dry_run: bool = False,
    settings: Settings | None = None,
    mapping: Path | None = None,
    steps: Sequence[Step] = (),
    wrap_sink: Callable[[Sink], Sink] | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    stop: anyio.Event | None = None,
    on_pass: Callable[[PassResult], None] | None = None,
    on_page: Callable[[Report], None] | None = None,
    clock: Callable[[], datetime] = _utcnow,
) -> Report:
    """Copy what changed at `from_` to `to`; see `tracebridge sync --help`.

    One pass (after a retry of the job's dead letters with `retry_dead_letters`), or with
    `every` one pass per interval until `stop` is set (a pass longer than the interval starts
    the next at once). `on_pass` sees each retry and pass as it ends; the last one's report is
    returned. `on_page` sees a pass's report after each of its pages (progress).
    `reset` removes the job's checkpoint first (its dead letters stay). `dry_run`
    reads the next pass's window and writes nothing, checkpoint included. `steps` run after the
    job's own (`pipeline`); `wrap_sink` wraps each pass's sink. `clock` is for tests.
    """
    settings = settings or load_settings()
    source, sink = parse_endpoint(from_), parse_endpoint(to)
    refuse_self_copy(
        source,
        sink,
        settings=settings,
        source_project=source_project,
        target_project=target_project,
    )
    if source.platform == sink.platform:
        # A copy on one platform keeps the record's ids and adds no stash, so it reads back
        # as born where it was written: the echo rules could not tell it from an original.
        raise UsageError(
            f"{source} and {sink} are both {source.platform}: sync follows changes between "
            "LangWatch and Opik; for a copy on one platform use migrate (it reruns "
            "idempotently)"
        )
    if lookback < timedelta(0):
        raise UsageError("--lookback must not be negative")
    if every is not None and every <= timedelta(0):
        raise UsageError("--every must be longer than 0s")
    if dry_run and (every is not None or reset or retry_dead_letters):
        raise UsageError(
            "--dry-run is one pass that changes nothing: not with --every, --reset "
            "or --retry-dead-letters"
        )
    mappings = mappings_for(settings, mapping, sink)
    job = SyncJob.of(source, sink, source_project, target_project, settings, mappings)
    if steps:
        # Steps change what is written, as a mapping does: other steps, another job (its own
        # mark, and skip-unchanged writes every unit once more through the new steps).
        names = ",".join(_step_name(step) for step in steps)
        job = replace(job, mapping=f"{job.mapping}+steps:{digest(names)}")
    all_steps, wrap = pipeline(job, settings, steps, wrap_sink)
    echo = next((s for s in all_steps if isinstance(s, EchoSuppression)), None)
    state = SyncState(settings.state_dir, job.key(), clock=clock)

    async def endpoints() -> tuple[Source, Sink]:
        """A pass's endpoints (each pass opens its own; the engine closes them)."""
        src, dst = await open_endpoints(
            source,
            sink,
            settings=settings,
            mappings=mappings,
            source_project=source_project,
            target_project=target_project,
            transports=transports,
        )
        if echo is not None and job.sink.kind == "langwatch":
            echo.project = await _langwatch_project(dst)
        return src, wrap(dst)

    def tell(result: PassResult) -> PassResult:
        if on_pass is not None:
            on_pass(result)
        return result

    if dry_run:
        window = state.open_pass(lookback, save=False)
        src, dst = await endpoints()
        opened = clock()
        report = await run(src, dst, window=window, steps=all_steps, dry_run=True, on_page=on_page)
        report.source_label, report.sink_label = src.label, dst.label
        return tell(PassResult("pass", report, window, started_at=opened, ended_at=clock())).report

    stop = stop or anyio.Event()
    last = Report(run_id="", stopped=True)
    state.lock()
    try:
        if reset:
            state.reset()
            # What the destination acknowledged is forgotten too: a destination that lost its
            # data (the usual reason to start over) gets everything again.
            index = HashIndex(settings.state_dir / INDEX_FILE)
            try:
                index.forget(unchanged_destination(job))
            finally:
                index.close()
        if retry_dead_letters:
            began_at = clock()
            replay = await _retry(state, endpoints, source, sink, mappings, all_steps, stop)
            if replay is not None:
                retried = PassResult("retry", replay.report, kept=dict(replay.kept))
                retried.started_at, retried.ended_at = began_at, clock()
                last = tell(retried).report
        while not stop.is_set():
            began = anyio.current_time()
            last = tell(await _pass(state, endpoints, lookback, all_steps, stop, on_page)).report
            if every is None or last.stopped:
                break
            rest = every.total_seconds() - (anyio.current_time() - began)
            with anyio.move_on_after(max(rest, 0)):
                await stop.wait()
    finally:
        state.unlock()
    return last


async def _langwatch_project(sink: Sink) -> tuple[str, ...]:
    """The names (id, slug) of the LangWatch project an API sink writes to; () when unknown,
    and then no copy counts as an echo (writing one to its origin again is idempotent)."""
    names = getattr(sink, "target_project", None)
    return tuple(await names()) if names is not None else ()


async def _pass(
    state: SyncState,
    endpoints: Callable[[], Awaitable[tuple[Source, Sink]]],
    lookback: timedelta,
    steps: Sequence[Step],
    stop: anyio.Event,
    on_page: Callable[[Report], None] | None = None,
) -> PassResult:
    """One pass: the interrupted one's window or a new one, through the engine."""
    started_at = state.clock()
    src, dst = await endpoints()
    try:
        window = state.open_pass(lookback)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await dst.aclose()
            await src.aclose()
        raise
    resumed = state.resuming
    before = state.checkpoint.high_water if state.checkpoint else None
    report = await run(
        src, dst, window=window, state=state, steps=steps, stop=stop, on_page=on_page
    )
    report.source_label, report.sink_label = src.label, dst.label
    if not report.stopped:
        state.record(report.read, report.written, report.skipped, report.dead_lettered, report.lost)
    mark = state.checkpoint.high_water if state.checkpoint else None
    return PassResult(
        "pass",
        report,
        window,
        mark,
        resumed,
        high_water_before=before,
        started_at=started_at,
        ended_at=state.clock(),
    )


async def _retry(
    state: SyncState,
    endpoints: Callable[[], Awaitable[tuple[Source, Sink]]],
    source: Endpoint,
    sink: Endpoint,
    mappings: Mappings,
    steps: Sequence[Step],
    stop: anyio.Event,
) -> Replay | None:
    src, dst = await endpoints()
    return await retry_dead_letters(
        state.dead_letter_path,
        src,
        dst,
        kind=source.kind,
        platform=source.platform,
        mappings=mappings,
        steps=steps,
        stop=stop,
    )
