"""Benchmarks: records/s, requests per 1000 traces and peak memory for each copy path.

    python benchmarks/run.py [--traces N]

Each path runs in a child process of its own, so its peak resident memory (`ru_maxrss`) is its
own and timing carries no tracing overhead. File paths run at N and 4×N traces: the memory column
shows whether memory grows with the project (it should not, beyond an index of where each record
is). API paths run against the stateful fakes in `tests/fakes`, in-process: their times are the
bridge's CPU cost and the fake's, not a network's, and their memory includes the fake's copy of
the data. Needs the test extras (`pip install -e '.[test]'`).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.factories import langwatch_project, opik_project
from tests.fakes.langwatch import LangWatchFake
from tests.fakes.opik import OpikFake

from tracebridge import Report, load_settings, migrate

NOW = datetime.now(UTC)
PATHS = ("langwatch-file:opik-dir", "opik-dir:langwatch-file", "langwatch:opik", "opik:langwatch")


def _write_langwatch_file(path: Path, n: int) -> None:
    start_ms = int((NOW - timedelta(days=10)).timestamp() * 1000)
    with path.open("w", encoding="utf-8") as handle:
        for trace in langwatch_project(
            n, max(1, n // 5), seed=7, start_ms=start_ms, big_input_every=50
        ):
            handle.write(json.dumps(trace, ensure_ascii=False) + "\n")


async def _one(path: str, n: int, tmp: Path) -> dict[str, Any]:
    """Run one path on `n` traces; the numbers as a dict."""
    settings = load_settings(None, {"state_dir": tmp / "state"}, environ={})
    requests: dict[str, int] = {}
    if path.startswith(("langwatch-file", "opik-dir")):
        source = tmp / "lw.jsonl"
        _write_langwatch_file(source, n)
        if path == "opik-dir:langwatch-file":  # prepare the folder, then time the way back
            await migrate(
                f"langwatch-file:{source}",
                f"opik-dir:{tmp / 'out'}",
                target_project="b",
                settings=settings,
            )
            settings = load_settings(None, {"state_dir": tmp / "state2"}, environ={})
            start = time.perf_counter()
            report = await migrate(
                f"opik-dir:{tmp / 'out'}",
                f"langwatch-file:{tmp / 'back.jsonl'}",
                source_project="b",
                settings=settings,
            )
        else:
            start = time.perf_counter()
            report = await migrate(
                f"langwatch-file:{source}",
                f"opik-dir:{tmp / 'out'}",
                target_project="b",
                settings=settings,
            )
    else:
        lw, op = LangWatchFake(), OpikFake()
        if path == "langwatch:opik":
            start_ms = int((NOW - timedelta(days=10)).timestamp() * 1000)
            for trace in langwatch_project(
                n,
                max(1, n // 5),
                seed=3,
                start_ms=start_ms,
                huge_trace_spans=250,
                big_input_every=50,
            ):
                lw.add_trace(trace)
            projects = {"target_project": "b"}
        else:
            for trace, spans, scores, span_scores in opik_project(
                n,
                max(1, n // 5),
                seed=4,
                start=NOW - timedelta(days=5),
                project_name="b",
                huge_trace_spans=250,
            ):
                op.add_trace("b", trace, spans, scores, span_scores)
            projects = {"source_project": "b"}
        settings = load_settings(
            None,
            {
                "langwatch_api_key": "sk-lw-test",
                "langwatch_endpoint": lw.base_url,
                "opik_url": op.base_url,
                "state_dir": tmp / "s",
            },
            environ={},
        )
        source, sink = path.split(":")
        start = time.perf_counter()
        report = await migrate(
            source,
            sink,
            settings=settings,
            transports={"langwatch": lw.transport, "opik": op.transport},
            **projects,
        )
        requests = {"LangWatch": len(lw.requests), "Opik": len(op.requests)}
    seconds = time.perf_counter() - start
    return _numbers(report, seconds, requests)


def _numbers(report: Report, seconds: float, requests: dict[str, int]) -> dict[str, Any]:
    traces = report.read.traces
    return {
        "traces": traces,
        "records": traces + report.read.spans + report.read.scores,
        "seconds": seconds,
        "requests": {k: v * 1000 / max(1, traces) for k, v in requests.items()},
        "lossy": report.lossy,
    }


def _child(path: str, n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        numbers = anyio.run(_one, path, n, Path(tmp))
    numbers["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(numbers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", type=int, default=1000)
    parser.add_argument("--one", choices=PATHS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _child(args.one, args.traces)
        return
    n = args.traces
    runs = (
        [(p, n) for p in PATHS[:2]] + [(p, 4 * n) for p in PATHS[:2]] + [(p, n) for p in PATHS[2:]]
    )
    rows = [
        (
            "path",
            "traces",
            "traces/s",
            "records/s",
            "requests per 1000 traces",
            "peak RSS",
            "result",
        )
    ]
    for path, size in runs:
        out = subprocess.run(
            [sys.executable, __file__, "--one", path, "--traces", str(size)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        rows.append(
            (
                path.replace(":", " → "),
                str(r["traces"]),
                f"{r['traces'] / r['seconds']:,.0f}",
                f"{r['records'] / r['seconds']:,.0f}",
                " / ".join(f"{k} {v:,.0f}" for k, v in r["requests"].items()) or "-",
                f"{r['peak_mib']:,.0f} MiB",
                "lossy" if r["lossy"] else "ok",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print("records = traces + spans + scores read; API paths run against in-process fakes")
    print("(their time and memory include the fakes').")


if __name__ == "__main__":
    main()
