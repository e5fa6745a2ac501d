"""`os.fsync` recorded: which files and folders a piece of code asked the disk to sync."""

from __future__ import annotations

import os

import pytest


def recorded_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """`os.fsync`, still syncing, recording the inode number of what each call synced."""
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced
