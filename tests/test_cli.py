"""The `tracebridge` command line, through click's CliRunner: every command and every option.

Exit codes (`_errors.py`): 0 all copied (skips and warnings are not losses), 1 finished but
lossy, 2 usage or configuration error, 3 fatal. Bad input never shows a traceback, secrets are
never printed or stored. API endpoints run against the respx fakes (`with fake.router:` patches
httpx globally, so the CLI's own clients reach them).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import tomllib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import tracebridge.cli
from tests.factories import opik_project, opik_trace, uuid7
from tests.fakes.langwatch import LangWatchFake
from tests.fakes.opik import OpikFake, parse_time
from tests.opik_spec import load_spec, validate_schema
from tracebridge._locks import PathLock
from tracebridge._opik.folder import LOCK_NAME
from tracebridge._opik.ids import uuid7_ms
from tracebridge.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "langwatch-sample.jsonl"
RECORDS: list[dict[str, Any]] = [
    json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()
]
FROM_SAMPLE = f"langwatch-file:{SAMPLE}"
COLUMNS = ("read", "written", "skipped", "dead-lettered")
#: The table of a run that found units the destination already held (a rerun).
RERUN_COLUMNS = ("read", "written", "unchanged", "skipped", "dead-lettered")
KINDS = ("threads", "traces", "spans", "scores")
#: Every variable tracebridge reads, unset so the outer environment cannot leak into a test.
CLEAN_ENV: dict[str, str | None] = dict.fromkeys(
    (
        "LANGWATCH_API_KEY",
        "LANGWATCH_ENDPOINT",
        "OPIK_URL_OVERRIDE",
        "OPIK_API_KEY",
        "OPIK_WORKSPACE",
        "OPIK_PROJECT_NAME",
    )
)
LW_KEY = "sk-lw-test"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own directory, so the default `.tracebridge` lands in tmp."""
    monkeypatch.chdir(tmp_path)


def invoke(args: list[str], env: Mapping[str, str | None] | None = None) -> Result:
    """Run `tracebridge ARGS` with a clean environment plus `env`."""
    return CliRunner().invoke(main, args, env={**CLEAN_ENV, **(env or {})})


def assert_no_traceback(result: Result) -> None:
    """The run ended through sys.exit (not an escaped exception) and printed no traceback."""
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info


def summary_table(stdout: str) -> dict[str, dict[str, int]]:
    """The read / written / [unchanged /] skipped / dead-lettered table of a summary (the
    first: this run's), by kind."""
    lines = stdout.splitlines()
    start = next(
        i for i, line in enumerate(lines) if tuple(line.split()) in (COLUMNS, RERUN_COLUMNS)
    )
    columns = tuple(lines[start].split())
    table: dict[str, dict[str, int]] = {}
    for line in lines[start + 1 : start + 1 + len(KINDS)]:
        kind, *numbers = line.split()
        table[kind] = dict(zip(columns, map(int, numbers), strict=True))
    assert tuple(table) == KINDS
    return table


def trace_files(out: Path) -> list[Path]:
    return sorted(out.glob("*/projects/*/trace_*.json"))


def snapshot(folder: Path) -> dict[str, Any]:
    """Every data file under `folder`, parsed, without the `downloaded_at` stamp (the opik-dir
    sink's lock file is not data)."""
    files: dict[str, Any] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.startswith(LOCK_NAME):
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data.pop("downloaded_at", None)
        files[str(path.relative_to(folder))] = data
    return files


def lines_by_trace_id(path: Path) -> dict[str, dict[str, Any]]:
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    by_id = {r["trace_id"]: r for r in records}
    assert len(by_id) == len(records), "a trace_id occurs twice"
    return by_id


def sample_counts() -> dict[str, int]:
    threads = {(r.get("metadata") or {}).get("thread_id") for r in RECORDS} - {None}
    return {
        "threads": len(threads),
        "traces": len(RECORDS),
        "spans": sum(len(r["spans"]) for r in RECORDS),
        "scores": sum(len(r.get("evaluations") or []) for r in RECORDS),
    }


def to_opik_dir(out: str = "OUT", *extra: str, env: Mapping[str, str] | None = None) -> Result:
    return invoke(["migrate", "--from", FROM_SAMPLE, "--to", f"opik-dir:{out}", *extra], env)


def write_lossy_jsonl(path: Path) -> None:
    """Two good records, then a malformed line (3), no started_at (4), started_at in seconds (5)."""
    no_start = json.loads(json.dumps(RECORDS[10]))
    del no_start["timestamps"]["started_at"]
    in_seconds = json.loads(json.dumps(RECORDS[11]))
    in_seconds["timestamps"]["started_at"] //= 1000
    lines = [RECORDS[0], RECORDS[9]]
    text = [json.dumps(r) for r in lines] + ["{not json", json.dumps(no_start)]
    text.append(json.dumps(in_seconds))
    path.write_text("\n".join(text) + "\n", encoding="utf-8")


def seeded_langwatch(api_key: str = LW_KEY) -> LangWatchFake:
    fake = LangWatchFake(api_key=api_key)
    for record in RECORDS:
        fake.add_trace(record)
    return fake


def api_env(lw: LangWatchFake, op: OpikFake, **extra: str) -> dict[str, str]:
    return {
        "LANGWATCH_API_KEY": lw.api_key,
        "LANGWATCH_ENDPOINT": lw.base_url,
        "OPIK_URL_OVERRIDE": op.base_url,
        **extra,
    }


@pytest.fixture
def fakes() -> Iterator[tuple[LangWatchFake, OpikFake]]:
    """A LangWatch fake holding the sample and an empty Opik fake, both patched into httpx."""
    lw, op = seeded_langwatch(), OpikFake()
    with lw.router, op.router:
        yield lw, op


# --- help and version -------------------------------------------------------------------------


def test_top_level_help_lists_both_commands() -> None:
    """`tracebridge --help` exits 0 and names migrate and check."""
    result = invoke(["--help"])
    assert result.exit_code == 0
    assert "migrate" in result.stdout
    assert "check" in result.stdout


def test_version_is_the_package_version() -> None:
    """`--version` prints the installed distribution's version."""
    result = invoke(["--version"])
    assert result.exit_code == 0
    assert version("tracebridge") in result.stdout


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (
            "migrate",
            [
                "--from",
                "--to",
                "--source-project",
                "--target-project",
                "--since",
                "--until",
                "--dry-run",
                "--json",
                "--verbose",
                "--quiet",
                "--state-dir",
                "--config",
                "--mapping",
                "--opik-ids",
                "--shift-old-timestamps",
                "--force",
                "--debug",
            ],
        ),
        ("status", ["--state-dir", "--config", "--json"]),
        ("check", ["--project", "--config", "--debug"]),
    ],
)
def test_command_help_documents_every_option(command: str, options: list[str]) -> None:
    """`COMMAND --help` exits 0 and documents every option and the exit codes."""
    result = invoke([command, "--help"])
    assert result.exit_code == 0
    for option in options:
        assert option in result.stdout
    assert "Exit codes" in result.stdout


# --- migrate between files --------------------------------------------------------------------


