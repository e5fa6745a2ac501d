"""What `migrate` and `sync` print and leave behind: the `--json` summary's schema, the wording
of summaries, log messages and progress on stderr, `--quiet`, run reports and Ctrl-C."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import pytest

import tracebridge.cli
from tests.fakes.opik import OpikFake
from tests.test_cli import (
    FROM_SAMPLE,
    RECORDS,
    api_env,
    invoke,
    sample_counts,
    seeded_langwatch,
    to_opik_dir,
    write_lossy_jsonl,
)
from tracebridge._console import configure_logging
from tracebridge._engine import Report
from tracebridge._interfaces import Counts
from tracebridge._summary import verdict_line

KINDS = ("threads", "traces", "spans", "scores")
#: `Report.to_dict()`: every key and the type(s) of its value.
REPORT_SCHEMA: dict[str, tuple[type, ...]] = {
    "schema": (int,),
    "run_id": (str,),
    "source": (str,),
    "sink": (str,),
    "dry_run": (bool,),
    "stopped": (bool,),
    "resumed_after_pages": (int,),
    "read": (dict,),
    "written": (dict,),
    "skipped": (dict,),
    "dead_lettered": (dict,),
    "skip_reasons": (dict,),
    "warnings": (list,),
    "lost": (int,),
    "dead_letter_entries": (int,),
    "dead_letter_path": (str, type(None)),
    "window": (dict, type(None)),
    "lossy": (bool,),
    "exit_code": (int,),
    "unchanged": (dict,),
    "job": (dict, type(None)),
}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def assert_report_schema(report: dict[str, Any]) -> None:
    """`report` has exactly the documented keys, each of its documented type."""
    assert set(report) == set(REPORT_SCHEMA)
    for key, types in REPORT_SCHEMA.items():
        assert isinstance(report[key], types), key
    for key in ("read", "written", "skipped", "dead_lettered", "unchanged"):
        assert set(report[key]) == set(KINDS), key
        assert all(type(n) is int for n in report[key].values()), key
    assert all(isinstance(k, str) and type(n) is int for k, n in report["skip_reasons"].items())
    assert all(isinstance(w, str) for w in report["warnings"])
    if report["window"] is not None:
        assert set(report["window"]) == {"since", "until", "axis"}
    if report["job"] is not None:
        counts = {"read", "written", "skipped", "unchanged", "dead_lettered"}
        assert set(report["job"]) == {"runs", "started_at", "dead_letter_entries", "lost", *counts}
        assert all(set(report["job"][key]) == set(KINDS) for key in counts)


# --- --json -------------------------------------------------------------------------------------


def test_migrate_json_is_one_object_on_stdout_with_the_documented_schema() -> None:
    result = to_opik_dir("OUT", "--json", "--target-project", "demo")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # the whole of stdout: one JSON document
    assert_report_schema(report)
    assert report["schema"] == 1
    assert report["dry_run"] is False
    assert report["lossy"] is False
    assert report["exit_code"] == 0
    assert report["read"] == sample_counts()
    assert report["written"]["traces"] == len(RECORDS)
    assert report["source"]
    assert report["sink"]
    assert "read" not in result.stderr  # no summary table anywhere


def test_migrate_json_of_a_lossy_run_counts_the_dead_letters(tmp_path: Path) -> None:
    write_lossy_jsonl(tmp_path / "bad.jsonl")
    result = invoke(
        ["migrate", "--from", "langwatch-file:bad.jsonl", "--to", "opik-dir:OUT", "--json"]
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert_report_schema(report)
    assert report["lossy"] is True
    assert report["exit_code"] == 1
    assert report["dead_letter_entries"] == 3
    assert report["dead_letter_path"].endswith("dead-letters.jsonl")
    assert result.stderr.startswith("LOSSY: 3 records dead-lettered")


def test_migrate_json_dry_run() -> None:
    result = to_opik_dir("OUT", "--json", "--dry-run")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert_report_schema(report)
    assert report["dry_run"] is True
    assert report["dead_letter_path"] is None


def test_sync_json_is_one_object_with_each_pass_window_and_mark(tmp_path: Path) -> None:
    args = ["sync", "--from", FROM_SAMPLE, "--to", "opik-dir:OUT", "--json"]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document) == {"schema", "passes", "lossy", "exit_code"}
    assert document["exit_code"] == 0
    assert document["lossy"] is False
    (first,) = document["passes"]
    assert set(first) == {
        "kind",
        "window",
        "high_water_before",
        "high_water",
        "resumed",
        "kept",
        "report",
    }
    assert first["kind"] == "pass"
    assert set(first["window"]) == {"since", "until"}
    assert first["high_water_before"] is None  # the first pass
    assert isinstance(first["high_water"], str)
    assert_report_schema(first["report"])
    assert first["report"]["read"]["traces"] == len(RECORDS)

    again = json.loads(invoke(args).stdout)["passes"][0]
    assert again["high_water_before"] == first["high_water"]


# --- wording ------------------------------------------------------------------------------------


def test_the_verdict_says_one_record_and_one_span_and_would_in_a_dry_run() -> None:
    report = Report(run_id="r", dead_lettered=Counts(spans=1), dead_letter_entries=1)
    assert verdict_line(report).startswith("LOSSY: 1 record dead-lettered (1 span)")
    report.dry_run = True
    assert "1 record would be dead-lettered (1 span)" in verdict_line(report)
    report = Report(run_id="r", dead_lettered=Counts(spans=2, traces=1), dead_letter_entries=2)
    assert "2 records dead-lettered (1 trace, 2 spans)" in verdict_line(report)
    assert "would be copied" in verdict_line(Report(run_id="r", dry_run=True))


def test_a_dry_run_summary_says_written_is_what_would_be_written() -> None:
    result = to_opik_dir("OUT", "--dry-run")
    assert "'written' is what would be written" in result.stdout
    assert "would be copied" in result.stdout


# --- logging, progress, quiet ------------------------------------------------------------------


def test_off_a_terminal_a_progress_line_goes_to_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each page the fake clock moves 10 s, past the 5 s interval: a line per page."""
    ticks = itertools.count(0, 10)
    monkeypatch.setattr(tracebridge.cli, "_progress_clock", lambda: float(next(ticks)))
    result = to_opik_dir("OUT")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("progress: ")]
    assert lines, result.stderr
    assert "\r" not in result.stderr  # not a terminal: plain lines
    assert lines[-1].startswith(f"progress: read {sample_counts()['threads']} threads, ")
    assert "traces/s" in lines[-1]
    assert "progress" not in result.stdout


