"""Content hashes: what a user would call a record, as one stable string.

`content_hash(trace)` covers a trace's id, name, thread id, times, input, output, metadata,
error, tags, scores and spans (every field of each span, with its own scores and tags). It
leaves out what is not the record's content:

- provenance (`source`): where the record was born, the same for the original and every copy;
- platform extras (`extras` of traces, spans and scores): server fields such as `inserted_at`
  and the residual of one platform's wire format;
- a score's `id` (a LangWatch evaluation id, which tracebridge makes up for a score without one);
- order: spans (by id), scores and tags count as collections, since each platform lists them in
  its own order (a repeated tag or score still counts twice).

So a record and its faithful copy read back (the stash restores what the other platform could not
hold) have the same hash, and any edit of the content changes it. A thread's hash covers its
id, its own scores, tags and status, and the hashes of its traces.

Hashes start with the version of this definition (`c1:`): a hash recorded under another
definition never matches, so such a copy reads as changed (merged, never reverted), not as equal.

`digest` is the short hash of one JSON value (a part of a record), used by the stash to recognise
an element or a field again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from ._json import canonical
from ._models import Score, Span, Thread, Trace

__all__ = [
    "HASH_VERSION",
    "OWN_FIELDS",
    "Dumped",
    "HashMemo",
    "content_hash",
    "digest",
    "keyed",
    "remembering_dumps",
    "remembering_hashes",
    "score_content",
    "score_key",
    "span_content",
    "span_digest",
    "trace_parts",
]

HASH_VERSION = "c1"
#: A trace's own fields, each compared on its own (the stash's `parts`).
OWN_FIELDS = (
    "name",
    "thread_id",
    "started_at",
    "ended_at",
    "input",
    "output",
    "metadata",
    "error",
)

T = TypeVar("T")


def _canonical(value: Any) -> bytes:
    """One text per JSON value: sorted keys, ASCII (so any string encodes), no spaces.

    `True`, `1` and `1.0` give different texts, as JSON tells them apart.
    """
    return canonical(value)


def digest(value: Any) -> str:
    """A short hash (16 hex digits) of a JSON value: enough to recognise it again."""
    return hashlib.sha256(_canonical(value)).hexdigest()[:16]


def _collection(items: Iterable[Any]) -> list[Any]:
    """JSON values in a stable order, whatever order they came in."""
    return sorted(items, key=_canonical)


def score_content(score: Score) -> dict[str, Any]:
    """A score as its hash sees it: without its storage id and platform extras."""
    return score.model_dump(mode="json", exclude={"id", "extras"})


def span_content(span: Span) -> dict[str, Any]:
    """A span as its hash sees it: without platform extras; scores and tags in a stable order."""
    content = span.model_dump(mode="json", exclude={"extras", "scores", "tags"})
    content["scores"] = _collection(score_content(s) for s in span.scores)
    content["tags"] = sorted(span.tags)
    return content


def _trace_content(trace: Trace) -> dict[str, Any]:
    content = trace.model_dump(mode="json", include={"id", *OWN_FIELDS})
    content["tags"] = sorted(trace.tags)
    content["scores"] = _collection(score_content(s) for s in trace.scores)
    content["spans"] = sorted(
        (span_content(s) for s in trace.spans), key=lambda s: (s["id"], _canonical(s))
    )
    return content


def _thread_content(thread: Thread) -> dict[str, Any]:
    return {
        "id": thread.id,
        "scores": _collection(score_content(s) for s in thread.scores),
        "tags": sorted(thread.tags),
        "status": thread.status,
        "traces": sorted(content_hash(t) for t in thread.traces),
    }


def content_hash(unit: Trace | Thread) -> str:
    """The hash of a trace's or a thread's content (module docstring): `c1:` and 64 hex digits."""
    if isinstance(unit, Thread):
        content = {"thread": _thread_content(unit)}
        return f"{HASH_VERSION}:{hashlib.sha256(_canonical(content)).hexdigest()}"
    memo = _HASHES.get()
    if memo is None:
        return Dumped.of(unit).hash
    known = memo.get(unit)
    if known is None:
        known = Dumped.of(unit).hash
        memo.put(unit, known)
    return known


class HashMemo:
    """The content hashes of the traces a run hashed, by the identity of the trace object (kept
    with its hash, so its id cannot be reused), by generation: the page being read when each
    was recorded. A source that reads copies hashes each trace to tell whether it changed
    (`_stash.CopyReader`); the skip-unchanged index then hashes the same object again.

    The contract (`remembering_hashes`): no trace is changed in place from the moment it is
    hashed to the moment its page is written and forgotten. The engine holds one only for a run
    without steps (user code that may change a unit in place); tracebridge's sources, sinks and
    converters copy a trace to change it (`model_copy`), which makes another object.
    """

    def __init__(self) -> None:
        #: The page being read (the engine counts it up as each page is read).
        self.generation = 0
        self._hashes: dict[int, tuple[Trace, str, int]] = {}

    def get(self, trace: Trace) -> str | None:
        hit = self._hashes.get(id(trace))
        return hit[1] if hit is not None and hit[0] is trace else None

    def put(self, trace: Trace, hash_: str) -> None:
        self._hashes[id(trace)] = (trace, hash_, self.generation)

    def forget_through(self, generation: int) -> None:
        """Forget what was recorded while pages up to `generation` were read (written now)."""
        self._hashes = {k: v for k, v in self._hashes.items() if v[2] > generation}

    def __len__(self) -> int:
        return len(self._hashes)


_HASHES: ContextVar[HashMemo | None] = ContextVar("tracebridge_hashes", default=None)


@contextmanager
def remembering_hashes(memo: HashMemo) -> Iterator[None]:
    """Inside the block (and the tasks it starts), `content_hash` of a trace object is computed
    once and kept in `memo` (`HashMemo`: the contract)."""
    token = _HASHES.set(memo)
    try:
        yield
    finally:
        _HASHES.reset(token)


#: The dumps `Dumped.of` made inside `remembering_dumps`, by the identity of their trace (the
#: trace is kept with its dump, so its id cannot be reused while the block lasts).
_REMEMBERED: ContextVar[dict[int, tuple[Trace, Dumped]] | None] = ContextVar(
    "tracebridge_remembered_dumps", default=None
)


@contextmanager
def remembering_dumps() -> Iterator[None]:
    """Inside the block, `Dumped.of` dumps each trace object once: a second call for the same
    object (the skip-unchanged index hashing a trace, then the converter stashing its hash,
    parts and span digests) gets the first dump.

    The contract of the block: no trace is changed in place while it lasts, and no caller
    changes a dump it was given. The engine holds the block around a sink's write of one page
    (the steps, user code that may change a unit in place, have run by then); tracebridge's
    sinks and converters never change a trace (they copy it: `model_copy`).
    """
    token = _REMEMBERED.set({})
    try:
        yield
    finally:
        _REMEMBERED.reset(token)


class Dumped:
    """A trace dumped once (`model_dump(mode="json")`), and what the hashes and the stash take
    from that one dump: the same values `content_hash`, `span_digest` and `trace_parts` give
    from a dump each, at a fraction of the cost.

    The trace's hash text is put together from its parts' canonical texts: sorted keys and no
    spaces make `{"k":v,...}` of the parts' texts exactly the canonical text of the whole.
    """

    def __init__(self, trace: dict[str, Any], spans: list[dict[str, Any]]) -> None:
        #: The trace without its spans (`Trace.dump_without_spans`) and each span's dump.
        self.trace = trace
        self.spans = spans
        self._span_texts: list[bytes] | None = None
        self._hash: str | None = None

    @classmethod
    def of(cls, trace: Trace) -> Dumped:
        """The dump of `trace` (inside `remembering_dumps`, the one made for this object)."""
        remembered = _REMEMBERED.get()
        if remembered is not None:
            hit = remembered.get(id(trace))
            if hit is not None and hit[0] is trace:
                return hit[1]
        dump = trace.model_dump(mode="json")
        spans = dump.pop("spans")
        made = cls(dump, spans)
        if remembered is not None:
            remembered[id(trace)] = (trace, made)
        return made

    def span_texts(self) -> list[bytes]:
        """The canonical text of each span's content (`span_content`)."""
        if self._span_texts is None:
            self._span_texts = [_canonical(_span_content_of(s)) for s in self.spans]
        return self._span_texts

    def span_digests(self) -> list[str]:
        """`span_digest` of each span."""
        return [hashlib.sha256(text).hexdigest()[:16] for text in self.span_texts()]

    @property
    def hash(self) -> str:
        """`content_hash` of the trace."""
        if self._hash is None:
            self._hash = self._content_hash()
        return self._hash

    def _content_hash(self) -> str:
        dump = self.trace
        content: dict[str, Any] = {k: dump[k] for k in ("id", *OWN_FIELDS)}
        content["tags"] = sorted(dump["tags"])
        content["scores"] = _collection(_score_content_of(s) for s in dump["scores"])
        ordered = sorted(zip((s["id"] for s in self.spans), self.span_texts(), strict=True))
        spans = b"[" + b",".join(text for _, text in ordered) + b"]"
        fields = {**{k: _canonical(v) for k, v in content.items()}, "spans": spans}
        body = b",".join(_canonical(k) + b":" + fields[k] for k in sorted(fields))
        text = b'{"trace":{' + body + b"}}"
        return f"{HASH_VERSION}:{hashlib.sha256(text).hexdigest()}"

    def parts(self) -> dict[str, Any]:
        """`trace_parts` of the trace."""
        dump = self.trace
        scores = keyed(dump["scores"], lambda s: str(s["name"]))
        return {
            "fields": {name: digest(dump[name]) for name in OWN_FIELDS},
            "scores": {k: digest(_score_content_of(s)) for k, s in scores},
            "tags": sorted(dump["tags"]),
            "spans": len(self.spans),
        }


