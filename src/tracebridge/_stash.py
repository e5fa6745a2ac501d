"""What a platform cannot hold natively travels in one reserved key: the stash.

A copy written to the other platform carries, under `metadata["tracebridge"]` (Opik records,
LangWatch traces) or `params["tracebridge"]` (LangWatch spans), the stash. Version 2 (written
since `sync`):

    trace: {"v": 2,
            "source": {"platform", "project", "id"},  # provenance
            "hash": "c1:…",                          # content hash of the record as copied
            "parts": {"fields": {name: digest},      # to say later what changed: own fields,
                      "scores": {key: digest},       #   scores by name,
                      "tags": [...], "spans": n},     #   tags, number of spans
            "patch": {...}}                           # what the copy's wire could not express
    span:  {"v": 2, "hash": digest, "patch": {...}}

plus, on LangWatch, "thread" (an Opik thread's own data, on its last trace) and "shift_ms".
Version 1 (`{"source", "patch"}` on traces, `{"patch"}` on spans) is still read as before.

**The patch** is computed, not hand-listed: encode the canonical record, decode it again, and keep
the difference. Each key maps to `{"set": value, "was": digest}` (the copy holds another value,
whose digest is `was`; no `was`: the copy has no such key), `{"del": true, "was": digest}` (the
copy has a key the original has not), `{"sub": patch}` (two dicts, key by key) or, for the list
fields of traces and spans (`scores`, `tags`), `{"each": {"order": [key, ...], "items": {...}}}`:
element by element, keyed by identity (a score by its name, a tag by its value; a repeated key
gets `␟2`, `␟3`, …; a span's scores are in that span's own patch, spans by their id), each item
`{"add": element}` (the copy lacks it), `{"drop": digest}` (the copy has it, the original not)
or `{"sub": patch}` / `{"set", "was"}` (both have it, differently); `order` is the original's.
Version 1 patches are `{"set"}` / `{"del"}` / `{"sub"}` only, and lists are set whole.

**Reading a copy back — the conflict rule.** The stash holds the record as it was copied; the
copy may have been edited on its platform since. Element by element, and within an element
field by field:

- what the destination did not touch is restored from the stash, exactly as it was copied (a
  field is untouched while its value still has the digest the patch recorded, `was`; an element
  while it is still there);
- what the destination added, changed or removed since the copy stays as the destination has it:
  **the destination's change wins, per element and per field, and is never reverted** (a score a
  reviewer added on the copy, a tag, a new span: kept; an element the mapping had dropped and the
  destination now holds under the same identity: the destination's);
- the record is then reported as changed (`Trace.copy_state`, and a warning
  "trace X: changed on opik since it was copied: score 'helpfulness' added"), so `sync` carries
  the change to the original on its next pass the other way (echo suppression lets it through);
- an element changed on *both* sides since the copy: the reader sees the copy and the original as
  it was copied, not the original as it is now, so what it carries is the destination's version;
  the write to the original (an upsert) then replaces the original's. The pass that runs first
  decides: run the copy → original direction first to keep reviewers' edits.

A record whose content hash still equals the recorded `hash` is unchanged: the merge restores the
original exactly, and echo suppression drops it.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, TypeAdapter

from ._errors import RecordError
from ._hashing import (
    OWN_FIELDS,
    Dumped,
    content_hash,
    digest,
    keyed,
    score_content,
    score_key,
    span_digest,
    trace_parts,
)
from ._json import loads, same_text
from ._models import CopyState, Platform, Span, Trace

__all__ = [
    "LIST_KEYS",
    "STASH_KEY",
    "STASH_VERSION",
    "CopyReader",
    "apply_patch",
    "copy_stashes",
    "make_merge_patch",
    "make_patch",
    "merge_patch",
    "merged_fields",
    "parse_stash",
    "patched",
    "same",
    "span_stash",
    "told_stashes",
    "trace_stash",
    "with_residual",
]

STASH_KEY = "tracebridge"
STASH_VERSION = 2

Json = Any
R = TypeVar("R", bound=BaseModel)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def same(a: Json, b: Json) -> bool:
    """True when `a` and `b` are the same JSON: `True` is not `1`, and `1` is not `1.0`.

    (Python's `==` calls all three equal.) Two objects or arrays are compared in C first: they
    are the same when `==` holds and their texts (`_json.same_text`, which writes
    `true`, `1` and `1.0` apart) are equal; only when `==` holds and the texts differ (`0.0` and
    `-0.0`) is the element-by-element walk needed. Values are plain JSON, without NaN (no
    reader lets one in: `_decoding.check_values`).
    """
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is dict or kind is list:
        if a != b:
            return False
        text = same_text(a)
        if text is not None and text == same_text(b):
            return True
        return _same_walk(a, b)
    return bool(a == b)


def _same_walk(a: Json, b: Json) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_walk(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same_walk, a, b))
    return bool(a == b)


def make_patch(original: dict[str, Json], decoded: dict[str, Json]) -> dict[str, Json]:
    """The patch that turns `decoded` back into `original` ({} when they are the same).

    Each key maps to `{"set": value}`, `{"del": true}` or, for two dicts, `{"sub": patch}`.
    One walk over both records; a value that is the other's very object, or two lists of the
    very same objects, is the same JSON without serialising it (values are plain JSON without
    NaN, as `same` says).
    """
    patch: dict[str, Json] = {}
    for key, value in original.items():
        if key not in decoded:
            patch[key] = {"set": value}
            continue
        other = decoded[key]
        if value is other:
            continue
        if type(value) in _SCALARS and type(value) is type(other):
            if value != other:  # (`same` of two scalars of one type, inline)
                patch[key] = {"set": value}
        elif isinstance(value, dict) and isinstance(other, dict):
            if same(value, other):
                continue  # (the walk would find nothing; `same` tells it in C)
            sub = make_patch(value, other)
            if sub:
                patch[key] = {"sub": sub}
        elif not (_same_objects(value, other) or same(value, other)):
            patch[key] = {"set": value}
    for key in decoded:  # in the record's order, not a set's: the same bytes on every run
        if key not in original:
            patch[key] = {"del": True}
    return patch


def _same_objects(a: Json, b: Json) -> bool:
    """True when `a` and `b` are lists of the very same objects."""
    return type(a) is list and type(b) is list and len(a) == len(b) and all(map(operator.is_, a, b))


def apply_patch(target: dict[str, Json], patch: dict[str, Json]) -> dict[str, Json]:
    """`target` with `patch` applied (a new dict; `target` is not changed). A value set is a
    deep copy (a string, number, boolean or None is its own copy: set as it is)."""
    result = dict(target)
    for key, change in patch.items():
        if "del" in change:
            result.pop(key, None)
        elif "sub" in change:
            inner = result.get(key)
            result[key] = apply_patch(inner if isinstance(inner, dict) else {}, change["sub"])
        else:
            value = change["set"]
            result[key] = value if type(value) in _SCALARS else copy.deepcopy(value)
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
            value = loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


# ------------------------------------------------------------------------------ stash v2

#: The list fields of a trace or a span that are patched element by element, and how an
#: element is known (module docstring).
LIST_KEYS: Mapping[str, Callable[[Json], str]] = {
    "scores": score_key,
    "tags": lambda tag: tag if isinstance(tag, str) else digest(tag),
}
_NO_LISTS: Mapping[str, Callable[[Json], str]] = {}


def make_merge_patch(
    original: dict[str, Json],
    decoded: dict[str, Json],
    lists: Mapping[str, Callable[[Json], str]] = LIST_KEYS,
) -> dict[str, Json]:
    """The v2 patch that turns `decoded` (the copy as written) back into `original` ({} when
    they are the same), recording what each change replaces (module docstring)."""
    patch: dict[str, Json] = {}
    for key, value in original.items():
        if key not in decoded:
            patch[key] = {"set": value}
        elif type(value) in _SCALARS and type(value) is type(decoded[key]):
            if value != decoded[key]:  # (`same` of two scalars of one type, inline)
                patch[key] = {"set": value, "was": digest(decoded[key])}
        elif key in lists and isinstance(value, list) and isinstance(decoded[key], list):
            if same(value, decoded[key]):
                continue  # (no element differs, and the order is the same)
            each = _list_patch(value, decoded[key], lists[key])
            if each:
                patch[key] = {"each": each}
        elif isinstance(value, dict) and isinstance(decoded[key], dict):
            if same(value, decoded[key]):
                continue  # (the walk would find nothing; `same` tells it in C)
            sub = make_merge_patch(value, decoded[key], _NO_LISTS)
            if sub:
                patch[key] = {"sub": sub}
        elif not same(value, decoded[key]):
            patch[key] = {"set": value, "was": digest(decoded[key])}
    for key in decoded:  # in the record's order, not a set's: the same bytes on every run
        if key not in original:
            patch[key] = {"del": True, "was": digest(decoded[key])}
    return patch


def _list_patch(
    original: list[Json], decoded: list[Json], key: Callable[[Json], str]
) -> dict[str, Json]:
    ours = keyed(original, key)
    theirs = dict(keyed(decoded, key))
    items: dict[str, Json] = {}
    for k, element in ours:
        if k not in theirs:
            items[k] = {"add": element}
        elif isinstance(element, dict) and isinstance(theirs[k], dict):
            sub = make_merge_patch(element, theirs[k], _NO_LISTS)
            if sub:
                items[k] = {"sub": sub}
        elif not same(element, theirs[k]):
            items[k] = {"set": element, "was": digest(theirs[k])}
    kept = {k for k, _ in ours}
    for k in theirs:  # in their order, not a set's: the same bytes on every run
        if k not in kept:
            items[k] = {"drop": digest(theirs[k])}
    order = [k for k, _ in ours]
    if not items and order == list(theirs):
        return {}
    return {"order": order, "items": items}


def merge_patch(
    current: dict[str, Json],
    patch: dict[str, Json],
    lists: Mapping[str, Callable[[Json], str]] = LIST_KEYS,
    *,
    share: bool = False,
) -> dict[str, Json]:
    """`current` (the copy as it is now) with a v2 patch merged in: what the destination did
    not touch is restored, what it changed is kept (module docstring). A new dict.

    The values restored are copies of the patch's, unless `share` (for a patch parsed for this
    one merge and not used after it: the copies would cost more than the rest of the merge).
    """
    take = _shared if share else copy.deepcopy
    result = dict(current)
    for key, change in patch.items():
        if not isinstance(change, dict):
            continue
        now = current.get(key)
        if "each" in change:
            if key in current and not isinstance(now, list):
                continue  # the destination made it something else: theirs
            result[key] = _merge_list(
                now or [], change["each"], lists.get(key, score_key), share=share
            )
        elif "sub" in change:
            if isinstance(now, dict):
                result[key] = merge_patch(now, change["sub"], _NO_LISTS, share=share)
        elif "del" in change:
            if key in current and digest(now) == change.get("was"):
                del result[key]
        elif "was" in change:
            if key in current and digest(now) == change["was"]:
                result[key] = take(change.get("set"))
        elif key not in current:
            result[key] = take(change.get("set"))
    return result


def _merge_list(
    current: list[Json], each: dict[str, Json], key: Callable[[Json], str], *, share: bool
) -> list[Json]:
    take = _shared if share else copy.deepcopy
    now = dict(keyed(current, key))
    items = each.get("items") or {}
    merged: dict[str, Json] = {}
    for k in each.get("order") or []:
        item = items.get(k) or {}
        if k not in now:
            if "add" in item:  # the mapping left it out, the destination did not add one
                merged[k] = take(item["add"])
            continue  # else: removed on the destination
        element = now[k]
        if "sub" in item and isinstance(element, dict):
            element = merge_patch(element, item["sub"], _NO_LISTS, share=share)
        elif "set" in item and digest(element) == item.get("was"):
            element = take(item["set"])
        merged[k] = element
    for k, element in now.items():
        if k in merged:
            continue
        drop = (items.get(k) or {}).get("drop")
        if drop is None or digest(element) != drop:
            merged[k] = element  # added (or changed) on the destination
    return list(merged.values())


def _shared(value: Json) -> Json:
    return value


def trace_stash(trace: Trace, decoded: Trace) -> dict[str, Json]:
    """The v2 stash of a copy of `trace` whose wire decodes as `decoded`."""
    stash: dict[str, Json] = {
        "v": STASH_VERSION,
        "source": trace.source.model_dump(),
        "hash": content_hash(trace),
        "parts": trace_parts(trace),
    }
    patch = make_merge_patch(trace.dump_without_spans(), decoded.dump_without_spans())
    if patch:
        stash["patch"] = patch
    return stash


def copy_stashes(
    trace: Trace, decoded: Trace, backs: list[Span | None]
) -> tuple[dict[str, Json], list[dict[str, Json]]]:
    """`trace_stash(trace, decoded)` and `span_stash(span, back)` of every span of `trace`
    (`backs[i]`, one of `decoded.spans` or None, is how `trace.spans[i]` reads back), from one
    dump of each trace (`_hashing.Dumped`): the same stashes, computed once."""
    theirs = Dumped.of(decoded)
    dumps = {id(span): dump for span, dump in zip(decoded.spans, theirs.spans, strict=True)}
    span_backs = [dumps[id(back)] if back is not None else {} for back in backs]
    return _copy_stashes(trace, Dumped.of(trace), theirs.trace, span_backs, make_merge_patch)


def told_stashes(
    trace: Trace, mine: Dumped, back: dict[str, Json], span_backs: list[dict[str, Json]]
) -> tuple[dict[str, Json], list[dict[str, Json]]]:
    """`copy_stashes`, from how the copy reads back as told by its mapping instead of decoded:
    `mine` is `Dumped.of(trace)`, `back` and `span_backs[i]` are the dumps `decoded` and its
    spans would have (every key of `mine.trace` and `mine.spans[i]`). A value of `back` that
    *is* (the same object as) the original's is known to read back unchanged and is not
    compared: the stashes are those `copy_stashes` gives for the same dumps."""
    return _copy_stashes(trace, mine, back, span_backs, _told_patch)


def _told_patch(original: dict[str, Json], back: dict[str, Json]) -> dict[str, Json]:
    """`make_merge_patch(original, back)` for two dicts with the same keys, a value of `back`
    that is the original's own object taken as the same without comparing it."""
    keys = [key for key, value in original.items() if back[key] is not value]
    if len(keys) == len(original):
        return make_merge_patch(original, back)
    return make_merge_patch({k: original[k] for k in keys}, {k: back[k] for k in keys})


