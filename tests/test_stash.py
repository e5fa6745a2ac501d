"""`_stash`: the computed patch that lets a copy restore what the other platform cannot hold."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracebridge._stash import _same_walk, apply_patch, make_patch, parse_stash, same

Json = Any

CASES: list[tuple[str, dict[str, Json], dict[str, Json]]] = [
    ("equal", {"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 2]}),
    ("changed scalar", {"a": 1}, {"a": 2}),
    ("added key in decoded", {"a": 1}, {"a": 1, "extra": "x"}),
    ("key missing in decoded", {"a": 1, "lost": {"deep": [1]}}, {"a": 1}),
    ("bool vs int", {"flag": True, "n": 1}, {"flag": 1, "n": True}),
    ("int vs float", {"n": 1}, {"n": 1.0}),
    ("none vs missing", {"a": None}, {}),
    (
        "nested dicts",
        {"m": {"keep": 1, "change": "old", "gone": 2, "deeper": {"x": [1, {"y": False}]}}},
        {"m": {"keep": 1, "change": "new", "added": 3, "deeper": {"x": [1, {"y": 0}]}}},
    ),
    ("dict replaced by list", {"a": {"b": 1}}, {"a": [{"b": 1}]}),
    ("list of dicts differs", {"a": [{"b": 1}]}, {"a": [{"b": 2}]}),
    ("nested dict missing in decoded", {"m": {"a": {"b": 1}}}, {"m": {}}),
    ("unicode", {"text": "Hey there! 👋😊 −27.4 dBm"}, {"text": "Hey there!"}),
]


@pytest.mark.parametrize(("original", "decoded"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_apply_patch_of_make_patch_restores_the_original(
    original: dict[str, Json], decoded: dict[str, Json]
) -> None:
    """apply_patch(decoded, make_patch(original, decoded)) is the original, bools included."""
    patch = make_patch(original, decoded)
    restored = apply_patch(decoded, patch)
    assert same(restored, original), (restored, original, patch)


@pytest.mark.parametrize(("original", "decoded"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_patch_survives_json(original: dict[str, Json], decoded: dict[str, Json]) -> None:
    """The patch travels as JSON (in metadata): it must still work after a JSON round trip."""
    patch = json.loads(json.dumps(make_patch(original, decoded)))
    assert same(apply_patch(decoded, patch), original)


def test_equal_records_give_an_empty_patch() -> None:
    """Nothing to stash when the other platform kept everything."""
    record = {"a": 1, "b": {"c": [1, {"d": None}]}, "e": True}
    assert make_patch(record, copy.deepcopy(record)) == {}


def test_patch_shapes() -> None:
    """Each key is `set`, `del` or `sub` (dicts are patched key by key, not replaced)."""
    patch = make_patch(
        {"changed": 2, "missing": "x", "nested": {"k": 1, "same": 0}},
        {"changed": 1, "added": 0, "nested": {"k": 2, "same": 0}},
    )
    assert patch == {
        "changed": {"set": 2},
        "missing": {"set": "x"},
        "added": {"del": True},
        "nested": {"sub": {"k": {"set": 1}}},
    }


def test_bool_versus_int_is_a_difference() -> None:
    """`True == 1` in Python, but not in JSON: the patch must restore the bool."""
    patch = make_patch({"stream": True}, {"stream": 1})
    assert patch == {"stream": {"set": True}}
    restored = apply_patch({"stream": 1}, patch)
    assert restored["stream"] is True


def test_apply_patch_does_not_change_its_inputs() -> None:
    """The target and the patch are left as they were (the patch is reused for every span)."""
    target = {"a": {"b": 1}, "c": [1]}
    patch = {"a": {"sub": {"b": {"set": [2]}}}, "c": {"del": True}}
    before_target, before_patch = copy.deepcopy(target), copy.deepcopy(patch)
    result = apply_patch(target, patch)
    result["a"]["b"].append(3)
    assert target == before_target
    assert patch == before_patch


def test_sub_patch_on_a_missing_key_builds_the_dict() -> None:
    """A `sub` change for a key the target lacks starts from an empty dict."""
    assert apply_patch({}, {"m": {"sub": {"k": {"set": 1}}}}) == {"m": {"k": 1}}


def test_del_of_an_absent_key_is_harmless() -> None:
    """Deleting what is not there leaves the record as it is."""
    assert apply_patch({"a": 1}, {"b": {"del": True}}) == {"a": 1}


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (True, 1, False),
        (False, 0, False),
        (1, 1.0, False),  # JSON `1` and `1.0` are different texts
        (1.5, 1.5, True),
        ({"n": [1]}, {"n": [1.0]}, False),
        (True, True, True),
        ([True], [1], False),
        ({"x": 1}, {"x": True}, False),
        ({"x": 1, "y": 2}, {"y": 2, "x": 1}, True),
        ({"x": 1}, {"x": 1, "y": None}, False),
        ([1, 2], [2, 1], False),
        ([1], [1, 1], False),
        ("1", 1, False),
        (None, None, True),
        (None, 0, False),
        ({"x": [0.0]}, {"x": [-0.0]}, True),
        ([{"a": 2**60}], [{"a": float(2**60)}], False),
    ],
)
def test_same_is_json_equality(a: Json, b: Json, expected: bool) -> None:
    """`same` is JSON equality: it tells booleans from numbers and ints from floats, recursively,
    and ignores key order."""
    assert same(a, b) is expected
    assert same(b, a) is expected


_scalars = st.sampled_from([0, 1, 1.0, 0.0, -0.0, True, False, None, "1", "", 2**70])
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abc"), inner),
    max_leaves=8,
)


@settings(max_examples=500, deadline=None)
@given(_values, _values)
def test_same_agrees_with_the_plain_walk(a: Json, b: Json) -> None:
    """The fast comparison (`==`, then canonical texts) answers as the walk does, on values
    built from the few scalars `==` confuses."""
    assert same(a, b) is _same_walk(a, b)
    assert same(a, copy.deepcopy(a)) is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"source": {"id": "x"}}, {"source": {"id": "x"}}),
        ('{"source": {"id": "x"}}', {"source": {"id": "x"}}),
        ("not json", None),
        ("[1, 2]", None),
        (None, None),
        (42, None),
    ],
)
def test_parse_stash_reads_dicts_and_json_text(value: Json, expected: Json) -> None:
    """LangWatch returns metadata as strings: JSON text is decoded, anything else is no stash."""
    assert parse_stash(value) == expected
