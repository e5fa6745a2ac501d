"""Issue 11, the library surface: a step that redacts a field works end to end through the CLI
(`--step MODULE:FUNCTION`) and through the library (`migrate(steps=)`, `migrate_blocking`,
`sync_blocking`, a pipeline built with `open_source` / `open_sink` and `run`); `--step`
refuses what it cannot use with exit 2, naming the spec.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import tracebridge
from tracebridge import (
    LangWatchApiSink,
    LangWatchApiSource,
    LangWatchFileSink,
    LangWatchFileSource,
    OpikApiSink,
    OpikApiSource,
    OpikDirSink,
    OpikDirSource,
    StateDir,
    Thread,
    Unit,
    UsageError,
    load_settings,
    migrate,
    migrate_blocking,
    open_sink,
    open_source,
    run,
    sync_blocking,
)
from tracebridge.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "langwatch-sample.jsonl"
FROM_SAMPLE = f"langwatch-file:{SAMPLE}"
SECRET_KEY = "customer_id"
STEP_MODULE = "tb_test_redaction_steps"
STEP_SOURCE = '''
"""Steps for tests/test_steps.py, imported by `--step` from the current directory."""

def _drop(trace):
    return trace.model_copy(
        update={"metadata": {k: v for k, v in trace.metadata.items() if k != "customer_id"}}
    )


def redact(unit):
    if hasattr(unit, "traces"):
        return unit.model_copy(update={"traces": [_drop(t) for t in unit.traces]})
    return _drop(unit)


class _Rule:
    rule = "not for export"

    def __call__(self, unit):
        return unit


tagged = _Rule()
NOT_CALLABLE = 42
'''
CLEAN_ENV: dict[str, str | None] = dict.fromkeys(
    (
        "LANGWATCH_API_KEY",
        "LANGWATCH_ENDPOINT",
        "OPIK_URL_OVERRIDE",
        "OPIK_API_KEY",
        "OPIK_WORKSPACE",
        "OPIK_PROJECT_NAME",
        "TRACEBRIDGE_PAGE_SIZE",
    )
)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test runs in its own directory, holding the step module `--step` imports."""
    for name in CLEAN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / f"{STEP_MODULE}.py").write_text(STEP_SOURCE, encoding="utf-8")
    (tmp_path / "tb_test_broken_steps.py").write_text("raise RuntimeError('boom')\n")
    yield
    for name in (STEP_MODULE, "tb_test_broken_steps"):
        sys.modules.pop(name, None)


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(main, args, env=CLEAN_ENV)


def redact(unit: Unit) -> Unit:
    """The library's twin of the step module's `redact`: `customer_id` leaves the metadata."""

    def drop(trace: tracebridge.Trace) -> tracebridge.Trace:
        metadata = {k: v for k, v in trace.metadata.items() if k != SECRET_KEY}
        return trace.model_copy(update={"metadata": metadata})

    if isinstance(unit, Thread):
        return unit.model_copy(update={"traces": [drop(t) for t in unit.traces]})
    return drop(unit)


def _folder_text(folder: Path) -> str:
    return "".join(f.read_text(encoding="utf-8") for f in folder.rglob("*.json"))


def _traces(folder: Path) -> list[dict[str, Any]]:
    files = folder.glob("*/projects/*/trace_*.json")
    return [json.loads(f.read_text(encoding="utf-8"))["trace"] for f in files]


def _assert_redacted(folder: Path) -> None:
    """All 12 sample traces arrived, none with the key; the rest of the metadata is there."""
    assert SECRET_KEY in SAMPLE.read_text(encoding="utf-8")
    traces = _traces(folder)
    assert len(traces) == 12
    assert SECRET_KEY not in _folder_text(folder)
    assert all("user_id" in t["metadata"] for t in traces)


# ----------------------------------------------------------------------------- the CLI


def test_a_redacting_step_through_migrate_on_the_command_line(tmp_path: Path) -> None:
    step = f"{STEP_MODULE}:redact"
    result = invoke(["migrate", "--from", FROM_SAMPLE, "--to", "opik-dir:out", "--step", step])
    assert result.exit_code == 0, result.output
    _assert_redacted(tmp_path / "out")


def test_a_redacting_step_through_sync_on_the_command_line(tmp_path: Path) -> None:
    result = invoke(
        ["sync", "--from", FROM_SAMPLE, "--to", "opik-dir:out", "--step", f"{STEP_MODULE}:redact"]
    )
    assert result.exit_code == 0, result.output
    _assert_redacted(tmp_path / "out")


