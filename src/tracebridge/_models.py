"""Canonical records: what a trace, its spans, its scores and its thread are inside tracebridge.

Every platform module converts its wire format to and from these models and nothing else knows
a wire format. Timestamps are UTC `datetime`s with millisecond resolution. Input and output
use LangWatch's typed-value vocabulary (`IOValue`), the richer of the two; Opik's free JSON maps
onto it one-to-one (`tracebridge._opik.convert.io_to_json`).

`extras[platform]` holds the fields of that platform's wire record that the canonical fields
do not capture (server fields such as `inserted_at`, unknown keys), so writing the record back
to its own platform reproduces the original exactly. Only the origin platform's extras are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr

from ._time import utc_ms

__all__ = [
    "CopyState",
    "ErrorInfo",
    "IOValue",
    "Platform",
    "Provenance",
    "Score",
    "Span",
    "Thread",
    "Trace",
]

Platform = Literal["langwatch", "opik"]

#: A UTC datetime truncated to the millisecond (naive datetimes are refused).
Instant = Annotated[datetime, AfterValidator(utc_ms)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Provenance(_Record):
    """Where a record was born: its platform, project and id there (DESIGN.md invariant 2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    platform: Platform
    project: str
    id: str


class IOValue(_Record):
    """A typed input or output value, as LangWatch types them.

    `type` is one of text, chat_messages, json, raw, list, guardrail_result, evaluation_result.
    """

    type: str
    value: Any = None


class ErrorInfo(_Record):
    """An error attached to a trace or span."""

    message: str | None = None
    exception_type: str | None = None
    stacktrace: list[str] = Field(default_factory=list)


class Score(_Record):
    """A judgement: a LangWatch evaluation or an Opik feedback score.

    `value` is the number Opik stores; `passed`, `label` and `reason` are LangWatch's verdict
    fields (`label` is Opik's `category_name`, `reason` LangWatch's `details`). A score whose
    `status` is not "processed" is a LangWatch evaluation that never produced a verdict.
    """

    name: str
    value: float | None = None
    passed: bool | None = None
    label: str | None = None
    reason: str | None = None
    status: str = "processed"
    id: str | None = None
    source: str | None = None
    extras: dict[str, Any] = Field(default_factory=dict)


class Span(_Record):
    """One span of a trace's tree; `parent_id` None marks a root."""

    id: str
    parent_id: str | None = None
    name: str | None = None
    kind: str = "span"
    started_at: Instant
    ended_at: Instant | None = None
    first_token_at: Instant | None = None
    input: IOValue | None = None
    output: IOValue | None = None
    model: str | None = None
    provider: str | None = None
    usage: dict[str, int] = Field(default_factory=dict)
    cost: float | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    contexts: list[Any] | None = None
    error: ErrorInfo | None = None
    scores: list[Score] = Field(default_factory=list)
    extras: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class CopyState:
    """What reading a copy (a record tracebridge wrote, read back from where it was written)
    learned from its stash: see `Trace.copy_state` and `_stash.py`.

    `changed` is True when the copy's content no longer has the hash recorded when it was
    copied (`changes` then says what: "score 'helpfulness' added", ...), False when it still
    has it, None when the stash recorded no hash (written by tracebridge before stash v2).
    """

    #: The platform the copy was read from (where it had been written).
    platform: Platform
    #: The content hash recorded when the record was copied; None for a v1 stash.
    hash: str | None
    changed: bool | None
    changes: tuple[str, ...] = ()


class Trace(_Record):
    """A trace with its whole span tree and its trace-level scores.

    Two traces are equal when their fields are: `copy_state`, what reading a copy learned, is
    not part of the record (a copy read back equals its original).
    """

    id: str
    source: Provenance
    name: str | None = None
    thread_id: str | None = None
    started_at: Instant
    ended_at: Instant | None = None
    input: IOValue | None = None
    output: IOValue | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    error: ErrorInfo | None = None
    spans: list[Span] = Field(default_factory=list)
    scores: list[Score] = Field(default_factory=list)
    extras: dict[str, Any] = Field(default_factory=dict)

    _copy_state: CopyState | None = PrivateAttr(default=None)

    @property
    def copy_state(self) -> CopyState | None:
        """Set on a copy read back from the platform it was written to, else None.

        Kept by `model_copy`; not dumped, validated or compared.
        """
        return self._copy_state

    def with_copy_state(self, state: CopyState | None) -> Trace:
        """This trace (the same object) with `copy_state` set; for the readers of copies."""
        self._copy_state = state
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def dump_without_spans(self) -> dict[str, Any]:
        """The trace as JSON-able data, its spans left out (they are compared one by one)."""
        return self.model_dump(mode="json", exclude={"spans"})


class Thread(_Record):
    """A conversation: the traces sharing one thread id, plus thread-level data (Opik only)."""

    id: str
    traces: list[Trace] = Field(default_factory=list)
    scores: list[Score] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    status: str | None = None
