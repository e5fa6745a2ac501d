"""The state directory: checkpoint files (DESIGN.md invariant 3) and the dead-letter file.

A checkpoint is one small JSON file per job, written atomically (temp file, fsync, `os.replace`),
with a schema version, validated on load, and locked against a second concurrent run of the same
job. It moves only after the sink acknowledged the page it describes. It never holds secrets:
the job key is built from endpoint names, projects and the time window only.

`write_atomically` / `open_atomically` are the package's one atomic-write helper (checkpoints,
run reports, dead letters, the JSONL compaction), and `AtomicBatch` its form for many files made
durable together (an `opik-dir` page). They are our own code rather than a library's
(`atomicwrites` is unmaintained, others use `mkstemp`'s 0o600): the new file must get the
umask's mode (or a mode we keep), the folder must be fsynced, and the temp names must be ones
`temp_target` and the sinks' start-up cleanup recognise.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import platform
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, NoReturn, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._errors import CheckpointError, UsageError
from ._interfaces import Counts, Page, Rejected, Unit
from ._json import json_lines, loads
from ._locks import PathLock
from ._models import Thread

__all__ = [
    "AtomicBatch",
    "Checkpoint",
    "DeadLetters",
    "JobCounts",
    "JobState",
    "KeepsJobCounts",
    "StateDir",
    "dead_letter_lines",
    "fsync_folder",
    "make_folder",
    "open_atomically",
    "temp_target",
    "unit_entry",
    "write_atomically",
    "write_many_atomically",
]

SCHEMA_VERSION = 1


class JobCounts(BaseModel):
    """What the runs of one job did, summed: kept in its checkpoint through the last
    acknowledged page, so a resumed run can say what the whole job did since it started.

    `skipped` includes `unchanged` (units the destination already held, `_unchanged.py`).
    """

    model_config = ConfigDict(extra="forbid")

    runs: int = 0
    started_at: datetime | None = None
    read: Counts = Field(default_factory=Counts)
    written: Counts = Field(default_factory=Counts)
    skipped: Counts = Field(default_factory=Counts)
    unchanged: Counts = Field(default_factory=Counts)
    dead_lettered: Counts = Field(default_factory=Counts)
    dead_letter_entries: int = 0
    lost: int = 0

    def plus(self, other: JobCounts) -> JobCounts:
        """Both sums: the runs of `self`, then those of `other` (its start is the later)."""
        total = JobCounts(
            runs=self.runs + other.runs,
            started_at=self.started_at or other.started_at,
            dead_letter_entries=self.dead_letter_entries + other.dead_letter_entries,
            lost=self.lost + other.lost,
        )
        for kind in ("read", "written", "skipped", "unchanged", "dead_lettered"):
            counts: Counts = getattr(total, kind)
            counts.add(getattr(self, kind))
            counts.add(getattr(other, kind))
        return total


class Checkpoint(BaseModel):
    """Where a job stands: the source cursor after the last acknowledged page, and what the
    job's runs did through it (`counts`; absent in checkpoints of earlier versions)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    job: dict[str, Any]
    cursor: dict[str, Any] | None = None
    complete: bool = False
    pages: int = 0
    updated_at: datetime | None = None
    counts: JobCounts | None = None


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a crash leaves either the old or the new file.

    The text goes to a temp file beside `path` (`.<name>.<8 chars>.tmp`, see `temp_target`),
    which is fsynced, renamed over `path`, and the rename made durable by an fsync of the
    folder. The file gets the permissions of any file the user creates (0o666 less the umask),
    so another user or container can read it as they could the user's other files.
    """
    with open_atomically(path) as handle:
        handle.write(text.encode("utf-8"))


@contextlib.contextmanager
def open_atomically(path: Path, *, mode: int | None = None) -> Iterator[IO[bytes]]:
    """The streaming form of `write_atomically`: a binary handle whose bytes replace `path`.

    What is written to the handle goes to a temp file beside `path`; when the block ends
    normally the temp file is fsynced, renamed over `path` and the folder fsynced, so a crash
    leaves either the old or the new file. If the block raises, the temp file is removed and
    `path` is untouched. `mode` (permission bits) is given to the new file; without it the file
    gets 0o666 less the umask, like any file the user creates.
    """
    make_folder(path.parent)
    tmp, fd = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


#: Filesystems whose `syncfs` writes back every file written there, as their `statfs` type:
#: local disk filesystems the kernel writes back itself (ext2/3/4, XFS, Btrfs, F2FS) and tmpfs.
#: On others the call may not reach the files (FUSE: the daemon is sent no fsync; network
#: filesystems flush on their own path), so a batch there is fsynced file by file.
SYNCFS_FILESYSTEMS = frozenset({0xEF53, 0x58465342, 0x9123683E, 0xF2F52010, 0x01021994})


def local_syncfs(
    call: Callable[[int], int], fs_type: Callable[[int], int]
) -> Callable[[int], None]:
    """`syncfs` (`call`, the C function) for the filesystem of a descriptor, raising `OSError`:
    ENOTSUP where its type (`fs_type`) is not one of `SYNCFS_FILESYSTEMS` (the batch is then
    fsynced file by file), else the call's own error."""

    def syncfs(fd: int) -> None:
        kind = fs_type(fd)
        if kind not in SYNCFS_FILESYSTEMS:
            raise OSError(errno.ENOTSUP, f"syncfs may not reach this filesystem (type {kind:#x})")
        if call(fd) != 0:
            _raise_c_error()

    return syncfs


