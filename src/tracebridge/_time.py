"""Time at the edges: epoch milliseconds for LangWatch, ISO-8601 strings for Opik.

Inside tracebridge every timestamp is a timezone-aware UTC `datetime` truncated to the millisecond,
LangWatch's resolution, so that a record survives any round trip to the millisecond.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["from_iso", "from_ms", "to_iso", "to_ms", "utc_ms"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# 13-digit epoch-ms values run from 2001-09-09 to 2286-11-20: anything smaller is seconds, not ms.
_MIN_MS = 1_000_000_000_000
_MAX_MS = 9_999_999_999_999
_ONE_MS = timedelta(milliseconds=1)


def utc_ms(value: datetime) -> datetime:
    """`value` in UTC, truncated to the millisecond; a naive value is refused."""
    if value.tzinfo is UTC and not value.microsecond % 1000:
        return value  # already so (most calls: every record's times pass here on validation)
    if value.tzinfo is None:
        raise ValueError("timestamp has no timezone")
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def from_ms(value: object) -> datetime:
    """A 13-digit epoch-millisecond number as a UTC datetime.

    Raises ValueError for anything else, naming seconds when the value looks like seconds.
    """
    if type(value) is int and _MIN_MS <= value <= _MAX_MS:
        return _EPOCH + _ONE_MS * value  # (the common case, exact: integer arithmetic)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected epoch milliseconds, got {type(value).__name__}")
    if value < _MIN_MS or value > _MAX_MS:
        hint = " (looks like seconds, not milliseconds)" if 0 < value < _MIN_MS else ""
        raise ValueError(f"{value!r} is not a 13-digit epoch-millisecond timestamp{hint}")
    return _EPOCH + timedelta(milliseconds=int(value))


def to_ms(value: datetime) -> int:
    """A datetime as whole epoch milliseconds."""
    if value.tzinfo is not UTC or value.microsecond % 1000:
        value = utc_ms(value)
    return (value - _EPOCH) // _ONE_MS


def from_iso(value: object) -> datetime:
    """An ISO-8601 string with a timezone (`Z` or an offset) as a UTC datetime (ms resolution)."""
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO-8601 string, got {type(value).__name__}")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no timezone")
    return utc_ms(parsed)


def to_iso(value: datetime) -> str:
    """A datetime as ISO-8601 UTC with millisecond precision and a `Z`, as Opik expects."""
    value = utc_ms(value)
    if value.year >= 1000:  # `isoformat` pads a year to 4 digits where `strftime` may not
        return value.isoformat(timespec="milliseconds")[:-6] + "Z"  # drop `+00:00`
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
