"""`langwatch-file:PATH`: what LangWatch's exporter writes, as a source; JSONL, as a sink.

Source. `langwatch trace export` writes search results (`POST /api/traces/search`) as JSONL or as
one pretty-printed JSON array (`export_shapes` detects which, and refuses CSV and the web UI's
export with the export to use instead). Pass one indexes every record and keeps one small entry
per trace id; pass two loads one thread (traces sharing `metadata.thread_id`) or standalone trace
at a time. What pass one finds is reported on the first page:

- every record that is not a trace object is dead-lettered with `file:line` (or `file: element N`);
- a trace id on several records (the exporter's `--limit` makes the server restart its scroll) is
  read once, from its most complete copy: most spans, then most evaluations, then the longest
  input/output, then the last one; the other copies count as read and skipped by `REPEATED`;
- a file without a single span, and traces cut to the 64 KB search preview, are warned about.

Sink: `file_sink.LangWatchFileSink` (appends, replaces changed traces, repairs only its own).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import IO, Any, NamedTuple

from .._errors import RecordError, UsageError
from .._file_source import FileSource, ThreadIndex
from .._interfaces import Counts, Notes, Rejected, Unit, Window
from .._models import Thread, Trace
from .._time import from_ms
from .convert import raw_counts, trace_from_wire
from .export_shapes import EXPORT_HINT, Locator, detect, is_preview, load, scan, where
from .file_sink import LangWatchFileSink

__all__ = ["REPEATED", "LangWatchFileSink", "LangWatchFileSource"]

#: The skip rule of repeated trace ids (their spans and evaluations have rules of their own).
REPEATED = "repeated trace_id lines: kept the most complete copy"
_REPEATED_SPANS = f"{REPEATED} (spans of the copies left out)"
_REPEATED_SCORES = f"{REPEATED} (evaluations of the copies left out)"
_EXAMPLES = 5
_TOO_DEEP = "JSON nested too deeply to convert (deeper than Python's recursion limit allows)"


class _Copy(NamedTuple):
    """Pass one's one entry per trace id: how complete its best copy is, and where it is."""

    spans: int
    evaluations: int
    text: int  # characters of input and output
    locator: Locator
    thread_id: str | None
    preview: bool
    copies: int = 1

    def rank(self) -> tuple[int, int, int, int]:
        return (self.spans, self.evaluations, self.text, self.locator.ordinal)