def test_sample_to_opik_dir_exits_0_with_summary_and_export_layout(tmp_path: Path) -> None:
    """The sample goes to an opik-dir: exit 0 (its skipped scores are not losses), a full
    summary table, project.json named after --target-project, one valid trace file per trace."""
    result = to_opik_dir("OUT", "--target-project", "demo")
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    table = summary_table(result.stdout)
    for kind, n in sample_counts().items():
        row = table[kind]
        assert row["read"] == n, kind
        assert row["written"] + row["skipped"] == n, kind
        assert row["dead-lettered"] == 0, kind
    assert table["traces"]["written"] == len(RECORDS)
    if table["scores"]["skipped"]:
        assert f"skipped {table['scores']['skipped']}: scores kept" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("OK:")

    (project_json,) = (tmp_path / "OUT").glob("*/projects/*/project.json")
    assert json.loads(project_json.read_text())["name"] == "demo"
    files = trace_files(tmp_path / "OUT")
    assert len(files) == len(RECORDS)
    spec = load_spec() is not None
    for path in files:
        body = json.loads(path.read_text(encoding="utf-8"))
        assert path.name == f"trace_{body['trace']['id']}.json"
        assert body["project_name"] == "demo"
        if spec:
            validate_schema("Trace_Public", body["trace"], strict=True)


def test_opik_dir_back_to_langwatch_file_gives_the_sample_back(tmp_path: Path) -> None:
    """opik-dir -> langwatch-file restores exactly the sample's records, by trace_id."""
    assert to_opik_dir("OUT", "--target-project", "demo").exit_code == 0
    result = invoke(
        [
            "migrate",
            *("--from", "opik-dir:OUT", "--source-project", "demo"),
            *("--to", "langwatch-file:back.jsonl"),
        ]
    )
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    back = lines_by_trace_id(tmp_path / "back.jsonl")
    original = {r["trace_id"]: r for r in RECORDS}
    assert back.keys() == original.keys()
    for trace_id, record in original.items():
        assert back[trace_id] == record, trace_id


def test_dry_run_writes_nothing_and_says_what_it_would_write(tmp_path: Path) -> None:
    """--dry-run: exit 0, no output folder, no state directory, one "would write" line a trace."""
    result = to_opik_dir("OUT", "--dry-run")
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert list(tmp_path.iterdir()) == []
    would = [line for line in result.stdout.splitlines() if line.startswith("would write ")]
    assert len(would) == len(RECORDS)
    assert "dry run" in result.stdout


def test_dry_run_with_an_explicit_state_dir_creates_nothing(tmp_path: Path) -> None:
    """--dry-run --state-dir DIR: the state directory is not even created."""
    result = to_opik_dir("OUT", "--dry-run", "--state-dir", "st")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "st").exists()
    assert not (tmp_path / "OUT").exists()


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (["--since", "2026-03-12"], 6),
        (["--until", "2026-03-10"], 3),
        (["--since", "2026-03-11", "--until", "2026-03-12"], 7),
        (["--since", "2026-03-12", "--until", "2026-03-12"], 4),
        (["--since", "2026-03-11T14:33:48.660Z", "--until", "2026-03-12T06:07:31.812"], 4),
        (["--since", "2026-03-13T11:20:00+01:00"], 2),
        (["--until", "2026-03-09T19:02:11.481Z"], 0),
    ],
)
def test_since_and_until_filter_traces_by_start(
    tmp_path: Path, window: list[str], expected: int
) -> None:
    """--since/--until take dates (a whole day) or datetimes (no zone = UTC), inclusive bounds."""
    result = to_opik_dir("OUT", *window)
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert summary_table(result.stdout)["traces"]["written"] == expected
    assert len(trace_files(tmp_path / "OUT")) == expected


@pytest.mark.parametrize(
    ("option", "value"),
    [("--since", "2026-02-30"), ("--until", "yesterday"), ("--since", "2026-03-12T25:00")],
)
def test_a_bad_date_is_a_usage_error_naming_the_value(option: str, value: str) -> None:
    """A value that is no ISO date or datetime: exit 2, the message quotes it."""
    result = to_opik_dir("OUT", option, value)
    assert_no_traceback(result)
    assert result.exit_code == 2
    assert value in result.stderr


def test_since_after_until_is_a_usage_error(tmp_path: Path) -> None:
    """--since later than --until: exit 2 saying so, nothing written."""
    result = to_opik_dir("OUT", "--since", "2026-03-12", "--until", "2026-03-10")
    assert_no_traceback(result)
    assert result.exit_code == 2
    assert "--since" in result.stderr
    assert "--until" in result.stderr
    assert not (tmp_path / "OUT").exists()


# --- what LangWatch's exporter writes (langwatch-file) -----------------------------------------


def test_a_json_array_export_migrates_like_the_jsonl_one(tmp_path: Path) -> None:
    """`langwatch trace export --format json` (one pretty-printed array, BOM and all) migrates to
    the same Opik files as the JSONL export."""
    (tmp_path / "traces.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(RECORDS, indent=2).encode())
    result = invoke(["migrate", "--from", "langwatch-file:traces.json", "--to", "opik-dir:ARR"])
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert (
        summary_table(result.stdout)["traces"]
        == summary_table(to_opik_dir("LINES").stdout)["traces"]
    )
    assert snapshot(tmp_path / "ARR") == snapshot(tmp_path / "LINES")


def test_repeated_traces_of_an_export_are_written_once_and_counted_as_skipped(
    tmp_path: Path,
) -> None:
    """An export that repeats traces (the exporter's --limit bug): exit 0, the summary reads
    every line, writes each trace once, and skips the repeats by the named rule."""
    lines = RECORDS + RECORDS[:5]
    path = tmp_path / "export.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    result = invoke(["migrate", "--from", "langwatch-file:export.jsonl", "--to", "opik-dir:OUT"])
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    traces = summary_table(result.stdout)["traces"]
    assert traces == {"read": len(lines), "written": len(RECORDS), "skipped": 5, "dead-lettered": 0}
    spans = summary_table(result.stdout)["spans"]
    assert spans["read"] == spans["written"] + spans["skipped"]
    assert "skipped 5: repeated trace_id lines: kept the most complete copy" in result.stdout
    assert "holds 5 traces more than once" in result.stdout
    assert len(trace_files(tmp_path / "OUT")) == len(RECORDS)


def test_an_export_without_spans_is_warned_about_in_the_summary(tmp_path: Path) -> None:
    """Exported without --include-spans: the run goes on, and the summary says so loudly."""
    spanless = [{**r, "spans": []} for r in RECORDS]
    (tmp_path / "export.jsonl").write_text("".join(json.dumps(r) + "\n" for r in spanless))
    result = invoke(["migrate", "--from", "langwatch-file:export.jsonl", "--to", "opik-dir:OUT"])
    assert_no_traceback(result)
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "holds no spans at all: was it exported without `--include-spans`?" in warnings[0]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("trace_id,input,output,started_at,error\ntr_1,hi,hello,2026-03-09T19:02:11Z,\n", "CSV"),
        (json.dumps({"trace_id": "tr_1", "timestamp": 1773082931000, "input": "hi"}), "web-UI"),
    ],
)
def test_other_export_shapes_stop_with_exit_2_and_the_export_to_use(
    tmp_path: Path, text: str, needle: str
) -> None:
    """CSV and the web UI's export stop before anything runs, with one clear message."""
    (tmp_path / "export.jsonl").write_text(text)
    result = invoke(["migrate", "--from", "langwatch-file:export.jsonl", "--to", "opik-dir:OUT"])
    assert_no_traceback(result)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr
    assert "langwatch trace export --format jsonl --include-spans" in result.stderr
    assert not (tmp_path / "OUT").exists()


