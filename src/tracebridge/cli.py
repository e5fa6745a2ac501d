"""The `tracebridge` command line: `migrate`, `sync`, `status` and `check`.

Every error class carries its exit code (`_errors.py`): 0 all copied, 1 finished but lossy,
2 usage or configuration error, 3 fatal runtime error. An environment error (`OSError`) names
the path and what is wrong with it, and exits 2 when the path is of the wrong kind (the command
line or config named a directory for a file, or a file for a directory), 3 otherwise
(permissions, disk full). Bad input never shows a traceback; `--debug` adds one to runtime,
environment and internal errors, and never changes the exit code. Ctrl-C (KeyboardInterrupt)
ends `migrate` with exit 130 and says to rerun (checkpoints are saved after every page).

Output of `migrate` and `sync`: the summary on stdout (with `--json`, one JSON object and
nothing else on stdout), log messages (retries at least) and a progress line every few seconds
on stderr; `--quiet` keeps only errors and the verdict line, `-v` adds info messages, `--debug`
debug ones. Every non-dry run writes a run report (`_runs.py`).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from time import monotonic
from typing import Any, NoReturn, TypeVar

import anyio
import click
from rich.console import Console

from ._check import check_langwatch, check_opik
from ._config import Settings, load_settings
from ._console import ProgressDisplay, configure_logging, progress_for
from ._engine import Report, first_cause
from ._errors import TracebridgeError, UsageError
from ._migrate import migrate
from ._runs import write_run_report
from ._status import format_status, job_statuses
from ._steps import import_steps
from ._summary import format_summary, verdict_line
from ._sync import PassResult, parse_duration, sync

__all__ = ["main"]

T = TypeVar("T")

#: The progress line's clock and interval (seconds); tests replace the clock.
_progress_clock: Callable[[], float] = monotonic
PROGRESS_EVERY = 5.0
#: Exit code of a run ended by Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED = 130


def _now() -> datetime:
    return datetime.now(UTC)


def _moment(value: str | None, *, end_of_day: bool) -> datetime | None:
    """An ISO date or datetime; a bare date means the whole day; no timezone means UTC."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day, time.min, UTC)
            return moment + timedelta(days=1, milliseconds=-1) if end_of_day else moment
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date (2026-01-31) or datetime") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


#: What an environment error says about its path, and the exit code: 2 when the path is of the
#: wrong kind (a setup to fix), 3 otherwise (the run met its environment). First match wins.
_ENVIRONMENT: tuple[tuple[type[OSError], int, str], ...] = (
    (IsADirectoryError, 2, "is a directory, where a file is expected"),
    (NotADirectoryError, 2, "is not a directory (a part of the path is a file)"),
    (FileExistsError, 2, "already exists, and is not what is expected there"),
    (PermissionError, 3, "permission denied"),
)
_HINT = {
    2: "fix the path on the command line or in the config file",
    3: "fix it and rerun the same command to resume",
}


def _environment_error(exc: OSError) -> tuple[str, int]:
    """The message and exit code of an environment error: which path, what is wrong with it."""
    code, meaning = next(
        ((c, m) for kind, c, m in _ENVIRONMENT if isinstance(exc, kind)),
        (3, (exc.strerror or str(exc) or type(exc).__name__).lower()),
    )
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    subject = f"{' -> '.join(paths)}: {meaning}" if paths else meaning
    notes = "; ".join(getattr(exc, "__notes__", []))
    context = f" ({notes})" if notes else ""
    return f"error: {subject}{context}; {_HINT[code]}", code


def _fail(message: str, code: int, exc: BaseException, debug: bool) -> NoReturn:
    """Print `message` (after the traceback, with `--debug`) and exit with `code`."""
    if debug:
        click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
    click.echo(message, err=True)
    sys.exit(code)


