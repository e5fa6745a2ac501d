"""`opik-dir:PATH`: the folder layout of `opik export` / `opik import` (opik SDK 2.x).

    PATH/<workspace>/projects/<project id>/project.json        {"id": ..., "name": ...}
    PATH/<workspace>/projects/<project id>/trace_<trace id>.json
        {"trace": Trace_Public, "spans": [Span_Public], "attachments": [],
         "downloaded_at", "project_name"}

`opik import WORKSPACE PROJECT traces --path PATH` loads what the sink writes. As a source, the
older layout (folders named after the project, no project.json) is read too; a folder of
`opik export --format csv` is refused as a whole (one UsageError), not file by file. Thread-level
data that `opik export` has no place for (thread scores, tags, status) is kept beside the traces
in `thread_<digest>.json` files, which `opik import` ignores and this source reads back.

A span's cost is written twice: `total_estimated_cost` (the export shape) and `total_cost` (what
`opik import` reads; without it every cost is lost). The sink holds `PATH/.tracebridge.lock` for
the run (a second run writing PATH fails with exit 2), removes at start the temp files a killed
run left in its project folder, and never writes outside PATH: a workspace or trace id that is not
a plain file name is refused.

A rerun changes nothing: a file that already holds its record (whatever its `downloaded_at`) is
not written again. To know that without looking for every file, the sink lists its project
folder once, at its first write: a file neither listed then nor written since is not there, so
its text is written without reading anything back (the folder is locked for the run).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from stat import S_ISDIR, S_ISREG
from typing import Any

from .._compact import DigestMap, Strings
from .._errors import CheckpointError, LockedError, RecordError, UsageError
from .._file_source import FileSource, ThreadIndex
from .._interfaces import Counts, Rejected, Unit, Window, WriteResult
from .._json import loads
from .._locks import PathLock
from .._mapping import Mappings
from .._models import Thread, Trace
from .._stash import same
from .._state import (
    AtomicBatch,
    fsync_folder,
    make_folder,
    temp_target,
    write_many_atomically,
)
from .._time import from_iso
from .convert import (
    SCORES_IN_METADATA,
    raw_counts,
    thread_data_from_opik,
    thread_data_to_opik,
    trace_from_opik,
    trace_to_opik,
)
from .ids import OpikIds

__all__ = ["OpikDirSink", "OpikDirSource"]

# Files a project folder may hold besides traces: skipped, not dead-lettered.
_KNOWN_FILES = ("project.json",)
_KNOWN_SUFFIXES = (".db", ".db-journal", ".db-wal", ".db-shm")
#: The sink's lock, in the root of the folder it writes (the source never reads the root's files).
LOCK_NAME = ".tracebridge.lock"
#: The files the sink writes in a project folder: their stale temp files are removed at start.
_OWN_FILES = re.compile(r"trace_[^/\\]+\.json|thread_[0-9a-f]{16}\.json|project\.json")
_WORKSPACE = "the Opik workspace (OPIK_WORKSPACE, or opik.workspace in the config file)"


def _not_a_file_name(name: str) -> str | None:
    """Why `name` cannot be one path component inside the output folder; None when it can."""
    if not name.strip():
        return "it is empty"
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).anchor:
        return "it is an absolute path"
    if "/" in name or "\\" in name:
        return "it holds a path separator"
    if name in (".", ".."):
        return f"{name!r} is not a folder of its own"
    if "\0" in name:
        return "it holds a NUL character"
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > _NAME_MAX:
        return f"it is {size} bytes long: a file name holds {_NAME_MAX} beside its temp file's"
    return None


#: The longest name a file of ours may have: 255 bytes (what ext4, XFS, Btrfs, APFS and NTFS
#: allow) less the affixes of its temp file (`.<name>.<8 characters>.tmp`, `_state`).
_NAME_MAX = 255 - len("..12345678.tmp")


def _span_to_file(span: dict[str, Any]) -> dict[str, Any]:
    """A span as the file holds it: `total_cost` beside `total_estimated_cost` for opik import
    (unless the span has its own, read from such a file)."""
    cost = span.get("total_estimated_cost")
    return span if cost is None or "total_cost" in span else {**span, "total_cost": cost}


def _span_from_file(span: dict[str, Any]) -> dict[str, Any]:
    """Inverse of `_span_to_file`; a `total_cost` alone (another writer's) is the cost."""
    if "total_cost" not in span:
        return span
    span = dict(span)
    cost = span.pop("total_cost")
    if span.get("total_estimated_cost") is None and type(cost) in (int, float):
        span["total_estimated_cost"] = cost
    elif not same(cost, span.get("total_estimated_cost")):
        span["total_cost"] = cost  # unlike ours: kept as it is (the record's residual)
    return span


def _project_name(folder: Path) -> str:
    try:
        data = json.loads((folder / "project.json").read_text(encoding="utf-8"))
        name = data.get("name") if isinstance(data, dict) else None
        if isinstance(name, str):
            return name
    except (OSError, ValueError):
        pass
    return folder.name  # the older layout names the folder after the project


def _project_folders(root: Path) -> list[tuple[str, Path]]:
    """(workspace, folder) of every project folder under an export root."""
    found = [
        (ws.name, p)
        for ws in sorted(root.iterdir())
        if ws.is_dir()
        for p in sorted((ws / "projects").glob("*"))
        if p.is_dir()
    ]
    found += [("", p) for p in sorted((root / "projects").glob("*")) if p.is_dir()]
    return found


class OpikDirSource(FileSource[str]):
    """Reads one project of an `opik export` folder."""

    def __init__(
        self,
        root: Path,
        *,
        project: str | None,
        mappings: Mappings,
        workspace: str | None = None,
        page_size: int = 100,
    ) -> None:
        if not root.is_dir():
            raise UsageError(f"opik-dir:{root}: no such folder")
        every = _project_folders_named(root)
        folders = [x for x in every if workspace in (None, x[0])]
        if project is not None:
            folders = [x for x in folders if x[2].casefold() == project.casefold()]
        if len(folders) != 1:
            names = ", ".join(sorted({x[2] for x in every})) or "none"
            wanted = f"project {project!r}" if project else "one project (use --source-project)"
            raise UsageError(f"opik-dir:{root}: expected {wanted}; projects found: {names}")
        _, self.folder, self.project = folders[0]
        csv_files = sum(1 for _ in self.folder.glob("trace_*.csv"))
        if csv_files:
            raise UsageError(
                f"opik-dir:{root}: {self.folder} holds an `opik export --format csv` export "
                f"({csv_files} trace_*.csv files of flattened rows, which tracebridge does not "
                "read): export the project again as JSON (`opik export` without --format csv) "
                "and read that folder"
            )
        self.mappings = mappings
        self.page_size = page_size
        self.label = f"opik-dir:{root} (project {self.project})"
        self._thread_files: dict[str, str] = {}  # thread id: its file's name

    def _index(self, window: Window) -> ThreadIndex[str]:
        """Each trace file's name by thread, kept compactly (`Strings`: one buffer, not an
        object per trace); the folder's listing is read once, as names (not `DirEntry`s, which
        hold two strings each), and each file is looked at through its name alone."""
        index: ThreadIndex[str] = ThreadIndex(Strings())
        digest = hashlib.blake2b(digest_size=16)
        folder = str(self.folder)
        with os.scandir(self.folder) as listing:
            names = sorted(entry.name for entry in listing)
        for name in names:
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path)
            except OSError:  # a dangling link, or gone: read below, which names the problem
                is_file = is_dir = False
            else:
                is_file, is_dir = S_ISREG(stat.st_mode), S_ISDIR(stat.st_mode)
            if is_file:
                # (a name that is not UTF-8 comes as surrogates: its bytes are hashed as they are)
                line = f"{name}\x1f{stat.st_size}\x1f{stat.st_mtime_ns}\n"
                digest.update(line.encode("utf-8", "surrogateescape"))
            suffix = _suffix(name)
            if is_dir or name in _KNOWN_FILES or name.startswith(".") or suffix in _KNOWN_SUFFIXES:
                continue
            if name.startswith("thread_") and suffix == ".json":
                data, _ = _read(path)
                if data is not None and isinstance(data.get("thread_id"), str):
                    self._thread_files[data["thread_id"]] = name
                continue
            data, problem = _read(path)
            if problem is None and not name.startswith("trace_"):
                problem = "not an Opik export file (expected trace_<id>.json)"
            if problem is not None:
                index.rejected.append(Rejected("trace", str(self.folder / name), problem, None))
                continue
            assert data is not None
            trace = data.get("trace")
            if isinstance(trace, dict):
                try:
                    if not window.holds(from_iso(trace.get("start_time"))):
                        continue
                except ValueError:
                    pass  # the conversion names the problem and dead-letters the record
                thread_id = trace.get("thread_id")
            else:
                thread_id = None
            spans = data.get("spans")
            index.add(
                thread_id if isinstance(thread_id, str) and thread_id else None,
                name,
                len(spans) if isinstance(spans, list) else 0,
            )
        index.fingerprint = digest.hexdigest()
        return index

    def _load(self, thread_id: str | None, names: list[str]) -> tuple[Unit | None, list[Rejected]]:
        traces: list[Trace] = []
        rejected: list[Rejected] = []
        for name in names:
            path = os.path.join(self.folder, name)  # str(self.folder / name), without a Path
            data, problem = _read(path)
            trace, spans = (data or {}).get("trace"), (data or {}).get("spans", [])
            if isinstance(spans, list):
                spans = [_span_from_file(s) if isinstance(s, dict) else s for s in spans]
            if problem is None and not isinstance(trace, dict):
                problem = "no 'trace' object"
            elif problem is None and not (
                isinstance(spans, list) and all(isinstance(s, dict) for s in spans)
            ):
                problem = "'spans' is not a list of objects"
            if problem is not None:
                rejected.append(Rejected("trace", path, problem, data, raw_counts(trace, spans)))
                continue
            assert isinstance(trace, dict)
            try:
                traces.append(
                    trace_from_opik(
                        trace, spans, project=self.project, mappings=self.mappings, where=path
                    )
                )
            except RecordError as exc:
                counts = raw_counts(trace, spans)
                rejected.append(Rejected("trace", path, exc.reason, data, counts))
        if not traces:
            return None, rejected
        if thread_id is None:
            return traces[0], rejected
        traces.sort(key=lambda t: t.started_at)
        extra: dict[str, Any] = {}
        if thread_id in self._thread_files:
            data, _ = _read(self.folder / self._thread_files[thread_id])
            extra = thread_data_from_opik(data or {}, self.mappings)
        return Thread(id=thread_id, traces=traces, **extra), rejected


