"""Benchmarks: every copy path, with where its time goes.

    python benchmarks/run.py [--traces N] [--latency-ms 20] [--quick] [--repeat K] [--only TEXT]
                             [--spans-per-trace S] [--json FILE]

prints one table: for each path spans/s, records/s (traces + spans + scores read), requests per
1,000 traces on each platform, peak resident memory, the result (`ok`, or `lossy` when a record
was dead-lettered or lost), and the split of wall time into the fake, the bridge and waiting.

How it measures:

* Each row runs in a child process of its own, so its peak RSS (`ru_maxrss`) is its own. Inputs
  (a LangWatch export, an `opik-dir` folder) are written by another child first, so their
  memory is not counted; an API source's fake is seeded in the timed child (outside the timed
  part), so that row's memory includes the fake's copy of the data.
* File paths run at N and 10×N traces: their memory column shows whether memory grows with the
  project (it should not, beyond an index of where each record is).
* The corpora (the LangWatch export, and the Opik fake an `opik` source reads) have 1–11 spans
  per trace (4.4 on average; LangWatch ~2.8 KB per span: the trace's own data is spread over
  few spans), or `--spans-per-trace S` each (issue #10's corpus has 10), but one 250-span trace.
  spans/s depends on that shape: a trace costs more than a span.
* Before each timed run the parent flushes the disk (`os.sync`), so the writeback of the
  previous run's output or of the input just prepared is not billed to this row.
* API paths run against the stateful fakes in `tests/fakes` (in-process, no sockets), behind
  `tests/fakes/latency.py`: every request takes `--latency-ms` more (half before the fake sees
  it, half after), as a network round trip would.
* The split, measured in the timed run itself (no profiler): `fake` is the CPU time spent
  inside the fakes' handlers (per-thread CPU clock around each call), `bridge` the rest of the
  process's CPU time, `wait` the wall time in which the process used no CPU (latency waits,
  fsync, and the scheduler on a busy machine). Shares of wall time; with threads (the `opik`
  SDK) CPU can exceed wall.
* The floor row is what a file path cannot go below on this machine: the LangWatch export's
  lines parsed and written again by `orjson`, one file per trace, durable as the bridge's
  files are; no conversion, stash, index or checkpoint.
* `opik-dir → opik` runs next to Opik's own `opik import` (the `opik` SDK, a test extra) loading
  the same folder into the same fake at the same latency: the importer runs in-process, its
  httpx clients patched to the fake by respx, as `tests/opik/test_opik_import.py` runs it.
* The rate-limited Opik row runs `opik-dir → opik` through `tests/fakes/rate_limit.py`'s
  limiter around the Opik fake (Opik's buckets and headers, its window shortened and its budget
  scaled to the run: `rate_limited_opik`): the share of the budget used in each full window and
  in all of them, the share of requests answered 429, and the items lost.

`--quick` is the smoke run the tests use: 50 traces unless `--traces` is given. `--repeat K`
keeps each row's fastest of K runs (a shared machine's noise only ever slows a run down).
Needs the test extras (`pip install -e '.[test]'`).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.factories import langwatch_project, opik_project
from tests.fakes.langwatch import LangWatchFake
from tests.fakes.latency import LatencyTransport
from tests.fakes.opik import OpikFake
from tests.fakes.rate_limit import RateLimitedTransport

from tracebridge import Report, Settings, load_settings, migrate
from tracebridge._state import write_many_atomically

NOW = datetime.now(UTC)
PROJECT, WORKSPACE, OPIK_KEY = "b", "default", "opik-bench-key"
OPIK_IMPORT = "opik import"
FLOOR = "floor (lw-file lines → files)"
#: Spans per trace of both corpora (`--spans-per-trace`; None: 1–11, as the factories draw them).
SPANS_PER_TRACE: int | None = None
RATE_LIMITED = "opik-dir → opik, rate-limited"


@dataclass(frozen=True)
class Row:
    """One line of the table: `source:sink` (or one of the two named rows above), its size as a
    multiple of --traces, and the input it needs prepared ("lw-file", "opik-dir" or none)."""

    path: str
    scale: int = 1
    needs: str | None = None

    @property
    def label(self) -> str:
        return self.path.replace(":", " → ")


def rows(quick: bool) -> list[Row]:
    """Every path, in table order."""
    del quick  # every path runs in the smoke run too: that is what keeps the script honest
    return [
        Row("langwatch-file:opik-dir", 1, "lw-file"),
        Row("opik-dir:langwatch-file", 1, "opik-dir"),
        Row("langwatch-file:opik-dir", 10, "lw-file"),
        Row("opik-dir:langwatch-file", 10, "opik-dir"),
        Row(FLOOR, 1, "lw-file"),
        Row("opik-dir:opik", 1, "opik-dir"),
        Row(OPIK_IMPORT, 1, "opik-dir"),
        Row("langwatch-file:langwatch", 1, "lw-file"),
        Row("opik:opik-dir"),
        Row("langwatch:langwatch-file"),
        Row("langwatch:opik"),
        Row("opik:langwatch"),
        Row(RATE_LIMITED, 1, "opik-dir"),
    ]


# --- inputs ------------------------------------------------------------------------------------


def _langwatch_traces(n: int) -> Iterator[dict[str, Any]]:
    """The LangWatch corpus: n traces over n/5 threads, started 10 days ago (inside the
    collector's 31-day window), one 250-span trace, a 64 KB+ input every 50th trace."""
    start_ms = int((NOW - timedelta(days=10)).timestamp() * 1000)
    yield from langwatch_project(
        n,
        max(1, n // 5),
        seed=7,
        start_ms=start_ms,
        huge_trace_spans=250,
        big_input_every=50,
        spans_per_trace=SPANS_PER_TRACE,
    )


def _seed_opik(fake: OpikFake, n: int) -> None:
    for trace, spans, scores, span_scores in opik_project(
        n,
        max(1, n // 5),
        seed=4,
        start=NOW - timedelta(days=5),
        project_name=PROJECT,
        huge_trace_spans=250,
        spans_per_trace=SPANS_PER_TRACE,
    ):
        fake.add_trace(PROJECT, trace, spans, scores, span_scores)


def _settings(tmp: Path, lw: LangWatchFake | None = None, op: OpikFake | None = None) -> Settings:
    values: dict[str, Any] = {"state_dir": tmp / f"state-{time.monotonic_ns()}"}
    if lw is not None:
        values |= {"langwatch_api_key": lw.api_key, "langwatch_endpoint": lw.base_url}
    if op is not None:
        values |= {"opik_url": op.base_url, "opik_api_key": OPIK_KEY, "opik_workspace": WORKSPACE}
    return load_settings(None, values, environ={})


async def _prepare(needs: str, n: int, tmp: Path) -> None:
    """Write the row's input into `tmp`: `lw.jsonl` (a LangWatch export), and for "opik-dir"
    also `opik/` (the same traces as an Opik export folder, written by tracebridge)."""
    source = tmp / "lw.jsonl"
    with source.open("w", encoding="utf-8") as handle:
        for trace in _langwatch_traces(n):
            handle.write(json.dumps(trace, ensure_ascii=False) + "\n")
    if needs == "opik-dir":
        report = await migrate(
            f"langwatch-file:{source}",
            f"opik-dir:{tmp / 'opik'}",
            target_project=PROJECT,
            settings=_settings(tmp),
        )
        if report.lossy:
            raise SystemExit(f"preparing the opik-dir folder lost records: {report}")


# --- measuring ---------------------------------------------------------------------------------


class Meter:
    """Counts a fake's requests and answers, and the CPU time spent inside its handler (the
    calling thread's CPU clock around each call: a fake's handler runs synchronously, so this
    is exactly the fake's share, also when the `opik` SDK calls it from its own threads)."""

    def __init__(self, *, count_items: bool = False) -> None:
        self.requests = 0
        self.statuses: dict[int, int] = {}
        self.cpu = 0.0
        self.items_accepted = 0  # batch items in answered-2xx writes (count_items only)
        self._count_items = count_items
        self._lock = threading.Lock()

    def _record(self, request: httpx.Request, response: httpx.Response, cpu: float) -> None:
        with self._lock:
            self.requests += 1
            self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
            self.cpu += cpu
            if self._count_items and response.is_success and request.method in ("POST", "PUT"):
                self.items_accepted += _batch_items(request)

    def sync_handler(
        self, handler: Callable[[httpx.Request], httpx.Response], latency_ms: float
    ) -> Callable[[httpx.Request], httpx.Response]:
        """`handler` (a respx router's), metered and `latency_ms` slower (for sync clients)."""

        def metered(request: httpx.Request) -> httpx.Response:
            time.sleep(latency_ms / 2000)
            start = time.thread_time()
            response = handler(request)
            self._record(request, response, time.thread_time() - start)
            time.sleep(latency_ms / 2000)
            return response

        return metered

    def transport(
        self, inner: httpx.AsyncBaseTransport, *, timed: bool = True
    ) -> httpx.AsyncBaseTransport:
        """`inner`, metered; `timed=False` only counts (around waits, where CPU time would be
        other tasks')."""
        meter = self

        class Metered(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                start = time.thread_time()
                response = await inner.handle_async_request(request)
                cpu = time.thread_time() - start if timed else 0.0
                meter._record(request, response, cpu)
                return response

        return Metered()


def _batch_items(request: httpx.Request) -> int:
    """Items in an Opik batch write (each is one event of Opik Cloud's budget)."""
    content = request.content
    try:
        if request.headers.get("content-encoding") == "gzip":
            content = gzip.decompress(content)
        body = json.loads(content or b"null")
    except (ValueError, OSError):
        return 0
    if not isinstance(body, dict):
        return 0
    return sum(len(v) for k, v in body.items() if isinstance(v, list) and k != "tags")


@dataclass
class Clock:
    """Wall and process CPU time of the timed part."""

    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def _timed() -> Iterator[Clock]:
    clock = Clock()
    wall, cpu = time.perf_counter(), time.process_time()
    yield clock
    clock.wall, clock.cpu = time.perf_counter() - wall, time.process_time() - cpu


def _numbers(
    report: Report, clock: Clock, sent: dict[str, Meter], fake_cpu: float
) -> dict[str, Any]:
    """The row's numbers; `sent` counts the requests the bridge sent, per platform."""
    return {
        "traces": report.read.traces,
        "spans": report.read.spans,
        "records": report.read.traces + report.read.spans + report.read.scores,
        "seconds": clock.wall,
        "cpu": clock.cpu,
        "fake_cpu": fake_cpu,
        "requests": {name: m.requests for name, m in sent.items() if m.requests},
        "result": "lossy" if report.lossy else "ok",
    }


# --- the rows ----------------------------------------------------------------------------------


async def _file_row(row: Row, tmp: Path) -> dict[str, Any]:
    source, sink = row.path.split(":")
    where = {"langwatch-file": tmp / "lw.jsonl", "opik-dir": tmp / "opik"}
    to = {"opik-dir": tmp / "out", "langwatch-file": tmp / "back.jsonl"}
    settings = _settings(tmp)
    with _timed() as clock:
        report = await migrate(
            f"{source}:{where[source]}",
            f"{sink}:{to[sink]}",
            settings=settings,
            source_project=PROJECT if source == "opik-dir" else None,
            target_project=PROJECT if sink == "opik-dir" else None,
        )
    return _numbers(report, clock, {}, 0.0)


def _floor_row(tmp: Path) -> dict[str, Any]:
    """What a file path cannot go below here: each line of the LangWatch export parsed and
    written again by `orjson`, one file per trace (as `opik-dir` has), durable as the bridge
    makes its files (`write_many_atomically`, 60 traces at a time); no conversion, no state."""
    out = tmp / "out"
    out.mkdir()
    traces = spans = 0
    batch: list[tuple[Path, bytes]] = []
    with _timed() as clock:
        with (tmp / "lw.jsonl").open("rb") as handle:
            for line in handle:
                record = orjson.loads(line)
                traces += 1
                spans += len(record["spans"])
                batch.append((out / f"{record['trace_id']}.json", orjson.dumps(record)))
                if len(batch) == 60:
                    write_many_atomically(batch)
                    batch = []
        write_many_atomically(batch)
    return {
        "traces": traces,
        "spans": spans,
        "records": traces + spans,
        "seconds": clock.wall,
        "cpu": clock.cpu,
        "fake_cpu": 0.0,
        "requests": {},
        "result": "ok",
    }


async def _api_row(
    row: Row,
    n: int,
    tmp: Path,
    latency_ms: float,
    wrap_opik: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
) -> tuple[dict[str, Any], OpikFake, Report, Meter]:
    """A path with an API end (or two): the fakes seeded as the source needs, then timed."""
    source, sink = row.path.split(":")
    lw, op = LangWatchFake(), OpikFake(api_key=OPIK_KEY, workspace=WORKSPACE)
    if source == "langwatch":
        for trace in _langwatch_traces(n):
            lw.add_trace(trace)
    elif source == "opik":
        _seed_opik(op, n)
    where = {
        "langwatch-file": f"langwatch-file:{tmp / 'lw.jsonl'}",
        "opik-dir": f"opik-dir:{tmp / 'opik'}",
        "langwatch": "langwatch",
        "opik": "opik",
    }
    to = {
        "langwatch-file": f"langwatch-file:{tmp / 'back.jsonl'}",
        "opik-dir": f"opik-dir:{tmp / 'out'}",
        "langwatch": "langwatch",
        "opik": "opik",
    }
    fakes = {"LangWatch": Meter(), "Opik": Meter()}  # what the fakes cost
    # What the bridge sent; batch items are counted (a parse of each body) on the rate-limited
    # row only, so the other rows' "bridge" CPU holds no meter work.
    sent = {"LangWatch": Meter(), "Opik": Meter(count_items=wrap_opik is not None)}
    opik_transport: httpx.AsyncBaseTransport = fakes["Opik"].transport(op.transport)
    if wrap_opik is not None:  # a 429 costs a round trip too: the limiter sits behind latency
        opik_transport = wrap_opik(opik_transport)
    transports = {
        "langwatch": sent["LangWatch"].transport(
            LatencyTransport(fakes["LangWatch"].transport(lw.transport), latency_ms), timed=False
        ),
        "opik": sent["Opik"].transport(LatencyTransport(opik_transport, latency_ms), timed=False),
    }
    settings = _settings(tmp, lw, op)
    with _timed() as clock:
        report = await migrate(
            where[source],
            to[sink],
            settings=settings,
            transports=transports,
            source_project=PROJECT if source.startswith("opik") else None,
            target_project=("copy" if source == "opik" else PROJECT)
            if sink.startswith("opik")
            else None,
        )
    numbers = _numbers(report, clock, sent, sum(m.cpu for m in fakes.values()))
    return numbers, op, report, sent["Opik"]


def _opik_import_row(tmp: Path, latency_ms: float) -> dict[str, Any]:
    """Opik's own `opik import` loading the `opik-dir` folder into the Opik fake, in-process
    (click entry point), every request through the fake at `latency_ms`; timed until its
    clients have ended (their background threads flushed)."""
    from click.testing import CliRunner
    from opik.api_objects import connection_resources
    from opik.cli.main import cli as opik_cli

    import opik

    fake = OpikFake(api_key=OPIK_KEY, workspace=WORKSPACE)
    config = tmp / "opik.config"
    config.write_text("")
    os.environ.update(
        {
            "OPIK_URL_OVERRIDE": fake.base_url,
            "OPIK_WORKSPACE": WORKSPACE,
            "OPIK_API_KEY": OPIK_KEY,
            "OPIK_CONFIG_PATH": str(config),
            "OPIK_SENTRY_ENABLE": "false",
            "OPIK_ANALYTICS_ENABLE": "false",
        }
    )
    clients: list[opik.Opik] = []

    class Recorded(opik.Opik):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            clients.append(self)

    opik.Opik = Recorded  # type: ignore[misc]
    meter = Meter()
    # respx patches every httpx client to the router and calls `router.handler` per request.
    fake.router.handler = meter.sync_handler(fake.router.handler, latency_ms)  # type: ignore[method-assign,assignment]
    files = [json.loads(p.read_text()) for p in (tmp / "opik").glob("*/projects/*/trace_*.json")]
    spans = sum(len(body["spans"]) for body in files)
    scores = sum(
        len(item.get("feedback_scores") or [])
        for body in files
        for item in [body["trace"], *body["spans"]]
    )
    args = ["import", WORKSPACE, PROJECT, "traces", "--path", str(tmp / "opik")]
    with fake.router, _timed() as clock:
        result = CliRunner().invoke(opik_cli, args, catch_exceptions=False)
        for client in clients:
            client.end()
        connection_resources.MANAGER.close_all()
    complete = result.exit_code == 0 and len(fake.traces) == len(files) and len(fake.spans) == spans
    return {
        "traces": len(files),
        "spans": spans,
        "records": len(files) + spans + scores,
        "seconds": clock.wall,
        "cpu": clock.cpu,
        "fake_cpu": meter.cpu,
        "requests": {"Opik": meter.requests},
        "result": "ok" if complete else "lossy",
    }


#: A rate-limit hook: wraps the Opik fake's transport in a rate limiter and returns it with the
#: budget it enforces, in events (batch items) per minute. Latency is added in front of it.
RateLimitHook = Callable[[httpx.AsyncBaseTransport], tuple[httpx.AsyncBaseTransport, float]]


#: The rate-limited row's window: Opik's limiter counts events per 60 s; the row shortens the
#: window (and scales the budget to the run) so it spans several windows in seconds, not minutes.
#: What it measures, how full the pacer keeps each window and how many 429s it provokes, does
#: not depend on the window's length.
RATE_WINDOW_S = 2.0


def rate_limited_opik(n: int, window: float = RATE_WINDOW_S) -> RateLimitHook:
    """Wrap the Opik fake in `tests/fakes/rate_limit.py`'s limiter (Opik Cloud's buckets: a
    workspace budget and a user budget twice as large, batch items as events, the
    `Opik-*-Remaining-Limit` headers, 429 + `RateLimit-Reset`) on the real clock, with a
    workspace budget of `n` events per `window` seconds (an `n`-trace project holds about 7
    events per trace: the run spans about seven windows; at 2 s a window's budget is well below
    what the bridge can send, so the row measures the pacing, not the bridge's CPU). Returns the
    wrapper and its budget in events per minute."""
    budget = max(20, n)

    def hook(inner: httpx.AsyncBaseTransport) -> tuple[httpx.AsyncBaseTransport, float]:
        limited = RateLimitedTransport(
            inner,
            budgets={"User": 2 * budget, "Workspace": budget},
            clock=time.monotonic,
            window=window,
        )
        return limited, budget * 60 / window

    return hook


async def _rate_limited_row(
    row: Row, n: int, tmp: Path, latency_ms: float, hook: RateLimitHook
) -> dict[str, Any]:
    """`opik-dir → opik` through a rate-limited Opik: the share of the budget used (batch items
    accepted per minute of the run), the share of requests answered 429, and the items lost
    (reported written yet not in the fake, dead-lettered, or lost by the source; records
    skipped by a documented rule are not lost)."""
    budget: list[float] = []
    limiters: list[httpx.AsyncBaseTransport] = []

    def wrap(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        limited, per_minute = hook(inner)
        budget.append(per_minute)
        limiters.append(limited)
        return limited

    base = Row("opik-dir:opik", row.scale, row.needs)
    numbers, fake, report, meter = await _api_row(base, n, tmp, latency_ms, wrap)
    minutes = numbers["seconds"] / 60
    rows_in_fake = sum(
        len(t)
        for t in (fake.traces, fake.spans, fake.trace_scores, fake.span_scores, fake.thread_scores)
    )
    written = report.written.traces + report.written.spans + report.written.scores
    numbers |= {
        "budget_used": meter.items_accepted / (budget[0] * minutes) if minutes else 0.0,
        "full_windows_used": _windows_used(limiters[0], full_only=True),
        "windows_used": _windows_used(limiters[0], full_only=False),
        "share_429": meter.statuses.get(429, 0) / max(1, meter.requests),
        # claimed written yet not in the fake, dead-lettered, or lost by the source
        "items_lost": max(0, written - rows_in_fake) + report.dead_lettered.total() + report.lost,
    }
    return numbers


def _windows_used(limiter: httpx.AsyncBaseTransport, *, full_only: bool) -> float | None:
    """When `limiter` is `RateLimitedTransport`: the share of the tightest bucket's budget the
    run's windows held, of all of them or of all but the last (a partial one, cut by the end of
    the run): what "≥ 90 % of the budget" is about. (Over wall time the share can pass 100 %:
    a window's budget is spendable at its start.)"""
    if not isinstance(limiter, RateLimitedTransport):
        return None
    name = min(limiter.budgets, key=limiter.budgets.__getitem__)
    windows = limiter.windows[name][:-1] if full_only else limiter.windows[name]
    if not windows:
        return None
    return sum(w.used for w in windows) / (len(windows) * limiter.budgets[name])


async def _one(row: Row, n: int, tmp: Path, latency_ms: float) -> dict[str, Any]:
    if row.path == OPIK_IMPORT:
        return _opik_import_row(tmp, latency_ms)
    if row.path == FLOOR:
        return _floor_row(tmp)
    if row.path == RATE_LIMITED:
        return await _rate_limited_row(row, n, tmp, latency_ms, rate_limited_opik(n))
    if {"langwatch", "opik"} & set(row.path.split(":")):
        return (await _api_row(row, n, tmp, latency_ms))[0]
    return await _file_row(row, tmp)


# --- the table ---------------------------------------------------------------------------------


def _child(args: argparse.Namespace) -> None:
    global SPANS_PER_TRACE
    SPANS_PER_TRACE = args.spans_per_trace
    row = next(r for r in rows(False) if f"{r.path}@{r.scale}" == args.one)
    tmp = Path(args.dir)
    if args.prepare:
        anyio.run(_prepare, "opik-dir", args.traces, tmp)
        return
    numbers = anyio.run(_one, row, args.traces, tmp, args.latency_ms)
    numbers["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(numbers))


def _run_child(
    row: Row, n: int, tmp: Path, latency_ms: float, *, prepare: bool, spans: int | None = None
) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--one",
        f"{row.path}@{row.scale}",
        "--traces",
        str(n),
        "--dir",
        str(tmp),
        "--latency-ms",
        str(latency_ms),
        *(["--spans-per-trace", str(spans)] if spans is not None else []),
    ]
    if not prepare:
        os.sync()  # the disk settled: earlier writes are not billed to the timed run
    done = subprocess.run(
        [*command, *(["--prepare"] if prepare else [])], capture_output=True, text=True
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        print(f"{row.label} ({'preparing' if prepare else 'timed run'}) failed:\n{tail}")
        return {"error": f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1]) if not prepare else {}


def _cells(row: Row, r: dict[str, Any]) -> list[str]:
    if "error" in r or "skipped" in r:
        return [row.label, *[""] * 7, r.get("error") or r["skipped"]]
    wall = r["seconds"]
    fake = r["fake_cpu"] / wall
    bridge = max(0.0, r["cpu"] - r["fake_cpu"]) / wall
    wait = max(0.0, wall - r["cpu"]) / wall
    cells = [
        row.label,
        f"{r['traces']:,}",
        f"{wall:,.1f}",
        f"{r['spans'] / wall:,.0f}",
        f"{r['records'] / wall:,.0f}",
        " / ".join(f"{k} {v * 1000 / max(1, r['traces']):,.0f}" for k, v in r["requests"].items())
        or "-",
        f"{r['peak_mib']:,.0f} MiB",
        f"{fake:.0%} / {bridge:.0%} / {wait:.0%}",
        r["result"],
    ]
    if "budget_used" in r:
        if r.get("full_windows_used") is not None:
            used = (
                f"budget used: {r['full_windows_used']:.0%} of each full window, "
                f"{r['windows_used']:.0%} of all windows"
            )
        else:
            used = f"budget used {r['budget_used']:.0%} of the run"
        cells[-1] += f" ({used}, 429s {r['share_429']:.1%}, items lost {r['items_lost']})"
    return cells


HEADER = [
    "path",
    "traces",
    "seconds",
    "spans/s",
    "records/s",
    "requests per 1,000 traces",
    "peak RSS",
    "fake / bridge / wait",
    "result",
]


def _print_table(lines: list[list[str]]) -> None:
    table = [HEADER, *lines]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    for i, line in enumerate(table):
        print(
            "  ".join(
                c.ljust(w) if j in (0, len(HEADER) - 1) else c.rjust(w)
                for j, (c, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--traces", type=int, help="traces per path (default 1000; --quick 50)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="per API request")
    parser.add_argument("--quick", action="store_true", help="the smoke run: 50 traces")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run each row this many times, keep the fastest"
    )
    parser.add_argument(
        "--only", action="append", help="only the rows whose label contains this (repeatable)"
    )
    parser.add_argument(
        "--spans-per-trace",
        type=int,
        help="spans in each trace of both corpora (default: 1-11, 4.4 on average; issue #10: 10)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.traces is None:
        args.traces = 50 if args.quick else 1000
    if args.one:
        _child(args)
        return
    n, latency_ms, spans = args.traces, args.latency_ms, args.spans_per_trace
    load = os.getloadavg()
    started = time.perf_counter()
    lines: list[list[str]] = []
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        prepared: dict[int, Path] = {}
        for row in rows(args.quick):
            if args.only and not any(part in row.label for part in args.only):
                continue
            size = n * row.scale
            tmp = Path(scratch) / f"{len(results)}"
            tmp.mkdir()
            if row.needs is not None:
                key = size  # one child writes both inputs of a size: fewer interpreters
                if key not in prepared:
                    prepared[key] = tmp
                    result = _run_child(row, size, tmp, latency_ms, prepare=True, spans=spans)
                    if "error" in result:
                        lines.append(_cells(row, result))
                        results.append({"path": row.label, **result})
                        continue
                for name in ("lw.jsonl", "opik"):  # the input, shared (read-only) by the rows
                    if (prepared[key] / name).exists() and prepared[key] != tmp:
                        (tmp / name).symlink_to(prepared[key] / name)
            runs = []
            for _ in range(args.repeat):  # each run writes a fresh output
                shutil.rmtree(tmp / "out", ignore_errors=True)
                (tmp / "back.jsonl").unlink(missing_ok=True)
                if (tmp / "opik").exists():  # `opik import`'s manifest: it would skip it all
                    for manifest in (tmp / "opik").resolve().glob("**/import_manifests"):
                        shutil.rmtree(manifest)
                runs.append(_run_child(row, size, tmp, latency_ms, prepare=False, spans=spans))
            timed = [r for r in runs if "seconds" in r]
            result = min(timed, key=lambda r: r["seconds"]) if timed else runs[0]
            lines.append(_cells(row, result))
            results.append({"path": row.label, "scale": row.scale, **result})
    _print_table(lines)
    shape = f"{spans} spans" if spans is not None else "1-11 spans (4.4 on average)"
    print(
        f"{n:,} traces per path (file paths also at {10 * n:,}), {shape} per trace; "
        "API requests at "
        f"{latency_ms:g} ms each; fake / bridge / wait: CPU in the fakes, other CPU, no CPU"
        f" (latency, I/O, a busy machine); load average {load[0]:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} cores; "
        f"{time.perf_counter() - started:,.0f} s in all."
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if any("error" in r or r.get("result") == "lossy" for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
