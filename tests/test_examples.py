"""Every script in `examples/` runs, and does what its docstring says (issue 11).

`redact_pipeline.py` and `filter_by_tag.py` run as a user runs them (a subprocess: the script,
or the `tracebridge` command with `--step`); `opik_backup.py` needs an Opik server, so its
`backup` runs in-process against the Opik fake through the `transports` seam.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from .factories import opik_project
from .fakes.opik import OpikFake

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SAMPLE = EXAMPLES / "langwatch-sample.jsonl"
EMAIL = "Jane.Doe+billing@example.co.uk"
#: Every variable tracebridge reads, removed so the outer environment cannot leak in.
TRACEBRIDGE_VARIABLES = (
    "LANGWATCH_API_KEY",
    "LANGWATCH_ENDPOINT",
    "OPIK_URL_OVERRIDE",
    "OPIK_API_KEY",
    "OPIK_WORKSPACE",
    "OPIK_PROJECT_NAME",
    "TRACEBRIDGE_PAGE_SIZE",
    "PYTHONPATH",
)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in TRACEBRIDGE_VARIABLES}


def _opik_traces(folder: Path) -> list[dict[str, Any]]:
    """The trace documents of an opik-dir folder (one JSON file per trace)."""
    files = sorted(folder.glob("*/projects/*/trace_*.json"))
    return [json.loads(f.read_text(encoding="utf-8"))["trace"] for f in files]


def _sample_with_emails(path: Path) -> None:
    """The sample file, with an e-mail address in the first record's input and first span."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    first["input"]["value"] += f" Write to me at {EMAIL}, please."
    first["spans"][0]["input"]["value"] = f"contact: {EMAIL}"
    lines[0] = json.dumps(first, ensure_ascii=False)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_redact_pipeline_drops_the_key_and_hashes_emails(tmp_path: Path) -> None:
    """`python examples/redact_pipeline.py IN OUT`: every trace arrives, no output file holds
    `customer_id` or the e-mail address, and the address's hash stands in its place."""
    source, out = tmp_path / "in.jsonl", tmp_path / "out"
    _sample_with_emails(source)
    assert "customer_id" in source.read_text(encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "redact_pipeline.py"), str(source), str(out)],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    traces = _opik_traces(out)
    assert len(traces) == 12
    written = "".join(f.read_text(encoding="utf-8") for f in out.rglob("*") if f.is_file())
    assert "customer_id" not in written
    assert "@example.co.uk" not in written
    assert "Jane.Doe" not in written
    assert written.count("email:") >= 2  # the trace input and the span input
    # The rest is untouched: other metadata survives.
    assert all("user_id" in t["metadata"] for t in traces)


def test_filter_by_tag_from_the_command_line(tmp_path: Path) -> None:
    """`tracebridge migrate ... --step examples.filter_by_tag:only_web`, run from the
    repository root as documented (no PYTHONPATH): only the traces tagged "web" arrive."""
    command = Path(sys.executable).with_name("tracebridge")
    if not command.exists():
        pytest.skip("the tracebridge console script is not installed next to this Python")
    out = tmp_path / "web-only"
    result = subprocess.run(
        [
            str(command),
            "migrate",
            "--from",
            f"langwatch-file:{SAMPLE}",
            "--to",
            f"opik-dir:{out}",
            "--state-dir",
            str(tmp_path / "state"),
            "--step",
            "examples.filter_by_tag:only_web",
            "--json",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    tagged = [
        json.loads(line)
        for line in SAMPLE.read_text(encoding="utf-8").splitlines()
        if "web" in json.loads(line)["metadata"].get("labels", [])
    ]
    traces = _opik_traces(out)
    assert 0 < len(traces) == len(tagged) < 12
    assert all("web" in t["tags"] for t in traces)
    summary = json.loads(result.stdout)
    assert summary["written"]["traces"] == len(tagged)
    assert summary["skipped"]["traces"] == 12 - len(tagged)
    assert "not tagged web" in summary["skip_reasons"]  # the factory-made step's `rule`


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_opik_backup_writes_the_opik_traces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`examples/opik_backup.backup`, with the server from the environment: the backup file
    holds one LangWatch-format line per Opik trace, and a rerun duplicates nothing."""
    from examples.opik_backup import backup

    opik = OpikFake()
    start = datetime.now(UTC) - timedelta(days=2)
    ids = []
    for trace, spans, scores, span_scores in opik_project(
        14, 3, seed=11, start=start, project_name="support-bot"
    ):
        opik.add_trace("support-bot", trace, spans, scores, span_scores)
        ids.append(trace["id"])
    for name in TRACEBRIDGE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPIK_URL_OVERRIDE", opik.base_url)
    monkeypatch.setenv("OPIK_PROJECT_NAME", "support-bot")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "backup.jsonl"
    run_backup = functools.partial(backup, out, transports={"opik": opik.transport})

    report = anyio.run(run_backup)
    assert report.exit_code == 0, report.to_dict()
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line]
    assert len(lines) == len(ids) == 14
    text = out.read_text(encoding="utf-8")
    assert all(trace_id in text for trace_id in ids)
    assert all("spans" in line and "trace_id" in line for line in lines)

    again = anyio.run(run_backup)
    assert again.exit_code == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 14
