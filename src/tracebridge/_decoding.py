"""What every decoder does when it builds canonical records from one wire record.

Both converters (`trace_from_wire`, `trace_from_opik`) run their work inside `decoding(...)`
and start with `check_values(...)`. The rules:

- **A record no destination can hold is dead-lettered at read time**, its reason naming the
  field (`check_values`): a number JSON cannot carry (`NaN`, `Infinity`: Python's json reads
  them, but neither Opik nor LangWatch can store them, and pydantic would turn some of them into
  null), a string with a lone surrogate (no UTF-8 file or request can carry it), or a value
  nested more than `MAX_DEPTH` levels deep (the conversion would fail on Python's recursion
  limit at a depth that depends on the call stack; a fixed limit makes the outcome the same on
  every path). The check is iterative and reads each value once (`orjson` reads the strings,
  a walk the rest); `checked` also answers whether the record is plain JSON, which lets a
  decoder compare its values by identity (`_langwatch.convert._keep_residuals`).
- **Any other failure while converting one record is that record's** (`decoding`): a
  `ValidationError` becomes a `RecordError` naming every bad field; any other exception
  `_failures.is_record_failure` calls the record's becomes a `RecordError` naming its type and
  message. Callers catch `RecordError` only, so nothing a record holds stops a run.
- **What a conversion repaired or left out is reported** (`Notes`: skip counts, warnings, span
  dead letters, e.g. from `_trees`). It is published once the record converted (a record that
  is dead-lettered whole publishes nothing, so nothing is counted twice) to the collector of
  the page being read: `collecting()`, which the engine opens around its source and
  `_file_source.paged` around each unit. Without a collector (a library calling a converter on its
  own) it is logged as warnings.

`describe_validation_error` / `describe_error` are the package's one formatter of pydantic's
errors (records, mapping files, settings, the sinks' "cannot map" reasons). Pydantic's own
`str(ValidationError)` is several lines with URLs and the input (which may be a secret or a
huge payload), so we keep this one-line form.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ._errors import RecordError
from ._failures import describe, is_record_failure
from ._interfaces import Counts, Page

__all__ = [
    "MAX_DEPTH",
    "check_records",
    "check_values",
    "checked",
    "collecting",
    "decoding",
    "describe_error",
    "describe_validation_error",
    "drain_into",
    "value_problem",
]

log = logging.getLogger("tracebridge")

#: Objects and arrays a record may nest (the record itself is the first level).
MAX_DEPTH = 200

_SURROGATE = re.compile("[\ud800-\udfff]")
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_PATH_SHOWN = 8  # path components a message shows before "…"
_PLAIN = frozenset({int, bool, type(None)})
#: `orjson` options under which it writes exact JSON types only (and tuples, UUIDs, Enums
#: and fragments, which the walk after it refuses); anything else raises.
_ORJSON_EXACT = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)

#: A path inside a record, innermost key first: (key, the path of its container).
_Link = tuple[object, "_Link"] | None


def describe_validation_error(exc: ValidationError, *, noun: str = "field") -> str:
    """One line naming every bad field: `field 'spans.0.timestamps.started_at': <problem>`.

    The one formatter of pydantic's errors in the package (records, mapping files with
    `noun="key"`, settings via `describe_error`), so every message reads the same way.
    """
    return "; ".join(describe_error(err, noun=noun) for err in exc.errors())


def describe_error(err: ErrorDetails, *, noun: str = "field") -> str:
    """One of pydantic's errors as `<noun> 'a.b.0': <problem>` ("(top level)" for no path)."""
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    return f"{noun} '{where}': {err['msg'].removeprefix('Value error, ')}"


# ------------------------------------------------------------------------------- value rules


def _path(link: _Link, root: tuple[object, ...]) -> str:
    keys: list[object] = []
    while link is not None:
        keys.append(link[0])
        link = link[1]
    keys = [*root, *reversed(keys)]
    shown = ".".join(str(k) for k in keys[:_PATH_SHOWN])
    return (shown + ".…" if len(keys) > _PATH_SHOWN else shown) or "(the record)"


