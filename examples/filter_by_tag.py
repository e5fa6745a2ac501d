"""Copy only the traces that carry a tag: a step for `--step` on the command line.

    tracebridge migrate --from langwatch-file:examples/langwatch-sample.jsonl \
        --to opik-dir:web-only --step examples.filter_by_tag:only_web

Run it from the repository root: `--step` imports with the current directory on the path (as
`python -m` does). From elsewhere, put the root on the path: `PYTHONPATH=/path/to/repo`.
`keep_tag(tag)` is a factory: its result is a step object with a `rule` attribute, the name the
summary counts the left-out traces under ("skipped ... not tagged web").
"""

from __future__ import annotations

from tracebridge import Thread, Trace, Unit


class KeepTag:
    """The step `keep_tag(tag)` builds: a trace without `tag` is left out; a thread keeps its
    tagged traces, and is left out when none is."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.rule = f"not tagged {tag}"

    def _keeps(self, trace: Trace) -> bool:
        return self.tag in trace.tags

    def __call__(self, unit: Unit) -> Unit | None:
        if isinstance(unit, Thread):
            kept = [t for t in unit.traces if self._keeps(t)]
            if not kept:
                return None
            if len(kept) == len(unit.traces):
                return unit
            thread: Thread = unit.model_copy(update={"traces": kept})
            return thread
        return unit if self._keeps(unit) else None


def keep_tag(tag: str) -> KeepTag:
    """A step keeping only the traces tagged `tag` (LangWatch labels, Opik tags)."""
    return KeepTag(tag)


#: Ready for `--step examples.filter_by_tag:only_web` (the sample file tags some traces "web").
only_web = keep_tag("web")
#: Ready for `--step examples.filter_by_tag:only_production`.
only_production = keep_tag("production")