def _score_content_of(dump: dict[str, Any]) -> dict[str, Any]:
    """`score_content` of a dumped score."""
    return {k: v for k, v in dump.items() if k != "id" and k != "extras"}


def _span_content_of(dump: dict[str, Any]) -> dict[str, Any]:
    """`span_content` of a dumped span."""
    content = {k: v for k, v in dump.items() if k not in ("extras", "scores", "tags")}
    content["scores"] = _collection(_score_content_of(s) for s in dump["scores"])
    content["tags"] = sorted(dump["tags"])
    return content


def score_key(score: Any) -> str:
    """A score's identity within its list: its name (a dumped score, or anything else)."""
    if isinstance(score, dict) and isinstance(score.get("name"), str):
        return str(score["name"])
    return digest(score)


def keyed(items: Sequence[T], key: Callable[[T], str]) -> list[tuple[str, T]]:
    """Each item with its identity: `key(item)`, and for the n-th repeat of a key (n ≥ 2) the
    key, a unit separator and n. The same list gives the same keys, in order."""
    seen: dict[str, int] = {}
    out = []
    for item in items:
        k = key(item)
        seen[k] = seen.get(k, 0) + 1
        out.append((k if seen[k] == 1 else f"{k}\x1f{seen[k]}", item))
    return out


def trace_parts(trace: Trace) -> dict[str, Any]:
    """What the stash records of a trace to say later what changed: a digest of each own field
    and of each score (by name), the tags, and the number of spans."""
    own = trace.model_dump(mode="json", include=set(OWN_FIELDS))
    return {
        "fields": {name: digest(own[name]) for name in OWN_FIELDS},
        "scores": {k: digest(score_content(s)) for k, s in keyed(trace.scores, lambda s: s.name)},
        "tags": sorted(trace.tags),
        "spans": len(trace.spans),
    }


def span_digest(span: Span) -> str:
    """The digest of a span's content (its stash records it, to tell a changed span)."""
    return digest(span_content(span))
