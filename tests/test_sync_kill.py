"""`tracebridge sync` killed with SIGKILL at random moments, then rerun to completion: the
destination always ends as an uninterrupted run leaves it (file contents, `downloaded_at`
aside), with no duplicate, and the rerun exits 0.

A real `python -m tracebridge.cli sync` process reads a file of many traces with one unit a
page (`TRACEBRIDGE_PAGE_SIZE=1`, a knob for tests), so it writes many pages and checkpoints; each
kill comes at a random moment of the pass (as long as an uninterrupted one), once it has begun.
Both directions: `langwatch-file:` → `opik-dir:` (files written by id, atomically) and
`opik-dir:` → `langwatch-file:` (a JSONL file appended to, where a kill can cut a line and a
careless resume would add a second copy). The seed is in every failure message.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import sync_process as sp

COPIES = 5  # 60 traces in 15 threads and standalone traces


def _started(work: Path, process: Any) -> bool:
    """The pass has begun (its checkpoint is saved before the first page), or it is over."""
    return sp.checkpoint(work) is not None or process.poll() is not None


def _uninterrupted(
    root: Path, source: str, sink: str, prepare: Callable[[Path], None]
) -> tuple[float, Path]:
    """An uninterrupted run, and how long its pass took (start-up left out: kills are aimed
    at the pass, where they can cut a page)."""
    clean = root / "clean"
    clean.mkdir()
    prepare(clean)
    process = sp.start(clean, source, sink)
    sp.wait_for(lambda: _started(clean, process))
    began = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    return time.monotonic() - began, clean


def _kill_and_rerun(
    tmp_path: Path,
    *,
    source: str,
    sink: str,
    prepare: Callable[[Path], None],
    snapshot: Callable[[Path], Any],
    runs: int,
) -> None:
    duration, clean = _uninterrupted(tmp_path, source, sink, prepare)
    expected = snapshot(clean)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    mid_pass = 0
    for n in range(runs):
        work = tmp_path / f"run{n}"
        work.mkdir()
        prepare(work)
        delay = rng.uniform(0, duration)
        process = sp.start(work, source, sink)
        sp.wait_for(lambda work=work, process=process: _started(work, process))
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=20)
        left = sp.checkpoint(work)
        mid_pass += bool(left is not None and left.current is not None)
        note = f"(seed {seed}, run {n}, killed {delay:.3f}s into the pass)"
        again = sp.run(work, source, sink)
        assert again.returncode == 0, f"{note}: {again.stdout}\n{again.stderr}"
        assert snapshot(work) == expected, f"{note}: the destination differs"
        done = sp.checkpoint(work)
        assert done is not None, note
        assert done.current is None, note
        assert done.high_water is not None, note
    # the kills must have landed inside passes, or this tested nothing
    assert mid_pass >= runs // 4, f"(seed {seed}) only {mid_pass} of {runs} kills landed mid-pass"


def test_kills_while_syncing_a_langwatch_file_to_an_opik_folder(tmp_path: Path) -> None:
    def prepare(work: Path) -> None:
        sp.make_input(work / "in.jsonl", COPIES)

    def snapshot(work: Path) -> Any:
        files = sp.folder_snapshot(work / "out")
        traces = [name for name in files if Path(name).name.startswith("trace_")]
        assert len(traces) == 12 * COPIES  # one file per trace: nothing missing, nothing more
        return files

    _kill_and_rerun(
        tmp_path,
        source="langwatch-file:in.jsonl",
        sink="opik-dir:out",
        prepare=prepare,
        snapshot=snapshot,
        runs=15,
    )


@pytest.fixture
def opik_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An opik-dir of records born in Opik: the input, made once by a sync, its provenance
    stash then removed (as `opik export` of an Opik project holds them). Copies that came from
    LangWatch would be echoes, rightly never written back to a LangWatch file."""
    root = tmp_path_factory.mktemp("opik")
    sp.make_input(root / "in.jsonl", COPIES)
    result = sp.run(root, "langwatch-file:in.jsonl", "opik-dir:out")
    assert result.returncode == 0, result.stderr
    for path in (root / "out").rglob("trace_*.json"):
        body = json.loads(path.read_text(encoding="utf-8"))
        for record in (body["trace"], *body["spans"]):
            record.get("metadata", {}).pop("tracebridge", None)
        path.write_text(json.dumps(body), encoding="utf-8")
    return root / "out"


def test_kills_while_syncing_an_opik_folder_to_a_langwatch_file(
    tmp_path: Path, opik_folder: Path
) -> None:
    def prepare(work: Path) -> None:
        return None

    def snapshot(work: Path) -> Any:
        lines = sp.jsonl_snapshot(work / "back.jsonl")
        ids = [line["trace_id"] for line in lines]
        assert len(ids) == len(set(ids)) == 12 * COPIES  # no duplicate line, none missing
        return lines

    _kill_and_rerun(
        tmp_path,
        source=f"opik-dir:{opik_folder}",
        sink="langwatch-file:back.jsonl",
        prepare=prepare,
        snapshot=snapshot,
        runs=8,
    )
