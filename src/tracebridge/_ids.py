"""Deterministic UUID version 7 ids for Opik (DESIGN.md invariant 1).

The 48-bit millisecond field is the source record's real start time, so Opik orders and
partitions the record where it belongs; the other 74 bits come from SHA-256 of
`(source platform, source project, entity kind, source id)`, so the same source record always
gets the same id and a rerun is an upsert, not a duplicate.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import datetime

from ._time import to_ms

__all__ = ["derived_uuid7", "is_uuid7", "minted_uuid7", "uuid7_ms"]


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
