"""The end-of-run summary a person reads, and the one-line verdict a script greps."""

from __future__ import annotations

from ._engine import Report, iso
from ._interfaces import Counts
from ._state import JobCounts

__all__ = ["format_summary", "plural", "verdict_line"]

_SINGULAR = {"threads": "thread", "traces": "trace", "spans": "span", "scores": "score"}


def plural(n: int, noun: str) -> str:
    """`1 span`, `2 spans`: `noun` is the plural form (a kind, or `records`)."""
    return f"{n} {noun if n != 1 else _SINGULAR.get(noun, noun.removesuffix('s'))}"


_MAX_LINES = 10
_KINDS = ("threads", "traces", "spans", "scores")


def _table_of(counted: Report | JobCounts, show_unchanged: bool) -> list[str]:
    """Rows per kind of a run's (or a whole job's) counts: read, written, [unchanged,] skipped
    (by other rules), dead-lettered."""
    columns: list[tuple[str, Counts]] = [("read", counted.read), ("written", counted.written)]
    other = counted.skipped
    if show_unchanged:
        unchanged = counted.unchanged
        other = Counts(*(getattr(other, k) - getattr(unchanged, k) for k in _KINDS))
        columns.append(("unchanged", unchanged))
    columns += [("skipped", other), ("dead-lettered", counted.dead_lettered)]
    rows: list[tuple[str, ...]] = [("", *(name for name, _ in columns))]
    rows += [(kind, *(str(getattr(c, kind)) for _, c in columns)) for kind in _KINDS]
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns) + 1)]
    return [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]


def format_summary(report: Report) -> str:
    """Read / written / [unchanged] / skipped / dead-lettered per kind (the unchanged column
    when the destination already held some units: a rerun), then, for a resumed run, the same
    for the whole job since it started; then rules, warnings and the verdict."""
    job = report.job
    show_unchanged = bool(report.unchanged.total() or (job and job.unchanged.total()))
    lines = []
    if report.source_label or report.sink_label:
        mode = (
            " (dry run: nothing written; 'written' is what would be written)"
            if report.dry_run
            else ""
        )
        lines.append(f"{report.source_label} -> {report.sink_label}{mode}")
    if report.resumed_after_pages:
        lines.append(
            f"resumed an interrupted run after {report.resumed_after_pages} pages; this run:"
        )
    lines += _table_of(report, show_unchanged)
    if job is not None:
        since = f" since {iso(job.started_at)}" if job.started_at else ""
        lines.append(f"the whole job{since} ({plural(job.runs, 'runs')}):")
        lines += _table_of(job, show_unchanged)
    for rule, n in sorted(report.result.skip_reasons.items()):
        lines.append(f"skipped {n}: {rule}")
    warnings = report.result.warnings
    for warning in warnings[:_MAX_LINES]:
        lines.append(f"warning: {warning}")
    if len(warnings) > _MAX_LINES:
        lines.append(f"warning: ... and {len(warnings) - _MAX_LINES} more")
    if report.dry_run:
        lines += [f"would write {line}" for line in report.result.plan]
    if job is not None and job.dead_letter_entries > report.dead_letter_entries:
        earlier = plural(job.dead_letter_entries - report.dead_letter_entries, "records")
        lines.append(
            f"note: the job's earlier runs dead-lettered {earlier}"
            + (f", see {report.dead_letter_path}" if report.dead_letter_path else "")
        )
    lines.append(verdict_line(report))
    return "\n".join(lines)


def verdict_line(report: Report) -> str:
    """`OK: ...` or `LOSSY: ...` with the numbers, for scripts and CI logs."""
    if not report.lossy:
        unchanged = report.unchanged
        if unchanged.total() and not report.written.total():
            verb = "would be written" if report.dry_run else "written"
            return (
                f"OK: nothing changed: unchanged {plural(unchanged.total(), 'records')} "
                f"({plural(unchanged.traces, 'traces')}) the destination already holds, "
                f"nothing {verb} (exit 0)"
            )
        done = "would be copied" if report.dry_run else "copied"
        return f"OK: everything read was {done} or skipped by a rule above (exit 0)"
    parts = []
    if report.dead_letter_entries:
        where = f", see {report.dead_letter_path}" if report.dead_letter_path else ""
        d = report.dead_lettered
        held = ", ".join(
            plural(n, kind)
            for kind, n in (
                ("traces", d.traces),
                ("spans", d.spans),
                ("scores", d.scores),
                ("threads", d.threads),
            )
            if n
        )
        entries = plural(report.dead_letter_entries, "records")
        verb = "would be dead-lettered" if report.dry_run else "dead-lettered"
        parts.append(f"{entries} {verb} ({held}){where}")
    if report.lost:
        lost = plural(report.lost, "records")
        parts.append(f"{lost} lost at the source (the server skipped them)")
    return f"LOSSY: {'; '.join(parts)} (exit 1)"
