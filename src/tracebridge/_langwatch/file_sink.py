"""The `langwatch-file:PATH` sink: LangWatch JSONL, appended durably and idempotently.

A trace already in the file with the same content is not written again, a changed one replaces
the old line when the file is closed (or, after a crash, when it is next opened).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from .._endpoints import Counts, Rejected, Unit, WriteResult
from .._models import Thread
from .convert import thread_to_wire, trace_to_wire

__all__ = ["LangWatchFileSink"]


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