class LangWatchFileSource(FileSource[Locator]):
    """Reads a LangWatch export: JSONL or a JSON array (see the module docstring)."""

    def __init__(self, path: Path, *, project: str | None = None, page_size: int = 100) -> None:
        self.label = f"langwatch-file:{path}"
        if not path.is_file():
            raise UsageError(f"{self.label}: no such file")
        try:
            self.shape = detect(path)
        except OSError as exc:
            raise UsageError(f"{self.label}: cannot read it ({exc.strerror or exc})") from None
        self.path = path
        self.project = project or ""
        self.page_size = page_size
        self._handle: IO[bytes] | None = None

    def _index(self, window: Window) -> ThreadIndex[Locator]:
        index: ThreadIndex[Locator] = ThreadIndex()
        digest = hashlib.blake2b(digest_size=16)
        best: dict[str, _Copy] = {}  # in order of first appearance
        repeats = _Repeats()
        traces = with_spans = 0
        for item in scan(self.path, self.shape, digest):
            label = where(self.path, self.shape, item.locator)
            if item.record is None:
                index.rejected.append(Rejected("trace", label, item.problem or "", item.raw))
                continue
            record, copy = item.record, _copy_of(item.record, item.locator)
            traces += 1
            with_spans += copy.spans > 0
            started = _started_at(record)
            if started is not None and not window.holds(started):
                continue
            trace_id = record.get("trace_id")
            key = trace_id if isinstance(trace_id, str) and trace_id else f"\x00{label}"
            kept = best.get(key)
            if kept is None:
                best[key] = copy
                continue
            keep, drop = (copy, kept) if copy.rank() > kept.rank() else (kept, copy)
            best[key] = keep._replace(copies=kept.copies + 1)
            repeats.add(key, kept, copy, drop)
        index.fingerprint = digest.hexdigest()
        previews: list[str] = []
        for key, copy in best.items():
            index.add(copy.thread_id, copy.locator)
            if copy.preview:
                previews.append(key)
        repeats.report(index.notes, self.label, self.shape == "jsonl", best)
        if traces and not with_spans:
            index.notes.warnings.append(
                f"{self.label} holds no spans at all: was it exported without "
                f"`--include-spans`? Its traces are copied without their span trees; "
                f"to copy them whole, export again with `{EXPORT_HINT}`"
            )
        if previews:
            index.notes.warnings.append(
                f"{len(previews)} traces in {self.label} hold LangWatch's 64 KB search preview "
                f"instead of their whole input/output: {_some(previews, 'trace ')}. They are "
                "copied as cut; to copy them whole, read them with `--from langwatch`, which "
                "re-reads such traces through GET /api/traces/{id}"
            )
        return index

    def _load(
        self, thread_id: str | None, locators: list[Locator]
    ) -> tuple[Unit | None, list[Rejected]]:
        traces: list[Trace] = []
        rejected: list[Rejected] = []
        thread: Thread | None = None
        if self._handle is None:
            self._handle = self.path.open("rb")
        for locator in locators:
            record, problem = load(self._handle, locator)
            label = where(self.path, self.shape, locator)
            if record is None:  # the file changed since pass one
                rejected.append(Rejected("trace", label, problem or "unreadable", None))
                continue
            label += f" (trace {record.get('trace_id', '?')})"
            try:
                trace, thread_data = trace_from_wire(record, project=self.project, where=label)
            except RecordError as exc:
                rejected.append(Rejected("trace", label, exc.reason, record, raw_counts(record)))
                continue
            except RecursionError:
                rejected.append(Rejected("trace", label, _TOO_DEEP, None, raw_counts(record)))
                continue
            traces.append(trace)
            thread = thread_data or thread
        if not traces:
            return None, rejected
        if thread_id is None:
            return traces[0], rejected
        traces.sort(key=lambda t: t.started_at)
        data = thread.model_dump(exclude={"id", "traces"}) if thread else {}
        return Thread(id=thread_id, traces=traces, **data), rejected

    async def aclose(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _copy_of(record: dict[str, Any], locator: Locator) -> _Copy:
    spans = record.get("spans")
    spans = spans if isinstance(spans, list) else []
    evaluations = record.get("evaluations")
    metadata = record.get("metadata")
    thread_id = metadata.get("thread_id") if isinstance(metadata, dict) else None
    io = [record.get("input"), record.get("output")]
    values = io + [s.get(k) for s in spans if isinstance(s, dict) for k in ("input", "output")]
    return _Copy(
        spans=len(spans),
        evaluations=len(evaluations) if isinstance(evaluations, list) else 0,
        text=sum(len(s) for s in _strings(io)),
        locator=locator,
        thread_id=thread_id if isinstance(thread_id, str) and thread_id else None,
        preview=any(is_preview(s) for s in _strings(values)),
    )


def _strings(values: list[Any]) -> list[str]:
    """Every string inside `values` (walked without recursion: values can nest deeply)."""
    found: list[str] = []
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


def _some(names: list[str], prefix: str = "") -> str:
    """The first few names, and how many more."""
    shown = ", ".join(f"{prefix}{n}" for n in names[:_EXAMPLES])
    more = len(names) - _EXAMPLES
    return f"{shown} and {more} more" if more > 0 else shown


class _Repeats:
    """Copies of trace ids left out: counted in full, the first few named with their lines."""

    def __init__(self) -> None:
        self.left_out = Counts()
        self.ordinals: dict[str, list[int]] = {}

    def add(self, key: str, earlier: _Copy, later: _Copy, dropped: _Copy) -> None:
        self.left_out.add(Counts(traces=1, spans=dropped.spans, scores=dropped.evaluations))
        if key in self.ordinals:
            self.ordinals[key].append(later.locator.ordinal)
        elif len(self.ordinals) < _EXAMPLES:
            self.ordinals[key] = [earlier.locator.ordinal, later.locator.ordinal]

    def report(self, notes: Notes, label: str, lines: bool, best: dict[str, _Copy]) -> None:
        if not self.left_out.traces:
            return
        notes.skip(self.left_out.traces, "traces", REPEATED)
        notes.skip(self.left_out.spans, "spans", _REPEATED_SPANS)
        notes.skip(self.left_out.scores, "scores", _REPEATED_SCORES)
        unit = "line" if lines else "element"
        repeated = sum(1 for copy in best.values() if copy.copies > 1)
        named = [
            f"trace {key} on {unit}s {', '.join(map(str, ordinals))} "
            f"(kept {unit} {best[key].locator.ordinal})"
            for key, ordinals in self.ordinals.items()
        ]
        more = repeated - len(named)
        notes.warnings.append(
            f"{label} holds {repeated} traces more than once ({self.left_out.traces} repeated "
            f"{unit}s: `langwatch trace export --limit` repeats traces when the server restarts "
            "its scroll). Kept the most complete copy of each (most spans, then most "
            f"evaluations, then the longest input/output, then the last {unit}) and left the "
            f"others out: {'; '.join(named)}{f'; and {more} more' if more > 0 else ''}"
        )


def _started_at(record: dict[str, Any]) -> Any:
    try:
        return from_ms((record.get("timestamps") or {}).get("started_at"))
    except (ValueError, AttributeError, TypeError):
        return None  # the conversion names the problem and dead-letters the record
