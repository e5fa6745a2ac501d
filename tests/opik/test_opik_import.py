"""Opik's own `opik import` (the `opik` SDK, a test-only dependency) loads what the `opik-dir`
sink writes: costs, names, trace and span scores and thread ids arrive.

The importer runs in-process through its click entry point (`opik.cli.main.cli`), so respx (the
stateful Opik fake, `tests/fakes/opik.py`) intercepts its httpx client, background threads
included. It is configured by environment (`OPIK_URL_OVERRIDE`, `OPIK_WORKSPACE`, `OPIK_API_KEY`,
an empty config file, Sentry and usage analytics off) and sockets are closed to it: no request
leaves the process. The tests also pin what users of the `opik-dir` route must know about the
importer (README): it re-mints every id, keeping the old trace id in `metadata._import_id` and a
span's `ttft` in `metadata._import_ttft`, ignores thread-level data, and keeps a per-folder
manifest, so a second import does nothing (even of traces added since) and `--force` duplicates.
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from opik.api_objects import connection_resources
from opik.cli.main import cli as opik_cli

import opik
from tests.fakes.opik import OpikFake, parse_time
from tracebridge import LangWatchFileSource, OpikDirSink, OpikDirSource, Score, Thread, Window
from tracebridge._interfaces import Unit
from tracebridge._mapping import default_mappings
from tracebridge._models import Trace

# The SDK hands httpx a CA bundle path (deprecated by httpx, harmless here).
pytestmark = pytest.mark.filterwarnings("ignore:`verify=<str>` is deprecated:DeprecationWarning")
Json = dict[str, Any]
M = default_mappings()
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langwatch-sample.jsonl"
WORKSPACE, PROJECT, KEY = "acme", "support-bot", "opik-test-key"
THREAD_SCORE = Score(name="user_frustration", value=0.8, reason="asked twice")
SPAN_SCORE = Score(name="tool_call_correct", value=1.0, label="yes", reason="right arguments")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every attempt to open a network socket fails, and is listed (the test asserts none)."""
    attempts: list[object] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        attempts.append(address)
        raise OSError("network access is closed in this test")

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> list[Any]:
        attempts.append(host)
        raise socket.gaierror("network access is closed in this test")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