def test_no_progress_line_before_the_interval() -> None:
    """A run shorter than the interval (the real clock) prints no progress line."""
    result = to_opik_dir("OUT")
    assert result.stderr == ""


def test_a_retry_is_reported_on_stderr_by_default() -> None:
    lw, op = seeded_langwatch(), OpikFake()
    op.fail_next(503, times=1)
    with lw.router, op.router:
        result = invoke(["migrate", "--from", "langwatch", "--to", "opik"], api_env(lw, op))
    assert result.exit_code == 0, result.output
    assert "Opik 503, retry 1 in " in result.stderr
    assert "retry" not in result.stdout


def test_quiet_shows_only_the_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = itertools.count(0, 10)
    monkeypatch.setattr(tracebridge.cli, "_progress_clock", lambda: float(next(ticks)))
    lw, op = seeded_langwatch(), OpikFake()
    op.fail_next(503, times=1)
    with lw.router, op.router:
        result = invoke(["migrate", "--from", "langwatch", "--to", "opik", "-q"], api_env(lw, op))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.splitlines() == [result.stdout.strip()]
    assert result.stdout.startswith("OK: ")


def test_quiet_on_a_lossy_run_prints_the_lossy_verdict(tmp_path: Path) -> None:
    write_lossy_jsonl(tmp_path / "bad.jsonl")
    result = invoke(["migrate", "--from", "langwatch-file:bad.jsonl", "--to", "opik-dir:O", "-q"])
    assert result.exit_code == 1
    assert result.stdout.startswith("LOSSY: 3 records dead-lettered")
    assert len(result.stdout.splitlines()) == 1
    assert result.stderr == ""


# --- run reports --------------------------------------------------------------------------------

SECRETS = {"LANGWATCH_API_KEY": "sk-lw-SENTINEL-1", "OPIK_API_KEY": "sk-opik-SENTINEL-2"}


def test_a_migrate_run_writes_its_report_without_secrets_and_status_lists_it(
    tmp_path: Path,
) -> None:
    result = to_opik_dir("OUT", "--json", "--since", "2026-03-12", env=SECRETS)
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["run_id"]
    path = tmp_path / ".tracebridge" / "runs" / f"{run_id}.json"
    text = path.read_text(encoding="utf-8")
    assert "SENTINEL" not in text
    document = json.loads(text)
    assert document["schema"] == 1
    assert (document["command"], document["kind"], document["run_id"]) == ("migrate", "run", run_id)
    assert document["options"]["from_"] == FROM_SAMPLE
    assert document["options"]["since"] == "2026-03-12"
    assert document["seconds"] >= 0
    assert document["started_at"] <= document["ended_at"]
    assert document["marks"] is None
    assert_report_schema(document["report"])
    assert document["report"]["window"]["since"] == "2026-03-12T00:00:00.000Z"

    status = invoke(["status", "--json"], SECRETS)
    assert status.exit_code == 0
    assert "SENTINEL" not in status.output
    (run,) = json.loads(status.stdout)["runs"]
    assert run["run_id"] == run_id
    assert Path(run["file"]).name == path.name
    assert run["exit_code"] == 0
    text_status = invoke(["status"], SECRETS).stdout
    assert "last 1 run" in text_status
    assert run_id in text_status