def _raise_c_error() -> NoReturn:
    """The `OSError` of the C call that just failed (its `errno`)."""
    code = ctypes.get_errno()
    raise OSError(code, os.strerror(code))


def _platform_syncfs() -> Callable[[int], None] | None:
    """`syncfs(2)` where it reports what it failed to write (Linux 5.8 and later: earlier
    kernels always answer 0), for the filesystems it covers (`local_syncfs`); else None."""
    if platform.system() != "Linux":
        return None
    try:
        major, minor = (int(part) for part in platform.release().split(".")[:2])
        libc = ctypes.CDLL(None, use_errno=True)
        call, fstatfs = libc.syncfs, libc.fstatfs
    except (ValueError, OSError, AttributeError):
        return None
    if (major, minor) < (5, 8):
        return None

    def fs_type(fd: int) -> int:
        buffer = ctypes.create_string_buffer(512)  # struct statfs; f_type (a long) comes first
        if fstatfs(fd, buffer) != 0:
            _raise_c_error()
        return ctypes.c_long.from_buffer(buffer).value & 0xFFFFFFFF

    return local_syncfs(call, fs_type)


#: How `write_many_atomically` flushes a batch: one `syncfs` per filesystem, or None (an fsync
#: per file) where the platform has none that reports failures.
SYNCFS = _platform_syncfs()


def write_many_atomically(
    files: Sequence[tuple[Path, bytes]],
    *,
    threads: int = 8,
    syncfs: Callable[[int], None] | None = SYNCFS,
) -> None:
    """`write_atomically` for many files at once, durable together before it returns: an
    `AtomicBatch` given every file, then committed."""
    with AtomicBatch(threads=threads, syncfs=syncfs) as batch:
        for path, data in files:
            batch.add(path, data)
        batch.commit()


