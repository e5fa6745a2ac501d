"""`_console`: the progress shown while a run goes (a line off a terminal, rich's live display
on one, an ETA where the source said how many traces to expect) and log lines beside it."""

from __future__ import annotations

import io
import itertools
import logging
import re
from pathlib import Path

import pytest
from rich.console import Console

import tracebridge.cli
from tests.test_cli import FROM_SAMPLE, invoke, sample_counts
from tracebridge._console import (
    KINDS,
    LineProgress,
    LiveProgress,
    configure_logging,
    eta_seconds,
    progress_for,
    progress_line,
    reset_logging,
)
from tracebridge._engine import Report
from tracebridge._interfaces import Counts
from tracebridge._state import JobCounts

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=120, color_system=None), out


# --- the line off a terminal ----------------------------------------------------------------------


def test_the_progress_line_says_counts_rate_and_time() -> None:
    report = Report(run_id="r", read=Counts(threads=2, traces=50, spans=200, scores=9))
    report.result.written.add(Counts(traces=40))
    assert progress_line(report, 10.0) == (
        "progress: read 2 threads, 50 traces, 200 spans, 9 scores; "
        "written 0 threads, 40 traces, 0 spans, 0 scores; 5.0 traces/s (10 s)"
    )
    report.dry_run = True
    assert "; would write 0 threads, 40 traces" in progress_line(report, 10.0)


def test_with_an_expected_total_the_line_says_how_far_and_the_eta() -> None:
    report = Report(run_id="r", read=Counts(traces=50), expected_traces=200)
    assert eta_seconds(report, 10.0) == pytest.approx(30.0)  # 150 left at 5 traces/s
    assert progress_line(report, 10.0).endswith("; 50 of 200 traces, ETA 30 s")
    assert eta_seconds(Report(run_id="r", expected_traces=200), 10.0) is None  # nothing read
    assert eta_seconds(Report(run_id="r", read=Counts(traces=5)), 10.0) is None  # no total


def test_a_resumed_run_counts_the_whole_job_against_the_total_and_its_own_rate() -> None:
    """100 traces read by the interrupted run, 50 by this one in 10 s: 50 of 200 left."""
    before = JobCounts(runs=1, read=Counts(traces=100))
    report = Report(run_id="r", read=Counts(traces=50), expected_traces=200, job_before=before)
    assert eta_seconds(report, 10.0) == pytest.approx(10.0)
    assert "150 of 200 traces, ETA 10 s" in progress_line(report, 10.0)


def test_line_progress_writes_a_line_once_per_interval() -> None:
    lines: list[str] = []
    ticks = iter([0.0, 1.0, 6.0, 7.0, 12.0])
    progress = LineProgress(lines.append, every=5.0, clock=lambda: next(ticks))
    report = Report(run_id="r", read=Counts(traces=60))
    for _ in range(4):
        progress(report)
    progress.finish()
    assert len(lines) == 2  # at 6 s and 12 s
    assert lines[0].endswith("10.0 traces/s (6 s)")
    assert lines[1].endswith("5.0 traces/s (12 s)")


# --- the live display on a terminal -----------------------------------------------------------


def test_progress_for_picks_the_live_display_on_a_terminal_only() -> None:
    terminal, _ = _terminal()
    assert isinstance(progress_for(terminal, write=print), LiveProgress)
    pipe = Console(file=io.StringIO(), force_terminal=False)
    assert isinstance(progress_for(pipe, write=print), LineProgress)


def test_the_live_display_shows_each_kind_with_counts_rate_and_an_eta() -> None:
    console, out = _terminal()
    now = [0.0]
    progress = LiveProgress(console, clock=lambda: now[0])
    progress.start()  # as the CLI does, before the source's first page
    report = Report(run_id="r", expected_traces=100)
    for n in (10, 20, 30, 40):
        now[0] += 2.0
        report.read = Counts(threads=n // 10, traces=n, spans=3 * n, scores=n // 2)
        report.result.written = Counts(traces=n - 5)
        progress(report)
    progress.finish()
    progress.finish()  # idempotent
    text = ANSI.sub("", out.getvalue())
    last = {
        kind: line for line in text.splitlines() for kind in KINDS if f" {kind} " in f" {line} "
    }
    assert set(last) == set(KINDS)
    assert "read 40  written 35" in last["traces"]
    assert "read 120  written 0" in last["spans"]
    assert "5.0/s" in last["traces"]  # 10 traces every 2 s
    assert "0:00:12 0:00:08" in last["traces"]  # ETA (60 left at 5/s), elapsed
    assert last["spans"].rstrip().endswith("15.0/s         0:00:08")  # no total: no ETA


def test_a_log_line_during_the_live_display_is_printed_above_it() -> None:
    console, out = _terminal()
    progress = LiveProgress(console)
    configure_logging(logging.WARNING)
    try:
        progress(Report(run_id="r", read=Counts(traces=1)))
        logging.getLogger("tracebridge.test").warning("Opik 503, retry 1 in 0.5 s")
        progress.finish()
    finally:
        reset_logging()
    assert "Opik 503, retry 1 in 0.5 s" in ANSI.sub("", out.getvalue())


def test_start_shows_the_display_before_the_first_page() -> None:
    """A file's index pass or a slow first request: the rows are on screen, at 0."""
    console, out = _terminal()
    progress = LiveProgress(console)
    progress.start()
    progress.finish()
    text = ANSI.sub("", out.getvalue())
    assert all(re.search(rf"{kind} .*read 0 ", text) is None for kind in KINDS)  # no counts yet
    assert all(kind in text for kind in KINDS)


def test_a_resumed_job_starts_from_what_the_earlier_runs_read() -> None:
    console, out = _terminal()
    progress = LiveProgress(console)
    progress.start()
    before = JobCounts(runs=1, read=Counts(traces=100))
    progress(Report(run_id="r", read=Counts(traces=5), expected_traces=200, job_before=before))
    progress.finish()
    assert "read 105  written 0" in ANSI.sub("", out.getvalue())


def test_a_sync_pass_after_finish_starts_a_display_of_its_own() -> None:
    console, out = _terminal()
    progress = LiveProgress(console)
    progress(Report(run_id="a", read=Counts(traces=3)))
    progress.finish()
    progress(Report(run_id="b", read=Counts(traces=7)))
    progress.finish()
    text = ANSI.sub("", out.getvalue())
    assert "read 3 " in text
    assert "read 7 " in text


def test_the_cli_draws_the_live_display_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """With stderr a terminal, `migrate` shows the live rows (not the off-terminal line);
    stdout keeps the summary only."""

    def terminal(**kwargs: object) -> Console:
        return Console(force_terminal=True, width=120, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tracebridge.cli, "Console", terminal)
    ticks = itertools.count(0, 10)
    monkeypatch.setattr(tracebridge.cli, "_progress_clock", lambda: float(next(ticks)))
    result = invoke(["migrate", "--from", FROM_SAMPLE, "--to", "opik-dir:OUT"])
    assert result.exit_code == 0, result.output
    stderr = ANSI.sub("", result.stderr)
    traces = sample_counts()["traces"]
    assert f"read {traces}  written {traces}" in stderr
    assert "progress:" not in stderr  # not the off-terminal line
    assert "━" not in result.stdout
    assert result.stdout.startswith("langwatch-file:")