def test_a_dry_run_writes_no_report(tmp_path: Path) -> None:
    assert to_opik_dir("OUT", "--dry-run").exit_code == 0
    assert not (tmp_path / ".tracebridge").exists()


def test_each_sync_pass_writes_a_report_with_its_marks(tmp_path: Path) -> None:
    args = ["sync", "--from", FROM_SAMPLE, "--to", "opik-dir:OUT"]
    assert invoke(args, SECRETS).exit_code == 0
    assert invoke(args, SECRETS).exit_code == 0
    runs = json.loads(invoke(["status", "--json"]).stdout)["runs"]
    assert [r["command"] for r in runs] == ["sync", "sync"]
    reports = [json.loads(Path(r["file"]).read_text()) for r in runs]
    newest, oldest = reports
    assert oldest["marks"]["before"] is None
    assert newest["marks"]["before"] == oldest["marks"]["after"]
    assert newest["options"]["lookback"] == "10m"
    for path in (tmp_path / ".tracebridge" / "runs").iterdir():
        assert "SENTINEL" not in path.read_text()


def test_status_lists_the_last_ten_runs_newest_first(tmp_path: Path) -> None:
    for _ in range(11):
        assert to_opik_dir("OUT").exit_code == 0
    assert len(list((tmp_path / ".tracebridge" / "runs").glob("*.json"))) == 11
    runs = json.loads(invoke(["status", "--json"]).stdout)["runs"]
    assert len(runs) == 10
    ends = [r["ended_at"] for r in runs]
    assert ends == sorted(ends, reverse=True)


# --- Ctrl-C -------------------------------------------------------------------------------------


async def _interrupted(*args: object, **kwargs: object) -> Any:
    raise KeyboardInterrupt


def test_ctrl_c_exits_130_and_says_to_rerun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracebridge.cli, "migrate", _interrupted)
    result = to_opik_dir("OUT")
    assert result.exit_code == 130
    assert result.stderr.strip() == "interrupted: rerun the same command to resume"
    assert result.stdout == ""


# --- the console pieces -------------------------------------------------------------------------


def test_verbose_shows_info_messages_and_the_default_does_not(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = logging.getLogger("tracebridge.test")
    configure_logging(logging.WARNING)
    log.info("an info message")
    log.warning("Opik 503, retry 1 in 0.5 s")
    configure_logging(logging.INFO)
    log.info("now shown")
    configure_logging(logging.ERROR)
    log.warning("hidden by --quiet")
    assert capsys.readouterr().err.splitlines() == ["Opik 503, retry 1 in 0.5 s", "now shown"]


def test_a_resumed_summary_shows_this_run_and_the_whole_job() -> None:
    from datetime import UTC, datetime

    from tests.test_cli import summary_table
    from tracebridge._state import JobCounts
    from tracebridge._summary import format_summary

    before = JobCounts(
        runs=1,
        started_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        read=Counts(traces=30, spans=90),
        written=Counts(traces=29, spans=88),
        dead_lettered=Counts(traces=1, spans=2),
        dead_letter_entries=1,
    )
    report = Report(
        run_id="r",
        read=Counts(traces=20, spans=60),
        resumed_after_pages=3,
        job_before=before,
        dead_letter_path="st/dead-letters.jsonl",
    )
    report.result.written.add(Counts(traces=20, spans=60))
    text = format_summary(report)
    lines = text.splitlines()
    assert lines[0] == "resumed an interrupted run after 3 pages; this run:"
    assert summary_table(text)["traces"] == {
        "read": 20,
        "written": 20,
        "skipped": 0,
        "dead-lettered": 0,
    }
    job_at = lines.index("the whole job since 2026-03-01T12:00:00.000Z (2 runs):")
    job = summary_table("\n".join(lines[job_at + 1 :]))
    assert job["traces"] == {"read": 50, "written": 49, "skipped": 0, "dead-lettered": 1}
    assert job["spans"]["read"] == 150
    assert "note: the job's earlier runs dead-lettered 1 record, see st/dead-letters.jsonl" in text
    assert lines[-1].startswith("OK: ")  # this run's own verdict


def test_status_shows_what_the_whole_migrate_job_did(tmp_path: Path) -> None:
    assert to_opik_dir("OUT").exit_code == 0
    (job,) = json.loads(invoke(["status", "--json"]).stdout)["jobs"]
    counts = job["job_counts"]
    assert counts["runs"] == 1
    assert counts["read"]["traces"] == len(RECORDS)
    assert counts["written"]["traces"] == len(RECORDS)
    assert counts["started_at"].endswith("Z")
    text = invoke(["status"]).stdout
    assert "  whole job       1 run since " in text
    assert f"read {sample_counts()['threads']} threads, {len(RECORDS)} traces" in text
