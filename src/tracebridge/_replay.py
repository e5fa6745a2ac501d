"""Retrying a sync job's dead letters (`tracebridge sync --retry-dead-letters`).

Each entry of the job's dead-letter file is one of:
- **a unit**: what a step or the sink refused carries `unit`, the canonical thread or trace as
  the source read it (`_engine`); it is sent again as it is, through the steps and the sink;
- **a raw trace** a source could not read: `record` is a LangWatch search-API trace object
  (`langwatch-file:`, `langwatch`) or Opik's `{"trace": ..., "spans": [...]}` (`opik-dir:`,
  `opik`); it is decoded again by the job's source platform, with today's code and mapping
  (a fixed mapping file or a newer tracebridge is why one retries), and the trace sent;
- **not replayable**, kept as it was, counted by why: a line that is not a JSON object, a record
  with neither (a "not JSON" line keeps its raw text only; a span or score refused alone by the
  destination, a thread's tags), or a unit that no longer validates.

Every entry re-sent and acknowledged leaves the file; one refused again is written back as the
engine writes any dead letter (new run id and reason, the unit or raw record kept, so it can be
retried again). The file is replaced atomically once the retry ended; a retry that failed or was
stopped leaves it as it was (re-sending what had landed is idempotent).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ._engine import Report, Step, run
from ._errors import RecordError
from ._failures import describe, is_record_failure
from ._interfaces import Page, Rejected, Sink, Source, Unit, Window
from ._mapping import Mappings
from ._models import Thread, Trace
from ._state import DeadLetters, dead_letter_lines, write_atomically

__all__ = ["Replay", "retry_dead_letters"]

_PAGE = 50


@dataclass
class Replay:
    """What a retry did: the engine's report of what was re-sent, and what stayed as it was."""

    report: Report
    #: Entries that cannot be re-sent, kept in the file, by why.
    kept: Counter[str] = field(default_factory=Counter)
    #: Entries read from the file.
    entries: int = 0

    @property
    def lossy(self) -> bool:
        return self.report.lossy or bool(self.kept)


@dataclass(frozen=True)
class _Raw:
    """A raw trace to decode again: its entry's `where` and record."""

    where: str
    record: dict[str, Any]


def _classify(entry: dict[str, Any] | None, platform: str) -> Unit | _Raw | str:
    """What an entry is: a unit to re-send, a raw trace to decode, or why it is kept."""
    if entry is None:
        return "not a JSON entry (a line cut short?)"
    unit = entry.get("unit")
    if isinstance(unit, dict) and unit.get("type") in ("thread", "trace"):
        data = unit.get("data")
        try:
            data = json.loads(data) if isinstance(data, str) else data
            model = Thread if unit["type"] == "thread" else Trace
            return model.model_validate(data)
        except (ValueError, RecursionError):
            return "its unit does not validate as a canonical record any more"
    record, where = entry.get("record"), str(entry.get("where", ""))
    if isinstance(record, dict) and _decodable(record, platform):
        return _Raw(where, record)
    kind = entry.get("kind")
    if kind in ("span", "score"):
        return f"a {kind} refused alone: the entry does not hold its trace to send again"
    if kind == "thread":
        return "thread data refused alone: the entry does not hold the thread to send again"
    return "no record to rebuild it from (the source could not read it as a record)"


def _decodable(record: dict[str, Any], platform: str) -> bool:
    if platform == "langwatch":
        return "trace_id" in record
    return isinstance(record.get("trace"), dict) and isinstance(record.get("spans", []), list)


