"""`langwatch-file:PATH`: JSONL, one LangWatch trace per line in the read shape.

As a source it groups traces into threads by `metadata.thread_id` (two passes, see `_files.py`);
every line that is not a valid trace is dead-lettered with its line number. As a sink it appends
each acknowledged batch durably (fsync) and is idempotent: a trace already in the file with the
same content is not written again, a changed one replaces the old line when the file is closed
(or, after a crash, when it is next opened). The sink lives in `file_sink`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .._endpoints import Rejected, Unit, Window
from .._errors import RecordError, UsageError
from .._files import FileSource, ThreadIndex
from .._models import Thread, Trace
from .._time import from_ms
from .convert import raw_counts, trace_from_wire
from .file_sink import LangWatchFileSink

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