def _scalar_problem(value: object) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return (
            f"is {_NON_FINITE[repr(value)]}: JSON has no NaN or Infinity, so neither Opik nor "
            "LangWatch can store it; replace it at the source (with a number or null) and rerun"
        )
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        if found:
            return (
                f"holds a lone surrogate (U+{ord(found.group()):04X}), half of a character "
                "(often text cut inside an emoji) that no UTF-8 file or request can carry; "
                "fix the text at the source and rerun"
            )
    return None


def _has_surrogate(text: str) -> bool:
    """True when `text` holds a lone surrogate: the one thing UTF-8 cannot encode (a C pass,
    much faster than a regex search of the text)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _suspect(record: Any) -> bool:
    """False when `record` surely holds no problem and is plain JSON (`checked`): the lean
    pass `value_problem` runs first.

    No paths, no messages. `orjson` writes the record first (in C, without keeping the
    text): when it can, every string and key is an exact `str` without a lone surrogate, and
    the walk only looks at types, floats and depth (`_types_suspect`); when it cannot (a
    surrogate, a key that is not a `str`, an integer beyond 64 bits, a subclass, ...), the walk
    that checks the strings too decides (`_values_suspect`).
    """
    kind = type(record)
    if kind is not dict and kind is not list:
        # A top-level scalar; a dict or list subclass goes to the full pass, which walks it.
        if kind is str:
            return not record.isascii() and _has_surrogate(record)
        if kind is float:
            return bool(record - record != 0)
        return kind not in _PLAIN
    try:
        orjson.dumps(record, option=_ORJSON_EXACT)
    except orjson.JSONEncodeError:
        return _values_suspect(record)
    return _types_suspect(record)


def _types_suspect(record: dict[str, Any] | list[Any]) -> bool:
    """`_values_suspect` for a record `orjson` could write: its strings and keys are good,
    and it is no larger walked than the text `orjson` wrote. Level by level (a list per
    level, no object per value: this runs on every record read)."""
    level: list[Any] = [record]
    depth = 1
    while level:
        if depth > MAX_DEPTH:
            return True
        below: list[Any] = []
        for value in level:
            for child in value.values() if type(value) is dict else value:
                kind = type(child)
                if kind is str:
                    continue
                if kind is dict or kind is list:
                    below.append(child)
                elif kind is float:
                    if child - child != 0:
                        return True
                elif kind not in _PLAIN:
                    return True  # a tuple, a UUID, an Enum, ...: the full pass decides
        level = below
        depth += 1
    return False


def _values_suspect(record: dict[Any, Any] | list[Any]) -> bool:
    """The lean walk: exact type checks (anything unusual, a key that is not a `str`
    included, answers True and is left to the full pass), `isascii()` before the surrogate
    test, and a float is non-finite when its difference with itself is not 0. Depth first,
    so that a value nested too deep is found before the rest is walked (a structure built
    in code may share its parts and be far larger walked than it is in memory)."""
    stack: list[tuple[Any, int]] = [(record, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if type(value) is dict:
            for key in value:
                if type(key) is not str or (not key.isascii() and _has_surrogate(key)):
                    return True
            children: Any = value.values()
        else:
            children = value
        for child in children:
            kind = type(child)
            if kind is str:
                if not child.isascii() and _has_surrogate(child):
                    return True
            elif kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is float:
                if child - child != 0:
                    return True
            elif kind not in _PLAIN:
                return True  # a subclass, a tuple, ...: the pass that names the field decides
    return False


def value_problem(record: Any, root: tuple[object, ...] = ()) -> str | None:
    """Why no destination can hold `record`, naming the first field in document order; None
    when it can. `root` is prefixed to the field paths (`("spans", 3)`).

    Iterative: one lean pass over every value; the pass that names the field runs only when
    the lean one found something.
    """
    if not _suspect(record):
        return None
    return _named_problem(record, root)


def _named_problem(record: Any, root: tuple[object, ...]) -> str | None:
    """`value_problem` without the lean pass: the pass that names the field."""
    stack: list[tuple[Any, int, _Link]] = [(record, 1, None)]
    while stack:
        value, depth, link = stack.pop()
        if isinstance(value, dict):
            children: Iterator[tuple[object, Any]] = iter(value.items())
        elif isinstance(value, list):
            children = enumerate(value)
        else:
            problem = _scalar_problem(value)
            if problem is not None:
                return f"field '{_path(link, root)}' {problem}"
            continue
        if depth > MAX_DEPTH:
            return (
                f"field '{_path(link, root)}' is nested more than {MAX_DEPTH} levels deep, "
                "deeper than tracebridge converts; flatten it at the source and rerun"
            )
        pending = []
        for key, child in children:
            problem = _scalar_problem(key)
            if problem is not None:
                return f"a key in field '{_path(link, root)}' {problem}"
            pending.append((child, depth + 1, (key, link)))
        stack.extend(reversed(pending))
    return None


def check_values(record: Any, root: tuple[object, ...] = ()) -> None:
    """Raise `RecordError` when no destination can hold `record` (see `value_problem`)."""
    checked(record, root)


def check_records(records: Sequence[tuple[Any, tuple[object, ...]]]) -> None:
    """`check_values(record, root)` for each pair, in order: one lean pass over them all when
    none holds a problem (the common case: a trace's records read from one file or page)."""
    if _suspect([record for record, _ in records]):
        for record, root in records:
            check_values(record, root)


def checked(record: Any, root: tuple[object, ...] = ()) -> bool:
    """`check_values(record, root)`, answering whether `record` is plain JSON.

    True: every value in it is exactly a dict (with string keys), list, str, int, float, bool
    or None, what any JSON parser gives (so a reader may compare its values by identity and
    share them without a copy changing what they are as JSON). False: it holds other types
    (built in code: a tuple, a subclass, ...) that no rule refuses. Raises `RecordError` when
    no destination can hold it. One pass over the values when the record is plain.
    """
    if not _suspect(record):
        return True
    problem = _named_problem(record, root)
    if problem is not None:
        raise RecordError(problem)
    return False


# ----------------------------------------------------------------------------- one record


@contextmanager
def decoding(where: str, record: Any) -> Iterator[Page]:
    """The conversion of one record: its failures become `RecordError`s, its notes are published.

    Yields the notes the conversion fills (skips, warnings, span dead letters); they reach the
    current collector only when the block ends without an error. A `RecordError` raised without
    `where` gets this record's `where` and raw `record`.
    """
    notes = Page()
    try:
        yield notes
    except RecordError as exc:
        if exc.where:
            raise
        raise RecordError(exc.reason, where=where, record=record) from None
    except ValidationError as exc:
        raise RecordError(describe_validation_error(exc), where=where, record=record) from None
    except Exception as exc:
        if not is_record_failure(exc):
            raise
        reason = f"cannot convert it: {describe(exc)}"
        raise RecordError(reason, where=where, record=record) from None
    _publish(notes)


# ------------------------------------------------------------------------------ collectors

_collector: ContextVar[Page | None] = ContextVar("tracebridge_read_notes", default=None)


@contextmanager
def collecting() -> Iterator[Page]:
    """Collect, until the block ends, the notes decoders publish in this context (task)."""
    notes = Page()
    token = _collector.set(notes)
    try:
        yield notes
    finally:
        _collector.reset(token)


def drain_into(page: Page, notes: Page) -> None:
    """Move `notes` (skips, warnings, dead letters) into `page`, leaving `notes` empty."""
    page.merge_notes(notes)
    page.rejected += notes.rejected
    notes.skipped, notes.skip_reasons, notes.warnings, notes.rejected = Counts(), {}, [], []


def _publish(notes: Page) -> None:
    target = _collector.get()
    if target is not None:
        drain_into(target, notes)
        return
    for warning in notes.warnings:
        log.warning("%s", warning)
    for rule, n in notes.skip_reasons.items():
        log.warning("skipped %d: %s", n, rule)
    for item in notes.rejected:
        log.warning("left out %s (%s): %s", item.kind, item.where, item.reason)
