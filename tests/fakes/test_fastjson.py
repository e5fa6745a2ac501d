"""The fakes' JSON: `json`'s results at `orjson`'s speed."""

from __future__ import annotations

import json

import pytest

from tests.fakes import fastjson

BODIES = [
    b'{"a":1,"b":[true,false,null],"c":"\\u00e9\\u2028"}',
    b'{"big":123456789012345678901234567890}',  # beyond 64 bits: json keeps the integer
    b'{"id":9007199254740993}',
    b"[NaN, Infinity]",  # not JSON, yet json reads it: so does the fake
    '{"text":"caf\u00e9 \u2028"}'.encode(),
    b"\xef\xbb\xbf{}",  # a UTF-8 BOM: orjson refuses it, json reads past it
]


@pytest.mark.parametrize("body", BODIES)
def test_loads_reads_what_json_reads(body: bytes) -> None:
    try:
        expected = json.loads(body)
    except ValueError as error:
        with pytest.raises(type(error)):
            fastjson.loads(body)
        return
    got = fastjson.loads(body)
    assert json.dumps(got) == json.dumps(expected)


def test_loads_raises_what_json_raises() -> None:
    with pytest.raises(json.JSONDecodeError):
        fastjson.loads(b"{not json")


def test_response_carries_the_body_as_json() -> None:
    body = {"n": 10**30, "s": "é\u2028", "f": 1e-05, "l": [None, 1.5]}
    response = fastjson.response(201, body, {"X-Other": "1"})
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-other"] == "1"
    assert response.json() == body