def _project_folders_named(root: Path) -> list[tuple[str, Path, str]]:
    return [(ws, f, _project_name(f)) for ws, f in _project_folders(root)]


def _suffix(name: str) -> str:
    """`PurePath(name).suffix`, without making a path."""
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""


def _read(path: str | Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        with open(path, "rb") as handle:
            text = handle.read()
        data = loads(text)
    except OSError as exc:
        return None, f"cannot read ({exc.strerror})"
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
    except RecursionError:
        return None, "JSON nested too deeply to read"
    if not isinstance(data, dict):
        return None, f"a JSON {type(data).__name__}, not an object"
    return data, None


class OpikDirSink:
    """Writes one project in the `opik export` layout; rewriting a trace is idempotent.

    The first write takes the folder's lock (released by `aclose`); a workspace that is not a
    plain folder name, or an output path that is not a folder, is a UsageError naming it.
    """

    def __init__(
        self,
        root: Path,
        *,
        workspace: str,
        project: str,
        mappings: Mappings,
        ids: OpikIds | None = None,
    ) -> None:
        why = _not_a_file_name(workspace)
        if why is not None:
            raise UsageError(
                f"{_WORKSPACE} {workspace!r} cannot name a folder inside opik-dir:{root}: {why}"
            )
        if root.exists() and not root.is_dir():
            raise UsageError(f"opik-dir:{root}: not a folder (a file of that name is in the way)")
        self.root = root
        self.project = project
        self.mappings = mappings
        self.ids = ids
        self.label = f"opik-dir:{root} (workspace {workspace}, project {project})"
        self._lock = PathLock(root / LOCK_NAME, f"the output folder opik-dir:{root}")
        self._ready = False
        # Names of the files the folder may hold: listed at the first write, then each name
        # before its file is written. A name not here is a file that is not there, so its
        # text is written without looking for it (a fresh folder reads nothing back). Compact
        # and not exact: a name that only shares its digest with one here is looked for, as
        # every name was before.
        self._present = DigestMap()
        projects = root / workspace / "projects"
        existing = [
            f
            for f in sorted(projects.glob("*"))
            if f.is_dir()
            and (f / "project.json").is_file()
            and _project_name(f).casefold() == project.casefold()
        ]
        if existing:
            self.folder = existing[0]
            self._project_json: dict[str, str] | None = None
        else:
            project_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"tracebridge:{workspace}:{project}"))
            self.folder = projects / project_id
            self._project_json = {"id": project_id, "name": project}

    def _prepare(self) -> None:
        """Before the first write: make the folder, lock it, remove a killed run's temp files,
        and note which of its own kind of files the folder holds (`_present`)."""
        _make_folder(self.root)
        try:
            self._lock.acquire()
        except LockedError:
            raise
        except CheckpointError as exc:  # the lock file cannot be made: the folder is unusable
            raise UsageError(str(exc)) from None
        _make_folder(self.folder)
        with os.scandir(self.folder) as listing:
            entries = list(listing)
        for entry in entries:
            target = temp_target(entry.name)
            if target is None:
                if _OWN_FILES.fullmatch(entry.name):
                    self._present[entry.name] = 1
            elif _OWN_FILES.fullmatch(target) and entry.is_file():
                try:
                    os.unlink(entry.path)
                except OSError as exc:
                    raise _cannot_write(self.folder / entry.name, exc) from None
        # An earlier run may have renamed files into place and been killed before it synced
        # the folder: this run counts those that hold its text as written, so first the
        # renames are made durable.
        try:
            fsync_folder(self.folder)
        except OSError as exc:
            raise _cannot_write(self.folder, exc) from None
        self._ready = True

    async def write(self, units: list[Unit], *, dry_run: bool = False) -> WriteResult:
        """Each file is written (to its temp file) as soon as its record is mapped, and the
        batch's files are put in place together, durable before this returns (`AtomicBatch`:
        one wait for the batch, before the checkpoint moves). A page holds neither the mapped
        records nor their texts: a large thread costs its canonical records only.

        In the event loop's thread, as the LangWatch file sink appends: in a worker thread,
        each of the many small system calls would wait for the GIL while the engine reads the
        next page (measured: 6.3 s of a 10 s run); the fsyncs themselves run side by side in
        threads. An `OSError` is a UsageError naming the file."""
        result = WriteResult()
        try:
            with AtomicBatch() as batch:
                for unit in units:
                    for trace in unit.traces if isinstance(unit, Thread) else [unit]:
                        self._add_trace(trace, result, batch, dry_run)
                    if isinstance(unit, Thread):
                        result.written.threads += 1
                        data = thread_data_to_opik(unit, self.mappings)
                        if data is not None:
                            result.written.scores += len(data.get("feedback_scores", []))
                            digest = hashlib.sha256(unit.id.encode()).hexdigest()[:16]
                            if not dry_run:
                                self._add_file(batch, f"thread_{digest}.json", data, stamp=False)
                batch.commit()
        except OSError as exc:
            raise _cannot_write(Path(exc.filename or "?"), exc) from None
        return result

    def _add_file(self, batch: AtomicBatch, name: str, body: dict[str, Any], stamp: bool) -> None:
        """Write `name` into `batch` unless the file holds `body` already, after the folder is
        prepared (and `project.json` written, before any other file); a name is noted as
        present before its file is written (a failed write may leave it)."""
        if not self._ready:
            self._prepare()
        if self._project_json is not None:
            _write_json(self.folder / "project.json", self._project_json)
            self._project_json = None
        path = self.folder / name
        # Twice in one page: the later copy wins, whatever the file holds now.
        may_exist = name in self._present and not batch.holds(path)
        self._present[name] = 1
        text = _file_text(path, body, stamp, may_exist=may_exist)
        if text is not None:
            batch.add(path, text)

    def _add_trace(
        self,
        trace: Trace,
        result: WriteResult,
        batch: AtomicBatch,
        dry_run: bool,
    ) -> None:
        counts = Counts.of(trace)
        try:
            record = trace_to_opik(trace, mappings=self.mappings, ids=self.ids)
            why = _not_a_file_name(f"trace_{record.trace['id']}.json")
            if why is not None:
                raise ValueError(f"its Opik id {record.trace['id']!r} cannot name a file: {why}")
        except ValueError as exc:
            result.rejected.append(
                Rejected("trace", f"trace {trace.id}", f"cannot map: {exc}", None, counts)
            )
            return
        result.warnings += record.warnings
        written_scores = len(record.trace.get("feedback_scores", [])) + sum(
            len(s.get("feedback_scores", [])) for s in record.spans
        )
        result.skip(counts.scores - written_scores, "scores", SCORES_IN_METADATA)
        result.written.add(Counts(traces=1, spans=len(record.spans), scores=written_scores))
        if dry_run:
            result.plan.append(
                f"trace {trace.id} -> {record.trace['id']}: {len(record.spans)} spans, "
                f"{written_scores} feedback scores"
            )
            return
        body = {
            "trace": record.trace,
            "spans": [_span_to_file(s) for s in record.spans],
            "attachments": [],
            "project_name": self.project,
        }
        self._add_file(batch, f"trace_{record.trace['id']}.json", body, stamp=True)

    async def aclose(self) -> None:
        self._lock.release()
        self._ready = False


