"""Echo suppression (DESIGN.md invariant 2, "Sync: following change, both ways"): a step that
keeps a two-way sync from copying a record back, unchanged, to where it came from.

`suppress_echoes("langwatch", "my-project")` is the step of the Opik → LangWatch direction (the
destination is LangWatch). A trace is an **echo** when

- its provenance names the destination (platform, and project unless the step was given None),
  so it is a copy that tracebridge wrote on this side, read back; and
- its content hash is still the hash recorded when it was copied (`Trace.copy_state`, set by the
  reader from the stash, version 2): nobody changed it here since.

An echo is dropped (skip rule `echo: came from <platform> unchanged`): writing it back would cost
a write and could only return the original to how it was when copied. A copy that changed on
this side (a reviewer's score, a tag, a new span) passes through: the reader merged the change
over the original as copied, so the next pass carries it to the original without reverting
anything (`_stash.py`, the conflict rule). A copy whose stash recorded no hash (version 1) or
that carries no copy state (built by hand, or rebuilt from JSON) cannot be told unchanged, so it
passes through too (its write is idempotent).

A thread is judged trace by trace: its echoes are left out, the thread is kept while any trace
remains, and dropped when none does.
"""

from __future__ import annotations

from ._hashing import content_hash
from ._interfaces import Unit
from ._models import Platform, Thread, Trace

__all__ = ["EchoSuppression", "suppress_echoes"]


class EchoSuppression:
    """The echo-suppression step (module docstring): `step(unit)` is the unit without its
    echoes, or None when nothing of it is left.

    A thread returned with fewer traces than it came with: what was left out (its counts, by
    `Counts.of`) was skipped by `rule`.
    """

    def __init__(
        self, destination_platform: Platform, destination_project: str | tuple[str, ...] | None
    ) -> None:
        self.platform = destination_platform
        #: The destination project as provenance names it: a name, several names (a LangWatch
        #: project's id and slug), None for any project, or () when it is unknown: then
        #: nothing is an echo (a copy written to another project is no echo).
        self.project = destination_project
        #: The skip rule the engine counts dropped units under.
        self.rule = f"echo: came from {destination_platform} unchanged"

    def is_echo(self, trace: Trace) -> bool:
        """True when `trace` is a copy from the destination, unchanged since it was copied."""
        source = trace.source
        if source.platform != self.platform:
            return False
        names = (self.project,) if isinstance(self.project, str) else self.project
        if names is not None and source.project not in names:
            return False
        state = trace.copy_state
        return state is not None and state.hash is not None and state.hash == content_hash(trace)

    def __call__(self, unit: Unit) -> Unit | None:
        if isinstance(unit, Trace):
            return None if self.is_echo(unit) else unit
        kept = [t for t in unit.traces if not self.is_echo(t)]
        if len(kept) == len(unit.traces):
            return unit
        carrier = max(unit.traces, key=lambda t: t.started_at, default=None)
        if self.platform == "langwatch" and (unit.scores or unit.tags) and carrier is not None:
            # Thread scores and tags are Opik's (LangWatch has none): on their way to LangWatch
            # they ride on the thread's last trace, which is therefore kept (a reviewer's
            # thread score reaches the original; the carrier never moves to another trace).
            chosen = {id(t) for t in kept} | {id(carrier)}
            kept = [t for t in unit.traces if id(t) in chosen]
        if not kept:
            return None
        thread: Thread = unit.model_copy(update={"traces": kept})
        return thread

    def __repr__(self) -> str:
        return f"suppress_echoes({self.platform!r}, {self.project!r})"


def suppress_echoes(
    destination_platform: Platform, destination_project: str | tuple[str, ...] | None = None
) -> EchoSuppression:
    """The step that drops echoes on their way to `destination_platform` (module docstring).

    `destination_project` is the project the sink writes to, as provenance names it (an Opik
    project name, a LangWatch project id); None matches any project of that platform.
    """
    return EchoSuppression(destination_platform, destination_project)
