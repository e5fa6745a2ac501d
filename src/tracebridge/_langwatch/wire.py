"""LangWatch wire models: the read shape (search, trace and thread endpoints, JSONL export).

Tolerant on read: unknown fields are kept (`extra="allow"`), so nothing a newer server sends
is dropped. Timestamps are validated as 13-digit epoch milliseconds. Facts:
`reference/langwatch-api.md` §4; the collector's write shape is in `collector.py`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from .._time import from_ms

__all__ = ["EpochMs", "LWError", "LWEvaluation", "LWSpan", "LWTrace", "LWTypedValue"]


def _epoch_ms(value: object) -> object:
    from_ms(value)  # raises ValueError with a message that says "seconds" when it looks so
    return value


EpochMs = Annotated[int, BeforeValidator(_epoch_ms)]


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow")


class LWTypedValue(_Tolerant):
    type: str
    value: Any = None


class LWError(_Tolerant):
    has_error: bool = True
    message: str | None = None
    stacktrace: list[str] = Field(default_factory=list)


class LWSpanTimestamps(_Tolerant):
    started_at: EpochMs
    finished_at: EpochMs | None = None
    first_token_at: EpochMs | None = None


class LWSpan(_Tolerant):
    span_id: str
    trace_id: str | None = None
    parent_id: str | None = None
    name: str | None = None
    type: str = "span"
    input: LWTypedValue | None = None
    output: LWTypedValue | None = None
    timestamps: LWSpanTimestamps
    model: str | None = None
    vendor: str | None = None
    metrics: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    contexts: list[Any] | None = None
    error: LWError | None = None


class LWEvaluation(_Tolerant):
    evaluation_id: str | None = None
    name: str
    status: str = "processed"
    passed: bool | None = None
    score: float | None = None
    label: str | None = None
    details: str | None = None
    span_id: str | None = None


class LWTraceTimestamps(_Tolerant):
    started_at: EpochMs
    inserted_at: EpochMs | None = None
    updated_at: EpochMs | None = None


class LWTextValue(_Tolerant):
    value: str | None = None


class LWTraceMetadata(_Tolerant):
    thread_id: str | None = None
    labels: list[str] | str | None = None


class LWTrace(_Tolerant):
    trace_id: str = Field(min_length=1)
    project_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    timestamps: LWTraceTimestamps
    input: LWTextValue | None = None
    output: LWTextValue | None = None
    metrics: dict[str, Any] | None = None
    error: LWError | None = None
    spans: list[LWSpan] = Field(default_factory=list)
    evaluations: list[LWEvaluation] = Field(default_factory=list)

    @field_validator("metadata")
    @classmethod
    def _reserved_keys(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        LWTraceMetadata.model_validate(metadata)  # thread_id a string, labels strings
        return metadata