def _make_folder(folder: Path) -> None:
    """`folder` and its parents, each made durable in its parent (`make_folder`), or a
    UsageError naming what is in the way."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"opik-dir: {folder} is not a folder (a file of that name is in the way)")
    try:
        make_folder(folder)
    except OSError as exc:
        raise _cannot_write(folder, exc) from None


def _cannot_write(path: Path, exc: OSError) -> UsageError:
    """An environment problem (permissions, a file in the way, a full disk) names the path."""
    return UsageError(f"opik-dir: cannot write {path}: {exc.strerror or exc}")


def _file_text(
    path: Path, body: dict[str, Any], stamp: bool, *, may_exist: bool = True
) -> bytes | None:
    """The text of `body` as its file holds it, or None when the file already holds it (a
    rerun changes nothing). `stamp` adds `downloaded_at`, as `opik export` does. A file known
    not to be there (`may_exist=False`) is not looked for."""
    existing, _ = _read(path) if may_exist and path.exists() else (None, None)
    if existing is not None:
        existing.pop("downloaded_at", None)
        if existing == body:
            return None
    if stamp:
        body = {**body, "downloaded_at": datetime.now(UTC).isoformat(timespec="milliseconds")}
    return (json.dumps(body, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def _write_json(path: Path, body: dict[str, Any], *, stamp: bool = False) -> None:
    """Write `body` atomically unless the file already holds it (a rerun changes nothing).

    Raises UsageError naming `path` when it cannot be written.
    """
    text = _file_text(path, body, stamp)
    if text is None:
        return
    try:
        write_many_atomically([(path, text)])
    except OSError as exc:
        raise _cannot_write(path, exc) from None
