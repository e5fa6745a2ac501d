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
    """The hash of a trace's or a thread's content (module docstring): `c1:` and 64 hex digits.

    Inside `remembering_hashes`, a trace object already hashed is not dumped again."""
    if isinstance(unit, Thread):
        content = {"thread": _thread_content(unit)}
        return f"{HASH_VERSION}:{hashlib.sha256(_canonical(content)).hexdigest()}"
    memo = _REMEMBERED.get()
    known = memo.get(unit) if memo is not None else None
    return known[0] if known is not None else Dumped.of(unit).hash


class HashMemo:
    """The hashes of the traces hashed inside `remembering_hashes`, by the identity of the trace
    object (kept with them, so its id cannot be reused): its content hash and its spans'
    digests, what the skip-unchanged index, a reader of copies (`_stash.CopyReader`) and a
    converter's stash each need of one trace. Only these are kept, not the dump (a page's
    dumps would weigh more than the page). Each entry has the generation the memo was at:
    the engine counts pages read, and once a page is written forgets what was recorded while
    it was read and the entries of its own traces (`forget`), which the sink hashed while the
    reader was pages ahead: a trace object a later page brings again is hashed again.
    """

    def __init__(self) -> None:
        #: The page being read (the engine counts it up as pages are read).
        self.generation = 0
        self._known: dict[int, tuple[Trace, str, list[str], int]] = {}

    def get(self, trace: Trace) -> tuple[str, list[str]] | None:
        """The hash and span digests of this very object, when it was hashed."""
        hit = self._known.get(id(trace))
        return (hit[1], hit[2]) if hit is not None and hit[0] is trace else None

    def put(self, trace: Trace, hash_: str, span_digests: list[str]) -> None:
        self._known[id(trace)] = (trace, hash_, span_digests, self.generation)

    def forget(self, traces: Iterable[Trace]) -> None:
        """Forget the entries of these trace objects."""
        for trace in traces:
            hit = self._known.get(id(trace))
            if hit is not None and hit[0] is trace:
                del self._known[id(trace)]

    def forget_through(self, generation: int) -> None:
        """Forget what was recorded while pages up to `generation` were read (written now)."""
        self._known = {k: v for k, v in self._known.items() if v[3] > generation}

    def __len__(self) -> int:
        return len(self._known)


_REMEMBERED: ContextVar[HashMemo | None] = ContextVar("tracebridge_hashes", default=None)


@contextmanager
def remembering_hashes(memo: HashMemo | None = None) -> Iterator[HashMemo]:
    """Inside the block (and the tasks it starts), a trace object is hashed once: its hash and
    span digests are kept in `memo` (a new one by default) and reused by `content_hash` and
    `Dumped.of`.

    The contract of the block: no trace is changed in place from the moment it is hashed until
    the block ends or its page is forgotten. The engine holds one around a run without steps
    (a source that hashes the copies it reads, then the skip-unchanged index and the
    converters), else one around each sink write (the steps, user code that may change a unit
    in place, have run by then). tracebridge's sources, sinks and converters never change a
    trace in place: they copy it (`model_copy`), which makes another object.
    """
    memo = memo if memo is not None else HashMemo()
    token = _REMEMBERED.set(memo)
    try:
        yield memo
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
        self._span_digests: list[str] | None = None
        self._hash: str | None = None
        self._remember: tuple[HashMemo, Trace] | None = None

    @classmethod
    def of(cls, trace: Trace) -> Dumped:
        """The dump of `trace`; inside `remembering_hashes`, its hash and span digests are the
        ones taken before of this object, or kept once taken."""
        dump = trace.model_dump(mode="json")
        spans = dump.pop("spans")
        made = cls(dump, spans)
        memo = _REMEMBERED.get()
        if memo is not None:
            known = memo.get(trace)
            if known is None:
                made._remember = (memo, trace)
            else:
                made._hash, made._span_digests = known
        return made

    def span_texts(self) -> list[bytes]:
        """The canonical text of each span's content (`span_content`)."""
        if self._span_texts is None:
            self._span_texts = [_canonical(_span_content_of(s)) for s in self.spans]
        return self._span_texts

    def span_digests(self) -> list[str]:
        """`span_digest` of each span."""
        if self._span_digests is None:
            self._span_digests = [
                hashlib.sha256(text).hexdigest()[:16] for text in self.span_texts()
            ]
        return self._span_digests

    @property
    def hash(self) -> str:
        """`content_hash` of the trace."""
        if self._hash is None:
            self._hash = self._content_hash()
            if self._remember is not None:
                memo, trace = self._remember
                memo.put(trace, self._hash, self.span_digests())
                self._remember = None
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
