"""The `langwatch-file:PATH` sink: LangWatch JSONL, appended durably, repairing only its own.

Each acknowledged batch is appended and fsynced; a trace already in the file with the same content
is not written again, a changed one replaces its earlier lines when the sink closes (streamed
compaction through `_state.open_atomically`, keeping the file's mode). Only what tracebridge wrote
is ever repaired: a sidecar (`.<name>.tracebridge.json`, removed at a clean close) keeps the file's
identity, its length when this sink first wrote to it (`base`) and after the last acknowledged write
(`acked`). After a crash, an incomplete, invalid last line that starts at or after `acked` is an
unacknowledged write of ours and is cut; any other unterminated last line is the user's and is kept
(a newline goes before new lines). Repeated trace ids before `base` are the user's and stay. The
file is locked for the run (`.<name>.tracebridge.lock`); temp files a killed compaction left are
removed at start. Environment problems are `UsageError`s naming the path; a trace JSON cannot carry
(nested too deeply) is that trace's dead letter.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import ValidationError

from .._compact import DigestMap
from .._decoding import describe_validation_error
from .._errors import CheckpointError, LockedError, UsageError
from .._interfaces import Counts, Rejected, Unit, WriteResult
from .._json import dumps_compact, json_lines
from .._locks import PathLock
from .._models import Thread, Trace
from .._state import make_folder, open_atomically
from .convert import thread_to_wire, trace_to_wire
from .export_shapes import parse

__all__ = ["LangWatchFileSink"]

T = TypeVar("T")

_TOO_DEEP = "JSON nested too deeply to convert (deeper than Python's recursion limit allows)"


class LangWatchFileSink:
    """Writes LangWatch JSONL, idempotently, repairing only what it wrote (module docstring)."""

    def __init__(self, path: Path, *, project_id: str | None = None) -> None:
        self.path = path
        self.project_id = project_id
        self.label = f"langwatch-file:{path}"
        _check_not_a_directory(path, self.label)
        self._lock = PathLock(path.with_name(f".{path.name}.tracebridge.lock"), self.label)
        self._state_path = path.with_name(f".{path.name}.tracebridge.json")
        # Trace id -> digest of its last line in the file. Compact, and not exact: when two ids
        # share a digest, it answers with the other's line digest, which differs from this
        # id's line (each line holds its id), so the line is written; and as the id seems
        # known, the file is compacted at close, which reads the ids from the lines themselves.
        self._digests = DigestMap()
        self._ready = self._locked = self._replaced = self._needs_newline = False
        self._base = self._acked = 0  # see the module docstring
        self._handle: IO[bytes] | None = None

    # -- opening: lock, clean up, mend ------------------------------------------------------

    def _prepare(self, result: WriteResult) -> None:
        """Before the first write: lock the file, then mend what an earlier run of ours left."""
        _check_not_a_directory(self.path, self.label)
        try:
            make_folder(self.path.parent)  # durable in its parent: our lines go there
            self._lock.acquire()
        except LockedError:
            raise
        except (OSError, CheckpointError) as exc:
            raise UsageError(f"{self.label}: cannot write there ({_why(exc)})") from None
        self._locked = True
        try:
            _remove_stale_temp_files(self.path)
            if self.path.exists():
                state = self._load_state()
                if self._index(state, result):
                    self._compact()
                elif state is not None and state[1] < self._acked:
                    # Whole lines a killed run of ours appended past its last acknowledged
                    # write, perhaps never fsynced: this run counts them as written.
                    with self.path.open("rb") as handle:
                        os.fsync(handle.fileno())
        except OSError as exc:
            raise UsageError(f"{self.label}: cannot update it ({_why(exc)})") from None
        self._ready = True

    def _load_state(self) -> tuple[int, int] | None:
        """`(base, acked)` of an unfinished earlier run of ours on this very file, else None."""
        try:
            data = json.loads(self._state_path.read_text(encoding="utf-8"))
            size = self.path.stat()
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("file") != [size.st_dev, size.st_ino]:
            return None
        base, acked = data.get("base"), data.get("acked")
        if type(base) is int and type(acked) is int and 0 <= base <= acked <= size.st_size:
            return base, acked
        return None

    def _save_state(self) -> None:
        size = self.path.stat()
        state = {"file": [size.st_dev, size.st_ino], "base": self._base, "acked": self._acked}
        self._state_path.write_text(json.dumps(state) + "\n", encoding="utf-8")

    def _index(self, state: tuple[int, int] | None, result: WriteResult) -> bool:
        """Read trace ids and digests and mend the tail; True when our copies need compacting."""
        base = state[0] if state else None
        self._digests, needs_compacting, offset = DigestMap(), False, 0
        with self.path.open("rb") as handle:
            for start, number, raw in json_lines(handle):
                offset = start + len(raw)
                if not raw.endswith(b"\n"):
                    if self._mend_tail(start, raw, state, result):
                        offset = start
                        break
                    raw += b"\n"
                key = _key(raw, number)
                needs_compacting |= base is not None and start >= base and key in self._digests
                self._digests[key] = _digest(raw)
        self._base = base if base is not None else offset
        self._acked = offset
        return needs_compacting

    def _mend_tail(
        self, start: int, raw: bytes, state: tuple[int, int] | None, result: WriteResult
    ) -> bool:
        """An unterminated last line: True when it was cut (our torn write), else it is kept."""
        _, problem = parse(raw)
        if problem is not None and state is not None and start >= state[1]:
            with self.path.open("r+b") as handle:
                handle.truncate(start)
                os.fsync(handle.fileno())
            result.warnings.append(
                f"{self.label}: removed an incomplete last line ({len(raw)} bytes) that an "
                "interrupted tracebridge run left; it was never acknowledged, so it is written "
                "again"
            )
            return True
        self._needs_newline = True
        if problem is not None:
            result.warnings.append(
                f"{self.label}: its last line is incomplete ({problem}) and tracebridge did not "
                "write it, so it is kept as it is; new traces start on the next line"
            )
        return False

    def _compact(self) -> None:
        """Keep only the last line of each trace tracebridge wrote (at or after `base`); every
        other line stays. Streamed into a temp file with the file's mode, then replaced. Each
        line is parsed once: the first pass numbers the trace ids and notes each line's; the
        second only copies (a line the first pass did not see is kept)."""
        numbers: dict[str, int] = {}  # trace id -> its number, for the first pass only
        key_of = array("q")  # line number - 1 -> its trace id's number
        last = array("q")  # trace id's number -> its last line number
        ours = bytearray()  # trace id's number -> 1 when tracebridge wrote a line of it
        with self.path.open("rb") as handle:
            for offset, number, raw in json_lines(handle):
                key = numbers.setdefault(_key(raw, number), len(numbers))
                if key == len(last):
                    last.append(number)
                    ours.append(0)
                last[key] = number
                ours[key] |= offset >= self._base
                key_of.append(key)
        del numbers
        mode = stat.S_IMODE(self.path.stat().st_mode)  # the new file keeps the file's mode
        with open_atomically(self.path, mode=mode) as out, self.path.open("rb") as handle:
            base = None
            for offset, number, raw in json_lines(handle):
                if base is None and offset >= self._base:
                    base = out.tell()
                key = key_of[number - 1] if number <= len(key_of) else -1
                if key < 0 or not ours[key] or last[key] == number:
                    out.write(raw if raw.endswith(b"\n") else raw + b"\n")
            size = out.tell()
        self._base, self._acked = (size if base is None else base), size
        self._replaced = self._needs_newline = False
        self._save_state()

    # -- writing -----------------------------------------------------------------------------

    async def write(self, units: list[Unit], *, dry_run: bool = False) -> WriteResult:
        """Map and encode each unit, then append the batch's new or changed lines, durably.
        Each trace's wire record is dropped once it is a line (a large thread's page holds its
        canonical records and its lines, not its wire records too)."""
        result = WriteResult()
        if not dry_run and not self._ready:
            self._prepare(result)
        lines: list[bytes] = []
        # Digests of this batch's lines: known only once the lines are in the file, so that a
        # batch that fails half-way (and is written again) is not taken as written.
        pending: dict[str, int] = {}
        for unit in units:
            try:
                wires = (
                    thread_to_wire(unit, project_id=self.project_id)
                    if isinstance(unit, Thread)
                    else [trace_to_wire(unit, project_id=self.project_id)]
                )
            except (ValidationError, ValueError, RecursionError) as exc:
                reason = (
                    _TOO_DEEP if isinstance(exc, RecursionError) else f"cannot map: {_why(exc)}"
                )
                result.rejected.append(
                    Rejected("trace", _label(unit), reason, None, Counts.of(unit))
                )
                continue
            encoded = [_Line.of(wire) for wire in _consumed(wires)]
            if encoded and all(isinstance(line.text, str) for line in encoded):  # none written
                result.rejected.append(
                    Rejected("trace", _label(unit), str(encoded[0].text), None, Counts.of(unit))
                )
                continue
            written = Counts.of(unit)
            for trace, line in zip(_traces(unit), encoded, strict=True):
                if isinstance(line.text, str):
                    lost = Counts.of(trace)
                    if isinstance(unit, Thread) and line.trace_id == _carrier(unit):
                        lost.scores += len(unit.scores)  # the thread's own scores ride on it
                    result.rejected.append(
                        Rejected("trace", f"trace {trace.id}", line.text, None, lost)
                    )
                    written.traces -= lost.traces
                    written.spans -= lost.spans
                    written.scores -= lost.scores
                    continue
                if dry_run:
                    result.plan.append(
                        f"trace {line.trace_id}: {line.spans} spans, {line.evaluations} evaluations"
                    )
                    continue
                trace_id, digest = line.trace_id, _digest(line.text)
                known = pending[trace_id] if trace_id in pending else self._digests.get(trace_id)
                if known != digest:  # new or changed
                    pending[trace_id] = digest
                    lines.append(line.text)
            result.written.add(written)
        if lines:
            self._append(lines)
        self._replaced |= any(trace_id in self._digests for trace_id in pending)
        for trace_id, digest in pending.items():
            self._digests[trace_id] = digest
        return result

    def _append(self, lines: list[bytes]) -> None:
        """Append `lines` durably; the sidecar then records the new acknowledged length.

        Unbuffered, each line written whole: a failed append holds nothing back in a buffer,
        so the file can be taken back to its acknowledged length (a `BufferedWriter` would
        flush what it holds first, failing again, and write it at close)."""
        try:
            if self._handle is None:
                self._handle = self.path.open("ab", buffering=0)
                self._save_state()  # before the first byte: a torn first write is ours too
            if self._needs_newline:
                lines = [b"\n", *lines]
            for line in lines:
                _write_all(self._handle, line)
            os.fsync(self._handle.fileno())
        except OSError as exc:
            if self._handle is not None:  # take back what was not acknowledged, if we can
                with contextlib.suppress(OSError):
                    self._handle.truncate(self._acked)
            raise UsageError(f"{self.label}: cannot write to it ({_why(exc)})") from None
        self._acked += sum(map(len, lines))
        self._needs_newline = False
        with contextlib.suppress(OSError):  # a stale sidecar only makes the next run careful
            self._save_state()

    async def aclose(self) -> None:
        try:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
            if self._replaced:
                self._compact()  # one line per trace we wrote
            if self._ready:
                self._state_path.unlink(missing_ok=True)  # a clean finish leaves nothing to mend
        except OSError as exc:
            raise UsageError(f"{self.label}: cannot finish it ({_why(exc)})") from None
        finally:
            if self._locked:
                self._lock.release()
                self._locked = False


@dataclass(frozen=True)
class _Line:
    """A trace's JSONL line (or, as a str, why it cannot be one), and what the plan says of it."""

    trace_id: str
    text: bytes | str
    spans: int
    evaluations: int

    @classmethod
    def of(cls, wire: dict[str, Any]) -> _Line:
        spans, evaluations = wire.get("spans") or (), wire.get("evaluations") or ()
        return cls(wire["trace_id"], _encode(wire), len(spans), len(evaluations))


