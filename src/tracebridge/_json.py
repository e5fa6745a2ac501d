"""JSON in one place: fast parsing and writing that give exactly what the `json` module gives.

`orjson` parses and writes several times faster than `json`, but not always the same thing, and
every file tracebridge writes must stay byte-for-byte what it was (tests/test_golden.py). Each
function here tries `orjson` and falls back to `json` wherever the two could differ, so the
result is always the `json` module's:

- `loads`: `orjson` reads integers beyond 64 bits as floats (a run of 19 digits sends the text to
  `json`), and refuses what `json` accepts (NaN, lone surrogates, a UTF-8 BOM in bytes, UTF-16):
  any `orjson` error is answered by `json`, which then also raises `json`'s own errors and
  messages for text that is not JSON.
- `dumps_compact` (`separators=(",", ":")`, `ensure_ascii=False`) and `canonical` (sorted keys,
  `ensure_ascii=True`): `orjson` writes some floats differently (`1e-05` is `0.00001`, `1e+16`
  is `1e16`), so output holding a number with an exponent or four leading decimal zeros is
  written again by `json`; integers beyond 64 bits, non-string keys, lone surrogates, and
  subclasses, datetimes and dataclasses (passed through) make `orjson` raise, so `json` writes
  them (or raises its own error). `canonical` output that is not ASCII is `json`'s too.

Not told apart (both are outside JSON, and no reader lets them in: `_decoding.check_values`
refuses NaN and Infinity, and records read are plain JSON types): a NaN or Infinity built in
code is written as `null` by `orjson` where `json` writes `NaN`, and a `uuid.UUID` or an `Enum`
built in code is written as its value where `json` raises.

`json_lines` is the one reader of JSON-lines files: each line's offset, number and bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import IO, Any

import orjson

__all__ = ["JSONDecodeError", "canonical", "dumps_compact", "json_lines", "loads"]

JSONDecodeError = json.JSONDecodeError

_LONG_DIGITS_B = re.compile(rb"[0-9]{19}")
_LONG_DIGITS_S = re.compile(r"[0-9]{19}")
#: A number in `orjson`'s output that `json` may write otherwise (an exponent, or 1e-5 > |x|
#: written out in full). Strings can match too: they then only cost the slower path.
_RISKY_NUMBER = re.compile(rb"[:,\[]-?[0-9]+(?:\.[0-9]+)?[eE]|[:,\[]-?0\.0000")
_PASSTHROUGH = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
_SORTED = _PASSTHROUGH | orjson.OPT_SORT_KEYS


def loads(data: bytes | str) -> Any:
    """`json.loads(data)`, faster (module docstring); raises what `json.loads` raises."""
    if isinstance(data, bytes):
        plain = _LONG_DIGITS_B.search(data) is None
    else:
        plain = _LONG_DIGITS_S.search(data) is None
    if plain:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def dumps_compact(value: Any) -> bytes:
    """`json.dumps(value, ensure_ascii=False, separators=(",", ":"))` as UTF-8, faster.

    Raises what `json.dumps` raises (TypeError, ValueError, RecursionError) and
    UnicodeEncodeError for a lone surrogate, which UTF-8 cannot carry.
    """
    try:
        out = orjson.dumps(value, option=_PASSTHROUGH)
    except orjson.JSONEncodeError:
        pass
    else:
        if _RISKY_NUMBER.search(out) is None:
            return out
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def canonical(value: Any) -> bytes:
    """`json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":"))`, faster."""
    try:
        out = orjson.dumps(value, option=_SORTED)
    except orjson.JSONEncodeError:
        pass
    else:
        if out.isascii() and _RISKY_NUMBER.search(out) is None:
            return out
    return json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode()


def json_lines(handle: IO[bytes]) -> Iterator[tuple[int, int, bytes]]:
    """`(offset, number, line)` of every line of a binary file, from 0 and counting from 1;
    the line keeps its end (the last may have none), and the offset is its first byte's."""
    offset = 0
    for number, raw in enumerate(handle, start=1):
        yield offset, number, raw
        offset += len(raw)