def test_steps_repeat_and_a_factory_made_step_is_accepted(tmp_path: Path) -> None:
    """Two `--step`s run in order; an object with `rule` and `__call__` is a step too."""
    args = ["--step", f"{STEP_MODULE}:tagged", "--step", f"{STEP_MODULE}:redact", "--json"]
    result = invoke(["migrate", "--from", FROM_SAMPLE, "--to", "opik-dir:out", *args])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["written"]["traces"] == 12
    _assert_redacted(tmp_path / "out")


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("no_colon_here", "write module:function"),
        (":redact", "write module:function"),
        ("tb_test_no_such_module:redact", "cannot import 'tb_test_no_such_module'"),
        (f"{STEP_MODULE}:missing", f"{STEP_MODULE!r} has no 'missing'"),
        (f"{STEP_MODULE}:NOT_CALLABLE", "'NOT_CALLABLE' is a int, not a callable step"),
        ("tb_test_broken_steps:redact", "RuntimeError: boom"),
    ],
)
@pytest.mark.parametrize("command", ["migrate", "sync"])
def test_a_step_that_cannot_be_used_is_a_usage_error(
    command: str, spec: str, says: str, tmp_path: Path
) -> None:
    result = invoke([command, "--from", FROM_SAMPLE, "--to", "opik-dir:out", "--step", spec])
    assert result.exit_code == 2, result.output
    assert f"--step {spec!r}" in result.output
    assert says in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- the library


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_redacting_step_through_migrate(tmp_path: Path) -> None:
    report = await migrate(FROM_SAMPLE, "opik-dir:out", steps=[redact])
    assert report.exit_code == 0
    _assert_redacted(tmp_path / "out")


def test_a_redacting_step_through_migrate_blocking(tmp_path: Path) -> None:
    """No event loop in the caller: the blocking twin takes `migrate`'s arguments."""
    report = migrate_blocking(FROM_SAMPLE, "opik-dir:out", steps=[redact], dry_run=False)
    assert isinstance(report, tracebridge.Report)
    assert report.exit_code == 0
    _assert_redacted(tmp_path / "out")
    assert migrate_blocking.__name__ == "migrate_blocking"
    assert "event loop" in (migrate_blocking.__doc__ or "")


def test_sync_blocking_runs_a_pass_with_the_step(tmp_path: Path) -> None:
    report = sync_blocking(FROM_SAMPLE, "opik-dir:out", steps=[redact])
    assert report is not None
    assert report.exit_code == 0
    _assert_redacted(tmp_path / "out")


@pytest.mark.anyio
async def test_a_pipeline_from_the_factories_and_run(tmp_path: Path) -> None:
    """`open_source` / `open_sink` take spec strings and default the rest; `run` with a step
    and a `StateDir` copies, and a rerun with the same state writes the same result."""
    settings = load_settings(None, {"state_dir": tmp_path / "state"}, environ={})
    for _ in range(2):
        source = open_source(FROM_SAMPLE)
        sink = open_sink("opik-dir:out", project="support-bot", settings=settings)
        assert isinstance(source, LangWatchFileSource)
        assert isinstance(sink, OpikDirSink)
        state = StateDir(settings.state_dir, {"job": "test"})
        report = await run(source, sink, steps=[redact], state=state)
        assert report.exit_code == 0
        _assert_redacted(tmp_path / "out")
    assert (tmp_path / "out" / "default" / "projects").is_dir()


@pytest.mark.anyio
async def test_the_factories_build_every_kind_of_endpoint(tmp_path: Path) -> None:
    """Each spec names its class; API endpoints are built without a network call."""
    settings = load_settings(
        None,
        {"langwatch_api_key": "sk-lw", "opik_project": "bot", "state_dir": tmp_path / "s"},
        environ={},
    )
    await migrate(FROM_SAMPLE, "opik-dir:in", settings=settings)
    cases: list[tuple[Any, type]] = [
        (open_source(FROM_SAMPLE, settings=settings), LangWatchFileSource),
        (open_source("opik-dir:in", settings=settings), OpikDirSource),
        (open_source("langwatch", settings=settings), LangWatchApiSource),
        (open_source("opik", settings=settings), OpikApiSource),
        (open_sink("langwatch-file:out.jsonl", settings=settings), LangWatchFileSink),
        (open_sink("opik-dir:out", settings=settings), OpikDirSink),
        (open_sink("langwatch", settings=settings), LangWatchApiSink),
        (open_sink("opik", settings=settings), OpikApiSink),
    ]
    for endpoint, cls in cases:
        assert isinstance(endpoint, cls)
        await endpoint.aclose()


def test_the_factories_refuse_bad_specs() -> None:
    with pytest.raises(UsageError, match="unknown endpoint"):
        open_source("postgres:db")
    with pytest.raises(UsageError, match="needs a path"):
        open_sink("opik-dir")
    settings = load_settings(None, {}, environ={})
    with pytest.raises(UsageError, match="name the Opik project"):
        open_source("opik", settings=settings)
