"""The two interfaces every platform and file format implements, and what flows between them.

A `Source` yields `Page`s: canonical threads and standalone traces, plus `Rejected` records it
could not read, and a JSON cursor to resume after the page. A `Sink` writes a batch and returns
only once the destination acknowledged it, saying what it wrote and what it refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from ._models import Thread, Trace

__all__ = [
    "Counts",
    "Notes",
    "Page",
    "Rejected",
    "Sink",
    "Source",
    "Unit",
    "Window",
    "WriteResult",
]

#: What a source yields and a sink writes: a whole thread, or a trace that belongs to none.
Unit = Thread | Trace


@dataclass(frozen=True)
class Window:
    """Inclusive bounds on a trace's start time (`axis="started"`, what `migrate` copies) or on
    its last change (`axis="updated"`, what `sync` follows: LangWatch `updated_at`, Opik
    `last_updated_at`); None is open. `holds` checks the start time only: a source reading on
    the update axis filters with the server's own update field."""

    since: datetime | None = None
    until: datetime | None = None
    axis: Literal["started", "updated"] = "started"

    def holds(self, moment: datetime) -> bool:
        return (self.since is None or moment >= self.since) and (
            self.until is None or moment <= self.until
        )


@dataclass(frozen=True)
class Rejected:
    """A record that could not be read or written: it goes to the dead-letter file.

    `kind` is trace, span, score or thread; `where` names the record (file and line, or id);
    `record` is the raw record when there is one (it is written to the dead-letter file as is).
    """

    kind: str
    where: str
    reason: str
    record: Any = None
    #: What the record held, when more than itself (a trace's spans and scores).
    contains: Counts | None = None
    #: The canonical thread or trace to re-send to retry this record, as the source read it
    #: (the engine sets it for what a step or the sink refused; None for what could not be read).
    unit: Thread | Trace | None = None


@dataclass
class Counts:
    """Numbers of records by kind."""

    threads: int = 0
    traces: int = 0
    spans: int = 0
    scores: int = 0

    def total(self) -> int:
        return self.threads + self.traces + self.spans + self.scores

    def add(self, other: Counts) -> None:
        self.threads += other.threads
        self.traces += other.traces
        self.spans += other.spans
        self.scores += other.scores

    @classmethod
    def of(cls, unit: Unit) -> Counts:
        traces = unit.traces if isinstance(unit, Thread) else [unit]
        return cls(
            threads=1 if isinstance(unit, Thread) else 0,
            traces=len(traces),
            spans=sum(len(t.spans) for t in traces),
            scores=sum(len(t.scores) + sum(len(s.scores) for s in t.spans) for t in traces)
            + (len(unit.scores) if isinstance(unit, Thread) else 0),
        )


@dataclass
class Notes:
    """Records left out by a documented rule, and warnings: what a page or a write reports."""

    skipped: Counts = field(default_factory=Counts)
    skip_reasons: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def skip(self, n: int, kind: str, rule: str) -> None:
        """Count `n` records of `kind` (threads, traces, spans, scores) left out by `rule`."""
        if n > 0:
            setattr(self.skipped, kind, getattr(self.skipped, kind) + n)
            self.skip_reasons[rule] = self.skip_reasons.get(rule, 0) + n

    def merge_notes(self, other: Notes) -> None:
        self.skipped.add(other.skipped)
        for rule, n in other.skip_reasons.items():
            self.skip_reasons[rule] = self.skip_reasons.get(rule, 0) + n
        self.warnings += other.warnings


@dataclass
class Page(Notes):
    """What a source read in one step, and where to resume after it.

    Records the source read but left out by a rule (`skip`, e.g. a repeated line) count as read
    and skipped; `warnings` reach the summary.
    """

    units: list[Unit] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    cursor: dict[str, Any] | None = None
    #: Records the source knows it lost without being able to name them (LangWatch
    #: `pagination.skipped`): reported, and they make the run lossy.
    lost: int = 0
    #: On the update axis: the moment through which the source has seen every change, once
    #: this page is acknowledged (LangWatch `pagination.updatedThrough`); None when unknown.
    high_water: datetime | None = None
    #: How many traces the source expects to yield in the whole window (every run of the job
    #: together), when it knows: a file source after its index pass, LangWatch's search
    #: `totalHits`, Opik's list `total`. Any page may say it; the latest one said wins. Only
    #: progress reads it (a rate and an ETA): never a count the run is checked against.
    expected_traces: int | None = None


@dataclass
class WriteResult(Notes):
    """What a sink did with a batch.

    `skipped` counts records left out by a documented rule; `skip_reasons` names the rules.
    """

    written: Counts = field(default_factory=Counts)
    rejected: list[Rejected] = field(default_factory=list)
    #: Lines describing what would be written (dry runs only).
    plan: list[str] = field(default_factory=list)

    def merge(self, other: WriteResult) -> None:
        self.written.add(other.written)
        self.rejected += other.rejected
        self.merge_notes(other)
        self.plan += other.plan


class Source(Protocol):
    """Reads one project of one platform. A unit, once yielded in a page, is not changed by
    the source any more (the engine may have hashed it: `_hashing.remembering_hashes`)."""

    #: How the source is shown to users (`langwatch-file:traces.jsonl`).
    label: str

    def pages(self, window: Window, resume: dict[str, Any] | None) -> AsyncIterator[Page]:
        """Pages in a stable order; `resume` is a cursor an earlier page carried."""
        ...

    async def aclose(self) -> None: ...


class Sink(Protocol):
    """Writes canonical records to one project of one platform, idempotently.

    A sink does not change the units it is given in place (it copies what it changes:
    `model_copy`): the engine may have hashed them already (`_hashing.remembering_hashes`).
    """

    label: str

    async def write(self, units: list[Unit], *, dry_run: bool = False) -> WriteResult:
        """Write the batch (or, with `dry_run`, map it and say what would be written)."""
        ...

    async def aclose(self) -> None:
        """Finish (flush files, release connections); called once, also after a failure."""
        ...
