"""JSON for the fakes: `orjson`'s speed, the `json` module's results.

The fakes parse every request body and encode every answer; with the stdlib `json` that was a
large share of their CPU in the benchmarks. `loads` gives what `json.loads` gives (`orjson` reads
integers beyond 64 bits as floats, so a run of 19 digits goes to `json`; so does anything
`orjson` refuses, and `json` then raises its own error). `response` encodes an answer's body as
`httpx.Response(status, json=body)` would carry it (compact UTF-8, `Content-Type:
application/json`); `orjson` spells some floats otherwise (`1e-05` is `0.00001`) and writes a NaN
as `null` where httpx raises, neither of which a JSON reader tells apart or a fake stores.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson

_DIGITS_AS_ONE = bytes.maketrans(b"0123456789", b"\0" * 10)  # 19 digits: one C search
_NINETEEN = b"\0" * 19
_JSON = {"Content-Type": "application/json"}


def loads(data: bytes | str) -> Any:
    """`json.loads(data)`, faster."""
    raw = data.encode() if isinstance(data, str) else data
    if raw.translate(_DIGITS_AS_ONE).find(_NINETEEN) < 0:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def dumps(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON (what `httpx.Response(json=...)` sends)."""
    try:
        return orjson.dumps(value)
    except TypeError:  # integers beyond 64 bits, non-string keys: `json` writes or raises
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    """`httpx.Response(status, json=body, headers=headers)`, encoded by `dumps`."""
    return httpx.Response(status, content=dumps(body), headers={**_JSON, **(headers or {})})