class AtomicBatch:
    """Files written one by one as they come (`add`), put in place together (`commit`).

    Each text goes to a temp file beside its path as soon as it is added, so a batch holds
    names, not texts. `commit` makes the temp files durable together, renames each over its
    path, and fsyncs each folder once: a crash leaves each file either old or new, as
    `write_atomically` does, at the cost of one wait for the batch instead of two per file.
    Leaving the `with` block without `commit` (an exception, a cancellation) removes the temp
    files not yet renamed; a killed run leaves them, named so that `temp_target` finds them.

    Made durable: with `syncfs` (Linux 5.8+, on a local disk filesystem: `SYNCFS_FILESYSTEMS`),
    by one flush of each filesystem the batch writes to: a folder of each is opened before the
    first file there is written, so any failure to write a temp file back since is reported
    (measured on `opik-dir`'s page of 60 files: 2-3 times less time than an fsync per file, the
    kernel's journal committed once); the flush also writes what other programs left to write
    on that filesystem. Otherwise (a batch of one file, a folder that cannot be opened, another
    filesystem: FUSE, NFS, ...) each temp file is fsynced, side by side in `threads`.

    `add` and `commit` raise the `OSError` of the file that could not be written, its
    `filename` that file's path (a failed flush names the folder).
    """

    def __init__(self, *, threads: int = 8, syncfs: Callable[[int], None] | None = SYNCFS) -> None:
        self._threads, self._syncfs = threads, syncfs
        self._temps: list[tuple[Path, Path]] = []  # (temp file, its path), in order added
        self._paths: set[Path] = set()  # the paths of `_temps`
        self._folders: dict[Path, None] = {}
        self._watched: dict[int, tuple[Path, int]] = {}  # device: (a folder on it, its fd)

    def __enter__(self) -> AtomicBatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, path: Path, data: bytes) -> None:
        """Write `data` to a new temp file beside `path` (its folder made first)."""
        folder = path.parent
        if folder not in self._folders:
            try:
                make_folder(folder)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(folder)) from exc
            if self._syncfs is not None:
                self._watch(folder)
            self._folders[folder] = None
        try:
            tmp, fd = _create_temp(path)
            self._temps.append((tmp, path))
            self._paths.add(path)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc

    def commit(self) -> None:
        """Make every temp file durable, rename each over its path (in the order added), then
        fsync each folder; the batch is empty afterwards."""
        temps = self._temps
        watched = list(self._watched.values())
        if not (len(temps) > 1 and watched and _flushed(watched, self._syncfs)):
            _fsync_each(temps, self._threads)
        while temps:
            tmp, path = temps[0]
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(path)) from exc
            temps.pop(0)
        folders = list(self._folders)
        self.close()
        for folder in folders:
            fsync_folder(folder)

    def holds(self, path: Path) -> bool:
        """True when a text for `path` was added and is not in place yet (the last one added
        is what `commit` leaves there)."""
        return path in self._paths

    def close(self) -> None:
        """Remove the temp files not renamed and close the folders opened; idempotent."""
        self._paths.clear()
        while self._temps:
            self._temps.pop()[0].unlink(missing_ok=True)
        self._unwatch()
        self._folders.clear()

    def _unwatch(self) -> None:
        while self._watched:
            os.close(self._watched.popitem()[1][1])

    def _watch(self, folder: Path) -> None:
        """Keep a descriptor on `folder` if it is the first of its filesystem (for `syncfs`);
        a folder that cannot be opened (no read permission) makes the batch fsync each file."""
        try:
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            self._syncfs = None
            self._unwatch()
            return
        device = os.fstat(fd).st_dev
        if device in self._watched:
            os.close(fd)
        else:
            self._watched[device] = (folder, fd)


#: What `syncfs` answers where it cannot run (a sandbox without the call, a filesystem
#: without it): the batch is fsynced file by file instead.
_NO_SYNCFS = frozenset({errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP})


def _flushed(watched: list[tuple[Path, int]], syncfs: Callable[[int], None] | None) -> bool:
    """`syncfs` each filesystem: True when done, False when the call cannot run here; a
    failure to write back raises its `OSError`, naming the folder."""
    assert syncfs is not None
    for folder, fd in watched:
        try:
            syncfs(fd)
        except OSError as exc:
            if exc.errno in _NO_SYNCFS:
                return False
            raise OSError(exc.errno, exc.strerror, str(folder)) from exc
    return True


def _fsync_each(temps: list[tuple[Path, Path]], threads: int) -> None:
    """fsync each temp file, side by side in `threads` (the waits overlap)."""

    def sync(pair: tuple[Path, Path]) -> None:
        tmp, path = pair
        try:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc

    with ThreadPoolExecutor(max(1, min(threads, len(temps)))) as pool:
        list(pool.map(sync, temps))


_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def temp_target(name: str) -> str | None:
    """The file a temp file of `write_atomically` named `name` was to become, else None.

    (Also recognises the `mkstemp` names earlier versions made.)
    """
    match = _TEMP_NAME.fullmatch(name)
    return match["target"] if match else None


