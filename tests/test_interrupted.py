"""Interrupted file migrations, resumed on an input that changed in between.

A run is stopped at a random point (before a batch is written, or after it was written but
before its checkpoint moved, as a kill would), the input is then perturbed (reordered, appended
to, cut), and the same job is run again from its checkpoint. The destination must end as a clean
run on the final input leaves it: every trace of the final input once, with its final content.
A migration never deletes at the destination, so a trace that was removed from the input after
the interrupted run wrote it may stay; nothing else may differ. Checkpoints edited by hand
(a cursor past the end, a negative one) restart the read instead of skipping records.
"""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracebridge import LangWatchFileSource, OpikDirSink, Unit, WriteResult, default_mappings, run
from tracebridge._state import StateDir

BASE_MS = 1_773_082_931_000
JOB = {"from": "langwatch-file:in.jsonl", "to": "opik-dir:out"}


class Interrupted(BaseException):
    """Stands for a kill: not an Exception, so nothing in the engine may swallow it."""


class InterruptingSink:
    """An `OpikDirSink` that dies at its `stop_at`-th write, before or after writing it."""

    def __init__(self, inner: OpikDirSink, stop_at: int, after_write: bool) -> None:
        self.inner, self.stop_at, self.after_write = inner, stop_at, after_write
        self.label = inner.label
        self.calls = 0

    async def write(self, units: list[Unit], *, dry_run: bool = False) -> WriteResult:
        self.calls += 1
        if self.calls == self.stop_at and not self.after_write:
            raise Interrupted
        result = await self.inner.write(units, dry_run=dry_run)
        if self.calls == self.stop_at:
            raise Interrupted
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()


def _trace(n: int, version: int, thread: str | None) -> dict[str, Any]:
    tid = f"trace_{n:03d}"
    start = BASE_MS + n * 1000
    return {
        "trace_id": tid,
        "project_id": "pInterrupted",
        "metadata": {"thread_id": thread} if thread else {},
        "timestamps": {"started_at": start, "inserted_at": start + 900},
        "input": {"value": f"question {n} v{version}"},
        "spans": [
            {
                "span_id": f"{tid}_s{i}",
                "trace_id": tid,
                "parent_id": None if i == 0 else f"{tid}_s0",
                "name": f"step {i}",
                "type": "llm" if i else "chain",
                "output": {"type": "text", "value": f"answer {n}.{i} v{version}"},
                "timestamps": {"started_at": start + i, "finished_at": start + 400 + i},
            }
            for i in range(1 + n % 3)
        ],
    }


def _write_input(path: Path, traces: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(t) + "\n" for t in traces), encoding="utf-8")


def _contents(out: Path) -> dict[str, dict[str, Any]]:
    """Every trace file of an opik-dir, by name, without the export timestamp."""
    found = {}
    for path in out.rglob("trace_*.json"):
        body = json.loads(path.read_text(encoding="utf-8"))
        body.pop("downloaded_at", None)
        found[path.name] = body
    return found


async def _migrate(path: Path, sink: Any, state: StateDir | None, page_size: int) -> None:
    await run(LangWatchFileSource(path, page_size=page_size), sink, state=state)


def _sink(out: Path) -> OpikDirSink:
    return OpikDirSink(out, workspace="default", project="p", mappings=default_mappings())


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(3, 12),
    threads=st.integers(0, 3),
    page_size=st.integers(1, 3),
    stop_at=st.integers(1, 8),
    after_write=st.booleans(),
    change=st.sampled_from(["none", "reorder", "append", "remove", "edit"]),
    seed=st.integers(0, 2**16),
)
def test_a_resumed_run_on_changed_input_ends_as_a_clean_run(
    tmp_path_factory: pytest.TempPathFactory,
    n: int,
    threads: int,
    page_size: int,
    stop_at: int,
    after_write: bool,
    change: str,
    seed: int,
) -> None:
    """Interrupt, perturb, resume: the output equals a clean run on the final input."""
    rng = random.Random(seed)
    tmp = tmp_path_factory.mktemp("run")
    thread_of = {
        i: (f"conv_{rng.randrange(threads)}" if threads and rng.random() < 0.6 else None)
        for i in range(n + 3)
    }
    first = [_trace(i, 0, thread_of[i]) for i in range(n)]
    source, out, clean = tmp / "in.jsonl", tmp / "out", tmp / "clean"
    _write_input(source, first)
    state = StateDir(tmp / "state", JOB)

    async def interrupted() -> None:
        sink = InterruptingSink(_sink(out), stop_at, after_write)
        with contextlib.suppress(Interrupted):
            await _migrate(source, sink, state, page_size)

    anyio.run(interrupted)
    final = list(first)
    removed: set[str] = set()
    if change == "reorder":
        rng.shuffle(final)
    elif change == "append":
        final += [_trace(i, 0, thread_of[i]) for i in range(n, n + 3)]
    elif change == "remove":
        gone = rng.sample(range(n), k=max(1, n // 3))
        removed = {first[i]["trace_id"] for i in gone}
        final = [t for t in final if t["trace_id"] not in removed]
    elif change == "edit":
        final = [_trace(i, 1, thread_of[i]) if i % 2 else t for i, t in enumerate(first)]
    _write_input(source, final)

    anyio.run(_migrate, source, _sink(out), StateDir(tmp / "state", JOB), page_size)
    anyio.run(_migrate, source, _sink(clean), None, page_size)

    got, want = _contents(out), _contents(clean)
    assert len(want) == len(final)
    assert {name: got.get(name) for name in want} == want
    extra = {
        body["trace"]["metadata"]["tracebridge"]["source"]["id"]
        for name, body in got.items()
        if name not in want
    }
    assert extra <= removed


@pytest.mark.parametrize("cursor", [999_999, -5, "12", None, 2.5])
def test_a_checkpoint_edited_by_hand_restarts_the_read(tmp_path: Path, cursor: object) -> None:
    """A cursor that does not fit the input never skips records: the read starts over."""
    traces = [_trace(i, 0, None) for i in range(12)]
    source, out = tmp_path / "in.jsonl", tmp_path / "out"
    _write_input(source, traces)
    state = StateDir(tmp_path / "state", JOB)
    anyio.run(_migrate, source, _sink(tmp_path / "first"), state, 2)
    saved = json.loads(state.checkpoint_path.read_text(encoding="utf-8"))
    saved["complete"] = False
    saved["cursor"]["units_done"] = cursor
    state.checkpoint_path.write_text(json.dumps(saved), encoding="utf-8")

    async def resume() -> list[str]:
        report = await run(LangWatchFileSource(source, page_size=2), _sink(out), state=state)
        return report.result.warnings

    warnings = anyio.run(resume)
    assert len(_contents(out)) == 12
    assert any("reading it again from the start" in w for w in warnings), warnings


def test_a_resume_on_a_reordered_export_copies_everything(tmp_path: Path) -> None:
    """The issue's case: interrupted, re-exported in another order, rerun: all arrive."""
    traces = [_trace(i, 0, None) for i in range(30)]
    source, out = tmp_path / "in.jsonl", tmp_path / "out"
    _write_input(source, traces)
    state = StateDir(tmp_path / "state", JOB)

    async def interrupted() -> None:
        with pytest.raises(Interrupted):
            await _migrate(source, InterruptingSink(_sink(out), 5, True), state, 3)

    anyio.run(interrupted)
    assert 0 < len(_contents(out)) < 30
    _write_input(source, list(reversed(traces)))
    anyio.run(_migrate, source, _sink(out), StateDir(tmp_path / "state", JOB), 3)
    assert len(_contents(out)) == 30
