"""LangWatch's 31-day ingestion cutoff, as a rule over canonical traces (`IngestionCutoff`).

LangWatch drops spans that started more than 31 days ago and says so only in `partialSuccess`
(`reference/langwatch-api.md` §5.1; DESIGN.md "Default mapping"). So before a trace is posted,
this rule decides, per trace of a unit, one `Verdict`:

- **keep**: it started (it and every span of it) inside the window, a minute of margin for the
  trip included;
- **skip**: it is old and born in the very project the sink writes to (its provenance names the
  target project): the original is still there. That premise is checked: when the target
  project cannot be established, or is another one, a LangWatch-born trace is a copy like any
  other;
- **reject** (dead letter, the run is lossy): an old copy, unless the user asked to shift;
- **shift** by `shift_ms`, with `shift_old_timestamps`: copies are moved together, one shift for
  every copied trace of the unit (fresh turns of a thread included), so a thread's turns keep
  their order and spacing when they fit in the window; a longer thread is compressed into it,
  still in order. Shifted traces start a day inside the window. Traces born in the target
  project never move.

The sink installs the rule (`LangWatchApiSink(cutoff=...)`, by default one built from its own
options) and applies the verdicts to the traces' wire form: a shifted wire records the shift in
its stash (`shift_ms`), so reading it back restores the original times. It is a rule the sink
runs rather than an engine `Step` (`unit -> unit | None`) because it needs what a step cannot
have: the target project (one API lookup), a dead letter with its own reason, and a shift that
is undone on read through the wire's stash.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from .._models import Trace
from .._time import to_ms

__all__ = ["CUTOFF", "OLD_ORIGINAL", "TOO_OLD", "IngestionCutoff", "Verdict"]

CUTOFF = timedelta(days=31)
_SAFE_AGE = timedelta(days=30)  # where shifted traces start: a day inside the cutoff
_MARGIN_MS = 60_000  # for the trip: a trace a minute from the cutoff is treated as old
OLD_ORIGINAL = (
    "traces born in this LangWatch project and older than its 31-day ingestion cutoff: the "
    "original is still there, so it is not written again"
)
TOO_OLD = (
    "it started more than 31 days ago and LangWatch drops spans older than that; rerun with "
    "--shift-old-timestamps to move it into the accepted window (the original times are kept "
    "in its metadata)"
)


@dataclass(frozen=True)
class Verdict:
    """What the rule does with one trace (module docstring); `shift_ms` only for "shift"."""

    action: Literal["keep", "shift", "skip", "reject"]
    shift_ms: int = 0


_KEEP = Verdict("keep")


class IngestionCutoff:
    """The 31-day rule of one LangWatch sink (module docstring)."""

    def __init__(
        self,
        *,
        now: Callable[[], datetime],
        shift: bool,
        target_project: Callable[[], Awaitable[tuple[str, ...]]],
    ) -> None:
        """`target_project` names the project the sink writes to (its id and slug; () when
        unknown); it is asked only when an old trace was born in LangWatch."""
        self.now = now
        self.shift = shift
        self.target_project = target_project
        self.shifted = 0  # traces moved so far

    async def judge(self, traces: list[Trace]) -> list[Verdict]:
        """A verdict for each trace of one unit (a thread's turns, or a lone trace)."""
        now = self.now()
        cutoff = to_ms(now - CUTOFF) + _MARGIN_MS
        starts = [_oldest(t) for t in traces]
        old = [s < cutoff for s in starts]
        if not any(old):
            return [_KEEP] * len(traces)
        born_here = any(t.source.platform == "langwatch" for t in traces)
        here = await self.target_project() if born_here else ()
        copied = [t.source.platform != "langwatch" or t.source.project not in here for t in traces]
        moving = [s for s, c in zip(starts, copied, strict=True) if c]
        shift = self.shift and any(o and c for o, c in zip(old, copied, strict=True))
        first = min(moving, default=0)
        span = max(moving, default=0) - first
        room = (_SAFE_AGE - timedelta(days=1)) // timedelta(milliseconds=1)
        target = to_ms(now - _SAFE_AGE)
        verdicts: list[Verdict] = []
        for is_old, start, is_copy in zip(old, starts, copied, strict=True):
            if shift and is_copy:
                offset = start - first if span < room else (start - first) * room // span
                verdicts.append(Verdict("shift", target + offset - start))
                self.shifted += 1
            elif not is_old:
                verdicts.append(_KEEP)
            else:
                verdicts.append(Verdict("reject" if is_copy else "skip"))
        return verdicts


def _oldest(trace: Trace) -> int:
    """The earliest start of a trace and its spans, in epoch ms (as the collector sees it)."""
    return min([to_ms(trace.started_at), *(to_ms(s.started_at) for s in trace.spans)])