def test_two_runs_writing_one_output_file_fail_with_exit_2(tmp_path: Path) -> None:
    """Another run (another state dir) holds the output file: exit 2, naming the holder, and
    not a line written."""
    assert to_opik_dir("OUT").exit_code == 0
    holder = PathLock(tmp_path / ".back.jsonl.tracebridge.lock", "langwatch-file:back.jsonl")
    holder.acquire()
    try:
        result = invoke(
            [
                *("migrate", "--from", "opik-dir:OUT", "--to", "langwatch-file:back.jsonl"),
                *("--state-dir", "other-state"),
            ]
        )
    finally:
        holder.release()
    assert_no_traceback(result)
    assert result.exit_code == 2, result.output
    assert "langwatch-file:back.jsonl is in use by another tracebridge run" in result.stderr
    assert f"pid {os.getpid()}" in result.stderr
    assert not (tmp_path / "back.jsonl").exists()


def test_an_output_file_that_is_a_directory_is_exit_2(tmp_path: Path) -> None:
    """The output path names a directory: exit 2 naming it, no traceback."""
    assert to_opik_dir("OUT").exit_code == 0
    (tmp_path / "back.jsonl").mkdir()
    result = invoke(["migrate", "--from", "opik-dir:OUT", "--to", "langwatch-file:back.jsonl"])
    assert_no_traceback(result)
    assert result.exit_code == 2, result.output
    assert "back.jsonl is a directory" in result.stderr


# --- state directory --------------------------------------------------------------------------


def test_state_dir_holds_checkpoint_and_dead_letters(tmp_path: Path) -> None:
    """--state-dir DIR: checkpoint-*.json and dead-letters.jsonl go there, not to .tracebridge."""
    write_lossy_jsonl(tmp_path / "bad.jsonl")
    result = invoke(
        [
            *("migrate", "--from", "langwatch-file:bad.jsonl"),
            *("--to", "opik-dir:OUT", "--state-dir", "st"),
        ]
    )
    assert result.exit_code == 1, result.output
    (checkpoint,) = (tmp_path / "st").glob("checkpoint-*.json")
    assert json.loads(checkpoint.read_text())["complete"] is True
    assert (tmp_path / "st" / "dead-letters.jsonl").is_file()
    assert not (tmp_path / ".tracebridge").exists()


def test_default_state_dir_is_dot_tracebridge(tmp_path: Path) -> None:
    """Without --state-dir, the checkpoint lands in ./.tracebridge."""
    assert to_opik_dir("OUT").exit_code == 0
    assert list((tmp_path / ".tracebridge").glob("checkpoint-*.json"))


def test_rerun_of_a_completed_job_is_idempotent(tmp_path: Path) -> None:
    """Running the same job again leaves the output folder as it was (same files, same data)."""
    first = to_opik_dir("OUT", "--state-dir", "st")
    assert first.exit_code == 0, first.output
    before = snapshot(tmp_path / "OUT")
    second = to_opik_dir("OUT", "--state-dir", "st")
    assert_no_traceback(second)
    assert second.exit_code == 0, second.output
    assert snapshot(tmp_path / "OUT") == before
    assert len(trace_files(tmp_path / "OUT")) == len(RECORDS)


def test_rerun_to_a_langwatch_file_adds_no_duplicate_lines(tmp_path: Path) -> None:
    """Rerunning opik-dir -> langwatch-file leaves one line per trace."""
    assert to_opik_dir("OUT").exit_code == 0
    back = ["migrate", "--from", "opik-dir:OUT", "--to", "langwatch-file:back.jsonl"]
    assert invoke(back).exit_code == 0
    first = (tmp_path / "back.jsonl").read_text(encoding="utf-8")
    result = invoke(back)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "back.jsonl").read_text(encoding="utf-8") == first
    assert len(lines_by_trace_id(tmp_path / "back.jsonl")) == len(RECORDS)


def test_a_rerun_that_changes_nothing_says_so_and_writes_nothing(tmp_path: Path) -> None:
    """The second run finds every unit in the destination's skip-unchanged index: it writes
    nothing, its table has an `unchanged` column holding everything read, and the verdict says
    nothing changed; the folder is as the first run left it."""
    assert to_opik_dir("OUT").exit_code == 0
    before = snapshot(tmp_path / "OUT")
    again = to_opik_dir("OUT")
    assert again.exit_code == 0, again.output
    table = summary_table(again.stdout)
    for kind, n in sample_counts().items():
        assert (table[kind]["written"], table[kind]["unchanged"]) == (0, n), kind
    assert table["traces"]["skipped"] == 0  # by other rules
    records = sum(sample_counts().values())
    assert f"skipped {records}: unchanged since an earlier run (--rewrite writes it again)" in (
        again.stdout.splitlines()
    )
    assert again.stdout.splitlines()[-1].startswith("OK: nothing changed: unchanged ")
    assert snapshot(tmp_path / "OUT") == before
    document = json.loads(to_opik_dir("OUT", "--json").stdout)
    assert document["unchanged"]["traces"] == len(RECORDS)
    assert document["written"]["traces"] == 0


def test_rewrite_sends_everything_again_and_a_rerun_after_it_is_unchanged(tmp_path: Path) -> None:
    assert to_opik_dir("OUT").exit_code == 0
    rewrite = to_opik_dir("OUT", "--rewrite")
    assert rewrite.exit_code == 0, rewrite.output
    table = summary_table(rewrite.stdout)
    assert table["traces"]["written"] == len(RECORDS)
    assert "unchanged" not in rewrite.stdout
    assert len(trace_files(tmp_path / "OUT")) == len(RECORDS)
    assert summary_table(to_opik_dir("OUT").stdout)["traces"]["unchanged"] == len(RECORDS)


def test_a_rerun_writes_what_changed_and_counts_the_rest_unchanged(tmp_path: Path) -> None:
    """One standalone trace edited in the input: that trace is written, nothing else."""
    source = tmp_path / "in.jsonl"
    source.write_text(Path(SAMPLE).read_text(encoding="utf-8"), encoding="utf-8")
    args = ["migrate", "--from", "langwatch-file:in.jsonl", "--to", "opik-dir:OUT"]
    assert invoke(args).exit_code == 0
    records = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
    alone = next(r for r in records if not (r.get("metadata") or {}).get("thread_id"))
    alone["metadata"] = {**(alone.get("metadata") or {}), "reviewed": "yes"}
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    again = invoke(args)
    assert again.exit_code == 0, again.output
    table = summary_table(again.stdout)
    assert table["traces"]["written"] == 1
    assert table["traces"]["unchanged"] == len(RECORDS) - 1
    assert again.stdout.splitlines()[-1].startswith("OK: everything read was copied")


def test_a_deleted_output_folder_is_written_again_without_asking(tmp_path: Path) -> None:
    assert to_opik_dir("OUT").exit_code == 0
    shutil.rmtree(tmp_path / "OUT")
    again = to_opik_dir("OUT")
    assert again.exit_code == 0, again.output
    assert summary_table(again.stdout)["traces"]["written"] == len(RECORDS)
    assert len(trace_files(tmp_path / "OUT")) == len(RECORDS)


