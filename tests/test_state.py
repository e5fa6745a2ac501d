"""`_state`: atomic files, validated and locked checkpoints, dead letters, no secrets
(DESIGN.md invariant 3)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

import pytest
from pydantic import SecretStr

from tracebridge import CheckpointError, Rejected, Settings, UsageError, migrate
from tracebridge import _state as state_module
from tracebridge._interfaces import Counts, Page
from tracebridge._state import (
    SYNCFS,
    AtomicBatch,
    Checkpoint,
    DeadLetters,
    JobCounts,
    StateDir,
    local_syncfs,
    make_folder,
    open_atomically,
    temp_target,
    write_atomically,
    write_many_atomically,
)

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "langwatch-sample.jsonl"
JOB: dict[str, Any] = {"from": "langwatch-file:a.jsonl", "to": "opik-dir:out", "since": None}
OTHER_JOB: dict[str, Any] = {**JOB, "to": "opik-dir:elsewhere"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ------------------------------------------------------------------------------ atomic writes


def test_write_atomically_creates_parents_and_replaces(tmp_path: Path) -> None:
    """The new text replaces the old one; missing folders are created."""
    path = tmp_path / "a" / "b" / "file.json"
    write_atomically(path, "old\n")
    write_atomically(path, "new\n")
    assert path.read_text() == "new\n"
    assert os.listdir(path.parent) == ["file.json"]  # no temp file left behind


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_a_failed_write_leaves_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """A crash before `os.replace` completes leaves the old file whole (never a torn one)."""
    path = tmp_path / "checkpoint.json"
    path.write_text("old content\n")

    def crash(*args: object) -> NoReturn:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, crash)
    with pytest.raises(OSError, match="No space"):
        write_atomically(path, "new content that never lands\n")
    monkeypatch.undo()
    assert path.read_text() == "old content\n"
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.json"]


def test_write_atomically_is_durable_before_and_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync happens on the temp file before it replaces the target, and on the folder after
    (the rename itself is durable only once the folder is synced)."""
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_atomically(tmp_path / "f", "x")
    expected = ["fsync file", "replace", "fsync folder"]
    assert calls == (expected if os.name == "posix" else expected[:2])


def _batch(folder: Path) -> list[tuple[Path, bytes]]:
    return [(folder / f"{i}.json", f'{{"n": {i}}}'.encode()) for i in range(5)] + [
        (folder / "sub" / "deeper.json", b"{}")
    ]


def _recorded_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`os.fsync`, still syncing, recording "file" or "folder" for each call."""
    fsynced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        fsynced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return fsynced


def test_a_batch_is_flushed_once_per_filesystem_after_every_temp_file_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `syncfs`, one flush covers the batch: every temp file is complete when it runs,
    no file is in place yet, and no file is fsynced on its own; the folders are synced after
    the renames, as for one file."""
    (tmp_path / "0.json").write_text("old")
    seen: list[tuple[list[str], list[str]]] = []

    def syncfs(fd: int) -> None:
        assert stat.S_ISDIR(os.fstat(fd).st_mode)
        names = sorted(os.listdir(tmp_path)) + sorted(os.listdir(tmp_path / "sub"))
        temps = [n for n in names if temp_target(n) is not None]
        seen.append((temps, [n for n in names if n not in temps]))

    fsynced = _recorded_fsyncs(monkeypatch)
    write_many_atomically(_batch(tmp_path), syncfs=syncfs)
    assert len(seen) == 1  # one filesystem
    temps, in_place = seen[0]
    assert sorted(temp_target(name) for name in temps) == sorted(
        [*(f"{i}.json" for i in range(5)), "deeper.json"]
    )
    assert in_place == ["0.json", "sub"]  # the old file, not yet replaced
    assert (tmp_path / "0.json").read_text() == '{"n": 0}'
    assert (tmp_path / "sub" / "deeper.json").read_bytes() == b"{}"
    # `sub`, made by the batch, synced into its parent; then each folder once, after the renames
    assert fsynced == ["folder", "folder", "folder"]


