"""A sync job's state: checkpoint schema v2 (a high-water mark on the change axis), its lock and
its own dead-letter file.

```
{"schema_version": 2, "kind": "sync", "job": {...},       # the job's identity (no secrets)
 "high_water": "…Z" | null,      # every change up to this moment is at the destination
 "lookback_seconds": 600.0,      # the lookback the last pass used
 "current": {                    # the pass in flight; null between passes
     "started_at": "…Z",         #   its start: its window's `until`, and as far as the mark moves
     "since": "…Z" | null,       #   its window's `since` (the mark minus the lookback)
     "cursor": {...} | null,     #   the source's cursor after the last acknowledged page
     "pages": 3,                 #   pages acknowledged
     "high_water": "…Z" | null}, #   the source's own mark (`Page.high_water`), last given
 "last_pass": {"started_at", "ended_at", "read", "written", "skipped", "dead_lettered",
               "lost"} | null,   # counts are {threads, traces, spans, scores}
 "passes": 12, "updated_at": "…Z"}
```

The rules (DESIGN.md invariant 3, singer's signpost):
- a pass reads `Window(since=high_water - lookback, until=started_at, axis="updated")` (the first
  pass: `since=None`); its window is saved before the first page, so an interrupted pass resumes
  from its cursor with the same window;
- the cursor moves after each page the sink acknowledged; the mark moves only when the pass
  completes, to `min(started_at, the source's last high_water)`, never past the moment the pass
  started and never backwards (`max` with the old mark: everything up to it stays copied).

**Reading.** `read_checkpoint` reads both schemas. A version 1 file (what `migrate` writes, and
keeps writing) is upgraded in memory, never rewritten: `kind="migrate"`, its job key as it is,
no high-water mark (v1 never recorded when its run started, so any mark taken from it could
skip changes made while it ran), its cursor and page count as the pass in flight when it is not
complete, its last save as the last pass's end when it is. A sync never adopts a migrate's
checkpoint: its first pass reads everything, which idempotent writes make safe. A file that is
not JSON, of an unknown schema, does not validate, or belongs to another job is a
`BadCheckpointError` (exit 2) naming the file and `--reset`; one that cannot be read at all
(permissions) is a `CheckpointError` (exit 3).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ._errors import BadCheckpointError, CheckpointError
from ._interfaces import Counts, Page, Window
from ._state import Checkpoint, DeadLetters, StateDir, write_atomically

__all__ = [
    "CheckpointV2",
    "LastPass",
    "PassState",
    "SyncState",
    "read_checkpoint",
]

SCHEMA_VERSION: Literal[2] = 2


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PassState(_Model):
    """The pass in flight: its window, where the source is, and the source's own mark."""

    started_at: datetime | None
    since: datetime | None = None
    cursor: dict[str, Any] | None = None
    pages: int = 0
    high_water: datetime | None = None
    #: Records the source lost without naming them so far in this pass (the mark then stays).
    lost: int = 0


class LastPass(_Model):
    """When the last complete pass ran and what it did (counts by kind)."""

    started_at: datetime | None = None
    ended_at: datetime | None = None
    read: dict[str, int] | None = None
    written: dict[str, int] | None = None
    skipped: dict[str, int] | None = None
    dead_lettered: dict[str, int] | None = None
    lost: int = 0


class CheckpointV2(_Model):
    """Where a sync job stands (module docstring); also the view of a v1 (migrate) file."""

    schema_version: Literal[2] = 2
    kind: Literal["sync", "migrate"] = "sync"
    job: dict[str, Any]
    high_water: datetime | None = None
    lookback_seconds: float | None = None
    current: PassState | None = None
    last_pass: LastPass | None = None
    passes: int = 0
    updated_at: datetime | None = None


def _counts(counts: Counts) -> dict[str, int]:
    return {k: getattr(counts, k) for k in ("threads", "traces", "spans", "scores")}


def _reset_hint(path: Path) -> str:
    return (
        f"rerun with --reset to start the job over (this removes {path}; the dead letters stay), "
        "or move the file away"
    )


def upgrade_v1(checkpoint: Checkpoint) -> CheckpointV2:
    """A migrate checkpoint (v1) as v2 (module docstring, "Reading")."""
    return CheckpointV2(
        kind="migrate",
        job=checkpoint.job,
        current=None
        if checkpoint.complete
        else PassState(started_at=None, cursor=checkpoint.cursor, pages=checkpoint.pages),
        last_pass=LastPass(ended_at=checkpoint.updated_at) if checkpoint.complete else None,
        updated_at=checkpoint.updated_at,
    )


