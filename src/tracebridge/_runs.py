"""Run reports: what each non-dry `migrate` run and `sync` pass did, one JSON file each.

A report is `<state-dir>/runs/<run-id>.json`, written atomically when the run or pass ends
(one that fails with an error writes none). Its schema is stable (fields are only ever added):

```
{"schema": 1, "command": "migrate" | "sync", "kind": "run" | "pass" | "retry",
 "run_id": str, "started_at": str | null, "ended_at": str, "seconds": float | null,
 "options": {option: value},        # the command line's options, secrets redacted
 "marks": {"before": str | null, "after": str | null} | null,   # sync passes
 "report": {...}}                   # `Report.to_dict()`: window, counts per kind,
                                    # skip reasons, warnings, lost, dead letters, exit code
```

Times are ISO 8601 UTC. Options hold endpoint names, paths and projects; an option whose name
says it holds a secret (key, token, secret, password) is stored as `[redacted]`, and a URL's
user and password are taken out, so no credential ever reaches the file.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from ._engine import Report, iso
from ._state import write_atomically

__all__ = ["RUNS_DIR", "recent_runs", "redact", "write_run_report"]

RUNS_DIR = "runs"
SCHEMA = 1
_SECRET_NAME = re.compile(r"key|token|secret|password|auth", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]*@", re.IGNORECASE)


def redact(options: dict[str, Any]) -> dict[str, Any]:
    """`options` as JSON-ready data without secrets (module docstring)."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        if _SECRET_NAME.search(name) and value is not None:
            out[name] = "[redacted]"
        elif isinstance(value, Path):
            out[name] = str(value)
        elif isinstance(value, str):
            out[name] = _URL_CREDENTIALS.sub(r"\g<scheme>", value)
        elif value is None or isinstance(value, bool | int | float):
            out[name] = value
        else:
            out[name] = str(value)
    return out


def write_run_report(
    state_dir: Path,
    report: Report,
    *,
    command: str,
    kind: str,
    options: dict[str, Any],
    started_at: datetime | None,
    ended_at: datetime,
    marks: tuple[datetime | None, datetime | None] | None = None,
) -> Path:
    """Write the report of one run or pass to `<state_dir>/runs/<run_id>.json`; its path."""
    seconds = (ended_at - started_at).total_seconds() if started_at else None
    document = {
        "schema": SCHEMA,
        "command": command,
        "kind": kind,
        "run_id": report.run_id,
        "started_at": iso(started_at),
        "ended_at": iso(ended_at),
        "seconds": round(seconds, 3) if seconds is not None else None,
        "options": redact(options),
        "marks": {"before": iso(marks[0]), "after": iso(marks[1])} if marks else None,
        "report": report.to_dict(),
    }
    path = state_dir / RUNS_DIR / f"{report.run_id}.json"
    write_atomically(path, json.dumps(document, ensure_ascii=False, indent=2) + "\n")
    return path


def recent_runs(state_dir: Path, limit: int = 10) -> list[dict[str, Any]]:
    """The `limit` most recent run reports (by end time, newest first), in brief:
    `{"run_id", "command", "kind", "file", "started_at", "ended_at", "seconds", "source",
    "sink", "read", "written", "skipped", "dead_lettered", "lost", "exit_code"}`; a report
    that cannot be read is left out."""
    folder = state_dir / RUNS_DIR
    if not folder.is_dir():
        return []
    runs = []
    for path in folder.glob("*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            report = data["report"]
            runs.append(
                {
                    "run_id": data["run_id"],
                    "command": data["command"],
                    "kind": data["kind"],
                    "file": str(path),
                    "started_at": data["started_at"],
                    "ended_at": data["ended_at"],
                    "seconds": data["seconds"],
                    "source": report["source"],
                    "sink": report["sink"],
                    **{
                        k: report[k]
                        for k in ("read", "written", "skipped", "dead_lettered", "lost")
                    },
                    "exit_code": report["exit_code"],
                }
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    runs.sort(key=lambda run: str(run["ended_at"]), reverse=True)
    return runs[:limit]