class _ReplaySource:
    """The entries to re-send, as pages: units as they are, raw traces decoded again."""

    def __init__(
        self,
        items: list[Unit | _Raw],
        *,
        platform: str,
        kind: str,
        project: str,
        mappings: Mappings,
        label: str,
    ) -> None:
        self.items = items
        self.platform, self.kind, self.project, self.mappings = platform, kind, project, mappings
        self.label = f"the dead letters of {label}"

    async def pages(self, window: Window, resume: dict[str, Any] | None) -> AsyncIterator[Page]:
        for start in range(0, len(self.items), _PAGE):
            page = Page()
            for item in self.items[start : start + _PAGE]:
                if isinstance(item, _Raw):
                    decoded = self._decode(item)
                    if isinstance(decoded, Rejected):
                        page.rejected.append(decoded)
                        continue
                    item = decoded
                page.units.append(item)
            yield page
            await anyio.lowlevel.checkpoint()

    def _decode(self, raw: _Raw) -> Trace | Rejected:
        """The trace the source would have read, or its dead letter with today's reason."""
        if self.platform == "langwatch":
            from ._langwatch.convert import raw_counts, trace_from_wire

            def decode() -> Trace:
                return trace_from_wire(raw.record, project=self.project, where=raw.where)[0]

            counts = raw_counts(raw.record)
        else:
            from ._opik.convert import raw_counts as opik_counts
            from ._opik.convert import trace_from_opik
            from ._opik.folder import _span_from_file

            trace, spans = raw.record["trace"], raw.record.get("spans") or []
            if self.kind == "opik-dir":
                spans = [_span_from_file(s) if isinstance(s, dict) else s for s in spans]

            def decode() -> Trace:
                return trace_from_opik(
                    trace, spans, project=self.project, mappings=self.mappings, where=raw.where
                )

            counts = opik_counts(trace, spans)
        try:
            return decode()
        except Exception as exc:
            if not is_record_failure(exc):
                raise
            reason = exc.reason if isinstance(exc, RecordError) else describe(exc)
            return Rejected("trace", raw.where, reason, raw.record, counts)

    async def aclose(self) -> None:
        return None


async def retry_dead_letters(
    path: Path,
    source: Source,
    sink: Sink,
    *,
    kind: str,
    platform: str,
    mappings: Mappings,
    steps: Sequence[Step],
    stop: anyio.Event | None = None,
) -> Replay | None:
    """Re-send the entries of the dead-letter file `path` (module docstring); None when the
    file is empty or absent. `source` is the job's source, opened only to know the project it
    reads (what ids derive from): raw records decode as that source would decode them."""
    lines = list(dead_letter_lines(path))
    project = str(getattr(source, "project", "") or "")
    label = source.label
    await source.aclose()
    if not lines:
        await sink.aclose()
        return None
    items: list[Unit | _Raw] = []
    kept_lines: list[str] = []
    kept: Counter[str] = Counter()
    for line, entry in lines:
        what = _classify(entry, platform)
        if isinstance(what, str):
            kept[what] += 1
            kept_lines.append(line)
        else:
            items.append(what)
    replay_source = _ReplaySource(
        items, platform=platform, kind=kind, project=project, mappings=mappings, label=label
    )
    again = path.with_name(f".{path.name}.retry")
    again.unlink(missing_ok=True)
    state = _RetryState(again)
    try:
        report = await run(replay_source, sink, state=state, steps=steps, stop=stop)
        if not report.stopped:
            refused = again.read_text(encoding="utf-8").splitlines() if again.exists() else []
            write_atomically(path, "".join(line + "\n" for line in [*kept_lines, *refused]))
    finally:
        again.unlink(missing_ok=True)
    report.source_label, report.sink_label = replay_source.label, sink.label
    report.dead_letter_path = str(path)
    return Replay(report, kept, len(lines))


class _RetryState:
    """The engine's `JobState` of a retry: no checkpoint; the refused go to a side file."""

    def __init__(self, dead_letter_path: Path) -> None:
        self.dead_letter_path = dead_letter_path

    def dead_letters(self, run_id: str) -> DeadLetters:
        return DeadLetters(self.dead_letter_path, run_id)

    def begin(self) -> tuple[dict[str, Any] | None, int]:
        return None, 0

    def acknowledged(self, page: Page) -> None:
        return None

    def finished(self) -> None:
        return None

    def end(self) -> None:
        return None