def read_checkpoint(path: Path) -> CheckpointV2 | None:
    """The checkpoint in `path` as v2 (upgrading a v1 file), or None when there is none."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({exc.strerror or exc}): fix that and rerun"
        ) from None
    except UnicodeDecodeError as exc:
        raise BadCheckpointError(
            f"checkpoint {path} is not UTF-8 text (at byte {exc.start}), so not a checkpoint "
            f"tracebridge wrote: {_reset_hint(path)}"
        ) from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise BadCheckpointError(
            f"checkpoint {path} is not JSON, so not a checkpoint tracebridge wrote: "
            f"{_reset_hint(path)}"
        ) from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    model: type[Checkpoint] | type[CheckpointV2] | None = None
    if version == 1 and type(version) is int:
        model = Checkpoint
    elif version == SCHEMA_VERSION and type(version) is int:
        model = CheckpointV2
    if model is None:
        raise BadCheckpointError(
            f"checkpoint {path} has schema version {version!r}, which this tracebridge does "
            f"not know (it reads 1 and 2): a newer tracebridge wrote it, or it is not a "
            f"checkpoint; {_reset_hint(path)}"
        )
    try:
        checkpoint = model.model_validate(data)
    except ValidationError as exc:
        raise BadCheckpointError(
            f"checkpoint {path} does not validate as schema {version} "
            f"({exc.error_count()} problems): {_reset_hint(path)}"
        ) from None
    return upgrade_v1(checkpoint) if isinstance(checkpoint, Checkpoint) else checkpoint


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SyncState:
    """One sync job in the state directory: its checkpoint, lock and dead-letter file.

    The command holds the lock (`lock`/`unlock`) for as long as it runs, across passes; as the
    engine's `JobState`, one object drives one pass (`open_pass`, then `run(state=...)`).
    Files: `checkpoint-<id>.json`, `checkpoint-<id>.lock`, `dead-letters-<id>.jsonl`, where
    `<id>` is a digest of the job's key (the same naming as migrate's checkpoints).
    """

    def __init__(
        self, root: Path, job: dict[str, Any], *, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self._dir = StateDir(root, job)
        self.root = root
        self.job = job
        self.id = self._dir.checkpoint_path.stem.removeprefix("checkpoint-")
        self.checkpoint_path = self._dir.checkpoint_path
        self.dead_letter_path = root / f"dead-letters-{self.id}.jsonl"
        self.clock = clock
        self.checkpoint: CheckpointV2 | None = None

    def lock(self) -> None:
        """Take the job; `LockedError` (exit 2) names the run that holds it."""
        self._dir.lock()

    def unlock(self) -> None:
        self._dir.unlock()

    def load(self) -> CheckpointV2 | None:
        """The job's checkpoint; `BadCheckpointError` when the file is another job's."""
        checkpoint = read_checkpoint(self.checkpoint_path)
        if checkpoint is not None and (checkpoint.kind != "sync" or checkpoint.job != self.job):
            what = "a migrate job" if checkpoint.kind == "migrate" else "another sync job"
            raise BadCheckpointError(
                f"checkpoint {self.checkpoint_path} belongs to {what}, not to this one: "
                f"{_reset_hint(self.checkpoint_path)}"
            )
        return checkpoint

    def save(self) -> None:
        assert self.checkpoint is not None
        self.checkpoint.updated_at = self.clock()
        write_atomically(self.checkpoint_path, self.checkpoint.model_dump_json(indent=2) + "\n")

    def reset(self) -> bool:
        """Remove the job's checkpoint (not its dead letters); True when there was one."""
        try:
            self.checkpoint_path.unlink()
        except FileNotFoundError:
            return False
        return True

    def open_pass(self, lookback: timedelta, *, save: bool = True) -> Window:
        """The window of the pass to run: the interrupted one's, else a new pass starting now
        (saved before its first page unless `save` is False, as for a dry run)."""
        checkpoint = self.load() or CheckpointV2(job=self.job)
        self.checkpoint = checkpoint
        if checkpoint.current is None or checkpoint.current.started_at is None:
            mark = checkpoint.high_water
            checkpoint.current = PassState(
                started_at=self.clock(), since=mark - lookback if mark else None
            )
            checkpoint.lookback_seconds = lookback.total_seconds()
            if save:
                self.save()
        current = checkpoint.current
        return Window(since=current.since, until=current.started_at, axis="updated")

    @property
    def resuming(self) -> bool:
        """The pass opened is an interrupted one (a page of it was acknowledged)."""
        current = self.checkpoint.current if self.checkpoint else None
        return bool(current and current.pages)

    # -- JobState ---------------------------------------------------------------------------

    def dead_letters(self, run_id: str) -> DeadLetters:
        """The job's own file, one entry per distinct failure (a file source re-read every
        pass meets its bad lines every time)."""
        return DeadLetters(self.dead_letter_path, run_id, unique=True)

    def _open(self) -> tuple[CheckpointV2, PassState]:
        checkpoint = self.checkpoint
        if checkpoint is None or checkpoint.current is None:
            raise RuntimeError("no pass is open: call open_pass first")
        return checkpoint, checkpoint.current

    def begin(self) -> tuple[dict[str, Any] | None, int]:
        _, current = self._open()
        return current.cursor, current.pages

    def acknowledged(self, page: Page) -> None:
        _, current = self._open()
        current.cursor = page.cursor
        current.pages += 1
        if page.high_water is not None:
            current.high_water = page.high_water
        current.lost += page.lost
        self.save()

    def finished(self) -> None:
        """The pass is complete: move the mark (module docstring) and close the pass."""
        checkpoint, current = self._open()
        assert current.started_at is not None
        mark = min(current.started_at, current.high_water or current.started_at)
        if checkpoint.high_water is not None:
            mark = max(mark, checkpoint.high_water)
        # The source lost records it could not name (LangWatch `pagination.skipped`): the mark
        # stays, so the next pass reads this window again and gets them then.
        checkpoint.high_water = checkpoint.high_water if current.lost else mark
        checkpoint.last_pass = LastPass(started_at=current.started_at, ended_at=self.clock())
        checkpoint.current = None
        checkpoint.passes += 1
        self.save()

    def end(self) -> None:
        """Nothing: the command holds the lock across passes."""

    def record(
        self, read: Counts, written: Counts, skipped: Counts, dead: Counts, lost: int
    ) -> None:
        """Add the counts of the pass that just finished to the checkpoint's last pass."""
        last = self.checkpoint.last_pass if self.checkpoint else None
        if last is None:
            raise RuntimeError("no pass has finished")
        last.read, last.written = _counts(read), _counts(written)
        last.skipped, last.dead_lettered, last.lost = _counts(skipped), _counts(dead), lost
        self.save()
