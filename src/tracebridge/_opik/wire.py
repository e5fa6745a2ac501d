"""Opik wire models: `Trace_Public`, `Span_Public` and `FeedbackScore_Public` as read.

Tolerant on read (unknown fields kept). Only what the converter relies on is typed; timestamps
must be ISO-8601 with a timezone. Facts: `reference/opik-api.md` §2 and §4, and the spec.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .._time import from_iso

__all__ = ["IsoTime", "OErrorInfo", "OScore", "OSpan", "OTrace"]


def _iso(value: object) -> object:
    from_iso(value)  # raises ValueError naming the problem
    return value


IsoTime = Annotated[str, BeforeValidator(_iso)]


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow")


class OErrorInfo(_Tolerant):
    exception_type: str | None = None
    message: str | None = None
    traceback: str | None = None


class OScore(_Tolerant):
    name: str = Field(min_length=1)
    value: float
    source: str | None = None
    category_name: str | None = None
    reason: str | None = None


class OTrace(_Tolerant):
    id: str = Field(min_length=1)
    name: str | None = None
    start_time: IsoTime
    end_time: IsoTime | None = None
    input: Any = None
    output: Any = None
    metadata: Any = None
    tags: list[str] | None = None
    error_info: OErrorInfo | None = None
    thread_id: str | None = None
    feedback_scores: list[OScore] | None = None


class OSpan(_Tolerant):
    id: str = Field(min_length=1)
    trace_id: str | None = None
    parent_span_id: str | None = None
    name: str | None = None
    type: str | None = None
    start_time: IsoTime
    end_time: IsoTime | None = None
    input: Any = None
    output: Any = None
    metadata: Any = None
    model: str | None = None
    provider: str | None = None
    tags: list[str] | None = None
    usage: dict[str, int] | None = None
    total_estimated_cost: float | None = None
    error_info: OErrorInfo | None = None
    ttft: float | None = None
    feedback_scores: list[OScore] | None = None
