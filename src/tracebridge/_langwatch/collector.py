"""Requests to LangWatch's collector: a trace packed into requests, a refused request halved.

Contract (`reference/langwatch-api.md` §5.1): `POST /api/collector` takes one trace per request,
≤ 200 spans, ≤ 200 evaluations and ≤ 10 MB of body; a big trace is several requests with the
same `trace_id`, which LangWatch merges (the first one carries the trace's metadata). A 429 there
means "too large": the request is halved, never resent unchanged; so are 400, 413 and 422, until
the refused item is alone and is dead-lettered with LangWatch's message. 402 (plan quota) is
fatal. `partialSuccess` is read on every answer: what it says was dropped is dead-lettered.
The synthetic root span tracebridge adds to a copy (`convert.with_root_span`) is never counted
as a source span, written or lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._errors import QuotaError, ServerError
from .._http import TRANSIENT_STATUSES, Api, decode_json, encode_json, error_message
from .._interfaces import Counts, Rejected, WriteResult
from .._models import Trace
from .._stash import STASH_KEY, parse_stash

__all__ = ["Collector", "Limits", "Request", "pack", "source_spans", "split"]

_SPAN_FIELDS = frozenset(
    "span_id trace_id parent_id name type input output timestamps model vendor metrics params "
    "contexts error".split()
)
_EVALUATION_FIELDS = frozenset(
    "evaluation_id evaluator_id name type is_guardrail status passed score label details error "
    "timestamps".split()
)


@dataclass(frozen=True)
class Limits:
    """What one collector request may carry."""

    spans: int = 200
    evaluations: int = 200
    bytes: int = 9_500_000  # of the JSON body as sent; the server's limit is 10 MB


@dataclass
class Request:
    """One collector request of a trace, and what it carries."""

    body: dict[str, Any]
    spans: int
    evaluations: int
    encoded: bytes | None = None  # `body` as sent, when it was measured


def pack(wire: dict[str, Any], limits: Limits) -> list[Request]:
    """The requests that carry `wire` (a trace in the collector's shape) within `limits`, each
    with its body encoded (measured once, sent as measured)."""
    spans = [_span_body(s) for s in wire["spans"]]
    evaluations = [_evaluation_body(e) for e in wire["evaluations"]]
    requests: list[Request] = []
    i = j = 0
    while i < len(spans) or j < len(evaluations) or not requests:
        head: dict[str, Any] = {"trace_id": wire["trace_id"]}
        if not requests:
            head["metadata"] = wire["metadata"]
        chunk_spans = spans[i : i + limits.spans]
        chunk_evals = evaluations[j : j + limits.evaluations]
        body = _body(head, chunk_spans, chunk_evals)
        encoded = encode_json(body)
        # The limit is on the whole body: halve the bigger part until it fits.
        while len(chunk_spans) + len(chunk_evals) > 1 and len(encoded) > limits.bytes:
            if len(chunk_spans) <= 1 or _size(chunk_evals) > _size(chunk_spans):
                chunk_evals = chunk_evals[: len(chunk_evals) // 2]
            else:
                chunk_spans = chunk_spans[: len(chunk_spans) // 2]
            body = _body(head, chunk_spans, chunk_evals)
            encoded = encode_json(body)
        requests.append(Request(body, len(chunk_spans), len(chunk_evals), encoded))
        i += len(chunk_spans)
        j += len(chunk_evals)
    return requests


def _body(
    head: dict[str, Any], spans: list[dict[str, Any]], evaluations: list[dict[str, Any]]
) -> dict[str, Any]:
    body = {**head, "spans": spans}
    if evaluations:
        body["evaluations"] = evaluations
    return body


def split(request: Request) -> tuple[Request, Request] | None:
    """Two requests carrying what `request` did, or None when it holds one item only."""
    body = request.body
    spans, evaluations = body.get("spans", []), body.get("evaluations", [])
    head = {k: v for k, v in body.items() if k not in ("spans", "evaluations")}
    if len(spans) > 1:
        half = len(spans) // 2
        rest = {"evaluations": evaluations} if evaluations else {}
        return (
            Request({**head, "spans": spans[:half]}, half, 0),
            Request({**head, "spans": spans[half:], **rest}, len(spans) - half, len(evaluations)),
        )
    if not (len(evaluations) > 1 or (spans and evaluations)):
        return None
    half = len(evaluations) // 2
    if not half:  # one span and one evaluation
        return (
            Request({**head, "spans": spans}, len(spans), 0),
            Request({**head, "spans": [], "evaluations": evaluations}, 0, len(evaluations)),
        )
    return (
        Request({**head, "spans": spans, "evaluations": evaluations[:half]}, len(spans), half),
        Request(
            {**head, "spans": [], "evaluations": evaluations[half:]}, 0, len(evaluations) - half
        ),
    )


def source_spans(body: dict[str, Any]) -> int:
    """How many spans of a collector body came from the source (not the synthetic root)."""
    return sum(
        not (parse_stash((span.get("params") or {}).get(STASH_KEY)) or {}).get("trace_span")
        for span in body.get("spans") or []
    )


class Collector:
    """Posts traces to the collector of one API, packed and halved as the module says."""

    def __init__(self, api: Api, limits: Limits) -> None:
        self.api = api
        self.limits = limits

    async def write_trace(self, trace: Trace, wire: dict[str, Any], result: WriteResult) -> None:
        """Post `wire` (the collector shape of `trace`), its requests in order; count in
        `result` what was written and dead-letter what LangWatch refused or dropped."""
        synthetic = len(wire["spans"]) - source_spans(wire)  # the root span tracebridge adds
        rejected_spans = rejected_evaluations = 0
        for request in pack(wire, self.limits):
            spans, evaluations = await self.post(request, f"trace {trace.id}", result)
            rejected_spans += spans
            rejected_evaluations += evaluations
        result.written.add(
            Counts(
                traces=1,
                spans=max(0, len(wire["spans"]) - synthetic - rejected_spans),
                scores=len(wire["evaluations"]) - rejected_evaluations,
            )
        )

    async def post(self, request: Request, owner: str, result: WriteResult) -> tuple[int, int]:
        """Send one request (halving it when LangWatch says it is too large or bad).

        Returns the numbers of spans and evaluations LangWatch refused.
        """
        response = await self.api.send(
            "POST",
            "api/collector",
            json_body=request.body if request.encoded is None else None,
            json_bytes=request.encoded,
            retry_statuses=TRANSIENT_STATUSES - {429},
        )
        if response.status_code == 402:
            raise QuotaError(
                "LangWatch refused the data: the plan's quota is used up "
                f"(402: {error_message(response)})"
            )
        if response.is_success:
            partial = (decode_json(response) or {}).get("partialSuccess") or {}
            spans, evaluations = (
                int(partial.get("rejectedSpans") or 0),
                int(partial.get("rejectedEvaluations") or 0),
            )
            if spans or evaluations:
                reason = (
                    f"LangWatch accepted the request but dropped {spans} spans and "
                    f"{evaluations} evaluations: {partial.get('errorMessage', '')}"
                )
                # The synthetic root span is no source span: count at most the source's.
                spans = min(spans, source_spans(request.body)) or spans
                result.rejected.append(
                    Rejected("span", owner, reason, None, Counts(spans=spans, scores=evaluations))
                )
            return spans, evaluations
        if response.status_code not in (400, 413, 422, 429):
            raise ServerError(
                f"LangWatch answered {response.status_code} to POST /api/collector: "
                f"{error_message(response)}"
            )
        halves = split(request)
        if halves is None:
            reason = f"LangWatch refused it ({response.status_code}): {error_message(response)}"
            kind = "span" if request.spans else "score"
            counts = Counts(spans=request.spans, scores=request.evaluations)
            result.rejected.append(Rejected(kind, owner, reason, request.body, counts))
            return request.spans, request.evaluations
        first = await self.post(halves[0], owner, result)
        second = await self.post(halves[1], owner, result)
        return first[0] + second[0], first[1] + second[1]


def _span_body(span: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in span.items() if k in _SPAN_FIELDS and v is not None}
    body["timestamps"] = {
        k: v
        for k, v in span["timestamps"].items()
        if k in ("started_at", "finished_at", "first_token_at")
    }
    return body


def _evaluation_body(evaluation: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in evaluation.items() if k in _EVALUATION_FIELDS and v is not None}
    if isinstance(body.get("timestamps"), dict):
        body["timestamps"] = {
            k: v
            for k, v in body["timestamps"].items()
            if k in ("started_at", "finished_at") and v is not None
        }
    if isinstance(body.get("error"), dict):
        error = body["error"]
        body["error"] = {
            "message": error.get("message") or "",
            "stacktrace": list(error.get("stacktrace") or []),
        }
    return body


def _size(value: Any) -> int:
    """Bytes of `value` as the JSON a body holds."""
    return len(encode_json(value))