def test_a_dry_run_after_a_run_says_nothing_would_be_written() -> None:
    assert to_opik_dir("OUT").exit_code == 0
    dry = to_opik_dir("OUT", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert summary_table(dry.stdout)["traces"]["unchanged"] == len(RECORDS)
    assert "nothing would be written" in dry.stdout.splitlines()[-1]


def test_a_rerun_over_the_api_makes_no_write_request(fakes: tuple[LangWatchFake, OpikFake]) -> None:
    lw, op = fakes
    args = ["migrate", "--from", "langwatch", "--to", "opik", "--target-project", "demo"]
    assert invoke(args, api_env(lw, op)).exit_code == 0
    writes = len([r for r in op.requests if r.method != "GET"])
    again = invoke(args, api_env(lw, op))
    assert again.exit_code == 0, again.output
    assert summary_table(again.stdout)["traces"]["unchanged"] == len(RECORDS)
    assert len([r for r in op.requests if r.method != "GET"]) == writes


# --- config file ------------------------------------------------------------------------------


def _config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_config_file_is_honoured(tmp_path: Path) -> None:
    """--config: [opik] workspace names the export's workspace folder; [run] state_dir (relative
    to the config file) holds the checkpoint."""
    config = _config(
        tmp_path / "conf" / "tb.toml",
        '[opik]\nworkspace = "ws1"\nproject = "cfgproj"\n[run]\nstate_dir = "cfgstate"\n',
    )
    result = to_opik_dir("OUT", "--config", str(config))
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    (project_json,) = (tmp_path / "OUT").glob("*/projects/*/project.json")
    assert project_json.relative_to(tmp_path / "OUT").parts[0] == "ws1"
    assert json.loads(project_json.read_text())["name"] == "cfgproj"
    assert list((tmp_path / "conf" / "cfgstate").glob("checkpoint-*.json"))
    assert not (tmp_path / ".tracebridge").exists()


def test_config_example_is_accepted_and_honoured(tmp_path: Path) -> None:
    """config.example.toml, used as it is: exit 0, its project names the export, its state_dir
    (relative to the file) holds the checkpoint."""
    example = SAMPLE.parents[1] / "config.example.toml"
    if not example.is_file():
        pytest.skip("no config.example.toml yet")
    config = _config(tmp_path / "conf" / "tb.toml", example.read_text(encoding="utf-8"))
    result = to_opik_dir("OUT", "--config", str(config))
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    settings = tomllib.loads(config.read_text(encoding="utf-8"))
    (project_json,) = (tmp_path / "OUT").glob("*/projects/*/project.json")
    assert project_json.relative_to(tmp_path / "OUT").parts[0] == settings["opik"]["workspace"]
    assert json.loads(project_json.read_text())["name"] == settings["opik"]["project"]
    assert list((tmp_path / "conf" / settings["run"]["state_dir"]).glob("checkpoint-*.json"))


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[opik]\nwrokspace = "ws1"\n', "opik.wrokspace"),
        ('[runn]\nstate_dir = "st"\n', "runn.state_dir"),
    ],
)
def test_config_unknown_key_is_a_usage_error_naming_it(tmp_path: Path, text: str, key: str) -> None:
    """An unknown key in the config file: exit 2, the message names the key, nothing written."""
    config = _config(tmp_path / "tb.toml", text)
    result = to_opik_dir("OUT", "--config", str(config))
    assert_no_traceback(result)
    assert result.exit_code == 2
    assert key in result.stderr
    assert not (tmp_path / "OUT").exists()


def test_config_bad_value_is_a_usage_error_naming_the_file(tmp_path: Path) -> None:
    """A known key with a value it cannot take: exit 2 naming the file and the setting."""
    config = _config(tmp_path / "tb.toml", '[opik]\nids = "sometimes"\n')
    result = to_opik_dir("OUT", "--config", str(config))
    assert_no_traceback(result)
    assert result.exit_code == 2
    assert str(config) in result.stderr
    assert "opik_ids" in result.stderr


def test_config_file_that_is_not_toml_is_a_usage_error(tmp_path: Path) -> None:
    """A config file that does not parse: exit 2 naming the file."""
    config = _config(tmp_path / "tb.toml", "[opik\nworkspace = \n")
    result = to_opik_dir("OUT", "--config", str(config))
    assert_no_traceback(result)
    assert result.exit_code == 2
    assert str(config) in result.stderr


def test_flags_beat_the_config_file(tmp_path: Path) -> None:
    """--state-dir beats [run] state_dir, --target-project beats [opik] project."""
    config = _config(
        tmp_path / "tb.toml", '[opik]\nproject = "cfgproj"\n[run]\nstate_dir = "cfgstate"\n'
    )
    result = to_opik_dir(
        "OUT", "--config", str(config), "--state-dir", "flagstate", "--target-project", "flagproj"
    )
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "flagstate").glob("checkpoint-*.json"))
    assert not (tmp_path / "cfgstate").exists()
    (project_json,) = (tmp_path / "OUT").glob("*/projects/*/project.json")
    assert json.loads(project_json.read_text())["name"] == "flagproj"


def test_environment_is_used_without_a_config_file(tmp_path: Path) -> None:
    """OPIK_WORKSPACE and OPIK_PROJECT_NAME apply when nothing else sets them."""
    env = {"OPIK_WORKSPACE": "envws", "OPIK_PROJECT_NAME": "envproj"}
    result = to_opik_dir("OUT", env=env)
    assert result.exit_code == 0, result.output
    (project_json,) = (tmp_path / "OUT").glob("*/projects/*/project.json")
    assert project_json.relative_to(tmp_path / "OUT").parts[0] == "envws"
    assert json.loads(project_json.read_text())["name"] == "envproj"


def test_config_file_beats_the_environment(tmp_path: Path) -> None:
    """[opik] workspace/project beat OPIK_WORKSPACE/OPIK_PROJECT_NAME."""
    config = _config(tmp_path / "tb.toml", '[opik]\nworkspace = "ws1"\nproject = "cfgproj"\n')
    env = {"OPIK_WORKSPACE": "envws", "OPIK_PROJECT_NAME": "envproj"}
    result = to_opik_dir("OUT", "--config", str(config), env=env)
    assert result.exit_code == 0, result.output
    (project_json,) = (tmp_path / "OUT").glob("*/projects/*/project.json")
    assert project_json.relative_to(tmp_path / "OUT").parts[0] == "ws1"
    assert json.loads(project_json.read_text())["name"] == "cfgproj"


# --- mapping file -----------------------------------------------------------------------------


def _opik_span_types(out: Path) -> list[str]:
    return [
        span["type"]
        for path in trace_files(out)
        for span in json.loads(path.read_text(encoding="utf-8"))["spans"]
    ]


def test_mapping_file_is_honoured(tmp_path: Path) -> None:
    """--mapping with [span_types] chain = "tool": LangWatch chain spans become Opik tool spans
    (without it they do not)."""
    lw_types = [span["type"] for r in RECORDS for span in r["spans"]]
    assert lw_types.count("chain") > 0
    mapping = _config(tmp_path / "map.toml", '[span_types]\nchain = "tool"\n')
    assert to_opik_dir("PLAIN").exit_code == 0
    result = to_opik_dir("MAPPED", "--mapping", str(mapping))
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert _opik_span_types(tmp_path / "PLAIN").count("tool") == lw_types.count("tool")
    mapped = _opik_span_types(tmp_path / "MAPPED")
    assert mapped.count("tool") == lw_types.count("tool") + lw_types.count("chain")


def test_invalid_mapping_file_is_a_usage_error_naming_key_and_file(tmp_path: Path) -> None:
    """[span_types] chain = "chainz": exit 2, the message names the key and the file."""
    mapping = _config(tmp_path / "map.toml", '[span_types]\nchain = "chainz"\n')
    result = to_opik_dir("OUT", "--mapping", str(mapping))
    assert_no_traceback(result)
    assert result.exit_code == 2
    assert str(mapping) in result.stderr
    assert "span_types" in result.stderr
    assert "chain" in result.stderr
    assert not (tmp_path / "OUT").exists()


