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
  them (or raises its own error). `canonical` text beyond ASCII (or with DEL) is written by
  `json` too, which escapes it as `ensure_ascii` asks.

Not told apart (both are outside JSON, and no reader lets them in: `_decoding.check_values`
refuses NaN and Infinity, and records read are plain JSON types): a NaN or Infinity built in
code is written as `null` by `orjson` where `json` writes `NaN`, and a `uuid.UUID` or an `Enum`
built in code is written as its value where `json` raises.

`same_text` is for comparing only (`_stash.same`): `orjson`'s sorted text, which two values
share exactly when they are the same JSON. `json_lines` is the one reader of JSON-lines files:
each line's offset, number and bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from json.encoder import encode_basestring_ascii
from typing import IO, Any

import orjson

__all__ = ["JSONDecodeError", "canonical", "dumps_compact", "json_lines", "loads", "same_text"]

JSONDecodeError = json.JSONDecodeError

#: Digits as one byte, so that 19 in a row are one C search (`_long_digits`).
_DIGITS_AS_ONE = bytes.maketrans(b"0123456789", b"\0" * 10)
_NINETEEN = b"\0" * 19


def _byte_classes() -> bytes:
    """Each byte's class for `_risky`: `d` a digit, a point or a sign; `s` what comes before
    a value (`:`, `,`, `[`); `e` an exponent mark; `x` anything else."""
    table = bytearray(b"x" * 256)
    for chars, kind in ((b"0123456789.-", b"d"), (b"eE", b"e"), (b":,[", b"s")):
        for char in chars:
            table[char] = kind[0]
    return bytes(table)


#: Where a number in `orjson`'s output may be written otherwise by `json` (`_risky`): an
#: exponent (in classes: `s`, then `d`s, then `e`: one C search), or |x| < 1e-4 in full.
_CLASSES = _byte_classes()
_EXPONENT = re.compile(rb"sd+e")
_SMALL = b"0.0000"
_CONSTANTS = {None: b"null", True: b"true", False: b"false"}
_PASSTHROUGH = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
_SORTED = _PASSTHROUGH | orjson.OPT_SORT_KEYS


def loads(data: bytes | str) -> Any:
    """`json.loads(data)`, faster (module docstring); raises what `json.loads` raises."""
    if not _long_digits(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def _long_digits(data: bytes | str) -> bool:
    """True when `data` holds 19 digits in a row (an integer `orjson` may read as a float; in
    a string or a fraction it only costs the slower path)."""
    if isinstance(data, str):
        if not data.isascii():
            return any(len(run) >= 19 for run in re.findall(r"[0-9]{19,}", data))
        data = data.encode("ascii")
    return data.translate(_DIGITS_AS_ONE).find(_NINETEEN) >= 0


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
        if not _risky(out):
            return out
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def canonical(value: Any) -> bytes:
    """`json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":"))`, faster.

    A string, an integer, a boolean or None is written as `json` writes it, directly."""
    kind = type(value)
    if kind is str:
        return encode_basestring_ascii(value).encode("ascii")
    if kind is int:
        return int.__repr__(value).encode("ascii")
    if value is None or kind is bool:
        return _CONSTANTS[value]
    try:
        out = orjson.dumps(value, option=_SORTED)
    except orjson.JSONEncodeError:
        pass
    else:
        # Text beyond ASCII (or DEL) is left to `json`, whose C encoder escapes it faster than
        # a pass over `orjson`'s output could (measured: 19 µs against 36 a span).
        if out.isascii() and b"\x7f" not in out and not _risky(out):
            return out
    return json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode()


def _risky(out: bytes) -> bool:
    """True when `orjson`'s `out` may hold a number `json` writes otherwise: an exponent in a
    number (after a `:`, `,` or `[`, or at the start), or a number below 1e-4 written in full.
    Text in strings can match too; a false alarm only costs the slower path."""
    return _SMALL in out or _EXPONENT.search(b"s" + out.translate(_CLASSES)) is not None


def same_text(value: Any) -> bytes | None:
    """A text that two JSON values share exactly when they are the same JSON (sorted keys;
    `true`, `1` and `1.0` apart; `0.0` and `-0.0` apart too), or None when `orjson` cannot
    write `value`. For comparing only: not the canonical text."""
    try:
        return orjson.dumps(value, option=_SORTED)
    except orjson.JSONEncodeError:
        return None


def json_lines(handle: IO[bytes]) -> Iterator[tuple[int, int, bytes]]:
    """`(offset, number, line)` of every line of a binary file, from 0 and counting from 1;
    the line keeps its end (the last may have none), and the offset is its first byte's."""
    offset = 0
    for number, raw in enumerate(handle, start=1):
        yield offset, number, raw
        offset += len(raw)
