"""`_time`: epoch milliseconds at the LangWatch edge, ISO-8601 at the Opik edge, UTC ms inside."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracebridge._time import from_iso, from_ms, to_iso, to_ms, utc_ms

# 2024-07-19T09:48:06.868Z, the seed trace's start.
SEED_MS = 1_721_382_486_868
SEED = datetime(2024, 7, 19, 9, 48, 6, 868_000, tzinfo=UTC)


def test_from_ms_gives_an_aware_utc_datetime() -> None:
    """13-digit epoch ms become the exact UTC instant."""
    moment = from_ms(SEED_MS)
    assert moment == SEED
    assert moment.tzinfo is not None
    assert moment.utcoffset() == timedelta(0)


def test_to_ms_is_the_inverse_of_from_ms() -> None:
    """ms -> datetime -> ms is the identity."""
    for ms in (1_000_000_000_000, SEED_MS, 1_900_000_000_123, 9_999_999_999_999):
        assert to_ms(from_ms(ms)) == ms


def test_from_ms_accepts_a_whole_float() -> None:
    """JSON numbers may arrive as floats; a 13-digit float is still milliseconds."""
    assert from_ms(float(SEED_MS)) == SEED


@pytest.mark.parametrize("seconds", [1_721_382_486, 1_721_382_486.868])
def test_from_ms_names_seconds_when_the_value_looks_like_seconds(seconds: float) -> None:
    """A 10-digit value is seconds, not ms: refused, and the message says so."""
    with pytest.raises(ValueError, match="seconds"):
        from_ms(seconds)


@pytest.mark.parametrize("value", [0, -5, 10**13, 10**16])
def test_from_ms_refuses_values_outside_13_digits(value: int) -> None:
    """Zero, negatives and microsecond/nanosecond values are not epoch ms."""
    with pytest.raises(ValueError, match="13-digit"):
        from_ms(value)


def test_from_ms_does_not_call_non_seconds_values_seconds() -> None:
    """Only plausible seconds get the seconds hint; a too-large value does not."""
    with pytest.raises(ValueError, match="not a 13-digit") as info:
        from_ms(10**16)
    assert "seconds" not in str(info.value)


@pytest.mark.parametrize("value", [True, "1721382486868", None, [SEED_MS]])
def test_from_ms_refuses_non_numbers(value: object) -> None:
    """Strings, booleans (a Python int subclass) and None are not timestamps."""
    with pytest.raises(ValueError, match="expected epoch milliseconds"):
        from_ms(value)


def test_to_iso_is_utc_with_milliseconds_and_z() -> None:
    """Opik gets `YYYY-MM-DDTHH:MM:SS.mmmZ`, whatever the input's zone."""
    assert to_iso(SEED) == "2024-07-19T09:48:06.868Z"
    paris = SEED.astimezone(timezone(timedelta(hours=2)))
    assert to_iso(paris) == "2024-07-19T09:48:06.868Z"
    assert to_iso(datetime(2024, 1, 1, tzinfo=UTC)) == "2024-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    "text",
    [
        "2024-07-19T09:48:06.868Z",
        "2024-07-19T09:48:06.868z",
        "2024-07-19T11:48:06.868+02:00",
        "2024-07-19T09:48:06.868000Z",
        "2024-07-19T09:48:06.868999Z",  # sub-millisecond digits are truncated
    ],
)
def test_from_iso_reads_z_and_offsets(text: str) -> None:
    """`Z`, lowercase `z` and offsets all mean the same UTC instant, at ms resolution."""
    assert from_iso(text) == SEED


def test_from_iso_refuses_a_naive_string() -> None:
    """An ISO string without a zone is ambiguous: refused, not assumed UTC."""
    with pytest.raises(ValueError, match="no timezone"):
        from_iso("2024-07-19T09:48:06.868")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (SEED_MS, "expected an ISO-8601 string"),
        (None, "expected an ISO-8601 string"),
        ("yesterday", "Invalid isoformat"),
    ],
)
def test_from_iso_refuses_non_iso_values(value: object, message: str) -> None:
    """Numbers, None and free text are not ISO timestamps."""
    with pytest.raises(ValueError, match=message):
        from_iso(value)


def test_iso_round_trip() -> None:
    """datetime -> ISO -> datetime is the identity at ms resolution."""
    assert from_iso(to_iso(SEED)) == SEED


def test_utc_ms_truncates_to_the_millisecond_and_converts_to_utc() -> None:
    """Sub-millisecond digits are dropped (not rounded) and the zone becomes UTC."""
    local = datetime(2024, 7, 19, 11, 48, 6, 868_999, tzinfo=timezone(timedelta(hours=2)))
    result = utc_ms(local)
    assert result == SEED
    assert result.tzinfo == UTC
    assert result.microsecond == 868_000


def test_utc_ms_refuses_naive_datetimes() -> None:
    """A naive datetime has no defined instant."""
    with pytest.raises(ValueError, match="no timezone"):
        utc_ms(datetime(2024, 7, 19, 9, 48))


def test_to_ms_truncates_sub_millisecond_precision() -> None:
    """to_ms floors to whole milliseconds (LangWatch's resolution)."""
    assert to_ms(SEED + timedelta(microseconds=999)) == SEED_MS


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))])))
def test_the_fast_paths_give_what_the_plain_ones_give(value: datetime) -> None:
    """`utc_ms` hands a UTC value already at the millisecond back as it is, and `to_iso` uses
    `isoformat` for 4-digit years: the same values and texts as the conversions they skip."""
    try:
        plain = value.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 shifted out of range
        return
    plain = plain.replace(microsecond=plain.microsecond // 1000 * 1000)
    assert utc_ms(value) == plain
    assert utc_ms(value).tzinfo is UTC
    assert utc_ms(plain) is plain
    assert to_iso(value) == plain.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _from_ms_general(value: int | float) -> datetime:
    """`from_ms` as it reads any number: the fast path for integers must give the same."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(value))


@given(st.integers(1_000_000_000_000, 9_999_999_999_999))
def test_from_ms_of_an_integer_is_the_general_conversion(ms: int) -> None:
    moment = from_ms(ms)
    assert moment == _from_ms_general(ms)
    assert moment.tzinfo is UTC
    assert from_ms(float(ms)) == moment  # the general path agrees
    assert to_ms(moment) == ms


@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3, minutes=-30))])))
def test_to_ms_floors_to_the_millisecond_on_every_path(value: datetime) -> None:
    """`to_ms` of an aware datetime is its whole milliseconds since the epoch, floored."""
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    assert to_ms(value) == delta // timedelta(microseconds=1) // 1000


@pytest.mark.parametrize("value", [999_999_999_999, 10_000_000_000_000, True, "1", None])
def test_from_ms_refuses_the_same_values_with_the_fast_path(value: object) -> None:
    with pytest.raises(ValueError, match="epoch"):
        from_ms(value)
