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
from array import array
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson

from .._compact import Strings
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


class _Locators:
    """The index's table of `Locator`s: four arrays of integers, not a tuple per record."""

    def __init__(self) -> None:
        self._columns = tuple(array("q") for _ in Locator._fields)

    def append(self, locator: Locator, /) -> None:
        for column, value in zip(self._columns, locator, strict=True):
            column.append(value)

    def __getitem__(self, number: int, /) -> Locator:
        offset, length, ordinal, line = (column[number] for column in self._columns)
        return Locator(offset, length, ordinal, line)

    def __setitem__(self, number: int, locator: Locator, /) -> None:
        for column, value in zip(self._columns, locator, strict=True):
            column[number] = value

    def __len__(self) -> int:
        return len(self._columns[0])


class _Copies:
    """Pass one's one entry per trace id, in arrays: how complete its best copy is so far
    (spans, evaluations, characters of input and output: -1 until a repeat needs them), where
    it is, its thread id, whether it holds a search preview, and how many copies were met."""

    def __init__(self) -> None:
        self.spans, self.evaluations, self.text = array("q"), array("q"), array("q")
        self.locators = _Locators()
        self.threads = Strings()
        self.thread_of = array("q")  # entry -> its number in `threads`, or -1 (no thread)
        self.preview = bytearray()
        self.copies: dict[int, int] = {}  # entry -> copies met, for trace ids met more than once

    def __len__(self) -> int:
        return len(self.spans)

    def put(self, entry: int, copy: _Copy) -> None:
        """Make `copy` entry number `entry` (a new one when `entry` is `len(self)`)."""
        thread = -1
        if copy.thread_id is not None:
            thread = len(self.threads)
            self.threads.append(copy.thread_id)
        values = (copy.spans, copy.evaluations, copy.text, thread, copy.preview)
        columns = (self.spans, self.evaluations, self.text, self.thread_of, self.preview)
        if entry == len(self):
            self.locators.append(copy.locator)
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        else:
            self.locators[entry] = copy.locator
            for column, value in zip(columns, values, strict=True):
                column[entry] = value

    def get(self, entry: int) -> _Copy:
        thread = self.thread_of[entry]
        return _Copy(
            spans=self.spans[entry],
            evaluations=self.evaluations[entry],
            text=self.text[entry],
            locator=self.locators[entry],
            thread_id=self.threads[thread] if thread >= 0 else None,
            preview=bool(self.preview[entry]),
        )


class _Copy(NamedTuple):
    """One copy of a trace as pass one sees it: how complete it is, and where it is."""

    spans: int
    evaluations: int
    text: int  # characters of input and output; -1: not counted yet (only a repeat needs it)
    locator: Locator
    thread_id: str | None
    preview: bool

    def rank(self) -> tuple[int, int, int, int]:
        """Most spans, then most evaluations, then the longest input/output, then the last."""
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
        index: ThreadIndex[Locator] = ThreadIndex(_Locators())
        digest = hashlib.blake2b(digest_size=16)
        entries: dict[str, int] = {}  # trace id -> its entry in `copies`, by first appearance
        copies = _Copies()
        repeats = _Repeats()
        traces = with_spans = 0
        with self.path.open("rb") as again:  # to count the text of a copy met before
            for item in scan(self.path, self.shape, digest):
                if item.record is None:
                    label = where(self.path, self.shape, item.locator)
                    index.rejected.append(Rejected("trace", label, item.problem or "", item.raw))
                    continue
                record, locator = item.record, item.locator
                spans = record.get("spans")
                spans = spans if isinstance(spans, list) else []
                traces += 1
                with_spans += len(spans) > 0
                started = _started_at(record)
                if started is not None and not window.holds(started):
                    continue
                trace_id = record.get("trace_id")
                key = (
                    trace_id
                    if isinstance(trace_id, str) and trace_id
                    else f"\x00{where(self.path, self.shape, locator)}"
                )
                copy = _copy_of(record, spans, locator)
                entry = entries.get(key)
                if entry is None:
                    entries[key] = len(copies)
                    copies.put(len(copies), copy)
                    continue
                kept = copies.get(entry)
                if kept.rank()[:2] == copy.rank()[:2]:  # a tie so far: the text decides
                    copy = copy._replace(text=_text(record))
                    if kept.text < 0:
                        kept = kept._replace(text=_text(load(again, kept.locator)[0] or {}))
                keep, drop = (copy, kept) if copy.rank() > kept.rank() else (kept, copy)
                copies.copies[entry] = copies.copies.get(entry, 1) + 1
                copies.put(entry, keep)
                repeats.add(key, kept, copy, drop)
        index.fingerprint = digest.hexdigest()
        previews: list[str] = []
        for key, entry in entries.items():
            copy = copies.get(entry)
            index.add(copy.thread_id, copy.locator, copy.spans)
            if copy.preview:
                previews.append(key)
        repeats.report(index.notes, self.label, self.shape == "jsonl", entries, copies)
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