def _copy_stashes(
    trace: Trace,
    mine: Dumped,
    back: dict[str, Json],
    span_backs: list[dict[str, Json]],
    diff: Callable[[dict[str, Json], dict[str, Json]], dict[str, Json]],
) -> tuple[dict[str, Json], list[dict[str, Json]]]:
    stash: dict[str, Json] = {
        "v": STASH_VERSION,
        "source": trace.source.model_dump(),
        "hash": mine.hash,
        "parts": mine.parts(),
    }
    patch = diff(mine.trace, back)
    if patch:
        stash["patch"] = patch
    spans = []
    for dump, span_hash, span_back in zip(mine.spans, mine.span_digests(), span_backs, strict=True):
        span_stash: dict[str, Json] = {"v": STASH_VERSION, "hash": span_hash}
        patch = diff(dump, span_back) if span_back else make_merge_patch(dump, {})
        if patch:
            span_stash["patch"] = patch
        spans.append(span_stash)
    return stash, spans


def span_stash(span: Span, decoded: Span | None) -> dict[str, Json]:
    """The v2 stash of a copied span whose wire decodes as `decoded` (None: not at all)."""
    stash: dict[str, Json] = {"v": STASH_VERSION, "hash": span_digest(span)}
    back = decoded.model_dump(mode="json") if decoded is not None else {}
    patch = make_merge_patch(span.model_dump(mode="json"), back)
    if patch:
        stash["patch"] = patch
    return stash


