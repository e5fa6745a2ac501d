"""What a platform cannot hold natively travels in one reserved key: the stash.

A copy written to the other platform carries, under `metadata["tracebridge"]` (Opik records,
LangWatch traces) or `params["tracebridge"]` (LangWatch spans):

    {"source": {"platform", "project", "id"},   # provenance (traces only)
     "patch": {...}}                            # canonical fields the wire could not express

The patch is computed, not hand-listed: encode the canonical record, decode it again, and keep
the difference (`make_patch`). Reading applies it (`apply_patch`), so a round trip through the
other platform returns the original record exactly, whatever the mapping could not express.
"""

from __future__ import annotations

import copy
import json
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = [
    "STASH_KEY",
    "apply_patch",
    "make_patch",
    "parse_stash",
    "patched",
    "same",
    "with_residual",
]

STASH_KEY = "tracebridge"

Json = Any
R = TypeVar("R", bound=BaseModel)


def same(a: Json, b: Json) -> bool:
    """True when `a` and `b` are the same JSON: `True` is not `1`, and `1` is not `1.0`.

    (Python's `==` calls all three equal.)
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    return bool(a == b)


def make_patch(original: dict[str, Json], decoded: dict[str, Json]) -> dict[str, Json]:
    """The patch that turns `decoded` back into `original` ({} when they are the same).

    Each key maps to `{"set": value}`, `{"del": true}` or, for two dicts, `{"sub": patch}`.
    One walk over both records.
    """
    patch: dict[str, Json] = {}
    for key, value in original.items():
        if key not in decoded:
            patch[key] = {"set": value}
        elif isinstance(value, dict) and isinstance(decoded[key], dict):
            sub = make_patch(value, decoded[key])
            if sub:
                patch[key] = {"sub": sub}
        elif not same(value, decoded[key]):
            patch[key] = {"set": value}
    for key in decoded.keys() - original.keys():
        patch[key] = {"del": True}
    return patch


def apply_patch(target: dict[str, Json], patch: dict[str, Json]) -> dict[str, Json]:
    """`target` with `patch` applied (a new dict; `target` is not changed)."""
    result = dict(target)
    for key, change in patch.items():
        if "del" in change:
            result.pop(key, None)
        elif "sub" in change and isinstance(result.get(key), dict):
            result[key] = apply_patch(result[key], change["sub"])
        elif "sub" in change:
            result[key] = apply_patch({}, change["sub"])
        else:
            result[key] = copy.deepcopy(change["set"])
    return result


def with_residual(wire: dict[str, Json], extras: dict[str, Json], platform: str) -> dict[str, Json]:
    """`wire` with the residual a reader kept in `extras[platform]` put back."""
    residual = extras.get(platform)
    return apply_patch(wire, residual) if isinstance(residual, dict) else wire


def patched(record: R, patch: dict[str, Json]) -> R:
    """A canonical record with a stash patch applied."""
    return type(record).model_validate(apply_patch(record.model_dump(mode="json"), patch))


def parse_stash(value: Json) -> dict[str, Json] | None:
    """The stash found under the reserved key, or None.

    LangWatch returns custom metadata values as strings, so a JSON text is decoded here.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None
