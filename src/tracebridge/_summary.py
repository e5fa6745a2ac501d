"""The end-of-run summary a person reads, and the one-line verdict a script greps."""

from __future__ import annotations

from ._engine import Report

__all__ = ["format_summary", "plural", "verdict_line"]

_SINGULAR = {"threads": "thread", "traces": "trace", "spans": "span", "scores": "score"}


def plural(n: int, noun: str) -> str:
    """`1 span`, `2 spans`: `noun` is the plural form (a kind, or `records`)."""
    return f"{n} {noun if n != 1 else _SINGULAR.get(noun, noun.removesuffix('s'))}"


_MAX_LINES = 10


def format_summary(report: Report) -> str:
    """Read / written / skipped / dead-lettered per kind, then rules, warnings and verdict."""
    rows: list[tuple[str, ...]] = [("", "read", "written", "skipped", "dead-lettered")]
    for kind in ("threads", "traces", "spans", "scores"):
        rows.append(
            (
                kind,
                *(
                    str(getattr(counts, kind))
                    for counts in (
                        report.read,
                        report.written,
                        report.skipped,
                        report.dead_lettered,
                    )
                ),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    if report.source_label or report.sink_label:
        mode = (
            " (dry run: nothing written; 'written' is what would be written)"
            if report.dry_run
            else ""
        )
        lines.append(f"{report.source_label} -> {report.sink_label}{mode}")
    if report.resumed_after_pages:
        lines.append(f"resumed an interrupted run after {report.resumed_after_pages} pages")
    lines += [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    for rule, n in sorted(report.result.skip_reasons.items()):
        lines.append(f"skipped {n}: {rule}")
    warnings = report.result.warnings
    for warning in warnings[:_MAX_LINES]:
        lines.append(f"warning: {warning}")
    if len(warnings) > _MAX_LINES:
        lines.append(f"warning: ... and {len(warnings) - _MAX_LINES} more")
    if report.dry_run:
        lines += [f"would write {line}" for line in report.result.plan]
    lines.append(verdict_line(report))
    return "\n".join(lines)


def verdict_line(report: Report) -> str:
    """`OK: ...` or `LOSSY: ...` with the numbers, for scripts and CI logs."""
    if not report.lossy:
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
