"""`tracebridge status`: every job in a state directory, for people (a block per job) and for
scripts (JSON, schema below, stable: fields are only ever added).

```
{"schema": 1, "state_dir": "<path>", "jobs": [
  {"id": "<16 hex>",                   # the digest in the job's file names
   "kind": "sync" | "migrate" | null,  # null: the checkpoint cannot be read
   "checkpoint": "<path>",
   "from": str | null, "to": str | null, "source_project": str | null,
   "target_project": str | null,
   "from_at": str | null, "to_at": str | null,  # API server and account (sync; no secret)
   "mapping": str | null,                       # mapping fingerprint (sync)
   "window": {"since": str | null, "until": str | null} | null,  # migrate: what it copies
   "state": "complete" | "in_pass" | "unreadable",  # in_pass: running, or interrupted
   "high_water": str | null, "lookback_seconds": float | null,  # sync
   "current": {"started_at": str | null, "since": str | null, "pages": int} | null,
   "passes": int,                                # complete passes (sync)
   "last_pass": {"started_at", "ended_at": str | null, "read", "written", "skipped",
                 "dead_lettered": {threads, traces, spans, scores} | null, "lost": int} | null,
   "updated_at": str | null,
   "job_counts": {"runs": int, "started_at": str | null,        # migrate: every run of the
                  "read" | "written" | "skipped" | "unchanged" | "dead_lettered":  # job through
                      {threads, traces, spans, scores},          # its last acknowledged page
                  "dead_letter_entries": int, "lost": int} | null,
   "dead_letters": {"file": str, "entries": int, "shared": bool},
   "problem": str | null}],                      # why the checkpoint cannot be read
 "runs": [{"run_id", "command": "migrate" | "sync", "kind": "run" | "pass" | "retry",
           "file", "started_at", "ended_at", "seconds", "source", "sink",
           "read", "written", "skipped", "dead_lettered": {threads, traces, spans, scores},
           "lost": int, "exit_code": int}]}      # the last 10 run reports, newest first
```

Times are ISO 8601 UTC. A migrate job's dead letters are in the state directory's shared
`dead-letters.jsonl` (`shared: true`, counting every migrate job's entries); a sync job has its
own file. Job keys hold endpoint names, projects, server URLs without credentials and a digest
of a LangWatch key, never a secret; nothing else is shown.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from ._errors import TracebridgeError, UsageError
from ._runs import recent_runs
from ._state import Checkpoint, dead_letter_lines
from ._sync_state import CheckpointV2, read_checkpoint

__all__ = ["format_status", "job_statuses"]

SCHEMA = 1
_KINDS = ("threads", "traces", "spans", "scores")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None


def _lines(path: Path) -> int:
    return sum(1 for _ in dead_letter_lines(path))


def _status(path: Path, root: Path) -> dict[str, Any]:
    job_id = path.stem.removeprefix("checkpoint-")
    status: dict[str, Any] = {"id": job_id, "kind": None, "checkpoint": str(path)}
    try:
        checkpoint = read_checkpoint(path)
        problem = None
    except TracebridgeError as exc:
        checkpoint, problem = None, str(exc)
    job = checkpoint.job if checkpoint else {}
    shared = bool(checkpoint and checkpoint.kind == "migrate")
    letters = root / ("dead-letters.jsonl" if shared else f"dead-letters-{job_id}.jsonl")
    status.update(
        {
            "kind": checkpoint.kind if checkpoint else None,
            **{k: job.get(k) for k in ("from", "to", "source_project", "target_project")},
            **{k: job.get(k) for k in ("from_at", "to_at", "mapping")},
            "window": {"since": job.get("since"), "until": job.get("until")} if shared else None,
            "state": _state(checkpoint),
            **_progress(checkpoint),
            "job_counts": _job_counts(path) if shared else None,
            "dead_letters": {"file": str(letters), "entries": _lines(letters), "shared": shared},
            "problem": problem,
        }
    )
    return status


def _job_counts(path: Path) -> dict[str, Any] | None:
    """What a migrate job's runs did, as its (v1) checkpoint keeps it; None when it keeps none."""
    try:
        counts = Checkpoint.model_validate_json(path.read_bytes()).counts
    except (OSError, ValueError):
        return None
    if counts is None:
        return None
    return {**counts.model_dump(mode="json"), "started_at": _iso(counts.started_at)}


def _state(checkpoint: CheckpointV2 | None) -> str:
    if checkpoint is None:
        return "unreadable"
    return "in_pass" if checkpoint.current is not None else "complete"


def _progress(checkpoint: CheckpointV2 | None) -> dict[str, Any]:
    if checkpoint is None:
        return dict.fromkeys(
            ("high_water", "lookback_seconds", "current", "last_pass", "updated_at"), None
        ) | {"passes": 0}
    current, last = checkpoint.current, checkpoint.last_pass
    return {
        "high_water": _iso(checkpoint.high_water),
        "lookback_seconds": checkpoint.lookback_seconds,
        "current": {
            "started_at": _iso(current.started_at),
            "since": _iso(current.since),
            "pages": current.pages,
        }
        if current
        else None,
        "passes": checkpoint.passes,
        "last_pass": {
            "started_at": _iso(last.started_at),
            "ended_at": _iso(last.ended_at),
            "read": last.read,
            "written": last.written,
            "skipped": last.skipped,
            "dead_lettered": last.dead_lettered,
            "lost": last.lost,
        }
        if last
        else None,
        "updated_at": _iso(checkpoint.updated_at),
    }


