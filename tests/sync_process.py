"""Helpers for the tests that run `tracebridge sync` as a real process (signals, SIGKILL)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracebridge._opik.folder import LOCK_NAME
from tracebridge._sync_state import CheckpointV2, read_checkpoint

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "langwatch-sample.jsonl"
_IDS = re.compile(r'"((?:trace|span|check)_(?!id")[A-Za-z0-9]+|conv_[^"]+)"')


def make_input(path: Path, copies: int) -> int:
    """`copies` copies of the sample, each with its own trace, span, evaluation and thread ids;
    returns the number of traces."""
    lines = [line for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = [
        _IDS.sub(lambda m, k=k: f'"{m.group(1)}-c{k}"', line)  # type: ignore[misc]
        for k in range(copies)
        for line in lines
    ]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return len(out)


def environment(page_size: int = 1) -> dict[str, str]:
    """The test process's environment without tracebridge's variables, plus a page size."""
    names = ("LANGWATCH_", "OPIK_", "TRACEBRIDGE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(names)}
    return {**env, "TRACEBRIDGE_PAGE_SIZE": str(page_size), "PYTHONUNBUFFERED": "1"}


def command(source: str, sink: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tracebridge.cli", "sync", "--from", source, "--to", sink, *extra]


def run(cwd: Path, source: str, sink: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """One `tracebridge sync` to completion."""
    return subprocess.run(
        command(source, sink, *extra),
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def start(cwd: Path, source: str, sink: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(source, sink, *extra),
        cwd=cwd,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def checkpoint(cwd: Path) -> CheckpointV2 | None:
    """The one sync checkpoint under `cwd/.tracebridge`, or None."""
    paths = list((cwd / ".tracebridge").glob("checkpoint-*.json"))
    return read_checkpoint(paths[0]) if paths else None


def wait_for(what: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.005)


def folder_snapshot(folder: Path) -> dict[str, Any]:
    """Every file under `folder` (hidden ones too: a stray temp file is a difference), parsed,
    without `downloaded_at`; the sink's lock files are not data."""
    files: dict[str, Any] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.startswith(LOCK_NAME):
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data.pop("downloaded_at", None)
        files[str(path.relative_to(folder))] = data
    return files


def jsonl_snapshot(path: Path) -> list[Any]:
    """The lines of a JSONL file, parsed, in order."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
