"""What the CLI tells a person while it runs, on stderr: log messages and progress.

Logging: `configure_logging(level)` sends the `tracebridge` logger's records at `level` and
above to stderr, one line each (with `logging.DEBUG`, with the time and the logger's name).
The CLI picks the level: ERROR with `--quiet`, WARNING by default (retries and rate-limit
waits are warnings, so they show as they happen), INFO with `-v/--verbose`, DEBUG with
`--debug`. Calling it again replaces the handler it installed before, so a process (a test
session) never stacks handlers; `reset_logging()` takes it away.

Progress is an engine `on_page` callback with a `finish()`; `progress_for(console)` picks one:

- **on a terminal**, `LiveProgress`: a live display drawn by `rich` (a well-kept library, so
  no hand-drawn escape codes): one row per kind (threads, traces, spans, scores) with the
  counts read and written, the rate, and for traces a bar and an ETA when the source said how
  many it expects (`Page.expected_traces`: a file's index pass, LangWatch's `totalHits`; the
  Opik API source's keyset stream has no total). Log lines printed meanwhile (retries,
  waits) appear above the display: our handler prints them through the display's console.
  `finish()` leaves the last state on screen.
- **off a terminal** (a log file, CI, a pipe), `LineProgress`: one `progress_line` every
  `every` seconds of its clock, as a new line.

The ETA counts what the whole job read (a resumed run starts from what the interrupted runs
read, `Report.job_before`) against the expected total; the rate is this run's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

from ._engine import Report
from ._interfaces import Counts

__all__ = [
    "KINDS",
    "LineProgress",
    "LiveProgress",
    "ProgressDisplay",
    "configure_logging",
    "eta_seconds",
    "progress_for",
    "progress_line",
    "reset_logging",
]

LOGGER = "tracebridge"
KINDS = ("threads", "traces", "spans", "scores")


#: The console of the live display on screen, if any: log lines go above it.
_live: list[Console] = []


class _StderrHandler(logging.Handler):
    """Each record as a line on the stderr click knows at the time (CliRunner swaps it), or,
    while a live display is on screen, printed by its console above it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if _live:
                _live[-1].print(text, markup=False, highlight=False, emoji=False)
            else:
                click.echo(text, err=True)
        except Exception:
            self.handleError(record)


_installed: list[logging.Handler] = []


def reset_logging() -> None:
    """Undo `configure_logging`: no handler of ours, the `tracebridge` logger's level unset."""
    logger = logging.getLogger(LOGGER)
    for handler in _installed:
        logger.removeHandler(handler)
    _installed.clear()
    logger.setLevel(logging.NOTSET)


