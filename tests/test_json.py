"""`_json`: the fast paths give exactly what the `json` module gives (bytes, values, errors)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracebridge._json import canonical, dumps_compact, json_lines, loads

_floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [1e-05, 1e16, 1e15, 1e-4, -0.0, 5e-324, 1.7976931348623157e308, 123456789012345678.0]
)
_ints = st.integers() | st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64])
_scalars = (
    st.none() | st.booleans() | _ints | _floats | st.text() | st.sampled_from(["\x7f", "é😀\x00"])
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _typed(value: Any) -> Any:
    """A value with its types spelled out, so `True`, `1` and `1.0` compare unequal."""
    if isinstance(value, dict):
        return ("dict", [(k, _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value).__name__, repr(value))


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_writers_write_what_json_writes(value: Any) -> None:
    try:
        expected = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # pragma: no cover - text() has no lone surrogates by default
        return
    assert dumps_compact(value) == expected
    expected = json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    assert canonical(value) == expected.encode()


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_loads_reads_what_json_reads(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert _typed(loads(text)) == _typed(json.loads(text))
    assert _typed(loads(text.encode())) == _typed(json.loads(text.encode()))


@pytest.mark.parametrize(
    "text",
    [
        b"123456789012345678901234567890",
        b"-9223372036854775809",
        b"[NaN, Infinity]",
        b'"\\ud800"',
        b"\xef\xbb\xbf{}",
        '{"a": 1}'.encode("utf-16"),
        b'{"a":1,"a":2}',
        b"[1e400]",
    ],
)
def test_loads_falls_back_where_orjson_differs(text: bytes) -> None:
    assert _typed(loads(text)) == _typed(json.loads(text))


@pytest.mark.parametrize("text", [b"[1,]", b'{"a": 1} x', b"", b'{"a": "\x01"}', b"\xff"])
def test_loads_raises_what_json_raises(text: bytes) -> None:
    def error(read: Any) -> tuple[type, str]:
        try:
            read(text)
        except ValueError as exc:
            return type(exc), str(exc)
        raise AssertionError("accepted")

    assert error(loads) == error(json.loads)


def test_writers_fall_back_for_what_orjson_refuses() -> None:
    class Text(str):
        pass

    for value in [{"a": Text("x")}, {1: 2}, [2**70], {"k": [1e-7, 3e20]}]:
        expected = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        assert dumps_compact(value) == expected
    with pytest.raises(UnicodeEncodeError):
        dumps_compact(["\ud800"])
    with pytest.raises(TypeError):
        dumps_compact([object()])
    assert canonical({"é": "😀", "a": 1}) == b'{"a":1,"\\u00e9":"\\ud83d\\ude00"}'


def test_json_lines_gives_offsets_and_numbers() -> None:
    lines = list(json_lines(io.BytesIO(b'{"a":1}\n\n{"b":2}')))
    assert lines == [(0, 1, b'{"a":1}\n'), (8, 2, b"\n"), (9, 3, b'{"b":2}')]


@pytest.mark.parametrize("value", ["\ud800", 'é\x7f"\\', 2**80, -3, True, False, None, 1.5e-7])
def test_canonical_scalars(value: Any) -> None:
    expected = json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    assert canonical(value) == expected.encode()
