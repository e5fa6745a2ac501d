"""Validate JSON against the official Opik OpenAPI document, normalised by ``_normalise``."""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT202012

if TYPE_CHECKING:
    from collections.abc import Iterator

    import httpx

_BASE = "urn:tracebridge:opik-openapi"
_ENV_DIR = os.environ.get("TRACEBRIDGE_SPECS_DIR")
_DIR = Path(_ENV_DIR) if _ENV_DIR else Path(__file__).resolve().parents[2] / "shared" / "specs"
_CANDIDATE = _DIR / "opik-openapi.yaml"
SPEC_PATH: Path | None = _CANDIDATE.resolve() if _CANDIDATE.is_file() else None
_FORMATS = FormatChecker(formats=())
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


@_FORMATS.checks("uuid", raises=ValueError)
def _is_uuid(value: object) -> bool:
    """Canonical hyphenated UUID (what Opik's ``UUID.fromString`` accepts)."""
    return not isinstance(value, str) or (len(value) == 36 and bool(uuid.UUID(value)))


@_FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(v: object) -> bool:
    """RFC 3339 date-time with seconds and an offset or ``Z`` (what Java's ``Instant`` parses)."""
    return not isinstance(v, str) or bool(_RFC3339.fullmatch(v) and datetime.fromisoformat(v))


# YAML 1.1 tags a bare ``=`` (a filter-operator enum value) as ``tag:yaml.org,2002:value``.
_Loader = type("_Loader", (getattr(yaml, "CSafeLoader", yaml.SafeLoader),), {})
_Loader.add_constructor("tag:yaml.org,2002:value", lambda ldr, node: ldr.construct_scalar(node))


@functools.cache
def load_spec() -> dict[str, Any] | None:
    """Parse the spec once per process; ``None`` when the file is absent."""
    return None if SPEC_PATH is None else yaml.load(SPEC_PATH.read_bytes(), Loader=_Loader)


def require_spec() -> dict[str, Any]:
    """Return the spec or skip the calling test with the reason it is missing."""
    if (spec := load_spec()) is None:
        why = f"TRACEBRIDGE_SPECS_DIR={_ENV_DIR}" if _ENV_DIR else "no shared/ beside the repo"
        pytest.skip(f"Opik OpenAPI spec not found at {_CANDIDATE}: file missing ({why})")
    return spec


def _normalise(node: Any) -> Any:
    """Copy with OpenAPI-isms fixed: boolean ``exclusiveMinimum``/``Maximum`` (jsonschema reads
    ``false`` as bound 0), ``type`` contradicting ``anyOf`` branches, relative ``$ref``s."""
    if isinstance(node, list):
        return [_normalise(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _normalise(value) for key, value in node.items()}
    for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(flag := node.get(key), bool):
            del node[key]
            if flag and bound in node:
                node[key] = node.pop(bound)
    branches = node.get("anyOf", []) + node.get("oneOf", [])
    if "type" in node and any(b.get("type", node["type"]) != node["type"] for b in branches):
        del node["type"]
    if isinstance(node.get("$ref"), str) and node["$ref"].startswith("#"):
        node["$ref"] = _BASE + node["$ref"]
    return node


@functools.cache
def _registry() -> Registry[Any]:
    """Registry whose single resource is the normalised spec at ``_BASE``."""
    return Registry().with_resource(_BASE, DRAFT202012.create_resource(_normalise(require_spec())))


def _resolve(schema: Any) -> dict[str, Any]:
    """Follow ``$ref`` chains to a concrete (normalised) schema."""
    while isinstance(schema, dict) and "$ref" in schema:
        schema = _registry().resolver().lookup(schema["$ref"]).contents
    return schema if isinstance(schema, dict) else {}


def _parts(schema: Any, instance: object) -> list[dict[str, Any]]:
    """The schema plus its ``allOf`` parts and the ``anyOf``/``oneOf`` parts ``instance`` fits."""
    schema = _resolve(schema)
    alts = schema.get("anyOf", []) + schema.get("oneOf", [])
    alts = [s for s in alts if Draft202012Validator(s, registry=_registry()).is_valid(instance)]
    return [schema] + [p for s in schema.get("allOf", []) + alts for p in _parts(s, instance)]


def _strict_errors(schema: Any, instance: object, path: str) -> Iterator[str]:
    """Properties no (allOf / matching anyOf) part declares (jsonschema already rejects nulls)."""
    parts = _parts(schema, instance)
    if isinstance(instance, dict):
        closed = any("properties" in p for p in parts)
        extra = [p["additionalProperties"] for p in parts if "additionalProperties" in p]
        for key, value in instance.items():
            subs = [p["properties"][key] for p in parts if key in p.get("properties", {})]
            subs = subs or [e for e in extra if isinstance(e, dict)]
            if not subs and closed and True not in extra:
                yield f"{path}.{key}: property not declared in the schema"
            for sub in subs:
                yield from _strict_errors(sub, value, f"{path}.{key}")
    elif isinstance(instance, list):
        for sub in (p["items"] for p in parts if isinstance(p.get("items"), dict)):
            for i, item in enumerate(instance):
                yield from _strict_errors(sub, item, f"{path}[{i}]")


def _check(ref: str, instance: object, strict: bool, what: str) -> None:
    """Validate ``instance`` against ``ref``; AssertionError listing every problem."""
    validator = Draft202012Validator({"$ref": ref}, registry=_registry(), format_checker=_FORMATS)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(instance)]
    errors += _strict_errors({"$ref": ref}, instance, "$") if strict else []
    if errors:
        lines = "\n  ".join(sorted(dict.fromkeys(errors)))
        raise AssertionError(f"{what} does not match the Opik spec:\n  {lines}")


