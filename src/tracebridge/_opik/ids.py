"""The Opik id policy, in one place: how a record born elsewhere gets its Opik ids.

Opik ids are UUID version 7 (DESIGN.md invariant 1). Two policies implement `OpikIds`:

- `SourceTimeIds` (`--opik-ids source-time`): a *derived* id. The 48-bit millisecond field is the
  source record's real start time, so Opik orders and partitions the record where it belongs;
  the other 74 bits come from SHA-256 of `(source platform, source project, entity kind, source
  id)`, so the same source record always gets the same id and a rerun is an upsert, not a
  duplicate. A record born in Opik keeps its own id.
- `MintedIds` (`--opik-ids write-time`): newer Opik servers can refuse UUID v7 ids whose time
  field is more than ~24 h old (400 `too_old`). Each record gets a fresh v7 id the first time it
  is written, and the source-id → Opik-id map lives in the state directory (SQLite, so memory
  stays flat), so a rerun reuses the same ids: the map is what makes the writes idempotent.

Minted ids are saved (`commit`) before the batch that uses them is sent, and marked acknowledged
after the server accepted it. An id that was never acknowledged and is older than the smallest
window a server can have (12 h) is replaced on the next run, since the server would refuse it.

A map that is new (`started_empty`) knows nothing the target may already hold: the sink checks
the target before minting with it (`OpikApiSink`), since ids minted again would duplicate what an
earlier run wrote. Ids the server accepted under another policy (source-time ids, before a switch
to write-time) are `adopt`ed, so the records keep them.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from .._models import Platform, Span, Trace
from .._time import to_ms

__all__ = [
    "MintedIds",
    "OpikIds",
    "SourceTimeIds",
    "derived_uuid7",
    "is_uuid7",
    "minted_uuid7",
    "uuid7_ms",
]

PLATFORM: Platform = "opik"

_SMALLEST_WINDOW = timedelta(hours=12)


# ------------------------------------------------------------------------ UUID v7


def _uuid7(ms: int, rest: bytes) -> str:
    if not 0 <= ms < 1 << 48:
        raise ValueError(f"timestamp {ms} ms does not fit UUID v7's 48-bit field")
    raw = bytearray(ms.to_bytes(6, "big") + rest[:10])
    raw[6] = 0x70 | (raw[6] & 0x0F)  # version 7
    raw[8] = 0x80 | (raw[8] & 0x3F)  # variant 0b10
    return str(uuid.UUID(bytes=bytes(raw)))


def derived_uuid7(start: datetime, platform: str, project: str, kind: str, source_id: str) -> str:
    """The Opik id of one source record: time field = `start`, the rest from its identity."""
    key = "\x1f".join((platform, project, kind, source_id)).encode()
    return _uuid7(to_ms(start), hashlib.sha256(key).digest())


def minted_uuid7(now: datetime) -> str:
    """A fresh random UUID v7 at `now`, for servers that refuse ids older than their window."""
    return _uuid7(to_ms(now), os.urandom(10))


def is_uuid7(value: str) -> bool:
    """True when `value` is a UUID of version 7 and RFC variant."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return parsed.version == 7 and parsed.variant == uuid.RFC_4122


def uuid7_ms(value: str) -> int:
    """The millisecond time field of a UUID v7."""
    return uuid.UUID(value).int >> 80


# ---------------------------------------------------------------------- policies


class OpikIds(Protocol):
    """How a record born elsewhere gets its Opik ids."""

    def trace_id(self, trace: Trace) -> str: ...

    def span_id(self, trace: Trace, span: Span) -> str: ...


class SourceTimeIds:
    """Ids derived from the source record: time field = its start, the rest from its identity."""

    def trace_id(self, trace: Trace) -> str:
        if trace.source.platform == PLATFORM:
            return trace.id
        src = trace.source
        return derived_uuid7(trace.started_at, src.platform, src.project, "trace", src.id)

    def span_id(self, trace: Trace, span: Span) -> str:
        if trace.source.platform == PLATFORM:
            return span.id
        src = trace.source
        return derived_uuid7(
            span.started_at, src.platform, src.project, "span", f"{src.id}/{span.id}"
        )


