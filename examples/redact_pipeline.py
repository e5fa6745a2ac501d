"""Redact while copying: a LangWatch export file → an Opik import folder, through the library.

    python examples/redact_pipeline.py [IN.jsonl] [OUT_DIR]

(defaults: examples/langwatch-sample.jsonl → ./redacted-opik). The step below runs on every
unit (a trace, or a thread of traces) before it is written: it drops the `customer_id`
metadata key and replaces every e-mail address in input and output text with a stable hash
(`email:<12 hex>`), so the same address still groups together after redaction.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Any

from tracebridge import IOValue, Span, Thread, Trace, Unit, format_summary, migrate_blocking

DROPPED_KEY = "customer_id"
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def _hash_email(match: re.Match[str]) -> str:
    return "email:" + hashlib.sha256(match.group().lower().encode()).hexdigest()[:12]


def _scrub(value: Any) -> Any:
    """`value` with e-mail addresses hashed in every string, however deeply nested."""
    if isinstance(value, str):
        return EMAIL.sub(_hash_email, value)
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    return value


def _io(value: IOValue | None) -> IOValue | None:
    return None if value is None else value.model_copy(update={"value": _scrub(value.value)})


def _span(span: Span) -> Span:
    metadata = {k: v for k, v in span.metadata.items() if k != DROPPED_KEY}
    return span.model_copy(
        update={"input": _io(span.input), "output": _io(span.output), "metadata": metadata}
    )


def _trace(trace: Trace) -> Trace:
    metadata = {k: v for k, v in trace.metadata.items() if k != DROPPED_KEY}
    return trace.model_copy(
        update={
            "input": _io(trace.input),
            "output": _io(trace.output),
            "metadata": metadata,
            "spans": [_span(s) for s in trace.spans],
        }
    )


def redact(unit: Unit) -> Unit:
    """The step: the unit with `customer_id` dropped and e-mail addresses hashed.

    Records are immutable pydantic models: a step returns changed copies (`model_copy`).
    """
    if isinstance(unit, Thread):
        return unit.model_copy(update={"traces": [_trace(t) for t in unit.traces]})
    return _trace(unit)


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    source = Path(argv[0]) if argv else here / "langwatch-sample.jsonl"
    target = Path(argv[1]) if len(argv) > 1 else Path("redacted-opik")
    # The blocking twin of `tracebridge.migrate`: no event loop needed in a script.
    report = migrate_blocking(f"langwatch-file:{source}", f"opik-dir:{target}", steps=[redact])
    print(format_summary(report))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
