"""`langwatch-file:PATH`: JSONL, one LangWatch trace per line in the read shape.

As a source it groups traces into threads by `metadata.thread_id` (two passes, see `_files.py`);
every line that is not a valid trace is dead-lettered with its line number. As a sink it appends
each acknowledged batch durably (fsync) and is idempotent: a trace already in the file with the
same content is not written again, a changed one replaces the old line when the file is closed
(or, after a crash, when it is next opened).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from .._endpoints import Counts, Rejected, Unit, Window, WriteResult
from .._errors import RecordError, UsageError
from .._files import FileSource, ThreadIndex
from .._models import Thread, Trace
from .._time import from_ms
from .convert import raw_counts, thread_to_wire, trace_from_wire, trace_to_wire

__all__ = ["LangWatchFileSink", "LangWatchFileSource"]

Locator = tuple[int, int]  # (byte offset, line number)


class LangWatchFileSource(FileSource[Locator]):
    """Reads a LangWatch JSONL export."""

    def __init__(self, path: Path, *, project: str | None = None, page_size: int = 100) -> None:
        if not path.is_file():
            raise UsageError(f"langwatch-file:{path}: no such file")
        self.path = path
        self.project = project or ""
        self.page_size = page_size
        self.label = f"langwatch-file:{path}"

    def _index(self, window: Window) -> ThreadIndex[Locator]:
        index: ThreadIndex[Locator] = ThreadIndex()
        digest = hashlib.blake2b(digest_size=16)
        with self.path.open("rb") as handle:
            lineno, offset = 0, 0
            for raw in handle:
                digest.update(raw)
                lineno += 1
                here, offset = offset, offset + len(raw)
                if not raw.strip():
                    continue
                record, problem = _parse(raw)
                if problem is not None:
                    index.rejected.append(
                        Rejected(
                            "trace",
                            f"{self.path}:{lineno}",
                            problem,
                            raw.decode("utf-8", "replace"),
                        )
                    )
                    continue
                assert record is not None
                started = _started_at(record)
                if started is not None and not window.holds(started):
                    continue
                metadata = record.get("metadata")
                thread_id = metadata.get("thread_id") if isinstance(metadata, dict) else None
                index.add(
                    thread_id if isinstance(thread_id, str) and thread_id else None, (here, lineno)
                )
        index.fingerprint = digest.hexdigest()
        return index

    def _load(
        self, thread_id: str | None, locators: list[Locator]
    ) -> tuple[Unit | None, list[Rejected]]:
        traces: list[Trace] = []
        rejected: list[Rejected] = []
        thread: Thread | None = None
        with self.path.open("rb") as handle:
            for offset, lineno in locators:
                handle.seek(offset)
                record, _ = _parse(handle.readline())
                where = f"{self.path}:{lineno} (trace {(record or {}).get('trace_id', '?')})"
                try:
                    trace, thread_data = trace_from_wire(
                        record or {}, project=self.project, where=where
                    )
                except RecordError as exc:
                    rejected.append(
                        Rejected("trace", where, exc.reason, record, raw_counts(record))
                    )
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


def _parse(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        record = json.loads(raw)
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(record, dict):
        return None, f"a JSON {type(record).__name__}, not a trace object"
    return record, None


def _started_at(record: dict[str, Any]) -> Any:
    try:
        return from_ms((record.get("timestamps") or {}).get("started_at"))
    except (ValueError, AttributeError):
        return None  # the conversion names the problem and dead-letters the record


class LangWatchFileSink:
    """Writes LangWatch JSONL, idempotently (see the module docstring)."""

    def __init__(self, path: Path, *, project_id: str | None = None) -> None:
        self.path = path
        self.project_id = project_id
        self.label = f"langwatch-file:{path}"
        self._digests: dict[str, bytes] = {}  # trace id -> digest of its line in the file
        self._ready = False
        self._replaced = False
        self._handle: IO[bytes] | None = None

    def _prepare(self) -> None:
        """Index the file before the first write, mending what a crash may have left."""
        if self.path.exists() and self._index():
            self._compact()
        self._ready = True

    def _index(self) -> bool:
        """Read the trace ids and digests; True when the file needs compacting."""
        self._digests, needs_compacting = {}, False
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle):
                if not raw.endswith(b"\n"):
                    return True  # a write cut short by a crash: never acknowledged, dropped
                record, _ = _parse(raw)
                trace_id = record.get("trace_id") if record else None
                key = trace_id if isinstance(trace_id, str) else f"\x00{number}"
                needs_compacting |= key in self._digests
                self._digests[key] = _digest(raw)
        return needs_compacting

    def _compact(self) -> None:
        """Rewrite the file keeping the last line of every trace (streamed, then replaced)."""
        last: dict[str, int] = {}
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle):
                if raw.endswith(b"\n"):
                    record, _ = _parse(raw)
                    trace_id = record.get("trace_id") if record else None
                    last[trace_id if isinstance(trace_id, str) else f"\x00{number}"] = number
        keep = set(last.values())
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "wb") as out, self.path.open("rb") as handle:
                for number, raw in enumerate(handle):
                    if number in keep:
                        out.write(raw)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._index()
        self._replaced = False

    async def write(self, units: list[Unit], *, dry_run: bool = False) -> WriteResult:
        result = WriteResult()
        if not dry_run and not self._ready:
            self._prepare()
        lines: list[bytes] = []
        for unit in units:
            try:
                wires = (
                    thread_to_wire(unit, project_id=self.project_id)
                    if isinstance(unit, Thread)
                    else [trace_to_wire(unit, project_id=self.project_id)]
                )
            except (ValidationError, ValueError) as exc:
                reason = f"cannot map: {exc}"
                result.rejected.append(
                    Rejected("trace", _label(unit), reason, None, Counts.of(unit))
                )
                continue
            for wire in wires:
                line = (json.dumps(wire, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
                if dry_run:
                    result.plan.append(
                        f"trace {wire['trace_id']}: {len(wire['spans'])} spans, "
                        f"{len(wire['evaluations'])} evaluations"
                    )
                    continue
                trace_id, digest = wire["trace_id"], _digest(line)
                if self._digests.get(trace_id) != digest:  # absent, or changed: (re)write it
                    self._replaced |= trace_id in self._digests
                    self._digests[trace_id] = digest
                    lines.append(line)
            result.written.add(Counts.of(unit))
        if lines:
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = self.path.open("ab")
            self._handle.write(b"".join(lines))
            self._handle.flush()
            os.fsync(self._handle.fileno())
        return result

    async def aclose(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._replaced:
            self._compact()  # keep one line per trace


def _digest(line: bytes) -> bytes:
    return hashlib.blake2b(line, digest_size=8).digest()


def _label(unit: Unit) -> str:
    return f"thread {unit.id}" if isinstance(unit, Thread) else f"trace {unit.id}"