class MintedIds:
    """`OpikIds` that mints ids at write time and remembers them in a SQLite file."""

    def __init__(self, path: Path, *, now: Callable[[], datetime] | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._now = now or (lambda: datetime.now(UTC))
        self._db = sqlite3.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS ids (source TEXT PRIMARY KEY, opik_id TEXT NOT NULL, "
            "acked INTEGER NOT NULL DEFAULT 0)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS ids_by_opik_id ON ids (opik_id)")
        self._db.commit()
        #: True when the map held no id when opened: a new map, or a lost one.
        self.started_empty = self._db.execute("SELECT 1 FROM ids LIMIT 1").fetchone() is None

    def _id(self, key: str) -> str:
        row = self._db.execute("SELECT opik_id, acked FROM ids WHERE source = ?", (key,)).fetchone()
        now = self._now()
        if row is not None:
            opik_id, acked = row
            if acked or to_ms(now) - uuid7_ms(opik_id) < _SMALLEST_WINDOW / timedelta(
                milliseconds=1
            ):
                return str(opik_id)
        opik_id = minted_uuid7(now)
        self._db.execute(
            "INSERT INTO ids (source, opik_id, acked) VALUES (?, ?, 0) "
            "ON CONFLICT(source) DO UPDATE SET opik_id = excluded.opik_id, acked = 0",
            (key, opik_id),
        )
        return opik_id

    @staticmethod
    def _key(trace: Trace, span: Span | None = None) -> str:
        src = trace.source
        if span is None:
            return f"trace\x1f{src.platform}\x1f{src.project}\x1f{src.id}"
        return f"span\x1f{src.platform}\x1f{src.project}\x1f{src.id}/{span.id}"

    def trace_id(self, trace: Trace) -> str:
        if trace.source.platform == "opik":
            return trace.id
        return self._id(self._key(trace))

    def span_id(self, trace: Trace, span: Span) -> str:
        if trace.source.platform == "opik":
            return span.id
        return self._id(self._key(trace, span))

    def adopt(self, trace: Trace, opik_id: str, span: Span | None = None) -> None:
        """Record `opik_id`, which the server already accepted, as the id of the trace (or of
        its `span`): later lookups return it. Saved by the next `commit`."""
        self._db.execute(
            "INSERT INTO ids (source, opik_id, acked) VALUES (?, ?, 1) "
            "ON CONFLICT(source) DO UPDATE SET opik_id = excluded.opik_id, acked = 1",
            (self._key(trace, span), opik_id),
        )

    def known_traces(self, platform: str, project: str) -> int:
        """How many traces of this source project the map holds an acknowledged id for."""
        prefix = f"trace\x1f{platform}\x1f{project}\x1f"
        row = self._db.execute(
            "SELECT COUNT(*) FROM ids WHERE acked = 1 AND substr(source, 1, ?) = ?",
            (len(prefix), prefix),
        ).fetchone()
        return int(row[0])

    def commit(self) -> None:
        """Save the ids minted so far; call before sending the batch that uses them."""
        self._db.commit()

    def rollback(self) -> None:
        """Forget the ids minted since the last `commit` (a dry run sends nothing)."""
        self._db.rollback()

    def acknowledge(self, opik_ids: list[str]) -> None:
        """Mark ids the server accepted (they are kept even when they grow old)."""
        self._db.executemany("UPDATE ids SET acked = 1 WHERE opik_id = ?", [(i,) for i in opik_ids])
        self._db.commit()

    def was_acknowledged(self, opik_id: str) -> bool:
        row = self._db.execute("SELECT acked FROM ids WHERE opik_id = ?", (opik_id,)).fetchone()
        return bool(row and row[0])

    def close(self) -> None:
        self._db.commit()
        self._db.close()