def _consumed(items: list[T]) -> Iterator[T]:
    """`items` in order, each removed from the list as it is handed out (so that it can be
    freed once the caller is done with it)."""
    items.reverse()
    while items:
        yield items.pop()


def _write_all(handle: IO[bytes], data: bytes) -> None:
    """Write all of `data` (a raw write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[handle.write(view) :]


def _encode(wire: dict[str, Any]) -> bytes | str:
    """One JSONL line, or why the trace cannot be one. A lone surrogate, which UTF-8 cannot
    carry, is written escaped (`\\ud800`, as `JSON.stringify` does): lossless."""
    try:
        return dumps_compact(wire) + b"\n"
    except RecursionError:
        return "nested too deeply to write as JSON (deeper than Python's recursion limit)"
    except UnicodeEncodeError:  # before ValueError, its base
        return (json.dumps(wire, ensure_ascii=True, separators=(",", ":")) + "\n").encode()
    except (TypeError, ValueError) as exc:
        return f"cannot write as JSON: {exc}"


def _traces(unit: Unit) -> list[Trace]:
    return unit.traces if isinstance(unit, Thread) else [unit]


def _carrier(thread: Thread) -> str:
    """The trace that carries the thread's own data (`thread_to_wire`: the last to start)."""
    return max(thread.traces, key=lambda t: t.started_at).id


def _key(raw: bytes, number: int) -> str:
    record, _ = parse(raw)
    trace_id = record.get("trace_id") if record else None
    return trace_id if isinstance(trace_id, str) else f"\x00{number}"


def _digest(line: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(line, digest_size=8).digest())


def _label(unit: Unit) -> str:
    return f"thread {unit.id}" if isinstance(unit, Thread) else f"trace {unit.id}"


def _why(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return describe_validation_error(exc)
    return (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)


def _check_not_a_directory(path: Path, label: str) -> None:
    if path.is_dir():
        raise UsageError(f"{label}: {path} is a directory; name the JSONL file to write")


def _remove_stale_temp_files(path: Path) -> None:
    """Temp files of a compaction an earlier, killed run left (`open_atomically` names, and
    the `mkstemp` names earlier versions made: `.<name>.<8 chars>.tmp`, exactly)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
    for entry in path.parent.iterdir():
        if pattern.fullmatch(entry.name) and entry.is_file():
            entry.unlink(missing_ok=True)