@pytest.fixture
def fake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[object]
) -> Iterator[OpikFake]:
    """The Opik fake, patched into every httpx client; the importer's clients are ended after."""
    fake = OpikFake(api_key=KEY, workspace=WORKSPACE)
    config = tmp_path / "opik.config"
    config.write_text("")
    env = {
        "OPIK_URL_OVERRIDE": fake.base_url,
        "OPIK_WORKSPACE": WORKSPACE,
        "OPIK_API_KEY": KEY,
        "OPIK_CONFIG_PATH": str(config),
        "OPIK_SENTRY_ENABLE": "false",
        "OPIK_ANALYTICS_ENABLE": "false",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    clients: list[opik.Opik] = []

    class Recorded(opik.Opik):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            clients.append(self)

    monkeypatch.setattr(opik, "Opik", Recorded)
    with fake.router:
        yield fake
        for client in clients:  # stop the background threads while the fake still answers
            client.end()
        connection_resources.MANAGER.close_all()  # whatever else the SDK keeps for atexit
    assert no_network == []


def _writes(fake: OpikFake) -> list[httpx.Request]:
    """The requests that wrote to the fake (anything but a GET)."""
    return [r for r in fake.requests if r.method != "GET"]


def opik_import(path: Path, *extra: str) -> Result:
    """`opik import WORKSPACE PROJECT traces --path PATH`, in this process."""
    args = ["import", WORKSPACE, PROJECT, "traces", "--path", str(path), *extra]
    return CliRunner().invoke(opik_cli, args, catch_exceptions=False)


async def sample_units() -> list[Unit]:
    """The sample, with what it lacks for this test: a span score and thread-level data."""
    source = LangWatchFileSource(SAMPLE)
    units = [unit async for page in source.pages(Window(), None) for unit in page.units]
    threads = [u for u in units if isinstance(u, Thread)]
    assert threads
    assert any(isinstance(u, Trace) for u in units)
    trace = threads[0].traces[0]
    span = next(s for s in trace.spans if s.cost is not None)
    scored = trace.model_copy(
        update={
            "spans": [
                s.model_copy(update={"scores": [SPAN_SCORE]}) if s is span else s
                for s in trace.spans
            ]
        }
    )
    threads[0] = threads[0].model_copy(
        update={"traces": [scored, *threads[0].traces[1:]], "scores": [THREAD_SCORE]}
    )
    return [threads[0] if u.id == threads[0].id else u for u in units]


async def write_opik_dir(out: Path, units: list[Unit]) -> None:
    sink = OpikDirSink(out, workspace=WORKSPACE, project=PROJECT, mappings=M)
    result = await sink.write(units)
    await sink.aclose()
    assert result.rejected == []


def exported(out: Path) -> dict[str, Json]:
    """What tracebridge wrote: the file bodies by trace id."""
    bodies = (json.loads(p.read_text()) for p in out.glob("*/projects/*/trace_*.json"))
    return {body["trace"]["id"]: body for body in bodies}


def moment(value: str) -> datetime:
    return parse_time(value)


def span_key(span: Json) -> tuple[str, str, datetime]:
    return (span["name"], span.get("type", "general"), moment(span["start_time"]))


def imported_by_source_id(fake: OpikFake) -> dict[str, Json]:
    """The traces `opik import` created, by the id of the file they came from."""
    by_source = {row["metadata"]["_import_id"]: row for row in fake.traces.values()}
    assert len(by_source) == len(fake.traces)
    return by_source


@pytest.mark.anyio
async def test_opik_import_loads_costs_names_scores_and_threads(
    tmp_path: Path, fake: OpikFake
) -> None:
    """Everything tracebridge wrote arrives through Opik's own importer, nothing renamed."""
    await write_opik_dir(tmp_path / "out", await sample_units())
    files = exported(tmp_path / "out")

    result = opik_import(tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert f"Successfully imported {len(files)} traces" in result.output

    imported = imported_by_source_id(fake)
    assert imported.keys() == files.keys()
    assert fake.duplicate_rows == {}
    assert len(fake.spans) == sum(len(body["spans"]) for body in files.values())
    for source_id, body in files.items():
        trace, spans = imported[source_id], body["spans"]
        assert trace["id"] != source_id  # re-minted
        assert trace["name"] == body["trace"]["name"] != "imported_trace"
        assert trace.get("thread_id") == body["trace"].get("thread_id")
        assert moment(trace["start_time"]) == moment(body["trace"]["start_time"])
        rows = [s for s in fake.spans.values() if s["trace_id"] == trace["id"]]
        assert Counter(map(span_key, rows)) == Counter(map(span_key, spans))  # names, types, times
        arrived = {span_key(s): s for s in rows}
        assert len(arrived) == len(rows)  # the key tells the spans apart
        for span in spans:
            row = arrived[span_key(span)]
            assert row["name"] != "imported_span"
            assert row.get("total_estimated_cost") == span.get("total_estimated_cost")
            scores = {(s["name"], s["value"]) for s in span.get("feedback_scores", [])}
            assert scores == {
                (name, score["value"])
                for (span_id, name), score in fake.span_scores.items()
                if span_id == row["id"]
            }
        scores = {(s["name"], s["value"]) for s in body["trace"].get("feedback_scores", [])}
        assert scores == {
            (name, score["value"])
            for (trace_id, name), score in fake.trace_scores.items()
            if trace_id == trace["id"]
        }

    # The data had all of it: costs, nameless LangWatch spans, both score levels, threads.
    all_spans = [s for body in files.values() for s in body["spans"]]
    assert sum(s["total_estimated_cost"] for s in all_spans if "total_estimated_cost" in s) > 0
    assert {"llm", "tool"} & {s["name"] for s in all_spans}  # named after their type
    assert fake.trace_scores
    assert [(name, s["value"]) for (_, name), s in fake.span_scores.items()] == [
        (SPAN_SCORE.name, SPAN_SCORE.value)
    ]
    assert len({t["thread_id"] for t in fake.traces.values() if "thread_id" in t}) == 3


@pytest.mark.anyio
async def test_what_opik_import_does_that_users_must_know(tmp_path: Path, fake: OpikFake) -> None:
    """The README's claims: ids re-minted (old trace id in metadata._import_id), span ttft moved
    to metadata._import_ttft, thread-level data not imported, one import per folder (a second
    does nothing, even of traces added since), --force duplicates. The folder stays readable
    by tracebridge (the importer's manifest is skipped)."""
    units = await sample_units()
    late = next(u for u in reversed(units) if isinstance(u, Trace))
    await write_opik_dir(tmp_path / "out", [u for u in units if u is not late])
    files = exported(tmp_path / "out")
    assert opik_import(tmp_path / "out").exit_code == 0

    imported = imported_by_source_id(fake)
    assert not files.keys() & {row["id"] for row in fake.traces.values()}
    ttfts = sorted(s["ttft"] for body in files.values() for s in body["spans"] if "ttft" in s)
    assert ttfts
    assert (
        sorted(
            s["metadata"]["_import_ttft"]
            for s in fake.spans.values()
            if "_import_ttft" in s.get("metadata", {})
        )
        == ttfts
    )
    assert not any("ttft" in s for s in fake.spans.values())
    assert fake.thread_scores == {}  # thread_<digest>.json is tracebridge's, not the importer's
    assert len(imported) == len(files)

    # One-shot: a manifest under the project folder; traces added later are not imported.
    (manifest,) = (tmp_path / "out").glob("*/projects/*/import_manifests/*/migration_manifest.db")
    await write_opik_dir(tmp_path / "out", units)
    assert len(exported(tmp_path / "out")) == len(files) + 1
    before, writes = len(fake.requests), len(_writes(fake))
    again = opik_import(tmp_path / "out")
    assert again.exit_code == 0
    assert "Import already completed" in again.output
    # Nothing written (a read may come: on a loaded machine one more request was seen once).
    late = [f"{r.method} {r.url.path}" for r in fake.requests[before:]]
    assert (len(_writes(fake)), len(fake.traces)) == (writes, len(files)), late

    # --force: everything again, under new ids: duplicates.
    assert opik_import(tmp_path / "out", "--force").exit_code == 0
    assert len(fake.traces) == 2 * len(files) + 1
    assert (
        Counter(row["metadata"]["_import_id"] for row in fake.traces.values()).most_common(1)[0][1]
        == 2
    )

    # tracebridge still reads the folder whole, manifest and all.
    source = OpikDirSource(tmp_path / "out", project=PROJECT, mappings=M)
    pages = [page async for page in source.pages(Window(), None)]
    assert [r for page in pages for r in page.rejected] == []
    assert manifest.is_file()
