"""One run at a time: locks on a job's checkpoint and on a destination file or folder.

`filelock` takes the lock (fcntl where there is one, msvcrt on Windows), so this module only adds
what a user needs when a lock is taken: who holds it. The holder (pid, host, start time) is kept
in a small file beside the lock, because the lock file itself is truncated by every contender.
A second run fails at once with `LockedError` (exit 2) naming the path and the holder.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import filelock

from ._errors import CheckpointError, LockedError, UsageError

__all__ = ["PathLock"]


class PathLock:
    """An exclusive, non-blocking lock kept in `lock_path`; `what` names what it protects."""

    def __init__(self, lock_path: Path, what: str) -> None:
        self.lock_path = lock_path
        self.what = what
        self._holder_path = lock_path.with_name(lock_path.name + ".holder")
        self._lock: filelock.BaseFileLock | None = None

    def acquire(self) -> None:
        """Take the lock, or raise LockedError (held), UsageError (a file is where a folder
        should be) or CheckpointError (it cannot be made: permissions, disk)."""
        lock = filelock.FileLock(str(self.lock_path), timeout=0)
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except filelock.Timeout:
            raise LockedError(
                f"{self.what} is in use by another tracebridge run ({self._holder()}); "
                "wait for it to finish"
            ) from None
        except (NotADirectoryError, FileExistsError) as exc:
            raise UsageError(
                f"cannot lock {self.what}: a file is in the way of {exc.filename or self.lock_path}"
            ) from None
        except OSError as exc:
            raise CheckpointError(
                f"cannot lock {self.what}: {exc.strerror or exc} ({self.lock_path})"
            ) from None
        self._lock = lock
        holder = {"pid": os.getpid(), "host": socket.gethostname()}
        holder["since"] = datetime.now(UTC).isoformat(timespec="seconds")
        with contextlib.suppress(OSError):  # naming the holder is a courtesy; the lock is taken
            self._holder_path.write_text(json.dumps(holder) + "\n", encoding="utf-8")

    def release(self) -> None:
        if self._lock is not None:
            self._holder_path.unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    def _holder(self) -> str:
        try:
            data = json.loads(self._holder_path.read_text(encoding="utf-8"))
            return f"pid {data['pid']} on {data['host']} since {data['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return f"lock {self.lock_path}"
