"""`_ids`: deterministic UUID v7 for Opik (DESIGN.md invariant 1)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tracebridge._opik.ids import derived_uuid7, is_uuid7, minted_uuid7, uuid7_ms
from tracebridge._time import to_ms

START = datetime(2026, 3, 8, 12, 0, 0, 123_000, tzinfo=UTC)
IDENTITY = ("langwatch", "project_test", "trace", "trace_Qm3vK8pLx2NfR7tYwB4aD")


def test_derived_id_has_version_7_and_rfc_variant() -> None:
    """Bits 48-51 are 0111 and bits 64-65 are 10."""
    value = uuid.UUID(derived_uuid7(START, *IDENTITY))
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert (value.int >> 76) & 0xF == 0x7
    assert (value.int >> 62) & 0b11 == 0b10
    assert is_uuid7(str(value))


def test_derived_id_time_field_is_the_start_in_ms() -> None:
    """The top 48 bits are the source record's start time in epoch ms."""
    value = derived_uuid7(START, *IDENTITY)
    assert uuid7_ms(value) == to_ms(START)
    assert uuid.UUID(value).int >> 80 == 1_772_971_200_123


def test_derived_id_is_canonical_text() -> None:
    """Opik parses ids with UUID.fromString: lowercase, hyphenated, 36 characters."""
    value = derived_uuid7(START, *IDENTITY)
    assert value == str(uuid.UUID(value))
    assert len(value) == 36


def test_derived_id_is_deterministic() -> None:
    """The same source record always gets the same id (a rerun upserts)."""
    assert derived_uuid7(START, *IDENTITY) == derived_uuid7(START, *IDENTITY)


@pytest.mark.parametrize("position", range(4))
def test_a_different_identity_gives_a_different_id(position: int) -> None:
    """Changing any of platform, project, kind or source id changes the random bits."""
    changed = list(IDENTITY)
    changed[position] += "x"
    a = derived_uuid7(START, *IDENTITY)
    b = derived_uuid7(START, *changed)
    assert a != b
    assert uuid7_ms(a) == uuid7_ms(b)  # same time field: only the identity bits differ


def test_identity_fields_do_not_run_into_each_other() -> None:
    """("ab", "c") and ("a", "bc") are different identities (the fields are separated)."""
    a = derived_uuid7(START, "langwatch", "ab", "trace", "c")
    b = derived_uuid7(START, "langwatch", "a", "btrace", "c")
    assert a != b


def test_a_different_start_changes_only_the_time_field() -> None:
    """Moving the start moves the time field; the identity bits stay the same."""
    a = uuid.UUID(derived_uuid7(START, *IDENTITY)).int
    b = uuid.UUID(derived_uuid7(START + timedelta(milliseconds=1), *IDENTITY)).int
    assert (b >> 80) - (a >> 80) == 1
    low = (1 << 80) - 1
    assert a & low == b & low


def test_minted_ids_are_v7_at_the_given_time_and_unique() -> None:
    """Write-time ids: version 7, time field = `now`, random bits differ every call."""
    now = datetime.now(UTC)
    ids = {minted_uuid7(now) for _ in range(50)}
    assert len(ids) == 50
    for value in ids:
        assert is_uuid7(value)
        assert uuid7_ms(value) == to_ms(now)


def test_ids_sort_by_time() -> None:
    """Opik orders by id: an earlier start sorts first whatever the identity."""
    early = derived_uuid7(START, "langwatch", "p", "trace", "zzz")
    late = derived_uuid7(START + timedelta(milliseconds=1), "langwatch", "p", "trace", "aaa")
    assert early < late


def test_time_outside_48_bits_is_refused() -> None:
    """Before 1970 does not fit the unsigned 48-bit field."""
    with pytest.raises(ValueError, match="48-bit"):
        derived_uuid7(datetime(1969, 12, 31, tzinfo=UTC), *IDENTITY)


@pytest.mark.parametrize(
    "value",
    [
        str(uuid.uuid4()),
        "0190ca64-4354-1e14-b664-ec7094b9c424",  # version 1
        "0190ca64-4354-7e14-c664-ec7094b9c424",  # variant 0b110 (Microsoft)
        "not-a-uuid",
        "",
    ],
)
def test_is_uuid7_refuses_other_values(value: str) -> None:
    """Only version 7 with the RFC variant counts."""
    assert not is_uuid7(value)