def job_statuses(root: Path) -> dict[str, Any]:
    """The status document of the state directory `root` (module docstring)."""
    if root.exists() and not root.is_dir():
        raise UsageError(f"state directory {root}: a file is in the way (name a folder)")
    paths = sorted(root.glob("checkpoint-*.json")) if root.is_dir() else []
    return {
        "schema": SCHEMA,
        "state_dir": str(root),
        "jobs": [_status(p, root) for p in paths],
        "runs": recent_runs(root) if root.is_dir() else [],
    }


def _counts(counts: dict[str, int] | None) -> str:
    if not counts:
        return "-"
    return ", ".join(f"{counts.get(k, 0)} {k}" for k in _KINDS if counts.get(k)) or "nothing"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds % 3600 == 0 and seconds:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0 and seconds:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def format_status(document: dict[str, Any]) -> str:
    """The status document for people: a block per job."""
    jobs = document["jobs"]
    root = document["state_dir"]
    if not jobs:
        return "\n".join([f"no jobs in {root} (no checkpoint files)", *_runs(document)])
    lines = [f"{len(jobs)} job{'s' if len(jobs) != 1 else ''} in {root}"]
    for job in jobs:
        lines.append("")
        if job["state"] == "unreadable":
            lines.append(f"job {job['id']}: unreadable checkpoint")
            lines.append(f"  problem         {job['problem']}")
            continue
        lines.append(f"{job['kind']} {job['from']} -> {job['to']}  (job {job['id']})")
        projects = f"source {job['source_project'] or '-'}, target {job['target_project'] or '-'}"
        lines.append(f"  projects        {projects}")
        for key, name in (("from_at", "source at"), ("to_at", "target at")):
            if job.get(key):
                lines.append(f"  {name:<15} {job[key]}")
        if job["kind"] == "migrate":
            window = job["window"] or {}
            lines.append(
                f"  window          started {window.get('since') or 'any time'} .. "
                f"{window.get('until') or 'now'}"
            )
        else:
            lines.append(
                f"  high-water mark {job['high_water'] or 'none yet (the first pass reads all)'}"
                f" (lookback {_duration(job['lookback_seconds'])})"
            )
        current = job["current"]
        if current:
            started = f" started {current['started_at']}" if current["started_at"] else ""
            lines.append(
                f"  checkpoint      in a pass{started}, {current['pages']} pages acknowledged "
                "(running, or interrupted: the next run resumes it)"
            )
        else:
            lines.append("  checkpoint      complete")
        last = job["last_pass"]
        if last:
            what = "last pass" if job["kind"] == "sync" else "last run"
            lines.append(f"  {what:<15} ended {last['ended_at'] or '?'}")
            if last["read"] is not None:
                lines.append(
                    f"                  read {_counts(last['read'])}; "
                    f"written {_counts(last['written'])}; skipped {_counts(last['skipped'])}; "
                    f"dead-lettered {_counts(last['dead_lettered'])}"
                    + (f"; lost {last['lost']}" if last["lost"] else "")
                )
        counts = job.get("job_counts")
        if counts:
            runs = f"{counts['runs']} run{'s' if counts['runs'] != 1 else ''}"
            lines.append(f"  whole job       {runs} since {counts['started_at'] or '?'}")
            lines.append(
                f"                  read {_counts(counts['read'])}; "
                f"written {_counts(counts['written'])}; "
                f"unchanged {_counts(counts['unchanged'])}; "
                f"dead-lettered {_counts(counts['dead_lettered'])}"
                + (f"; lost {counts['lost']}" if counts["lost"] else "")
            )
        letters = job["dead_letters"]
        shared = " (shared by the migrate jobs)" if letters["shared"] else ""
        lines.append(f"  dead letters    {letters['entries']} in {letters['file']}{shared}")
    return "\n".join(lines + _runs(document))


def _runs(document: dict[str, Any]) -> list[str]:
    """The recent runs as a table, newest first (nothing when there are none)."""
    runs = document.get("runs") or []
    if not runs:
        return []
    rows = [("run", "command", "ended", "seconds", "read traces", "written traces", "exit")]
    for run in runs:
        seconds = run["seconds"]
        rows.append(
            (
                run["run_id"],
                f"{run['command']} {run['kind']}",
                run["ended_at"] or "-",
                f"{seconds:.1f}" if seconds is not None else "-",
                str(run["read"]["traces"]),
                str(run["written"]["traces"]),
                str(run["exit_code"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return ["", f"last {len(runs)} run{'s' if len(runs) != 1 else ''} (reports in runs/)", *table]
