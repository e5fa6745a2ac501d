"""Calls recorded while code under test runs: the fsyncs it asked for, the content hashes it
took."""

from __future__ import annotations

import os

import pytest

from tracebridge._hashing import Dumped


def recorded_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """`os.fsync`, still syncing, recording the inode number of what each call synced."""
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def counted_content_hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`Dumped._content_hash`, still hashing, recording the id of each trace it hashed."""
    hashed: list[str] = []
    real = Dumped._content_hash

    def counted(self: Dumped) -> str:
        hashed.append(self.trace["id"])
        return real(self)

    monkeypatch.setattr(Dumped, "_content_hash", counted)
    return hashed