def validate_schema(name: str, instance: object, *, strict: bool = False) -> None:
    """Validate against ``components.schemas[name]``; ``strict`` also rejects undeclared keys."""
    if name not in require_spec()["components"]["schemas"]:
        raise AssertionError(f"no schema {name!r} in the Opik spec")
    _check(f"{_BASE}#/components/schemas/{name}", instance, strict, name)


def _find_operation(method: str, path: str) -> tuple[str, dict[str, str]]:
    """The path template for ``method path`` (fewest ``{}`` segments wins) and its path values."""
    segs = path.strip("/").split("/")
    matches: list[tuple[int, str, dict[str, str]]] = []
    for template, item in require_spec()["paths"].items():
        tsegs = template.strip("/").split("/")
        if len(tsegs) == len(segs) and method.lower() in item:
            pairs = list(zip(tsegs, segs, strict=True))
            values = {t[1:-1]: s for t, s in pairs if t.startswith("{") and s}
            if all(t == s or t[1:-1] in values for t, s in pairs):
                matches.append((len(values), template, values))
    if not matches:
        raise AssertionError(f"no operation {method.upper()} {path} in the Opik spec")
    return min(matches)[1:]


def validate_request(
    method: str,
    path: str,
    *,
    body: object | None = None,
    query: dict[str, str] | None = None,
    strict: bool = False,
) -> str:
    """Check a call (path without base: ``/v1/private/traces/batch``); return its operationId."""
    template, values = _find_operation(method, path)
    op, query = (item := require_spec()["paths"][template])[method.lower()], query or {}
    where = f"{method.upper()} {template} ({op['operationId']})"
    params = [_resolve(p) for p in item.get("parameters", []) + op.get("parameters", [])]
    declared = {p["name"]: p for p in params if p.get("in") == "query"}
    problems = [f"undeclared query parameter {k!r}" for k in query if k not in declared]
    problems += [f"missing required query parameter {n!r}" for n, p in declared.items()
                 if p.get("required") and n not in query]  # fmt: skip
    for p in (p for p in params if p.get("in") == "path" and p["name"] in values):
        check = Draft202012Validator(p.get("schema", {}), format_checker=_FORMATS).iter_errors
        problems += [f"path {p['name']}: {e.message}" for e in check(values[p["name"]])]
    has_json = "application/json" in (rb := op.get("requestBody") or {}).get("content", {})
    if (body is None and has_json and rb.get("required")) or (body is not None and not has_json):
        problems.append("JSON body required" if body is None else "operation takes no JSON body")
    if problems:
        raise AssertionError(f"{where}: " + "; ".join(problems))
    if body is not None:
        pointer = f"{template.replace('~', '~0').replace('/', '~1')}/{method.lower()}"
        ref = f"{_BASE}#/paths/{pointer}/requestBody/content/application~1json/schema"
        _check(ref, body, strict, f"{where} body")
    return str(op["operationId"])


def validate_httpx_request(
    request: httpx.Request, base_path: str = "/api", *, strict: bool = False
) -> str:
    """``validate_request`` for a built ``httpx.Request`` (gzip bodies are decompressed)."""
    path = request.url.path.removeprefix(base_path.rstrip("/"))
    gzipped = request.headers.get("content-encoding", "").lower() == "gzip" and request.content
    raw = gzip.decompress(request.content) if gzipped else request.content
    body, query = json.loads(raw) if raw else None, dict(request.url.params.multi_items())
    return validate_request(request.method, path, body=body, query=query, strict=strict)