def test_a_failed_flush_names_the_folder_and_leaves_no_file(tmp_path: Path) -> None:
    def syncfs(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output error") as raised:
        write_many_atomically(_batch(tmp_path), syncfs=syncfs)
    assert raised.value.filename in (str(tmp_path), str(tmp_path / "sub"))
    assert sorted(os.listdir(tmp_path)) == ["sub"]  # no file in place, no temp file left
    assert os.listdir(tmp_path / "sub") == []


def test_where_syncfs_cannot_run_each_file_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sandbox without the call (ENOSYS, EPERM) or a filesystem without it: fsync per file."""

    def syncfs(fd: int) -> None:
        raise OSError(38, "Function not implemented")

    fsynced = _recorded_fsyncs(monkeypatch)
    write_many_atomically(_batch(tmp_path), syncfs=syncfs)
    assert fsynced.count("file") == 6
    assert (tmp_path / "sub" / "deeper.json").read_bytes() == b"{}"


def test_without_syncfs_each_file_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsynced = _recorded_fsyncs(monkeypatch)
    write_many_atomically(_batch(tmp_path), syncfs=None)
    assert fsynced.count("file") == 6
    assert (tmp_path / "4.json").read_bytes() == b'{"n": 4}'
    write_many_atomically(_batch(tmp_path)[:1])  # one file: an fsync is cheaper than a flush
    assert fsynced.count("file") == 7


def test_a_batch_writes_each_file_when_added_and_puts_them_in_place_on_commit(
    tmp_path: Path,
) -> None:
    """`AtomicBatch` holds names, not texts: each text is in its temp file once added; nothing
    is in place before `commit`, and the folder is watched before its first file is written."""
    flushed: list[str] = []
    with AtomicBatch(syncfs=lambda fd: flushed.append("flush")) as batch:
        for path, data in _batch(tmp_path):
            batch.add(path, data)
            (temp,) = [n for n in os.listdir(path.parent) if temp_target(n) == path.name]
            assert (path.parent / temp).read_bytes() == data
            assert not path.exists()
        assert len(batch._watched) == 1  # one filesystem, opened before any file was written
        batch.commit()
        assert flushed == ["flush"]
    assert sorted(os.listdir(tmp_path)) == [*(f"{i}.json" for i in range(5)), "sub"]
    assert (tmp_path / "sub" / "deeper.json").read_bytes() == b"{}"


def test_a_folder_that_cannot_be_opened_makes_the_batch_fsync_each_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`syncfs` needs a descriptor on a folder; where a folder cannot be opened (no read
    permission, simulated: the tests may run as root), each file is fsynced instead."""
    real_open = os.open

    def no_folders(path: Any, flags: int, *args: Any) -> int:
        if flags & getattr(os, "O_DIRECTORY", 0) or Path(path).is_dir():
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    fsynced = _recorded_fsyncs(monkeypatch)
    monkeypatch.setattr(os, "open", no_folders)
    flushed: list[int] = []
    write_many_atomically(_batch(tmp_path), syncfs=flushed.append)
    assert flushed == []
    assert fsynced == ["file"] * 6
    assert (tmp_path / "sub" / "deeper.json").read_bytes() == b"{}"


def test_a_batch_left_without_commit_leaves_nothing_behind(tmp_path: Path) -> None:
    (tmp_path / "0.json").write_text("old")
    batch = AtomicBatch(syncfs=lambda fd: None)

    def halfway() -> None:
        with batch:
            for path, data in _batch(tmp_path):
                batch.add(path, data)
            raise RuntimeError("a mapping failed halfway")

    with pytest.raises(RuntimeError):
        halfway()
    assert sorted(os.listdir(tmp_path)) == ["0.json", "sub"]  # no temp file, the old file
    assert (tmp_path / "0.json").read_text() == "old"
    assert os.listdir(tmp_path / "sub") == []
    assert not batch._watched


def test_make_folder_syncs_each_folder_it_makes_into_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file's fsync and its folder's make the file durable, not the folder's own entry in
    its parent: each folder made is synced into its parent, outermost first; none for a
    folder that was there."""
    synced: list[Path] = []
    monkeypatch.setattr(state_module, "fsync_folder", lambda folder: synced.append(folder))
    (tmp_path / "a").mkdir()
    make_folder(tmp_path / "a" / "b" / "c")
    assert (tmp_path / "a" / "b" / "c").is_dir()
    assert synced == [tmp_path / "a", tmp_path / "a" / "b"]
    make_folder(tmp_path / "a" / "b")
    assert len(synced) == 2


@pytest.mark.parametrize(
    ("fs_type", "flushed"),
    [(0xEF53, True), (0x01021994, True), (0x65735546, False), (0x6969, False)],
    ids=["ext4", "tmpfs", "fuse", "nfs"],
)
def test_syncfs_is_used_only_where_it_writes_the_files_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fs_type: int, flushed: bool
) -> None:
    """On FUSE, `syncfs` sends the daemon no fsync, and network filesystems flush on their own
    path: there each file is fsynced; on a local disk filesystem one flush covers the batch."""
    calls: list[int] = []
    syncfs = local_syncfs(lambda fd: calls.append(fd) or 0, lambda fd: fs_type)
    fsynced = _recorded_fsyncs(monkeypatch)
    write_many_atomically(_batch(tmp_path), syncfs=syncfs)
    assert len(calls) == (1 if flushed else 0)
    assert fsynced.count("file") == (0 if flushed else 6)
    assert (tmp_path / "sub" / "deeper.json").read_bytes() == b"{}"


@pytest.mark.skipif(SYNCFS is None, reason="no syncfs that reports failures (Linux 5.8+)")
def test_the_platforms_syncfs_flushes_a_real_batch(tmp_path: Path) -> None:
    write_many_atomically(_batch(tmp_path))
    assert sorted(os.listdir(tmp_path)) == [*(f"{i}.json" for i in range(5)), "sub"]


#: A FUSE filesystem passing every call through to a folder and logging the fsyncs it is asked
#: for (argv: the folder, the mount point, the log).
_LOGGING_FUSE = """
import os, sys
from fuse import FUSE, Operations

class Passthrough(Operations):
    def __init__(self, root, log):
        self.root, self.log = root, log

    def _p(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def getattr(self, path, fh=None):
        st = os.lstat(self._p(path))
        keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size",
                "st_uid")
        return {k: getattr(st, k) for k in keys}

    def readdir(self, path, fh):
        return [".", "..", *os.listdir(self._p(path))]

    def mkdir(self, path, mode):
        os.mkdir(self._p(path), mode)

    def unlink(self, path):
        os.unlink(self._p(path))

    def rename(self, old, new):
        os.rename(self._p(old), self._p(new))

    def chmod(self, path, mode):
        os.chmod(self._p(path), mode)

    def utimens(self, path, times=None):
        os.utime(self._p(path), times)

    def open(self, path, flags):
        return os.open(self._p(path), flags)

    def create(self, path, mode, fi=None):
        return os.open(self._p(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def release(self, path, fh):
        os.close(fh)

    def fsync(self, path, datasync, fh):
        with open(self.log, "a") as log:
            log.write(path + "\\n")
        os.fsync(fh)

    def opendir(self, path):
        return 0

    def fsyncdir(self, path, datasync, fh):
        return 0

FUSE(Passthrough(sys.argv[1], sys.argv[3]), sys.argv[2], foreground=True, nothreads=True)
"""


@pytest.fixture
def fuse_mount(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A FUSE filesystem mounted on a folder (skipped where none can be: fusepy, libfuse and
    /dev/fuse are needed, and the right to mount), and the log of the fsyncs it was asked for."""
    try:
        import fuse  # noqa: F401  (fusepy: raises OSError where libfuse is missing)
    except (ImportError, OSError):
        pytest.skip("fusepy and libfuse are needed to mount a FUSE filesystem")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse")
    backing, mount, log = tmp_path / "backing", tmp_path / "mount", tmp_path / "fsyncs.log"
    backing.mkdir()
    mount.mkdir()
    log.touch()
    server = subprocess.Popen(
        [sys.executable, "-c", _LOGGING_FUSE, str(backing), str(mount), str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(100):
            if os.path.ismount(mount) or server.poll() is not None:
                break
            time.sleep(0.05)
        if not os.path.ismount(mount):
            server.kill()
            pytest.skip(f"cannot mount a FUSE filesystem here: {server.communicate()[1][-300:]!r}")
        yield mount, log
    finally:
        if os.path.ismount(mount):
            unmount = ["fusermount", "-u"] if shutil.which("fusermount") else ["umount"]
            subprocess.run([*unmount, str(mount)], check=False)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_a_batch_on_a_fuse_filesystem_asks_the_filesystem_to_sync_each_file(
    fuse_mount: tuple[Path, Path],
) -> None:
    """The batch write is durable on a filesystem that only a file's fsync makes durable: the
    filesystem is asked to sync each temp file before it is renamed into place (`syncfs` sends
    a FUSE filesystem no fsync: it is used on local disk filesystems only)."""
    mount, log = fuse_mount
    write_many_atomically(_batch(mount))
    assert sorted(os.listdir(mount)) == [*(f"{i}.json" for i in range(5)), "sub"]
    synced = sorted(
        temp_target(PurePosixPath(line).name) or line for line in log.read_text().splitlines()
    )
    assert synced == sorted([*(f"{i}.json" for i in range(5)), "deeper.json"])


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_users_umask(tmp_path: Path, umask: int) -> None:
    """Not mkstemp's 0o600: `opik import` run by another user or container must be able to read
    the files as it could any other file the user made."""
    old = os.umask(umask)
    try:
        write_atomically(tmp_path / "new.json", "x")
        write_atomically(tmp_path / "new.json", "y")  # a replaced file too
        write_atomically(tmp_path / "other.json", "x")
    finally:
        os.umask(old)
    for name in ("new.json", "other.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask


def test_temp_names_are_recognised_by_what_they_were_to_become(tmp_path: Path) -> None:
    """`temp_target` names the file a temp file was for (also mkstemp's older names), and
    nothing else."""
    seen: list[str] = []
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        seen.append(Path(src).name)
        real_replace(src, dst)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", replace)
        write_atomically(tmp_path / "trace_1.json", "x")
    assert temp_target(seen[0]) == "trace_1.json"
    assert temp_target(".trace_1.json.k2_x9qa0.tmp") == "trace_1.json"  # mkstemp's alphabet
    for name in ("trace_1.json", ".trace_1.json.tmp", "x.abcdefgh.tmp", ".a.ABCDEFGH.tmp"):
        assert temp_target(name) is None, name


# -------------------------------------------------------------------------------- checkpoints


def test_checkpoint_save_and_load(tmp_path: Path) -> None:
    """What is saved loads back, with its schema version and a timestamp."""
    state = StateDir(tmp_path, JOB)
    state.save(Checkpoint(job=JOB, cursor={"units_done": 7}, pages=3))
    loaded = state.load()
    assert loaded is not None
    assert loaded.cursor == {"units_done": 7}
    assert loaded.pages == 3
    assert loaded.complete is False
    assert loaded.updated_at is not None
    on_disk = json.loads(state.checkpoint_path.read_text())
    assert on_disk["schema_version"] == 1


def test_the_checkpoint_keeps_the_jobs_counts_through_the_last_acknowledged_page(
    tmp_path: Path,
) -> None:
    """A run's counts are saved with each acknowledged page, added to the earlier runs' when
    it resumed the job; a completed job starts its counts over."""
    state = StateDir(tmp_path, JOB)
    assert state.begin() == (None, 0)
    assert state.job_counts() is None
    state.count(JobCounts(runs=1, read=Counts(traces=4)))
    state.acknowledged(Page(cursor={"units_done": 4}))
    state.end()

    again = StateDir(tmp_path, JOB)
    assert again.begin() == ({"units_done": 4}, 1)
    before = again.job_counts()
    assert before is not None
    assert (before.runs, before.read.traces) == (1, 4)
    again.count(JobCounts(runs=1, read=Counts(traces=6)))
    again.finished()
    again.end()
    saved = StateDir(tmp_path, JOB).load()
    assert saved is not None
    assert saved.counts is not None
    assert (saved.counts.runs, saved.counts.read.traces, saved.complete) == (2, 10, True)

    fresh = StateDir(tmp_path, JOB)
    fresh.begin()
    assert fresh.job_counts() is None
    fresh.end()


def test_a_checkpoint_without_counts_still_loads(tmp_path: Path) -> None:
    """Checkpoints of earlier versions have no `counts`: they resume, without job totals."""
    state = StateDir(tmp_path, JOB)
    state.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    state.checkpoint_path.write_text(
        json.dumps({"schema_version": 1, "job": JOB, "cursor": {"n": 1}, "pages": 1}),
        encoding="utf-8",
    )
    assert state.begin() == ({"n": 1}, 1)
    assert state.job_counts() is None
    state.end()


def test_no_checkpoint_loads_as_none(tmp_path: Path) -> None:
    """A job that never ran has no checkpoint."""
    assert StateDir(tmp_path, JOB).load() is None


def test_checkpoint_path_depends_on_the_job(tmp_path: Path) -> None:
    """Two jobs keep separate checkpoints in one state directory."""
    assert StateDir(tmp_path, JOB).checkpoint_path != StateDir(tmp_path, OTHER_JOB).checkpoint_path
    assert StateDir(tmp_path, JOB).checkpoint_path == StateDir(tmp_path, dict(JOB)).checkpoint_path


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        json.dumps({"schema_version": 2, "job": JOB}),
        json.dumps({"schema_version": 1, "job": JOB, "unexpected": 1}),
        json.dumps({"schema_version": 1, "job": JOB, "pages": "three"}),
        json.dumps({"schema_version": 1}),
    ],
    ids=["broken json", "not an object", "future schema", "unknown key", "bad type", "no job"],
)
def test_a_checkpoint_that_does_not_validate_is_a_checkpoint_error(
    tmp_path: Path, content: str
) -> None:
    """Corrupt or foreign-version checkpoints are refused with CheckpointError, not a crash."""
    state = StateDir(tmp_path, JOB)
    state.checkpoint_path.write_text(content)
    with pytest.raises(CheckpointError) as info:
        state.load()
    assert str(state.checkpoint_path) in str(info.value)


@pytest.mark.parametrize(
    "content",
    [bytes(range(256)), b"\xff\xfe{}", '{"job": "caf\u00e9"}'.encode("latin-1")],
    ids=["random bytes", "utf-16 mark", "latin-1"],
)
def test_a_checkpoint_that_is_not_utf8_is_a_checkpoint_error_naming_it(
    tmp_path: Path, content: bytes
) -> None:
    state = StateDir(tmp_path, JOB)
    state.checkpoint_path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        state.load()
    message = str(info.value)
    assert message.startswith(f"checkpoint {state.checkpoint_path} is not UTF-8 text (at byte ")
    assert "move it away to start the job from the beginning" in message


def test_a_checkpoint_that_cannot_be_read_is_a_checkpoint_error_naming_it(tmp_path: Path) -> None:
    state = StateDir(tmp_path, JOB)
    state.checkpoint_path.mkdir()
    with pytest.raises(CheckpointError) as info:
        state.load()
    assert str(info.value).startswith(
        f"checkpoint {state.checkpoint_path} cannot be read (Is a directory)"
    )


def test_a_checkpoint_of_another_job_is_refused(tmp_path: Path) -> None:
    """A checkpoint file naming another job is not resumed from."""
    state = StateDir(tmp_path, JOB)
    foreign = Checkpoint(job=OTHER_JOB, cursor={"units_done": 99})
    state.checkpoint_path.write_text(foreign.model_dump_json())
    with pytest.raises(CheckpointError, match="another job"):
        state.load()


# ---------------------------------------------------------------------------------------- lock


def test_the_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    """While one run of a job holds the lock, another run of the same job cannot start."""
    first, second = StateDir(tmp_path, JOB), StateDir(tmp_path, JOB)
    first.lock()
    try:
        with pytest.raises(CheckpointError, match="another tracebridge run"):
            second.lock()
    finally:
        first.unlock()
    second.lock()  # released: now it can
    second.unlock()


def test_different_jobs_do_not_block_each_other(tmp_path: Path) -> None:
    """Partitions of one state directory run concurrently."""
    first, other = StateDir(tmp_path, JOB), StateDir(tmp_path, OTHER_JOB)
    first.lock()
    try:
        other.lock()
        other.unlock()
    finally:
        first.unlock()


@pytest.mark.parametrize("under", [False, True], ids=["is-a-file", "under-a-file"])
def test_a_state_directory_that_is_a_file_is_a_usage_error(tmp_path: Path, under: bool) -> None:
    """A --state-dir that is a file, or lies under one, is configuration (exit 2), not OSError."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    root = not_a_dir / "state" if under else not_a_dir
    with pytest.raises(UsageError, match=str(not_a_dir)) as info:
        StateDir(root, JOB).lock()
    assert info.value.exit_code == 2


# -------------------------------------------------------------------------------- dead letters


def test_dead_letter_lines_are_json_with_run_where_reason_and_record(tmp_path: Path) -> None:
    """Each rejected record is one JSON line with the run id, where, why and the record."""
    path = tmp_path / "state" / "dead-letters.jsonl"
    letters = DeadLetters(path, "run123")
    record = {"trace_id": "t1", "timestamps": {"started_at": 1721382486}}
    letters.add(Rejected("trace", "in.jsonl:3", "field 'timestamps.started_at': seconds", record))
    letters.add(Rejected("span", "trace t2", "refused", None))
    letters.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["run_id"] == "run123"
    assert first["where"] == "in.jsonl:3"
    assert first["reason"] == "field 'timestamps.started_at': seconds"
    assert first["record"] == record
    assert first["kind"] == "trace"
    assert "at" in first
    assert second["kind"] == "span"
    assert second["record"] is None
    assert letters.count == 2


def test_dead_letters_append_across_runs(tmp_path: Path) -> None:
    """A later run adds to the file; earlier runs' lines stay."""
    path = tmp_path / "dead-letters.jsonl"
    for run_id in ("first", "second"):
        letters = DeadLetters(path, run_id)
        letters.add(Rejected("trace", "x", "bad", {"raw": "line"}))
        letters.close()
    runs = [json.loads(line)["run_id"] for line in path.read_text().splitlines()]
    assert runs == ["first", "second"]


def test_no_dead_letter_file_without_rejects(tmp_path: Path) -> None:
    """Opening the dead-letter file is lazy: a clean run leaves none."""
    letters = DeadLetters(tmp_path / "dead-letters.jsonl", "r")
    letters.close()
    assert not (tmp_path / "dead-letters.jsonl").exists()


# ------------------------------------------------------------------------------------- secrets


@pytest.mark.anyio
async def test_state_files_hold_no_credentials(tmp_path: Path) -> None:
    """A real job's checkpoint and dead letters contain neither API key; the job key is built
    from endpoints, projects and window only."""
    lw_secret, opik_secret = "sk-lw-SECRET-5d1f0c", "opik-SECRET-93ab27"
    source = tmp_path / "in.jsonl"
    shutil.copy(SAMPLE, source)
    with source.open("a") as handle:
        handle.write("not json\n")  # one dead letter, so that file exists too
    settings = Settings(
        langwatch_api_key=SecretStr(lw_secret),
        opik_api_key=SecretStr(opik_secret),
        state_dir=tmp_path / "state",
    )
    report = await migrate(
        f"langwatch-file:{source}",
        f"opik-dir:{tmp_path / 'out'}",
        target_project="support-bot",
        settings=settings,
    )
    assert report.dead_lettered.traces == 1
    files = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert any(p.name.startswith("checkpoint-") and p.suffix == ".json" for p in files)
    assert any(p.name == "dead-letters.jsonl" for p in files)
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert lw_secret not in text, path
        assert opik_secret not in text, path
    checkpoint = next(p for p in files if p.suffix == ".json")
    job = json.loads(checkpoint.read_text())["job"]
    assert set(job) == {"from", "to", "source_project", "target_project", "since", "until"}


def test_open_atomically_streams_keeps_a_given_mode_and_leaves_nothing_on_failure(
    tmp_path: Path,
) -> None:
    """The streaming variant: bytes replace the file with the mode asked for; a block that
    raises leaves the old file and no temp file."""
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"old\n")
    with open_atomically(path, mode=0o640) as handle:
        handle.write(b"new\n")
    assert path.read_bytes() == b"new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640

    def crash() -> None:
        with open_atomically(path) as handle:
            handle.write(b"torn")
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        crash()
    assert path.read_bytes() == b"new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["data.jsonl"]


def test_dead_letter_lines_is_the_one_reader_of_the_file(tmp_path: Path) -> None:
    """Lines end at `\\n` only (an entry's text may hold U+2028 and `\\r`), blank lines are not
    entries, a line cut short is kept with no entry, bytes that are not UTF-8 do not stop it,
    and an absent file has no lines."""
    from tracebridge._state import dead_letter_lines

    path = tmp_path / "dead-letters.jsonl"
    assert list(dead_letter_lines(path)) == []
    whole = json.dumps({"reason": "a\u2028b\rc"}, ensure_ascii=False)
    path.write_bytes(
        whole.encode() + b"\n\n  \n" + b'{"reason": "cut' + b"\n" + b'{"r": "\xff"}\n[1]'
    )
    got = list(dead_letter_lines(path))
    assert got == [
        (whole, {"reason": "a\u2028b\rc"}),
        ('{"reason": "cut', None),
        ('{"r": "\ufffd"}', {"r": "\ufffd"}),
        ("[1]", None),
    ]