def _copy_of(record: dict[str, Any], spans: list[Any], locator: Locator) -> _Copy:
    """`record` as pass one keeps it; its text is counted only when a repeat needs it."""
    evaluations = record.get("evaluations")
    metadata = record.get("metadata")
    thread_id = metadata.get("thread_id") if isinstance(metadata, dict) else None
    # A preview is longer than `_PREVIEW_CHARS`: a shorter record holds none (a character is
    # at least one byte of its text).
    preview = locator.length > _PREVIEW_CHARS and _holds_preview(
        [record.get("input"), record.get("output")]
        + [s.get(k) for s in spans if isinstance(s, dict) for k in ("input", "output")]
    )
    return _Copy(
        spans=len(spans),
        evaluations=len(evaluations) if isinstance(evaluations, list) else 0,
        text=-1,
        locator=locator,
        thread_id=thread_id if isinstance(thread_id, str) and thread_id else None,
        preview=preview,
    )


#: `is_preview` is False for every string of at most this many characters (a preview holds at
#: least `CLAMP_BYTES - 3` bytes of UTF-8, at most 4 a character).
_PREVIEW_CHARS = 2047


def _holds_preview(values: list[Any]) -> bool:
    """True when a string inside `values` is a search preview (`is_preview`). Only long strings
    are looked at closely, and a structure is walked (without recursion: values can nest
    deeply) only when its JSON text is long enough to hold one."""
    for value in values:
        if isinstance(value, str):
            if len(value) > _PREVIEW_CHARS and is_preview(value):
                return True
        elif isinstance(value, dict | list):
            try:
                if len(orjson.dumps(value)) <= _PREVIEW_CHARS:
                    continue  # every string in it is shorter than its text
            except orjson.JSONEncodeError:
                pass  # (an integer beyond 64 bits) walked
            if _walk_for_preview(value):
                return True
    return False


def _walk_for_preview(value: Any) -> bool:
    stack = [value]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if len(value) > _PREVIEW_CHARS and is_preview(value):
                return True
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _text(record: dict[str, Any]) -> int:
    """Characters of every string inside the record's input and output (walked without
    recursion: values can nest deeply)."""
    total = 0
    stack = [record.get("input"), record.get("output")]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            total += len(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return total


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

    def report(
        self, notes: Notes, label: str, lines: bool, entries: dict[str, int], copies: _Copies
    ) -> None:
        if not self.left_out.traces:
            return
        notes.skip(self.left_out.traces, "traces", REPEATED)
        notes.skip(self.left_out.spans, "spans", _REPEATED_SPANS)
        notes.skip(self.left_out.scores, "scores", _REPEATED_SCORES)
        unit = "line" if lines else "element"
        repeated = len(copies.copies)
        named = [
            f"trace {key} on {unit}s {', '.join(map(str, ordinals))} "
            f"(kept {unit} {copies.locators[entries[key]].ordinal})"
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