def _create_temp(path: Path) -> tuple[Path, int]:
    """A new temp file beside `path` and its descriptor, open for writing.

    Created with mode 0o666, so the kernel applies the umask, as for any file the user creates.
    (`mkstemp` makes 0o600 files; reading the umask to chmod them would mean setting it, which
    is process-wide and would race with the threads that write files side by side.)
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, _CREATE, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp file name beside {path}")


def make_folder(folder: Path) -> None:
    """`folder` and its missing parents, each made durable in its own parent (`fsync_folder`):
    the files that go in a folder are synced, and their folder, but without this a crash could
    take back the folder itself. Raises the `OSError` of `mkdir`."""
    if folder.is_dir():
        return
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for made in reversed(missing):
        fsync_folder(made.parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable; a no-op where folders cannot be opened or synced."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # no read permission on the folder: the file itself is fsynced
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise  # some filesystems cannot sync a folder; anything else is a real failure
    finally:
        os.close(fd)


class JobState(Protocol):
    """A job's state as the engine drives one run of it (`StateDir`: migrate's checkpoint v1;
    `_sync_state.SyncState`: a sync pass in checkpoint v2).

    The engine calls `begin` once, `acknowledged` after each page whose every unit the sink
    acknowledged or the engine dead-lettered, `finished` once the source is exhausted and the
    sink closed, and `end` always (after a failure too), in that order.
    """

    def dead_letters(self, run_id: str) -> DeadLetters:
        """Where the run's dead letters go (appended)."""
        ...

    def begin(self) -> tuple[dict[str, Any] | None, int]:
        """Take the job (or know it is taken) and load its checkpoint: the cursor to resume
        after (None: from the start) and the number of pages an interrupted run acknowledged."""
        ...

    def acknowledged(self, page: Page) -> None:
        """Move the checkpoint past `page` (atomically)."""
        ...

    def finished(self) -> None:
        """Every page is acknowledged: mark the run complete."""
        ...

    def end(self) -> None:
        """Release what `begin` took."""
        ...


@runtime_checkable
class KeepsJobCounts(Protocol):
    """A `JobState` that also keeps the job's counts (`StateDir`): the engine reads what the
    earlier runs of a resumed job did after `begin`, and hands over this run's counts before
    each `acknowledged` and `finished`, which save them with the checkpoint."""

    def job_counts(self) -> JobCounts | None:
        """After `begin`: what the earlier runs of the job did, when this run resumes it and
        the checkpoint kept counts; None when this run starts the job."""
        ...

    def count(self, run: JobCounts) -> None:
        """This run's counts so far (saved, with the earlier runs', by the next save)."""
        ...


def unit_entry(unit: Unit) -> tuple[Any, str | None]:
    """What a dead letter keeps of the canonical `unit` to re-send it, and a note when that is
    not the unit as JSON: `{"type": "thread"|"trace", "data": ...}`, with `data` as escaped JSON
    text when it holds a lone surrogate; None (and why) when it cannot be encoded at all."""
    kind = "thread" if isinstance(unit, Thread) else "trace"
    try:
        data: Any = unit.model_dump(mode="json")
        json.dumps(data, ensure_ascii=False, default=str).encode()
    except UnicodeEncodeError:
        data = json.dumps(unit.model_dump(mode="json"), ensure_ascii=True, default=str)
        return {"type": kind, "data": data}, None
    except (RecursionError, ValueError, TypeError) as exc:
        return None, f"the {kind} cannot be kept to retry it ({type(exc).__name__})"
    return {"type": kind, "data": data}, None