def _run(debug: bool, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work`; every failure ends in one message and its exit code (module docstring)."""
    try:
        return anyio.run(work)
    except UsageError as exc:
        _fail(f"error: {exc}", exc.exit_code, exc, debug=False)
    except TracebridgeError as exc:
        _fail(f"error: {exc}", exc.exit_code, exc, debug)
    except KeyboardInterrupt:
        click.echo("interrupted: rerun the same command to resume", err=True)
        sys.exit(INTERRUPTED)
    except OSError as exc:
        _fail(*_environment_error(exc), exc, debug)
    except Exception as exc:
        hint = "" if debug else " (rerun with --debug)"
        _fail(f"internal error: {type(exc).__name__}: {exc}{hint}", 3, exc, debug)


@click.group()
@click.version_option(package_name="tracebridge")
def main() -> None:
    """Move LLM-observability data between LangWatch and Opik, both ways."""


def _options(*options: Callable[[Any], Any]) -> Callable[[Callable[..., Any]], Any]:
    """Several click options as one decorator, in the order given."""

    def apply(command: Callable[..., Any]) -> Any:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


#: Where to read and write: what `migrate` and `sync` share.
_endpoint_options = _options(
    click.option(
        "--from",
        "from_",
        required=True,
        metavar="SRC",
        help="langwatch-file:PATH, opik-dir:PATH, langwatch or opik.",
    ),
    click.option(
        "--to",
        "to",
        required=True,
        metavar="DST",
        help="langwatch-file:PATH, opik-dir:PATH, langwatch or opik.",
    ),
    click.option(
        "--source-project",
        help="Project to read (Opik project name; LangWatch project id for files).",
    ),
    click.option(
        "--target-project",
        help="Project to write [default: OPIK_PROJECT_NAME or 'Default Project']; for LangWatch, "
        "the API key's project id (used only when the API cannot tell).",
    ),
)
#: The config file, as every command takes it.
_config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML config file (see config.example.toml).",
)
#: Tracebacks, as every command that runs takes them.
_debug_option = click.option(
    "--debug",
    is_flag=True,
    help="Add the traceback to runtime and internal errors (same exit code).",
)
#: How to run: state, config, mapping, ids, old timestamps, safety checks, tracebacks.
_run_options = _options(
    click.option(
        "--state-dir",
        type=click.Path(path_type=Path),
        help="Checkpoints and dead letters [default: .tracebridge].",
    ),
    _config_option,
    click.option(
        "--mapping",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Your mapping file for this direction (see mappings/).",
    ),
    click.option(
        "--opik-ids",
        type=click.Choice(["source-time", "write-time"]),
        help="Opik ids from the source start time, or minted at write time for servers that refuse "
        "old ids (400 too_old); the id map is kept in the state directory. Default: write-time on "
        "Opik Cloud or where an id map exists, else source-time, switching at the first too_old.",
    ),
    click.option(
        "--shift-old-timestamps",
        is_flag=True,
        default=None,
        help="Move traces older than LangWatch's 31-day cutoff into its window (originals kept).",
    ),
    click.option(
        "--force",
        is_flag=True,
        default=None,
        help="Go on where a safety check would stop the run (a new write-time id map while the "
        "Opik project already holds copies from this source: they get written again).",
    ),
    click.option(
        "--max-events-per-minute",
        type=click.IntRange(min=1),
        help="Send Opik at most this many events (batch items) in any minute, e.g. to leave "
        "room for other clients of the workspace. Opik Cloud's own budget (5,000 per workspace, "
        "10,000 per user) is read from its answers and paced by in any case.",
    ),
    _debug_option,
)

#: Steps run on every unit before it is written (`run(steps=)`), in the order given.
_step_option = click.option(
    "--step",
    "step_specs",
    multiple=True,
    metavar="MODULE:FUNCTION",
    help="Run this step on every trace or thread before it is written: a callable (unit) -> "
    "unit or None (None leaves it out), imported with the current directory on the path. "
    "Repeatable; steps run in the order given.",
)


#: What `migrate` and `sync` print: JSON or text, and how much on stderr.
_output_options = _options(
    click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print the summary as one JSON object on stdout, nothing else there (schema in "
        "README, 'JSON summary'); messages stay on stderr.",
    ),
    click.option(
        "-v",
        "--verbose",
        is_flag=True,
        help="Also log info messages to stderr (warnings such as retries are always shown).",
    ),
    click.option(
        "-q",
        "--quiet",
        is_flag=True,
        help="Show only errors and the verdict line (no summary table, progress or warnings).",
    ),
)


def _log_level(verbose: bool, quiet: bool, debug: bool) -> int:
    """ERROR with --quiet, DEBUG with --debug, INFO with -v, else WARNING."""
    if quiet:
        return logging.ERROR
    if debug:
        return logging.DEBUG
    return logging.INFO if verbose else logging.WARNING


def _progress(quiet: bool) -> ProgressDisplay | None:
    """Progress on stderr: a live display on a terminal, else a line every PROGRESS_EVERY
    seconds (`_console`); none with --quiet."""
    if quiet:
        return None

    def write(line: str) -> None:
        click.echo(line, err=True)

    console = Console(stderr=True)
    return progress_for(console, write=write, every=PROGRESS_EVERY, clock=_progress_clock)


@main.command("migrate")
@_endpoint_options
@click.option("--since", help="Only traces that started at or after this ISO date/datetime (UTC).")
@click.option(
    "--until",
    help="Only traces that started at or before this ISO date/datetime (a date: the whole day).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Read and map everything, write nothing, print what would be written.",
)
@click.option(
    "--rewrite",
    is_flag=True,
    help="Write every record again, even those an earlier run wrote unchanged (by default a "
    "rerun skips them and counts them as unchanged): for a destination someone else may have "
    "changed or emptied since.",
)
@_step_option
@_output_options
@_run_options
def migrate_command(
    from_: str,
    to: str,
    source_project: str | None,
    target_project: str | None,
    since: str | None,
    until: str | None,
    dry_run: bool,
    rewrite: bool,
    step_specs: tuple[str, ...],
    as_json: bool,
    verbose: bool,
    quiet: bool,
    state_dir: Path | None,
    config_file: Path | None,
    mapping: Path | None,
    opik_ids: str | None,
    shift_old_timestamps: bool | None,
    force: bool | None,
    max_events_per_minute: int | None,
    debug: bool,
) -> None:
    """Copy one project from SRC to DST, then print what was read, written, skipped and lost.

    Reruns are idempotent and write only what changed: what an earlier run wrote unchanged is
    counted as unchanged (--rewrite sends it again). An interrupted run resumes from its
    checkpoint (Ctrl-C exits 130: rerun the same command) and its summary adds what the whole
    job did. A non-dry run writes its report to STATE_DIR/runs/.
    Exit codes: 0 all copied, 1 finished but lossy, 2 usage error, 3 fatal error, 130
    interrupted.
    """
    options = {k: v for k, v in locals().items() if k not in ("as_json", "verbose", "quiet")}
    start, end = _moment(since, end_of_day=False), _moment(until, end_of_day=True)
    configure_logging(_log_level(verbose, quiet, debug))
    progress = _progress(quiet)
    used: list[Settings] = []
    started_at = _now()

    async def work() -> Any:
        settings = load_settings(
            config_file,
            {
                "state_dir": state_dir,
                "opik_ids": opik_ids,
                "shift_old_timestamps": shift_old_timestamps,
                "force": force,
                "max_events_per_minute": max_events_per_minute,
            },
        )
        used.append(settings)
        steps = import_steps(step_specs)
        if progress is not None:
            progress.start()
        try:
            return await migrate(
                from_,
                to,
                source_project=source_project,
                target_project=target_project,
                since=start,
                until=end,
                dry_run=dry_run,
                settings=settings,
                mapping=mapping,
                steps=steps,
                rewrite=rewrite,
                on_page=progress,
            )
        finally:
            if progress is not None:
                progress.finish()  # before any error message: the display is off the screen

    try:
        report = _run(debug, work)
    finally:
        if progress is not None:
            progress.finish()
    if not dry_run:
        write_run_report(
            used[0].state_dir,
            report,
            command="migrate",
            kind="run",
            options=options,
            started_at=started_at,
            ended_at=_now(),
        )
    _print_report(report, as_json, quiet)
    sys.exit(report.exit_code)


def _print_report(report: Report, as_json: bool, quiet: bool) -> None:
    """A run's summary: JSON on stdout, or the text; the verdict of a lossy run on stderr
    (with --quiet, the verdict line alone, on stdout)."""
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False))
        if report.lossy and not quiet:
            click.echo(verdict_line(report), err=True)
    elif quiet:
        click.echo(verdict_line(report))
    else:
        click.echo(format_summary(report))
        if report.lossy:
            click.echo(verdict_line(report), err=True)


def _duration(value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None


def _iso(moment: datetime | None) -> str | None:
    return _at(moment) if moment else None


def _at(moment: datetime | None) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else "-"


def _show(result: PassResult, every: str | None) -> None:
    """What a retry or a pass did, as it ends (stdout); the verdict of a lossy one on stderr."""
    report = result.report
    if result.kind == "retry":
        click.echo(f"retry of the dead letters in {report.dead_letter_path}:")
    else:
        window = result.window
        since = _at(window.since) if window and window.since else "the beginning (first pass)"
        until = _at(window.until) if window else "-"
        resumed = " (resuming an interrupted pass)" if result.resumed else ""
        mode = "dry run: " if report.dry_run else ""
        click.echo(f"{mode}pass over the changes from {since} through {until}{resumed}:")
    click.echo(format_summary(report))
    for why, n in sorted(result.kept.items()):
        click.echo(f"kept {n} dead letters that cannot be sent again: {why}")
    if report.lossy:
        click.echo(verdict_line(report), err=True)
    if report.stopped:
        click.echo(
            "stopped: the checkpoint is after the last acknowledged page; rerun the same "
            "command to resume",
        )
    elif result.kind == "pass" and not report.dry_run:
        click.echo(f"high-water mark: {_at(result.high_water)}")
        if every is not None:
            click.echo(f"next pass {every} after this one started (Ctrl-C or SIGTERM stops)")


async def _stop_on_signals(stop: anyio.Event, work: anyio.CancelScope, got: list[int]) -> None:
    """The first SIGINT or SIGTERM sets `stop` (the page in flight finishes, its checkpoint is
    saved); a second one cancels `work` at once (the checkpoint is the last saved one). Where
    signals cannot be received (not the main thread, Windows' SIGTERM), does nothing."""
    try:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                got.append(signum)
                name = signal.Signals(signum).name
                if stop.is_set():
                    click.echo(f"{name} again: stopping at once", err=True)
                    work.cancel()
                    return
                click.echo(
                    f"{name}: finishing the page in flight, then saving the checkpoint "
                    f"(send {name} again to stop at once)",
                    err=True,
                )
                stop.set()
    except (ValueError, RuntimeError, NotImplementedError):
        return


@main.command("sync")
@_endpoint_options
@click.option(
    "--lookback",
    default="10m",
    show_default=True,
    metavar="DURATION",
    help="Re-read changes this far before the high-water mark (late writers, clock skew): "
    "30s, 10m, 1h30m, 2d.",
)
@click.option(
    "--every",
    metavar="DURATION",
    help="Keep running: one pass per interval (a longer pass starts the next at once) until "
    "SIGINT or SIGTERM.",
)
@click.option(
    "--reset",
    is_flag=True,
    help="Start the job over: remove its checkpoint (its dead letters stay).",
)
@click.option(
    "--retry-dead-letters",
    is_flag=True,
    help="First send the job's dead letters again; those that land leave the file.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Read the next pass's changes, write nothing (checkpoint included), say what would be "
    "written.",
)
@_step_option
@_output_options
@_run_options
def sync_command(
    from_: str,
    to: str,
    source_project: str | None,
    target_project: str | None,
    lookback: str,
    every: str | None,
    reset: bool,
    retry_dead_letters: bool,
    dry_run: bool,
    step_specs: tuple[str, ...],
    as_json: bool,
    verbose: bool,
    quiet: bool,
    state_dir: Path | None,
    config_file: Path | None,
    mapping: Path | None,
    opik_ids: str | None,
    shift_old_timestamps: bool | None,
    force: bool | None,
    max_events_per_minute: int | None,
    debug: bool,
) -> None:
    """Copy what changed at SRC since the last pass to DST, then print what each pass did.

    A job is SRC and DST with their projects and the mapping in force; its checkpoint holds a
    high-water mark on the source's update time. A pass reads the changes from the mark minus
    --lookback up to the moment it started; the mark moves only when a pass completes. An
    interrupted pass resumes where it stopped. With --every, SIGINT or SIGTERM lets the page in
    flight finish and saves the checkpoint, then exits (0 or 1 by the passes' verdict); a second
    signal stops at once. Each non-dry pass writes its report to STATE_DIR/runs/.

    Exit codes: 0 all copied, 1 a pass was lossy, 2 usage error (a bad checkpoint: see --reset;
    the job already running), 3 fatal error.
    """
    options = {k: v for k, v in locals().items() if k not in ("as_json", "verbose", "quiet")}
    look, interval = _duration(lookback), _duration(every)
    assert look is not None
    results: list[PassResult] = []
    got: list[int] = []
    configure_logging(_log_level(verbose, quiet, debug))
    progress = _progress(quiet)

    async def work() -> Report | None:
        settings = load_settings(
            config_file,
            {
                "state_dir": state_dir,
                "opik_ids": opik_ids,
                "shift_old_timestamps": shift_old_timestamps,
                "force": force,
                "max_events_per_minute": max_events_per_minute,
            },
        )
        steps = import_steps(step_specs)
        stop = anyio.Event()

        def on_pass(result: PassResult) -> None:
            if progress is not None:
                progress.finish()
            results.append(result)
            if not result.report.dry_run:
                write_run_report(
                    settings.state_dir,
                    result.report,
                    command="sync",
                    kind=result.kind,
                    options=options,
                    started_at=result.started_at,
                    ended_at=result.ended_at or _now(),
                    marks=(result.high_water_before, result.high_water)
                    if result.kind == "pass"
                    else None,
                )
            if as_json:
                if result.report.lossy and not quiet:
                    click.echo(verdict_line(result.report), err=True)
            elif quiet:
                click.echo(verdict_line(result.report))
            else:
                _show(result, every)

        report: Report | None = None
        if progress is not None:
            progress.start()
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(_stop_on_signals, stop, group.cancel_scope, got)
                report = await sync(
                    from_,
                    to,
                    source_project=source_project,
                    target_project=target_project,
                    lookback=look,
                    every=interval,
                    reset=reset,
                    retry_dead_letters=retry_dead_letters,
                    dry_run=dry_run,
                    settings=settings,
                    mapping=mapping,
                    steps=steps,
                    stop=stop,
                    on_pass=on_pass,
                    on_page=progress,
                )
                group.cancel_scope.cancel()
        except BaseExceptionGroup as errors:
            raise first_cause(errors) from None
        finally:
            if progress is not None:
                progress.finish()  # before any error message: the display is off the screen
        return report

    try:
        report = _run(debug, work)
    finally:
        if progress is not None:
            progress.finish()
    code = 1 if any(r.lossy for r in results) else 0
    if report is None:  # a second signal cancelled the pass
        code = 128 + (got[-1] if got else signal.SIGTERM)
    if as_json:
        click.echo(json.dumps(_sync_document(results, code), ensure_ascii=False))
    if report is None:
        click.echo("stopped at once: rerun the same command to resume", err=True)
    sys.exit(code)


def _sync_document(results: list[PassResult], code: int) -> dict[str, Any]:
    """`sync --json`: `{"schema": 1, "passes": [...], "lossy", "exit_code"}`, a pass being
    `{"kind": "retry" | "pass", "window": {"since", "until"} | null, "high_water_before",
    "high_water": str | null, "resumed": bool, "kept": {why: n}, "report": Report.to_dict()}`."""
    passes = []
    for result in results:
        window = result.window
        passes.append(
            {
                "kind": result.kind,
                "window": {"since": _iso(window.since), "until": _iso(window.until)}
                if window
                else None,
                "high_water_before": _iso(result.high_water_before),
                "high_water": _iso(result.high_water),
                "resumed": result.resumed,
                "kept": dict(result.kept),
                "report": result.report.to_dict(),
            }
        )
    return {
        "schema": 1,
        "passes": passes,
        "lossy": any(r.lossy for r in results),
        "exit_code": code,
    }


@main.command("status")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    help="The state directory to describe [default: .tracebridge].",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML config file (its run.state_dir).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document (a stable schema).")
def status_command(state_dir: Path | None, config_file: Path | None, as_json: bool) -> None:
    """Describe every job in the state directory: endpoints and projects, kind, checkpoint
    (high-water mark, complete or in a pass), last pass and its counts, dead letters.

    Exit codes: 0 described (an unreadable checkpoint is described as such), 2 usage error.
    """

    async def work() -> dict[str, Any]:
        settings = load_settings(config_file, {"state_dir": state_dir})
        return job_statuses(settings.state_dir)

    document = _run(False, work)
    click.echo(json.dumps(document, indent=2) if as_json else format_status(document))


@main.command("check")
@click.option("--project", help="Opik project to look up [default: OPIK_PROJECT_NAME].")
@_config_option
@_debug_option
def check_command(project: str | None, config_file: Path | None, debug: bool) -> None:
    """Check the connections and credentials of both platforms and print what they show.

    Both are checked even when the first fails; each failure is printed on stderr.
    Exit codes: 0 both reachable, 2 configuration error (a missing key), 3 refused or unreachable
    (the highest of the two).
    """

    async def work() -> tuple[list[str], list[TracebridgeError]]:
        settings = load_settings(config_file)
        lines: list[str] = []
        failures: list[TracebridgeError] = []
        checks = (partial(check_opik, settings, project), partial(check_langwatch, settings))
        for check in checks:
            try:
                lines += await check()
            except TracebridgeError as exc:
                failures.append(exc)
        return lines, failures

    lines, failures = _run(debug, work)
    for line in lines:
        click.echo(line)
    for failure in failures:
        click.echo(f"error: {failure}", err=True)
    if failures:
        sys.exit(max(failure.exit_code for failure in failures))


@main.command("verify")
@click.option(
    "--from",
    "from_",
    required=True,
    metavar="SRC",
    help="langwatch-file:PATH, opik-dir:PATH, langwatch or opik.",
)
@click.option(
    "--to",
    "to",
    required=True,
    metavar="DST",
    help="langwatch-file:PATH, opik-dir:PATH, langwatch or opik (read, never written).",
)
@click.option("--source-project", help="Project to read on the SRC side.")
@click.option(
    "--target-project",
    help="Project to read on the DST side [default for Opik: OPIK_PROJECT_NAME or "
    "'Default Project'].",
)
@click.option("--since", help="Only traces that started at or after this ISO date/datetime (UTC).")
@click.option(
    "--until",
    help="Only traces that started at or before this ISO date/datetime (a date: the whole day).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Records shown of each list (the counts are always exact).",
)
@_config_option
@click.option(
    "--mapping",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Your mapping file for reading the DST side (see mappings/).",
)
@_debug_option
def verify_command(
    from_: str,
    to: str,
    source_project: str | None,
    target_project: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
    limit: int,
    config_file: Path | None,
    mapping: Path | None,
    debug: bool,
) -> None:
    """Compare SRC and DST by each record's origin and content: what is missing in DST, extra
    in DST, or different. Reads both sides, writes nothing.

    Exit codes: 0 they match, 1 they differ (or a side could not be read whole), 2 usage
    error, 3 fatal error.
    """
    import json

    from ._verify import VerifyReport, format_verify, verify_endpoints

    start, end = _moment(since, end_of_day=False), _moment(until, end_of_day=True)

    async def work() -> VerifyReport:
        return await verify_endpoints(
            from_,
            to,
            source_project=source_project,
            target_project=target_project,
            since=start,
            until=end,
            settings=load_settings(config_file),
            mapping=mapping,
        )

    report = _run(debug, work)
    if as_json:
        click.echo(json.dumps(report.as_json(limit), ensure_ascii=False, indent=2))
    else:
        click.echo(format_verify(report, limit))
    sys.exit(report.exit_code)


if __name__ == "__main__":
    main()