def configure_logging(level: int) -> None:
    """Send `tracebridge` log records at `level` and above to stderr (module docstring)."""
    reset_logging()
    logger = logging.getLogger(LOGGER)
    handler = _StderrHandler(level)
    detail = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(detail if level <= logging.DEBUG else "%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    _installed.append(handler)


def _counts(counts: Counts) -> str:
    return (
        f"{counts.threads} threads, {counts.traces} traces, {counts.spans} spans, "
        f"{counts.scores} scores"
    )


def _job_read(report: Report) -> Counts:
    """What the whole job read: earlier runs of a resumed job, and this one."""
    total = Counts()
    if report.job_before is not None:
        total.add(report.job_before.read)
    total.add(report.read)
    return total


def eta_seconds(report: Report, seconds: float) -> float | None:
    """Seconds left at this run's trace rate, when the source said how many traces it expects
    (None when it did not, or nothing was read yet)."""
    expected = report.expected_traces
    if expected is None or seconds <= 0 or report.read.traces <= 0:
        return None
    left = max(expected - _job_read(report).traces, 0)
    return left / (report.read.traces / seconds)


def progress_line(report: Report, seconds: float) -> str:
    """`progress: read ...; written ...; N traces/s (T s)`, then `; T of N traces, ETA S s` when
    the total is known: what a run did in `seconds`."""
    rate = report.read.traces / seconds if seconds > 0 else 0.0
    verb = "would write" if report.dry_run else "written"
    line = (
        f"progress: read {_counts(report.read)}; {verb} {_counts(report.written)}; "
        f"{rate:.1f} traces/s ({seconds:.0f} s)"
    )
    eta = eta_seconds(report, seconds)
    if report.expected_traces is not None:
        line += f"; {_job_read(report).traces} of {report.expected_traces} traces"
        if eta is not None:
            line += f", ETA {eta:.0f} s"
    return line


class ProgressDisplay(Protocol):
    """An engine `on_page` callback that shows progress, and ends its display."""

    def start(self) -> None:
        """The run begins: show that it does, if the display can (before any page)."""
        ...

    def __call__(self, report: Report) -> None: ...

    def finish(self) -> None: ...


class LineProgress:
    """Off a terminal: a `progress_line` at most every `every` seconds, each a new line."""

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`write(line)` puts a line on stderr; `clock` gives seconds (tests fake it)."""
        self._write, self._every, self._clock = write, every, clock
        self._start = self._last = clock()

    def start(self) -> None:
        """Nothing to show before the first page (the first line comes `every` seconds in)."""

    def __call__(self, report: Report) -> None:
        now = self._clock()
        if now - self._last < self._every:
            return
        self._last = now
        self._write(progress_line(report, now - self._start))

    def finish(self) -> None:
        """Nothing to end: every line is complete."""


class _RateColumn(ProgressColumn):
    """This run's rate of the row's kind, from rich's own speed estimate."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f}/s" if speed else "", style="progress.data.speed")


class LiveProgress:
    """On a terminal: a live display of the counts per kind, drawn by rich (module docstring).

    `start()` shows it before the first page (a file's index pass, a slow first request: the
    spinner and the clock show the run is alive); otherwise the first page starts it. The first
    page also sets where a resumed job's counts begin, so the rate is this run's.
    """

    def __init__(self, console: Console, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._console, self._clock = console, clock
        self._progress: RichProgress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._based = False

    def start(self) -> None:
        """Show the display now, every count at 0 (idempotent)."""
        if self._progress is not None:
            return
        progress = RichProgress(
            SpinnerColumn(finished_text=" "),
            TextColumn("{task.description:>7}"),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[counts]}"),
            _RateColumn(),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            console=self._console,
            get_time=self._clock,
            refresh_per_second=4,
            redirect_stdout=False,  # stdout is for the summary alone
        )
        for kind in KINDS:
            self._tasks[kind] = progress.add_task(kind, total=None, counts="")
        progress.start()
        self._progress, self._based = progress, False
        _live.append(self._console)

    def __call__(self, report: Report) -> None:
        self.start()
        progress = self._progress
        assert progress is not None
        if not self._based and report.job_before is not None:
            # What the job's earlier runs read is where the rows start, no part of the rate.
            for kind, task in self._tasks.items():
                base = getattr(report.job_before.read, kind)
                progress.reset(task, completed=base, total=None, counts="")
        self._based = True
        verb = "would write" if report.dry_run else "written"
        read = _job_read(report)
        for kind, task in self._tasks.items():
            n, written = getattr(read, kind), getattr(report.written, kind)
            total = report.expected_traces if kind == "traces" else None
            progress.update(
                task, completed=n, total=total, counts=f"read {n:,}  {verb} {written:,}"
            )

    def finish(self) -> None:
        """Stop the live display, leaving its last frame; the next page (a sync's next pass)
        starts a new one. Idempotent."""
        if self._progress is not None:
            self._progress.refresh()
            self._progress.stop()
            self._progress, self._tasks = None, {}
            if self._console in _live:
                _live.remove(self._console)


def progress_for(
    console: Console,
    *,
    write: Callable[[str], None],
    every: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
) -> ProgressDisplay:
    """`LiveProgress` when `console` is a terminal, else `LineProgress` writing with `write`."""
    if console.is_terminal:
        return LiveProgress(console, clock=clock)
    return LineProgress(write, every=every, clock=clock)
