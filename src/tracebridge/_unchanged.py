"""`SkipUnchanged`: a sink wrapper that does not write again what the destination already holds.

Sync reads with a lookback (DESIGN.md invariant 3: pulls are at-least-once), so each pass reads
again records it wrote on the last one; writes are idempotent, but each still costs a request
and, on Opik Cloud, events against the rate limit. The wrapper keeps, in the state directory,
one small index (SQLite, `unchanged.sqlite`): for each (destination, kind, source platform,
project, id) the content hash (`_hashing.content_hash`) the destination last acknowledged.

- A unit (a thread, or a trace outside threads) whose hash equals the index is not written: it
  is counted as skipped by the rule `unchanged since the last pass`. A thread is one unit: a
  change in any of its traces (or in its own data) writes the thread again.
- The others go to the inner sink; their hashes are recorded **only after the inner sink
  returned** (it returns once the destination acknowledged), and only for units it did not
  reject, whole or in part: a unit any `Rejected` names (`trace <id>`, `thread <id>`, or either
  followed by `:`) is written again on the next pass. When a rejection names no unit of the
  batch, nothing of that batch is recorded. An exception from the inner sink records nothing.
- A dry run skips what is unchanged (so the plan shows what a run would write) and records
  nothing.

- `settle` (LangWatch: one hour) is a destination that ignores a changed record re-sent within
  that long of its last effective write (LangWatch's collector dedupes span ids for an hour,
  even when their content changed: reference/langwatch-api.md §5.1). A changed unit whose last
  recorded write is younger than that is still sent (evaluations and metadata land), but its
  new hash is not recorded, so every pass sends it again until one comes after the window and
  the span changes land too; a warning says so.

`rule` names the skip (sync: `unchanged since the last pass`; migrate: `unchanged since an
earlier run`). With `rewrite`, nothing is skipped: every unit is written, and its hash recorded
as above (the escape hatch when the destination may have changed behind the index's back:
`migrate --rewrite`).

`fingerprint` is whatever besides the content changes what the sink would write (the mapping's
fingerprint, the id mode): recorded with each hash, so changing it writes every unit once more.
The destination is named by `destination`, by default the inner sink's label: give the job's own
name when two destinations could share a label.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ._errors import CheckpointError
from ._hashing import content_hash, digest
from ._interfaces import Counts, Rejected, Sink, Unit, WriteResult
from ._models import Thread

__all__ = ["UNCHANGED_RULE", "SkipUnchanged"]

UNCHANGED_RULE = "unchanged since the last pass"
INDEX_FILE = "unchanged.sqlite"
_SCHEMA = 1

_Key = tuple[str, str, str, str]  # kind, source platform, source project, source id


def unit_key(unit: Unit) -> _Key:
    """The index key of a unit: a trace by its provenance; a thread by its id, under the
    platform and project of its first trace."""
    if isinstance(unit, Thread):
        first = unit.traces[0].source if unit.traces else None
        return ("thread", first.platform if first else "", first.project if first else "", unit.id)
    return ("trace", unit.source.platform, unit.source.project, unit.source.id)


def _named(unit: Unit) -> set[str]:
    """The `where` texts sinks give a unit and its traces."""
    traces = unit.traces if isinstance(unit, Thread) else [unit]
    names = {f"trace {t.id}" for t in traces}
    if isinstance(unit, Thread):
        names.add(f"thread {unit.id}")
    return names


def _owner(item: Rejected) -> str:
    return item.where.split(":", 1)[0]


class HashIndex:
    """The persistent index: (destination, key) → the hash last acknowledged."""

    def __init__(self, path: Path) -> None:
        """Open (or create) the index; a file that is not one is a `CheckpointError` naming it
        (moving it away costs one full write of every unit, nothing else)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=30)
        move_away = "move it away (the next pass then writes every unit once more)"
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _SCHEMA):
                raise CheckpointError(
                    f"{path} is the index of a newer tracebridge (schema {version}): upgrade, "
                    f"or {move_away}"
                )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS acknowledged (destination TEXT NOT NULL, "
                "kind TEXT NOT NULL, platform TEXT NOT NULL, project TEXT NOT NULL, "
                "id TEXT NOT NULL, hash TEXT NOT NULL, at TEXT NOT NULL, "
                "PRIMARY KEY (destination, kind, platform, project, id))"
            )
            self._db.execute(f"PRAGMA user_version = {_SCHEMA}")
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise CheckpointError(
                f"{path} is not an index tracebridge can read ({exc}): {move_away}"
            ) from None
        except BaseException:
            self._db.close()
            raise

    def get(self, destination: str, key: _Key) -> tuple[str, datetime] | None:
        """The hash last acknowledged for `key`, and when it was recorded."""
        row = self._db.execute(
            "SELECT hash, at FROM acknowledged WHERE destination = ? AND kind = ? "
            "AND platform = ? AND project = ? AND id = ?",
            (destination, *key),
        ).fetchone()
        return None if row is None else (str(row[0]), datetime.fromisoformat(row[1]))

    def put(
        self, destination: str, entries: list[tuple[_Key, str]], now: datetime | None = None
    ) -> None:
        """Record `entries` (key, hash) in one transaction."""
        at = (now or datetime.now(UTC)).isoformat(timespec="milliseconds")
        with self._db:
            self._db.executemany(
                "INSERT INTO acknowledged (destination, kind, platform, project, id, hash, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (destination, kind, platform, "
                "project, id) DO UPDATE SET hash = excluded.hash, at = excluded.at",
                [(destination, *key, h, at) for key, h in entries],
            )

    def forget(self, destination: str) -> None:
        """Forget everything `destination` acknowledged (`sync --reset`)."""
        with self._db:
            self._db.execute("DELETE FROM acknowledged WHERE destination = ?", (destination,))

    def close(self) -> None:
        self._db.close()