def test_missing_mapping_file_is_a_usage_error(tmp_path: Path) -> None:
    """--mapping naming no file: exit 2 naming it."""
    result = to_opik_dir("OUT", "--mapping", "nope.toml")
    assert_no_traceback(result)
    assert result.exit_code == 2
    assert "nope.toml" in result.stderr


# --- --opik-ids and --shift-old-timestamps ------------------------------------------------------


def test_opik_ids_and_shift_are_accepted_and_change_no_file_output(tmp_path: Path) -> None:
    """--opik-ids write-time --shift-old-timestamps with file endpoints: exit 0, the same export
    as without them, and no id map in the state directory."""
    assert to_opik_dir("PLAIN", "--state-dir", "st1").exit_code == 0
    result = to_opik_dir(
        "FLAGS", "--state-dir", "st2", "--opik-ids", "write-time", "--shift-old-timestamps"
    )
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert snapshot(tmp_path / "FLAGS") == snapshot(tmp_path / "PLAIN")
    assert not list((tmp_path / "st2").glob("opik-ids-*.sqlite"))


def test_opik_ids_source_time_is_the_default(tmp_path: Path) -> None:
    """--opik-ids source-time is accepted and gives the same export as no flag."""
    assert to_opik_dir("PLAIN").exit_code == 0
    result = to_opik_dir("SRC", "--opik-ids", "source-time")
    assert result.exit_code == 0, result.output
    assert snapshot(tmp_path / "SRC") == snapshot(tmp_path / "PLAIN")


@pytest.mark.parametrize("ids", [None, "write-time"])
def test_opik_ids_write_time_keeps_an_id_map_in_the_state_dir(
    tmp_path: Path, ids: str | None
) -> None:
    """To the Opik API, write-time mints ids now and keeps the map in opik-ids-*.sqlite in the
    state directory; the default derives ids from the source start time and keeps no map."""
    op = OpikFake()
    flags = ["--opik-ids", ids] if ids else []
    with op.router:
        result = invoke(
            ["migrate", "--from", FROM_SAMPLE, "--to", "opik", "--state-dir", "st", *flags],
            {"OPIK_URL_OVERRIDE": op.base_url},
        )
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert len(op.traces) == len(RECORDS)
    maps = list((tmp_path / "st").glob("opik-ids-*.sqlite"))
    from_start = [
        uuid7_ms(trace["id"]) == int(parse_time(trace["start_time"]).timestamp() * 1000)
        for trace in op.traces.values()
    ]
    if ids == "write-time":
        (db,) = maps
        with sqlite3.connect(db) as connection:
            tables = connection.execute("select name from sqlite_master").fetchall()
        assert tables
        assert not any(from_start)
    else:
        assert maps == []
        assert all(from_start)


def _old_opik_project(op: OpikFake, name: str) -> int:
    start = datetime.now(UTC) - timedelta(days=60)
    n = 0
    for trace, spans, scores, span_scores in opik_project(4, 2, start=start, project_name=name):
        op.add_trace(name, trace, spans, scores, span_scores)
        n += 1
    return n


@pytest.mark.parametrize("shift", [False, True])
def test_shift_old_timestamps_lets_old_opik_traces_into_langwatch(
    tmp_path: Path, shift: bool
) -> None:
    """Opik traces older than LangWatch's 31-day cutoff are dead-lettered (exit 1) unless
    --shift-old-timestamps moves them into the window (exit 0)."""
    lw, op = LangWatchFake(), OpikFake()
    n = _old_opik_project(op, "old")
    flags = ["--shift-old-timestamps"] if shift else []
    with lw.router, op.router:
        result = invoke(
            ["migrate", "--from", "opik", "--source-project", "old", "--to", "langwatch", *flags],
            api_env(lw, op),
        )
    assert_no_traceback(result)
    if shift:
        assert result.exit_code == 0, result.output
        assert len(lw.traces) == n
    else:
        assert result.exit_code == 1, result.output
        assert summary_table(result.stdout)["traces"]["dead-lettered"] == n
        assert lw.traces == {}


# --- dead letters -----------------------------------------------------------------------------


def test_bad_lines_are_dead_lettered_and_the_run_is_lossy(tmp_path: Path) -> None:
    """A malformed line, a missing started_at and a started_at in seconds: exit 1, summary on
    stdout, LOSSY line on stderr, three dead letters naming file:line and the reason; the good
    records are still written; no traceback."""
    write_lossy_jsonl(tmp_path / "bad.jsonl")
    result = invoke(["migrate", "--from", "langwatch-file:bad.jsonl", "--to", "opik-dir:OUT"])
    assert_no_traceback(result)
    assert result.exit_code == 1, result.output
    table = summary_table(result.stdout)
    assert table["traces"]["dead-lettered"] == 3
    assert table["traces"]["written"] == 2
    assert result.stderr.strip().startswith("LOSSY:")
    assert "3 records dead-lettered" in result.stderr
    assert len(trace_files(tmp_path / "OUT")) == 2

    letters = [
        json.loads(line)
        for line in (tmp_path / ".tracebridge" / "dead-letters.jsonl").read_text().splitlines()
    ]
    assert len(letters) == 3
    by_line = {int(e["where"].split(":")[1].split()[0]): e for e in letters}
    assert sorted(by_line) == [3, 4, 5]
    for entry in letters:
        assert entry["where"].startswith("bad.jsonl:")
        assert entry["reason"]
    assert "JSON" in by_line[3]["reason"]
    assert "started_at" in by_line[4]["reason"]
    assert "started_at" in by_line[5]["reason"]
    assert "seconds" in by_line[5]["reason"]


def _standalone(index: int, trace_id: str) -> dict[str, Any]:
    """A copy of a sample record with its own id, in no thread."""
    record: dict[str, Any] = json.loads(json.dumps(RECORDS[index]))
    record["trace_id"] = trace_id
    record["metadata"].pop("thread_id", None)
    for span in record["spans"]:
        span["trace_id"] = trace_id
    return record


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def _hard_records() -> dict[str, dict[str, Any]]:
    """Records that used to stop a run or lose data silently, by what is wrong with them."""
    deep, nan, surrogate = _standalone(1, "deep"), _standalone(2, "nan"), _standalone(3, "lone")
    deep["spans"][0]["input"] = {"type": "json", "value": _nested(300)}
    nan["spans"][0]["metrics"] = {"cost": float("nan")}
    surrogate["spans"][0]["name"] = "cut \ud83d"
    repeated, cyclic = _standalone(4, "repeated"), _standalone(5, "cyclic")
    repeated["spans"].append(dict(repeated["spans"][0]))  # identical: kept once
    repeated["spans"].append({**repeated["spans"][1], "name": "a different span, same id"})
    first, second = cyclic["spans"][0], cyclic["spans"][1]
    first["parent_id"], second["parent_id"] = second["span_id"], first["span_id"]
    return {"deep": deep, "nan": nan, "lone": surrogate, "repeated": repeated, "cyclic": cyclic}


