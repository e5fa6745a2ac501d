"""`migrate`: one job from a source endpoint to a sink endpoint, as the CLI and library run it.

**Reruns write only what changed.** The sink is wrapped in `SkipUnchanged`, the index `sync`
keeps too (`unchanged.sqlite` in the state directory, one entry per destination and unit): a
unit whose content hash this destination already acknowledged, with the same mapping, Opik id
mode and timestamp shift, is not written again and is counted as `unchanged` (a part of
skipped), so a rerun that changes nothing says so instead of claiming it wrote everything
again. The index knows what tracebridge wrote, not what the destination holds now: when
someone else may have changed or deleted the copies, `rewrite=True` (`--rewrite`) writes every
unit again (idempotently) and records it. A file or folder destination that does not exist
(deleted since) is rewritten without asking.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import anyio
import httpx

from ._config import Settings, load_settings
from ._endpoint_specs import (
    Endpoint,
    mappings_for,
    open_endpoints,
    parse_endpoint,
    refuse_self_copy,
)
from ._engine import Report, Step, run
from ._errors import UsageError
from ._interfaces import Sink, Window
from ._state import StateDir
from ._sync import SyncJob, skip_unchanged
from ._unchanged import INDEX_FILE

__all__ = ["MIGRATE_UNCHANGED_RULE", "Job", "migrate"]

MIGRATE_UNCHANGED_RULE = "unchanged since an earlier run (--rewrite writes it again)"


@dataclass(frozen=True)
class Job:
    """What a migration copies: the checkpoint is keyed on this (never on credentials)."""

    source: Endpoint
    sink: Endpoint
    source_project: str | None
    target_project: str | None
    window: Window

    def key(self) -> dict[str, str | None]:
        return {
            "from": str(self.source),
            "to": str(self.sink),
            "source_project": self.source_project,
            "target_project": self.target_project,
            "since": self.window.since.isoformat() if self.window.since else None,
            "until": self.window.until.isoformat() if self.window.until else None,
        }


async def migrate(
    from_: str,
    to: str,
    *,
    source_project: str | None = None,
    target_project: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    dry_run: bool = False,
    settings: Settings | None = None,
    mapping: Path | None = None,
    steps: Sequence[Step] = (),
    rewrite: bool = False,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    on_page: Callable[[Report], None] | None = None,
) -> Report:
    """Copy a project from one endpoint to another; see `tracebridge migrate --help`.

    `mapping` overrides the mapping file of this direction. `steps` run on every unit read,
    in order, before it is written (`run`): a step returns the unit, a changed copy, or None to
    leave it out. They are not part of the job's checkpoint key. A unit the destination already
    holds unchanged is not written again unless `rewrite` (module docstring). `transports`
    ("langwatch", "opik") replace the HTTP transport of the API endpoints (tests plug in fakes).
    """
    settings = settings or load_settings()
    source, sink = parse_endpoint(from_), parse_endpoint(to)
    refuse_self_copy(
        source,
        sink,
        settings=settings,
        source_project=source_project,
        target_project=target_project,
    )
    if since and until and since > until:
        raise UsageError("--since is after --until")
    mappings = mappings_for(settings, mapping, sink)
    job = Job(source, sink, source_project, target_project, Window(since, until))
    src, dst = await open_endpoints(
        source,
        sink,
        settings=settings,
        mappings=mappings,
        source_project=source_project,
        target_project=target_project,
        transports=transports,
    )
    state = StateDir(settings.state_dir, job.key())
    target = SyncJob.of(source, sink, source_project, target_project, settings, mappings)
    ids = settings.opik_ids if "opik_ids" in settings.model_fields_set else "chosen by the target"
    gone = target.sink.path is not None and not target.sink.path.exists()
    dst_or_wrapped: Sink = dst
    # A dry run leaves no state behind: it compares with an index only when one exists.
    if not dry_run or (settings.state_dir / INDEX_FILE).exists():
        try:
            dst_or_wrapped = skip_unchanged(
                dst,
                target,
                settings,
                fingerprint=f"{target.mapping}|ids {ids}|shift {settings.shift_old_timestamps}",
                rewrite=rewrite or gone,
                rule=MIGRATE_UNCHANGED_RULE,
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await dst.aclose()
                await src.aclose()
            raise
    report = await run(
        src,
        dst_or_wrapped,
        window=job.window,
        state=state,
        steps=steps,
        dry_run=dry_run,
        on_page=on_page,
    )
    report.source_label, report.sink_label = src.label, dst.label
    return report