class SkipUnchanged:
    """Wraps a `Sink`: units unchanged since the destination acknowledged them are skipped
    (module docstring). A `Sink` itself."""

    def __init__(
        self,
        inner: Sink,
        state_dir: Path,
        *,
        destination: str | None = None,
        fingerprint: str = "",
        settle: timedelta | None = None,
        rewrite: bool = False,
        rule: str = UNCHANGED_RULE,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.inner = inner
        self.rewrite = rewrite
        self.rule = rule
        self.label = inner.label
        self.destination = destination if destination is not None else inner.label
        self._salt = f"|{digest(fingerprint)}" if fingerprint else ""
        self.settle = settle
        self._now = now
        self.index = HashIndex(state_dir / INDEX_FILE)
        #: What was skipped as unchanged so far; the engine's `run` gives it its report's
        #: `unchanged`, so each run counts afresh.
        self.unchanged = Counts()

    def _hash(self, unit: Unit) -> str:
        return content_hash(unit) + self._salt

    async def write(self, units: list[Unit], *, dry_run: bool = False) -> WriteResult:
        result = WriteResult()
        now = self._now()
        todo: list[tuple[Unit, _Key, str]] = []
        unsettled: set[_Key] = set()
        for unit in units:
            key, h = unit_key(unit), self._hash(unit)
            known = self.index.get(self.destination, key)
            if known is not None and known[0] == h and not self.rewrite:
                counts = Counts.of(unit)
                self.unchanged.add(counts)
                for kind in ("threads", "traces", "spans", "scores"):
                    result.skip(getattr(counts, kind), kind, self.rule)
                continue
            todo.append((unit, key, h))
            if known is not None and self.settle is not None and now - known[1] < self.settle:
                unsettled.add(key)
        if not todo:
            return result
        if unsettled and not dry_run:
            result.warnings.append(
                f"{len(unsettled)} changed units were last written less than {self.settle} ago: "
                "the destination ignores span changes re-sent that soon (LangWatch's span "
                "dedupe), so they are sent now (evaluations and metadata land) and again by "
                "every pass until one comes after that window"
            )
        written = await self.inner.write([u for u, _, _ in todo], dry_run=dry_run)
        result.merge(written)
        if dry_run:
            return result
        refused = {_owner(item) for item in written.rejected}
        named = [_named(u) for u, _, _ in todo]
        if refused - set().union(*named):
            return result  # a rejection we cannot place: record nothing of this batch
        self.index.put(
            self.destination,
            [
                (key, h)
                for (_, key, h), names in zip(todo, named, strict=True)
                if not names & refused and key not in unsettled
            ],
            now,
        )
        return result

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            self.index.close()
