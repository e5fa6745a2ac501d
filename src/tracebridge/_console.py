"""What the CLI tells a person while it runs, on stderr: log messages and a progress line.

Logging: `configure_logging(level)` sends the `tracebridge` logger's records at `level` and
above to stderr, one line each (with `logging.DEBUG`, with the time and the logger's name).
The CLI picks the level: ERROR with `--quiet`, WARNING by default (retries are warnings, so
they show), INFO with `-v/--verbose`, DEBUG with `--debug`. Calling it again replaces the
handler it installed before, so a process (a test session) never stacks handlers;
`reset_logging()` takes it away.

Progress: a `Progress` is an engine `on_page` callback. It writes one line every `every`
seconds of its `clock`: the counts read and written per kind and the rate of traces read.
Off a terminal each line is a new line; on one (`redraw=True`) the line is redrawn in place
and `finish()` ends it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import click

from ._engine import Report
from ._interfaces import Counts

__all__ = ["Progress", "configure_logging", "progress_line", "reset_logging"]

LOGGER = "tracebridge"


class _StderrHandler(logging.Handler):
    """Each record as a line on the stderr click knows at the time (CliRunner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=True)
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


def progress_line(report: Report, seconds: float) -> str:
    """`progress: read ...; written ...; N traces/s (T s)`: what a run did in `seconds`."""
    rate = report.read.traces / seconds if seconds > 0 else 0.0
    verb = "would write" if report.dry_run else "written"
    return (
        f"progress: read {_counts(report.read)}; {verb} {_counts(report.written)}; "
        f"{rate:.1f} traces/s ({seconds:.0f} s)"
    )


class Progress:
    """An `on_page` callback writing a progress line at most every `every` seconds."""

    def __init__(
        self,
        write: Callable[[str, bool], None],
        *,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        redraw: bool = False,
    ) -> None:
        """`write(text, newline)` puts text on stderr; `clock` gives seconds (tests fake it)."""
        self._write, self._every, self._clock, self._redraw = write, every, clock, redraw
        self._start = self._last = clock()
        self._open = False  # a redrawn line is on screen, without its newline

    def __call__(self, report: Report) -> None:
        now = self._clock()
        if now - self._last < self._every:
            return
        self._last = now
        line = progress_line(report, now - self._start)
        if self._redraw:
            self._write(f"\r\x1b[2K{line}", False)
            self._open = True
        else:
            self._write(line, True)

    def finish(self) -> None:
        """End a redrawn line, so what follows starts on a line of its own."""
        if self._open:
            self._write("", True)
            self._open = False