_MAX_CHANGES = 10


def merged_fields(
    model: type[BaseModel], fields: dict[str, Json], patch: dict[str, Json]
) -> dict[str, Json]:
    """The keyword arguments `fields` (every field of `model`, as a decoder gives them) with a
    v2 patch merged in as `merge_patch(record.model_dump(mode="json"), patch)` merges it into
    the dump of the record they make: the fields the patch names are taken as their dump has
    them, merged, and put back; the others are left as they are (they validate to the same
    values as their dump would). The patch's values are shared, as a parsed stash's are."""
    current = {key: _dumped(model, key, fields[key]) for key in patch if key in fields}
    merged = merge_patch(current, patch, share=True)
    result = dict(fields)
    for key in current:
        if key not in merged:
            del result[key]  # (deleted by the patch: the field's default)
    result.update(merged)
    return result


_FIELD_ADAPTERS: dict[tuple[type[BaseModel], str], TypeAdapter[Any]] = {}


def _dumped(model: type[BaseModel], key: str, value: Json) -> Json:
    """`value`, given for field `key` of `model`, as the record's `model_dump(mode="json")`
    writes it: validated as that field validates it (a time truncated to the millisecond,
    ...), then dumped."""
    if value is None or type(value) is str:
        return value  # (what every field of a str, or None, validates and dumps to)
    adapter = _FIELD_ADAPTERS.get((model, key))
    if adapter is None:
        field = model.model_fields[key]
        annotation: Any = field.annotation
        if field.metadata:  # (`Instant`'s truncation, ...)
            annotation = Annotated[annotation, *field.metadata]
        adapter = TypeAdapter(annotation)
        _FIELD_ADAPTERS[model, key] = adapter
    return adapter.dump_python(adapter.validate_python(value), mode="json")


