"""`verify`: do two projects hold the same records? (`tracebridge verify --from SRC --to DST`)

Both sides are read in the same window (trace start times, inclusive) and every trace is keyed
by its provenance, (platform, id): a record born on a side keys as itself, a copy tracebridge
wrote keys as its original (the stash names it), so a one-way copy and a two-way sync are
checked alike. Each key maps to the trace's content hash (`_hashing.content_hash`: the record as
a user sees it, the same for an original and its faithful copy). Then:

- **missing**: a key the source holds and the target does not;
- **extra**: a key the target holds and the source does not (born there, or copied from
  elsewhere);
- **different**: a key both hold with different content (a changed span, score, tag, ...).

A thread both sides hold is compared on its own data too (its scores and tags; not its status,
which Opik sets itself as conversations go quiet): a difference lists it as `thread <id>`.
Records a side could not read (dead letters of a migrate) and records its server said it skipped
are counted as `unreadable` and `lost`: they make the sides not provably equal.

Memory holds one key and one hash per record of each side (not the records). Both sources are
read concurrently and closed at the end, as `run` closes its endpoints.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx

from ._config import Settings, load_settings
from ._decoding import collecting, drain_into
from ._endpoint_specs import mappings_for, open_source, parse_endpoint
from ._errors import UsageError
from ._hashing import content_hash, score_content
from ._interfaces import Source, Window
from ._models import Thread, Trace

__all__ = ["VerifyReport", "format_verify", "verify", "verify_endpoints"]

_SHOWN = 20


@dataclass
class _Side:
    """What one side holds: key → hash, thread id → hash of its own data, and what failed."""

    label: str
    traces: dict[str, str] = field(default_factory=dict)
    threads: dict[str, str] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    lost: int = 0


@dataclass
class VerifyReport:
    """What `verify` found. `missing`, `extra` and `different` name records as
    `<platform> trace <id>` (by provenance) or `thread <id>`, sorted."""

    source_label: str
    target_label: str
    #: Traces each side holds in the window.
    source_traces: int = 0
    target_traces: int = 0
    #: Traces both sides hold (by provenance), equal or not.
    compared: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    #: Records a side could not read: `<side label>: <where>: <reason>`.
    unreadable: list[str] = field(default_factory=list)
    #: Records a side's server said it skipped without naming them.
    lost: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.different or self.unreadable or self.lost)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def as_json(self, limit: int = _SHOWN) -> dict[str, Any]:
        """The report as JSON: exact counts, and the first `limit` records of each list."""
        return {
            "ok": self.ok,
            "source": self.source_label,
            "target": self.target_label,
            "counts": {
                "source_traces": self.source_traces,
                "target_traces": self.target_traces,
                "compared": self.compared,
                "missing": len(self.missing),
                "extra": len(self.extra),
                "different": len(self.different),
                "unreadable": len(self.unreadable),
                "lost": self.lost,
            },
            "missing": self.missing[:limit],
            "extra": self.extra[:limit],
            "different": self.different[:limit],
            "unreadable": self.unreadable[:limit],
        }


def _key(trace: Trace) -> str:
    return f"{trace.source.platform} trace {trace.source.id}"


def _thread_data_hash(thread: Thread) -> str:
    data = {
        "scores": sorted(json.dumps(score_content(s), sort_keys=True) for s in thread.scores),
        "tags": sorted(thread.tags),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


async def _read(source: Source, window: Window, side: _Side) -> None:
    with collecting() as notes:  # decoders' notes (repairs, changed copies) are not needed
        async for page in source.pages(window, None):
            drain_into(page, notes)
            for unit in page.units:
                traces = unit.traces if isinstance(unit, Thread) else [unit]
                if isinstance(unit, Thread):
                    side.threads[unit.id] = _thread_data_hash(unit)
                for trace in traces:
                    side.traces[_key(trace)] = content_hash(trace)
            side.unreadable += [f"{side.label}: {r.where}: {r.reason}" for r in page.rejected]
            side.lost += page.lost


async def verify(source: Source, target: Source, window: Window | None = None) -> VerifyReport:
    """Compare what `source` and `target` hold in `window` (module docstring); closes both."""
    window = window or Window()
    ours, theirs = _Side(source.label), _Side(target.label)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(_read, source, window, ours)
            group.start_soon(_read, target, window, theirs)
    except BaseExceptionGroup as errors:
        raise errors.exceptions[0] from None
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await source.aclose()
            finally:
                await target.aclose()
    both = ours.traces.keys() & theirs.traces.keys()
    different = [k for k in both if ours.traces[k] != theirs.traces[k]]
    different += [
        f"thread {t}"
        for t in ours.threads.keys() & theirs.threads.keys()
        if ours.threads[t] != theirs.threads[t]
    ]
    return VerifyReport(
        source_label=source.label,
        target_label=target.label,
        source_traces=len(ours.traces),
        target_traces=len(theirs.traces),
        compared=len(both),
        missing=sorted(ours.traces.keys() - theirs.traces.keys()),
        extra=sorted(theirs.traces.keys() - ours.traces.keys()),
        different=sorted(different),
        unreadable=ours.unreadable + theirs.unreadable,
        lost=ours.lost + theirs.lost,
    )


async def verify_endpoints(
    from_: str,
    to: str,
    *,
    source_project: str | None = None,
    target_project: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    settings: Settings | None = None,
    mapping: Path | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> VerifyReport:
    """`verify` between two endpoint specs, opened as `migrate` opens them (the target is read
    as a source: an Opik target without a project reads OPIK_PROJECT_NAME, else
    'Default Project', where `migrate` writes by default)."""
    settings = settings or load_settings()
    source, target = parse_endpoint(from_), parse_endpoint(to)
    if since and until and since > until:
        raise UsageError("--since is after --until")
    mappings = mappings_for(settings, mapping, target)
    if target.kind == "opik" and target_project is None:
        target_project = settings.opik_project or "Default Project"
    src = open_source(
        source, settings=settings, mappings=mappings, project=source_project, transports=transports
    )
    try:
        dst = open_source(
            target,
            settings=settings,
            mappings=mappings,
            project=target_project,
            transports=transports,
        )
    except BaseException:
        await src.aclose()
        raise
    return await verify(src, dst, Window(since, until))


def format_verify(report: VerifyReport, limit: int = _SHOWN) -> str:
    """What a person reads: the counts, the first `limit` records of each list, the verdict."""
    lines = [
        f"{report.source_label} -> {report.target_label}: {report.source_traces} traces in the "
        f"source, {report.target_traces} in the target, {report.compared} compared"
    ]
    for title, items in (
        ("missing in the target", report.missing),
        ("extra in the target (not from the source)", report.extra),
        ("different", report.different),
        ("could not be read", report.unreadable),
    ):
        if not items:
            continue
        lines.append(f"{title}: {len(items)}")
        lines += [f"  {item}" for item in items[:limit]]
        if len(items) > limit:
            lines.append(f"  ... and {len(items) - limit} more")
    if report.lost:
        lines.append(f"lost at the source (the server skipped them): {report.lost}")
    if report.ok:
        lines.append(f"OK: both sides hold the same {report.compared} traces (exit 0)")
    else:
        counts = (
            ("missing", len(report.missing)),
            ("extra", len(report.extra)),
            ("different", len(report.different)),
            ("unreadable", len(report.unreadable)),
            ("lost", report.lost),
        )
        lines.append(f"MISMATCH: {', '.join(f'{n} {what}' for what, n in counts if n)} (exit 1)")
    return "\n".join(lines)
