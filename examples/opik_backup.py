"""Back up an Opik project to a LangWatch-format JSONL file, through the library.

    OPIK_URL_OVERRIDE=http://localhost:5173/api OPIK_PROJECT_NAME=support-bot \
        python examples/opik_backup.py backup.jsonl

The server, workspace, API key and project come from the environment (OPIK_URL_OVERRIDE,
OPIK_WORKSPACE, OPIK_API_KEY, OPIK_PROJECT_NAME), as for the CLI. The pipeline is built by
hand: `open_source` / `open_sink` make the endpoints from spec strings, a `StateDir` keeps the
checkpoint (an interrupted backup resumes), and `run` copies. Rerunning it updates the file in
place (changed traces are replaced, nothing is duplicated).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import anyio
import httpx

from tracebridge import Report, StateDir, format_summary, load_settings, open_sink, open_source, run


async def backup(
    out: Path,
    *,
    project: str | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> Report:
    """Copy the Opik project (`project`, else OPIK_PROJECT_NAME) into the JSONL file `out`.

    `transports` replaces the HTTP transport (tests plug a fake Opik server in there).
    """
    settings = load_settings()  # the environment
    project = project or settings.opik_project
    source = open_source("opik", project=project, settings=settings, transports=transports)
    try:
        sink = open_sink(f"langwatch-file:{out}", settings=settings)
    except BaseException:
        await source.aclose()
        raise
    # The checkpoint is keyed on what the job copies (never on credentials).
    job = {"job": "opik-backup", "url": settings.opik_url, "project": project, "to": str(out)}
    return await run(source, sink, state=StateDir(settings.state_dir, job))


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("opik-backup.jsonl")
    report = anyio.run(backup, out)
    print(format_summary(report))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