def test_records_no_destination_can_hold_never_stop_the_run(tmp_path: Path) -> None:
    """Deep nesting, NaN and a lone surrogate are dead-lettered naming the field; a repeated
    span id is kept once (identical) or dead-lettered (different); a parent cycle is broken with
    a warning. Every count adds up: read = written + skipped + dead-lettered."""
    records = _hard_records()
    lines = [json.dumps(RECORDS[0])] + [json.dumps(r) for r in records.values()]
    (tmp_path / "hard.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = invoke(["migrate", "--from", "langwatch-file:hard.jsonl", "--to", "opik-dir:OUT"])
    assert_no_traceback(result)
    assert result.exit_code == 1, result.output
    table = summary_table(result.stdout)
    for kind in ("traces", "spans"):
        row = table[kind]
        assert row["read"] == row["written"] + row["skipped"] + row["dead-lettered"], kind
    assert table["traces"]["dead-lettered"] == 3
    assert table["spans"]["skipped"] == 1
    assert "skipped 1: spans repeated in their trace with identical content" in result.stdout
    assert "form a parent cycle" in result.stdout

    letters = {
        e["where"]: e["reason"]
        for e in map(
            json.loads, (tmp_path / ".tracebridge/dead-letters.jsonl").read_text().splitlines()
        )
    }
    reasons = " | ".join(letters.values())
    assert "field 'spans.0.input.value.a.a.a.a.…' is nested more than 200 levels" in reasons
    assert "field 'spans.0.metrics.cost' is NaN" in reasons
    assert "field 'spans.0.name' holds a lone surrogate (U+D83D)" in reasons
    assert any("span id" in r and "different content" in r for r in letters.values())
    assert len(trace_files(tmp_path / "OUT")) == 3


def test_a_broken_cycle_is_restored_when_the_trace_goes_back(tmp_path: Path) -> None:
    """LangWatch -> opik-dir -> LangWatch: the span read as top-level gets its parent back."""
    cyclic = _hard_records()["cyclic"]
    (tmp_path / "in.jsonl").write_text(json.dumps(cyclic) + "\n", encoding="utf-8")
    to = invoke(["migrate", "--from", "langwatch-file:in.jsonl", "--to", "opik-dir:OUT"])
    assert to.exit_code == 0, to.output
    (path,) = trace_files(tmp_path / "OUT")
    spans = json.loads(path.read_text())["spans"]
    parents = {s["id"]: s.get("parent_span_id") for s in spans}
    for span_id in parents:  # every span reaches a root: no cycle was written
        seen = set()
        while span_id is not None:
            assert span_id not in seen
            seen.add(span_id)
            span_id = parents.get(span_id)
    args = ["migrate", "--from", "opik-dir:OUT", "--to", "langwatch-file:back.jsonl"]
    back = invoke([*args, "--state-dir", "state2"])
    assert back.exit_code == 0, back.output
    assert lines_by_trace_id(tmp_path / "back.jsonl")["cyclic"]["spans"] == cyclic["spans"]


def test_dead_letters_accumulate_across_runs(tmp_path: Path) -> None:
    """A second lossy run appends to dead-letters.jsonl with its own run id."""
    write_lossy_jsonl(tmp_path / "bad.jsonl")
    args = ["migrate", "--from", "langwatch-file:bad.jsonl", "--to", "opik-dir:OUT"]
    assert invoke(args).exit_code == 1
    assert invoke(args).exit_code == 1
    path = tmp_path / ".tracebridge" / "dead-letters.jsonl"
    letters = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(letters) == 6
    assert len({e["run_id"] for e in letters}) == 2


# --- usage errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--from", "foo:bar", "--to", "opik-dir:o"], "foo:bar"),
        (["--from", "opik-dir:", "--to", "langwatch-file:x.jsonl"], "needs a path"),
        (["--from", f"langwatch-file:{SAMPLE}", "--to", f"langwatch-file:{SAMPLE}"], "onto itself"),
        (["--from", "langwatch", "--to", "langwatch"], "the same LangWatch project"),
        (["--from", "langwatch-file:missing.jsonl", "--to", "opik-dir:o"], "missing.jsonl"),
        (["--from", "opik-dir:nowhere", "--to", "langwatch-file:x"], "nowhere"),
        (["--from", "langwatch:x", "--to", "opik-dir:o"], "takes no path"),
        (["--from", FROM_SAMPLE, "--to", "opik-dir:o", "--opik-ids", "bogus"], "bogus"),
        (["--to", "opik-dir:o"], "--from"),
        (["--from", FROM_SAMPLE], "--to"),
    ],
)
def test_usage_errors_exit_2_without_traceback(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    """Unknown endpoint kind, missing path, an endpoint copied onto itself, missing input, bad
    choice, missing option: exit 2, a message naming the problem, nothing written."""
    result = invoke(["migrate", *args])
    assert_no_traceback(result)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert not (tmp_path / "o").exists()
    assert not (tmp_path / "b").exists()


def test_ambiguous_opik_dir_needs_source_project(tmp_path: Path) -> None:
    """An opik-dir with two projects and no --source-project: exit 2 listing them;
    --source-project picks one."""
    assert to_opik_dir("OUT", "--target-project", "p1").exit_code == 0
    assert to_opik_dir("OUT", "--target-project", "p2").exit_code == 0
    back = ["migrate", "--from", "opik-dir:OUT", "--to", "langwatch-file:back.jsonl"]
    result = invoke(back)
    assert_no_traceback(result)
    assert result.exit_code == 2
    assert "--source-project" in result.stderr
    assert "p1" in result.stderr
    assert "p2" in result.stderr
    assert not (tmp_path / "back.jsonl").exists()
    assert invoke([*back, "--source-project", "p2"]).exit_code == 0
    assert len(lines_by_trace_id(tmp_path / "back.jsonl")) == len(RECORDS)


def test_unknown_source_project_is_a_usage_error() -> None:
    """--source-project naming no project of the folder: exit 2 naming it."""
    assert to_opik_dir("OUT", "--target-project", "p1").exit_code == 0
    result = invoke(
        [
            *("migrate", "--from", "opik-dir:OUT", "--source-project", "nope"),
            *("--to", "langwatch-file:back.jsonl"),
        ]
    )
    assert_no_traceback(result)
    assert result.exit_code == 2
    assert "nope" in result.stderr


# --- migrate through the APIs -------------------------------------------------------------------


def test_langwatch_to_opik_through_the_apis(fakes: tuple[LangWatchFake, OpikFake]) -> None:
    """migrate --from langwatch --to opik: exit 0, the Opik fake holds every trace and span in
    the target project, and a rerun adds no duplicate rows."""
    lw, op = fakes
    args = ["migrate", "--from", "langwatch", "--to", "opik", "--target-project", "demo"]
    result = invoke(args, api_env(lw, op))
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    counts = sample_counts()
    assert len(op.traces) == counts["traces"]
    assert len(op.spans) == counts["spans"]
    project_id = op.project_id("demo")
    assert project_id is not None
    assert all(t["project_id"] == project_id for t in op.traces.values())
    rows = op.row_count()
    again = invoke(args, api_env(lw, op))
    assert again.exit_code == 0, again.output
    assert op.row_count() == rows
    assert op.duplicate_rows == {}


def test_opik_to_langwatch_skips_old_traces_born_in_langwatch(
    fakes: tuple[LangWatchFake, OpikFake],
) -> None:
    """migrate --from opik --to langwatch into the project the traces came from: those older
    than its 31-day cutoff are skipped by a named rule (the original is still there), even with
    --shift-old-timestamps: exit 0, nothing written, nothing dead-lettered. (Into another
    project they are copies like any other: `tests/langwatch/test_api_sink.py`.)"""
    lw, op = fakes
    env = api_env(lw, op)
    to_opik = ["migrate", "--from", "langwatch", "--to", "opik", "--target-project", "demo"]
    assert invoke(to_opik, env).exit_code == 0
    origin = LangWatchFake(base_url="http://langwatch2.test", project_id=RECORDS[0]["project_id"])
    with origin.router:
        result = invoke(
            [
                *("migrate", "--from", "opik", "--source-project", "demo", "--to", "langwatch"),
                *("--shift-old-timestamps", "--state-dir", "st2"),
            ],
            {**env, "LANGWATCH_ENDPOINT": origin.base_url},
        )
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    table = summary_table(result.stdout)
    assert table["traces"]["read"] == len(RECORDS)
    assert table["traces"]["skipped"] == len(RECORDS)
    assert table["traces"]["dead-lettered"] == 0
    assert "older than its 31-day ingestion cutoff" in result.stdout
    assert [r for r in origin.requests if r.url.path == "/api/collector"] == []


def test_wrong_langwatch_key_exits_3_naming_the_variable() -> None:
    """A refused LangWatch key: exit 3, the message names LANGWATCH_API_KEY, not the key."""
    lw, op = seeded_langwatch(), OpikFake()
    with lw.router, op.router:
        result = invoke(
            ["migrate", "--from", "langwatch", "--to", "opik"],
            api_env(lw, op, LANGWATCH_API_KEY="sk-lw-WRONG987"),
        )
    assert_no_traceback(result)
    assert result.exit_code == 3
    assert "LANGWATCH_API_KEY" in result.stderr
    assert "internal error" not in result.stderr
    assert "WRONG987" not in result.output
    assert op.traces == {}


def test_wrong_opik_key_on_migrate_exits_3_naming_the_variable() -> None:
    """A refused Opik key while writing: exit 3 naming OPIK_API_KEY, the key never printed."""
    op = OpikFake(api_key="right")
    with op.router:
        result = invoke(
            ["migrate", "--from", FROM_SAMPLE, "--to", "opik"],
            {"OPIK_URL_OVERRIDE": op.base_url, "OPIK_API_KEY": "wrong-opik-KEY42"},
        )
    assert_no_traceback(result)
    assert result.exit_code == 3
    assert "OPIK_API_KEY" in result.stderr
    assert "KEY42" not in result.output


def test_langwatch_source_without_a_key_is_a_usage_error() -> None:
    """--from langwatch with no LANGWATCH_API_KEY: exit 2 naming the variable."""
    result = invoke(["migrate", "--from", "langwatch", "--to", "opik-dir:OUT"])
    assert_no_traceback(result)
    assert result.exit_code == 2
    assert "LANGWATCH_API_KEY" in result.stderr


def test_opik_source_without_a_project_is_a_usage_error() -> None:
    """--from opik with neither --source-project nor OPIK_PROJECT_NAME: exit 2 naming both."""
    result = invoke(["migrate", "--from", "opik", "--to", "langwatch-file:x.jsonl"])
    assert_no_traceback(result)
    assert result.exit_code == 2
    assert "--source-project" in result.stderr
    assert "OPIK_PROJECT_NAME" in result.stderr


# --- check --------------------------------------------------------------------------------------


def _seed_opik_project(op: OpikFake, name: str) -> str:
    rng = random.Random(7)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    ms = int(start.timestamp() * 1000)
    trace, spans, scores, span_scores = opik_trace(
        rng, trace_id=uuid7(ms, rng), start=start, thread_id=None, project_name=name
    )
    op.add_trace(name, trace, spans, scores, span_scores)
    project_id = op.project_id(name)
    assert project_id is not None
    return project_id


def test_check_prints_what_both_platforms_show() -> None:
    """check: exit 0, prints the Opik workspace, the --project and its id, and the LangWatch
    project id; no key is printed."""
    lw = seeded_langwatch()
    op = OpikFake(api_key="opik-RIGHT-77", workspace="acme")
    project_id = _seed_opik_project(op, "demo")
    env = api_env(lw, op, OPIK_API_KEY="opik-RIGHT-77", OPIK_WORKSPACE="acme")
    with lw.router, op.router:
        result = invoke(["check", "--project", "demo"], env)
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert "workspace: acme" in result.stdout
    assert "demo" in result.stdout
    assert project_id in result.stdout
    assert RECORDS[0]["project_id"] in result.stdout
    assert "RIGHT-77" not in result.output
    assert LW_KEY not in result.output


def test_check_defaults_to_opik_project_name() -> None:
    """check without --project looks up OPIK_PROJECT_NAME (not there yet: still exit 0)."""
    lw, op = seeded_langwatch(), OpikFake()
    with lw.router, op.router:
        result = invoke(["check"], api_env(lw, op, OPIK_PROJECT_NAME="envproj"))
    assert result.exit_code == 0, result.output
    assert "envproj" in result.stdout


def test_check_honours_the_config_file(tmp_path: Path) -> None:
    """check --config: the workspace and key come from the file (the fake refuses others)."""
    lw = seeded_langwatch()
    op = OpikFake(api_key="opik-CFG-55", workspace="cfgws")
    config = _config(tmp_path / "tb.toml", '[opik]\nworkspace = "cfgws"\napi_key = "opik-CFG-55"\n')
    with lw.router, op.router:
        result = invoke(["check", "--config", str(config)], api_env(lw, op))
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert "workspace: cfgws" in result.stdout
    assert "CFG-55" not in result.output


def test_check_with_a_wrong_opik_key_exits_3_naming_the_variable() -> None:
    """A refused Opik key: exit 3, the message names OPIK_API_KEY, the key is never printed."""
    lw, op = seeded_langwatch(), OpikFake(api_key="right")
    with lw.router, op.router:
        result = invoke(["check"], api_env(lw, op, OPIK_API_KEY="wrong-SECRET-OPIK"))
    assert_no_traceback(result)
    assert result.exit_code == 3
    assert "OPIK_API_KEY" in result.stderr
    assert "SECRET-OPIK" not in result.output


def test_check_reports_both_platforms_when_the_first_fails() -> None:
    """A refused Opik key does not hide LangWatch: its project is still printed, the Opik
    failure is on stderr, and the exit code is the failure's (3)."""
    lw, op = seeded_langwatch(), OpikFake(api_key="right")
    with lw.router, op.router:
        result = invoke(["check"], api_env(lw, op, OPIK_API_KEY="wrong-SECRET-OPIK"))
    assert_no_traceback(result)
    assert result.exit_code == 3
    assert "OPIK_API_KEY" in result.stderr
    assert RECORDS[0]["project_id"] in result.stdout
    assert "SECRET-OPIK" not in result.output


def test_check_with_a_wrong_langwatch_key_exits_3_naming_the_variable() -> None:
    """A refused LangWatch key: exit 3 naming LANGWATCH_API_KEY, the key never printed."""
    lw, op = seeded_langwatch(), OpikFake()
    with lw.router, op.router:
        result = invoke(["check"], api_env(lw, op, LANGWATCH_API_KEY="sk-lw-WRONG-LW"))
    assert_no_traceback(result)
    assert result.exit_code == 3
    assert "LANGWATCH_API_KEY" in result.stderr
    assert "WRONG-LW" not in result.output


def test_check_without_a_langwatch_key_exits_2() -> None:
    """No LANGWATCH_API_KEY: a configuration error, exit 2, naming the variable."""
    lw, op = seeded_langwatch(), OpikFake()
    env = api_env(lw, op)
    del env["LANGWATCH_API_KEY"]
    with lw.router, op.router:
        result = invoke(["check", "--debug"], env)
    assert_no_traceback(result)
    assert result.exit_code == 2
    assert "LANGWATCH_API_KEY" in result.stderr


# --- --debug ------------------------------------------------------------------------------------


async def _boom(*args: object, **kwargs: object) -> Any:
    raise RuntimeError("boom")


def test_internal_error_without_debug_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception: exit 3, one 'internal error' line suggesting --debug."""
    monkeypatch.setattr(tracebridge.cli, "migrate", _boom)
    result = to_opik_dir("OUT")
    assert_no_traceback(result)
    assert result.exit_code == 3
    assert "internal error: RuntimeError: boom" in result.stderr
    assert "--debug" in result.stderr


def test_internal_error_with_debug_adds_the_traceback_and_keeps_exit_3(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--debug prints the traceback to stderr, then the same one-line message; exit 3 still."""
    monkeypatch.setattr(tracebridge.cli, "migrate", _boom)
    result = to_opik_dir("OUT", "--debug")
    assert result.exit_code == 3
    assert "Traceback (most recent call last)" in result.stderr
    assert 'raise RuntimeError("boom")' in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == "internal error: RuntimeError: boom"


def test_debug_does_not_add_tracebacks_to_usage_errors(tmp_path: Path) -> None:
    """--debug with bad input: still exit 2 with a message, no traceback."""
    result = invoke(["migrate", "--from", "foo:bar", "--to", "opik-dir:o", "--debug"])
    assert_no_traceback(result)
    assert result.exit_code == 2
    assert "foo:bar" in result.stderr


def test_debug_is_accepted_on_a_normal_run(tmp_path: Path) -> None:
    """--debug on a clean run changes nothing: exit 0, the same export."""
    assert to_opik_dir("PLAIN").exit_code == 0
    result = to_opik_dir("DEBUG", "--debug")
    assert result.exit_code == 0, result.output
    assert snapshot(tmp_path / "DEBUG") == snapshot(tmp_path / "PLAIN")


# --- environment errors -------------------------------------------------------------------------


def _raising(exc: BaseException) -> Any:
    async def fail(*args: object, **kwargs: object) -> Any:
        raise exc

    return fail


@pytest.mark.parametrize(
    ("error", "code", "says"),
    [
        (
            PermissionError(13, "Permission denied", "/data/out/trace_1.json"),
            3,
            "error: /data/out/trace_1.json: permission denied",
        ),
        (
            IsADirectoryError(21, "Is a directory", "/data/out.jsonl"),
            2,
            "error: /data/out.jsonl: is a directory, where a file is expected",
        ),
        (
            NotADirectoryError(20, "Not a directory", "/data/file/sub"),
            2,
            "error: /data/file/sub: is not a directory",
        ),
        (OSError(28, "No space left on device"), 3, "error: no space left on device"),
    ],
    ids=["permission", "is-a-directory", "not-a-directory", "disk-full"],
)
@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_environment_errors_name_the_path_and_are_not_internal(
    monkeypatch: pytest.MonkeyPatch, error: OSError, code: int, says: str, debug: bool
) -> None:
    """An OSError says which path and what is wrong; exit 2 for a path of the wrong kind, 3
    otherwise; --debug adds the traceback and keeps the exit code."""
    monkeypatch.setattr(tracebridge.cli, "migrate", _raising(error))
    result = to_opik_dir("OUT", *(["--debug"] if debug else []))
    assert result.exit_code == code
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith(says), last
    assert "internal error" not in result.stderr
    assert ("Traceback (most recent call last)" in result.stderr) == debug
    if not debug:
        assert_no_traceback(result)


def test_an_output_path_through_a_file_is_a_configuration_error(tmp_path: Path) -> None:
    """A real one: the opik-dir output lies under a file. Exit 2, naming path and endpoint."""
    (tmp_path / "afile").write_text("x")
    result = to_opik_dir("afile/OUT")
    assert_no_traceback(result)
    assert result.exit_code == 2
    assert "opik-dir: cannot write afile/OUT: Not a directory" in result.stderr


def test_a_langwatch_file_output_that_is_a_directory_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    assert to_opik_dir("OUT").exit_code == 0
    (tmp_path / "adir").mkdir()
    result = invoke(["migrate", "--from", "opik-dir:OUT", "--to", "langwatch-file:adir"])
    assert_no_traceback(result)
    assert result.exit_code == 2
    assert "langwatch-file:adir: adir is a directory" in result.stderr


def test_debug_keeps_the_exit_code_of_runtime_errors(tmp_path: Path) -> None:
    """--debug adds a traceback to a fatal runtime error; exit 3 either way."""
    checkpoint = tmp_path / "st"
    assert to_opik_dir("OUT", "--state-dir", "st").exit_code == 0
    (path,) = checkpoint.glob("checkpoint-*.json")
    path.write_bytes(bytes(range(128, 256)))
    plain, debug = (
        to_opik_dir("OUT", "--state-dir", "st"),
        to_opik_dir("OUT", "--state-dir", "st", "--debug"),
    )
    assert plain.exit_code == debug.exit_code == 3
    assert_no_traceback(plain)
    assert "Traceback (most recent call last)" in debug.stderr
    assert plain.stderr.strip() == debug.stderr.strip().splitlines()[-1]


def test_a_checkpoint_of_random_bytes_is_a_clear_checkpoint_error(tmp_path: Path) -> None:
    assert to_opik_dir("OUT", "--state-dir", "st").exit_code == 0
    (path,) = (tmp_path / "st").glob("checkpoint-*.json")
    path.write_bytes(random.Random(7).randbytes(300))
    result = to_opik_dir("OUT", "--state-dir", "st")
    assert_no_traceback(result)
    assert result.exit_code == 3
    assert f"error: checkpoint st/{path.name} is not UTF-8 text" in result.stderr
    assert "move it away" in result.stderr


# --- secrets ------------------------------------------------------------------------------------


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_secret_never_in_output_or_state_of_a_lossy_file_run(tmp_path: Path) -> None:
    """LANGWATCH_API_KEY=sk-lw-SECRET123 and a lossy migrate: SECRET123 is in no output, no
    state file, no dead-letter file."""
    write_lossy_jsonl(tmp_path / "bad.jsonl")
    result = invoke(
        ["migrate", "--from", "langwatch-file:bad.jsonl", "--to", "opik-dir:OUT"],
        {"LANGWATCH_API_KEY": "sk-lw-SECRET123"},
    )
    assert result.exit_code == 1, result.output
    assert (tmp_path / ".tracebridge" / "dead-letters.jsonl").is_file()
    assert "SECRET123" not in result.output
    assert _files_containing(tmp_path, b"SECRET123") == []


def test_secret_never_in_output_or_state_of_a_lossy_api_run(tmp_path: Path) -> None:
    """The key in use against the LangWatch API, one trace dead-lettered, write-time ids:
    SECRET123 is in no output and in no file the run wrote."""
    lw = seeded_langwatch(api_key="sk-lw-SECRET123")
    bad = json.loads(json.dumps(RECORDS[-1]))
    bad["trace_id"] = "trace_bad_span_seconds"
    for span in bad["spans"]:
        span["trace_id"] = bad["trace_id"]
    bad["spans"][0]["timestamps"]["started_at"] //= 1000
    lw.add_trace(bad)
    op = OpikFake()
    with lw.router, op.router:
        result = invoke(
            ["migrate", "--from", "langwatch", "--to", "opik", "--opik-ids", "write-time"],
            api_env(lw, op),
        )
    assert_no_traceback(result)
    assert result.exit_code == 1, result.output
    assert summary_table(result.stdout)["traces"]["dead-lettered"] == 1
    state = tmp_path / ".tracebridge"
    assert (state / "dead-letters.jsonl").is_file()
    assert list(state.glob("opik-ids-*.sqlite"))
    assert "SECRET123" not in result.output
    assert _files_containing(tmp_path, b"SECRET123") == []
