"""`tracebridge sync --every` as a real process, stopped by SIGTERM or SIGINT: the page in
flight finishes, the checkpoint is saved, the process exits by the passes' verdict (0 here),
and a rerun resumes an interrupted pass to the same destination an uninterrupted run makes."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests import sync_process as sp


def test_sigterm_after_the_first_pass_exits_0_with_the_checkpoint_saved(tmp_path: Path) -> None:
    sp.make_input(tmp_path / "in.jsonl", 1)
    process = sp.start(tmp_path, "langwatch-file:in.jsonl", "opik-dir:out", "--every", "0.2s")
    try:
        sp.wait_for(lambda: (c := sp.checkpoint(tmp_path)) is not None and c.passes >= 1)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "SIGTERM: finishing the page in flight, then saving the checkpoint" in stderr
    assert "Traceback" not in stderr
    assert "high-water mark: " in stdout
    saved = sp.checkpoint(tmp_path)
    assert saved is not None
    assert saved.high_water is not None
    assert saved.passes >= 1
    assert len(list((tmp_path / "out").rglob("trace_*.json"))) == 12
    # the lock is released: the next run of the job starts at once
    assert sp.run(tmp_path, "langwatch-file:in.jsonl", "opik-dir:out").returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_pass_saves_the_page_in_flight_and_a_rerun_resumes(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """Stopped while its first pass writes page after page: exit 0, the pass is in the
    checkpoint with its acknowledged pages; the rerun resumes it and the destination equals an
    uninterrupted run's."""
    sp.make_input(tmp_path / "in.jsonl", 6)
    clean = tmp_path / "clean"
    clean.mkdir()
    sp.make_input(clean / "in.jsonl", 6)
    assert sp.run(clean, "langwatch-file:in.jsonl", "opik-dir:out").returncode == 0

    process = sp.start(tmp_path, "langwatch-file:in.jsonl", "opik-dir:out", "--every", "1h")

    def in_pass() -> bool:
        saved = sp.checkpoint(tmp_path)
        return bool(saved and saved.current and saved.current.pages >= 2)

    try:
        sp.wait_for(in_pass)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert f"{signum.name}: finishing the page in flight" in stderr
    assert "stopped: the checkpoint is after the last acknowledged page" in stdout
    saved = sp.checkpoint(tmp_path)
    assert saved is not None
    assert saved.current is not None
    assert saved.high_water is None  # the mark moves only when a pass completes
    pages = saved.current.pages
    assert pages >= 2

    again = sp.run(tmp_path, "langwatch-file:in.jsonl", "opik-dir:out")
    assert again.returncode == 0, again.stderr
    assert "(resuming an interrupted pass)" in again.stdout
    assert f"resumed an interrupted run after {pages} pages" in again.stdout
    assert sp.folder_snapshot(tmp_path / "out") == sp.folder_snapshot(clean / "out")
    done = sp.checkpoint(tmp_path)
    assert done is not None
    assert done.current is None
    assert done.high_water == saved.current.started_at