def dead_letter_lines(path: Path) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """The one reader of a dead-letter file (`DeadLetters`, `status`, `replay`): each line that
    is not blank, without its newline, with its entry, or None when the line is not a JSON
    object (a line cut short by a kill). Lines end at `\\n` only (an entry's text may hold other
    line separators); bytes that are not UTF-8 are replaced, not fatal. No file: no lines."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        for _, _, raw in json_lines(handle):
            line = raw.decode("utf-8", errors="replace").removesuffix("\n")
            if not line.strip():
                continue
            try:
                entry = loads(line)
            except (ValueError, RecursionError):
                entry = None
            yield line, entry if isinstance(entry, dict) else None


class DeadLetters:
    """Appends rejected records to a JSONL file, one JSON object a line.

    An entry holds `run_id`, `at`, `kind`, `where`, `reason`, `record` (the raw record as the
    source read it, when there is one) and, when the engine knows it, `unit`: the canonical
    thread or trace the entry is about (`unit_entry`), which `tracebridge sync
    --retry-dead-letters` re-sends.

    With `unique`, an entry the file already holds (same kind, place, reason, record and unit:
    a sync pass over a file meets the same bad line every time) is not written again.
    """

    def __init__(self, path: Path, run_id: str, *, unique: bool = False) -> None:
        self.path = path
        self.run_id = run_id
        self.count = 0
        self.unique = unique
        self._seen: set[str] = set()
        self._handle: IO[str] | None = None

    @staticmethod
    def _identity(entry: dict[str, Any]) -> str:
        keys = ("kind", "where", "reason", "record", "unit")
        text = json.dumps([entry.get(k) for k in keys], sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()

    def _open(self) -> IO[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.unique:
            for _, entry in dead_letter_lines(self.path):
                if entry is not None:
                    self._seen.add(self._identity(entry))
        return self.path.open("a", encoding="utf-8")

    def add(self, rejected: Rejected) -> None:
        if self._handle is None:
            self._handle = self._open()
        reason = rejected.reason
        entry = {
            "run_id": self.run_id,
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "kind": rejected.kind,
            "where": rejected.where,
            "reason": reason,
            "record": rejected.record,
        }
        if rejected.unit is not None:
            entry["unit"], note = unit_entry(rejected.unit)
            if note:
                entry["reason"] = f"{reason} ({note})"
        if self.unique:
            identity = self._identity(entry)
            if identity in self._seen:
                return
            self._seen.add(identity)
        self._handle.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
        self._handle.flush()
        self.count += 1

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class StateDir:
    """One job's files in the state directory, locked for the life of the object.

    As the engine's `JobState` it runs migrate's checkpoint (v1): a completed checkpoint starts
    the job over (a new run reads everything again; writes are idempotent).
    """

    def __init__(self, root: Path, job: dict[str, Any]) -> None:
        self.root = root
        self.job = job
        digest = hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:16]
        self.checkpoint_path = root / f"checkpoint-{digest}.json"
        self.dead_letter_path = root / "dead-letters.jsonl"
        self._lock = PathLock(
            root / f"{self.checkpoint_path.stem}.lock", f"this job's checkpoint in {root}"
        )
        self._checkpoint: Checkpoint | None = None
        self._before: JobCounts | None = None

    def lock(self) -> None:
        """Take the job's lock; LockedError when another run holds it."""
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(
                f"state directory {self.root}: a file is in the way (name a folder with "
                "--state-dir)"
            )
        self._lock.acquire()

    def unlock(self) -> None:
        self._lock.release()

    def load(self) -> Checkpoint | None:
        """The job's checkpoint, or None when there is none.

        A checkpoint that cannot be read, is not UTF-8 text or does not validate is a
        `CheckpointError` naming the file and what to do.
        """
        path = self.checkpoint_path
        move_away = "move it away to start the job from the beginning"
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(
                f"checkpoint {path} cannot be read ({exc.strerror or exc}): fix that, or "
                f"{move_away}"
            ) from None
        except UnicodeDecodeError as exc:
            raise CheckpointError(
                f"checkpoint {path} is not UTF-8 text (at byte {exc.start}), so not a checkpoint "
                f"tracebridge wrote: {move_away}"
            ) from None
        try:
            checkpoint = Checkpoint.model_validate_json(text)
        except ValidationError as exc:
            raise CheckpointError(
                f"checkpoint {path} does not validate ({exc.error_count()} problems); {move_away}"
            ) from None
        if checkpoint.job != self.job:
            raise CheckpointError(f"checkpoint {self.checkpoint_path} belongs to another job")
        return checkpoint

    def save(self, checkpoint: Checkpoint) -> None:
        checkpoint.updated_at = datetime.now(UTC)
        write_atomically(self.checkpoint_path, checkpoint.model_dump_json(indent=2) + "\n")

    # -- JobState ---------------------------------------------------------------------------

    def dead_letters(self, run_id: str) -> DeadLetters:
        return DeadLetters(self.dead_letter_path, run_id)

    def begin(self) -> tuple[dict[str, Any] | None, int]:
        self.lock()
        try:
            checkpoint = self.load()
        except BaseException:
            self.unlock()
            raise
        if checkpoint is None or checkpoint.complete:
            self._checkpoint, self._before = Checkpoint(job=self.job), None
            return None, 0
        self._checkpoint, self._before = checkpoint, checkpoint.counts
        return checkpoint.cursor, checkpoint.pages

    def job_counts(self) -> JobCounts | None:
        return self._before

    def count(self, run: JobCounts) -> None:
        assert self._checkpoint is not None
        self._checkpoint.counts = self._before.plus(run) if self._before is not None else run

    def acknowledged(self, page: Page) -> None:
        assert self._checkpoint is not None
        self._checkpoint.cursor = page.cursor
        self._checkpoint.pages += 1
        self.save(self._checkpoint)

    def finished(self) -> None:
        assert self._checkpoint is not None
        self._checkpoint.complete = True
        self.save(self._checkpoint)

    def end(self) -> None:
        self.unlock()