class CopyReader:
    """Applies the stash of one trace and its spans as a reader decodes them (module docstring).

    A trace stash without `v` is version 1: patches are applied as they are and nothing is
    compared (`copy_state.changed` is None). With version 2, the patches are merged, the result
    is compared with the recorded hash, and a changed copy is described. `platform` is where
    the copy is being read. The stashes given are parsed for this read: the values they
    restore go into the records as they are, not copied.
    """

    def __init__(self, stash: dict[str, Json], platform: Platform) -> None:
        version = stash.get("v")
        if version not in (None, STASH_VERSION):
            raise RecordError(
                f"its '{STASH_KEY}' metadata has stash version {version!r}, which a newer "
                "tracebridge wrote: upgrade tracebridge to read it"
            )
        self.stash = stash
        self.platform = platform
        self.v2 = version == STASH_VERSION
        self._ids: dict[str, str] = {}  # wire id -> canonical id, of the copied spans
        self._recorded: dict[str, Json] = {}  # canonical id -> digest when copied
        self._added: list[str] = []

    def span(self, decoded: Span, stash: dict[str, Json] | None) -> Span:
        """A decoded span with its own stash applied."""
        stash = stash or {}
        patch = stash.get("patch")
        if stash.get("v") != STASH_VERSION:
            span = patched(decoded, patch) if isinstance(patch, dict) else decoded
            if self.v2 and not stash:
                self._added.append(decoded.id)
            return span
        span = decoded
        if isinstance(patch, dict):
            merged = merge_patch(decoded.model_dump(mode="json"), patch, share=True)
            span = Span.model_validate(merged)
        self._ids[decoded.id] = span.id
        self._recorded[span.id] = stash.get("hash")
        return span

    def span_fields(self, fields: dict[str, Json], stash: dict[str, Json] | None) -> Span:
        """`span(Span.model_validate(fields), stash)`, validated once: a v2 patch is merged
        into `fields` (the keyword arguments of every field of the decoded span), not into its
        dump (`merged_fields`)."""
        stash = stash or {}
        patch = stash.get("patch")
        if stash.get("v") != STASH_VERSION or not isinstance(patch, dict):
            return self.span(Span.model_validate(fields), stash)
        span = Span.model_validate(merged_fields(Span, fields, patch))
        self._ids[fields["id"]] = span.id
        self._recorded[span.id] = stash.get("hash")
        return span

    def adopt_new_spans(self, spans: list[Span]) -> list[Span]:
        """`spans` with the parents of spans added on the destination named as the original
        names them (a span added under a copied span points at that span's id there)."""
        if not self._added or not self._ids:
            return spans
        added = set(self._added)
        return [
            s.model_copy(update={"parent_id": self._ids[s.parent_id]})
            if s.id in added and s.parent_id in self._ids
            else s
            for s in spans
        ]

    def trace(self, decoded: Trace, warnings: list[str] | None = None) -> Trace:
        """The decoded trace (its spans already applied) with the trace stash applied, and its
        `copy_state` set; a changed copy is described in `warnings`."""
        patch = self.stash.get("patch")
        if not self.v2:
            trace = patched(decoded, patch) if isinstance(patch, dict) else decoded
            if isinstance(self.stash.get("source"), dict):
                trace.with_copy_state(CopyState(self.platform, None, None))
            return trace
        trace = decoded
        if isinstance(patch, dict):
            merged = merge_patch(decoded.model_dump(mode="json"), patch, share=True)
            trace = Trace.model_validate(merged)
        return self._compared(trace, warnings)

    def trace_fields(self, fields: dict[str, Json], warnings: list[str] | None = None) -> Trace:
        """`trace(Trace.model_validate(fields), warnings)`, validated once: a v2 patch is
        merged into `fields` (the keyword arguments of every field of the decoded trace, its
        spans already applied), not into its dump (`merged_fields`)."""
        patch = self.stash.get("patch")
        if not self.v2 or not isinstance(patch, dict):
            return self.trace(Trace.model_validate(fields), warnings)
        return self._compared(Trace.model_validate(merged_fields(Trace, fields, patch)), warnings)

    def _compared(self, trace: Trace, warnings: list[str] | None) -> Trace:
        """A v2 copy with its stash applied, its `copy_state` set from the recorded hash."""
        recorded = self.stash.get("hash")
        recorded = recorded if isinstance(recorded, str) else None
        if recorded is not None and content_hash(trace) == recorded:
            return trace.with_copy_state(CopyState(self.platform, recorded, False))
        changes = tuple(self._describe(trace)) or ("its content",)
        if warnings is not None:
            shown = list(changes[:_MAX_CHANGES])
            if len(changes) > _MAX_CHANGES:
                shown.append(f"and {len(changes) - _MAX_CHANGES} more")
            warnings.append(
                f"trace {trace.id}: changed on {self.platform} since it was copied: "
                + ", ".join(shown)
            )
        return trace.with_copy_state(CopyState(self.platform, recorded, True, changes))

    def _describe(self, trace: Trace) -> list[str]:
        parts = self.stash.get("parts")
        parts = parts if isinstance(parts, dict) else {}
        out: list[str] = []
        fields = parts.get("fields")
        if isinstance(fields, dict):
            own = trace.model_dump(mode="json", include=set(OWN_FIELDS))
            out += [
                f"{name} changed"
                for name in OWN_FIELDS
                if name in fields and fields[name] != digest(own[name])
            ]
        was = parts.get("scores")
        if isinstance(was, dict):
            now = {k: digest(score_content(s)) for k, s in keyed(trace.scores, lambda s: s.name)}
            for k, d in now.items():
                if k not in was:
                    out.append(f"score {_shown(k)!r} added")
                elif was[k] != d:
                    out.append(f"score {_shown(k)!r} changed")
            out += [f"score {_shown(k)!r} removed" for k in was if k not in now]
        tags = parts.get("tags")
        if isinstance(tags, list):
            before = [t for t in tags if isinstance(t, str)]
            out += [f"tag {t!r} added" for t in _minus(sorted(trace.tags), before)]
            out += [f"tag {t!r} removed" for t in _minus(before, sorted(trace.tags))]
        out += [
            f"span {span.id} changed"
            for span in trace.spans
            if span.id in self._recorded and self._recorded[span.id] != span_digest(span)
        ]
        out += [f"span {span_id} added" for span_id in self._added]
        copied = parts.get("spans")
        if isinstance(copied, int) and copied > len(self._recorded):
            n = copied - len(self._recorded)
            out.append(f"{n} span{'s' if n > 1 else ''} removed")
        return out


def _shown(key: str) -> str:
    name, _, n = key.partition("\x1f")
    return f"{name} #{n}" if n else name


def _minus(a: list[str], b: list[str]) -> list[str]:
    """`a` without the elements of `b`, as multisets."""
    rest = list(b)
    out = []
    for item in a:
        if item in rest:
            rest.remove(item)
        else:
            out.append(item)
    return out
