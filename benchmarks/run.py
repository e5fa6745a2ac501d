"""Benchmarks: records/s, requests per 1000 traces and peak memory for each copy path.

    python benchmarks/run.py [--traces N]

File paths run at N and 4×N traces so the peak-memory column shows whether memory grows with
the project (it should not, beyond the index of record locations). API paths run against the
stateful fakes in `tests/fakes`, in-process: their times are the bridge's CPU cost, not a network's,
and their memory includes the fake's copy of the data, so it is not reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.factories import langwatch_project, opik_project
from tests.fakes.langwatch import LangWatchFake
from tests.fakes.opik import OpikFake

from tracebridge import Report, load_settings, migrate

NOW = datetime.now(UTC)


def _records(report: Report) -> int:
    return report.read.traces + report.read.spans + report.read.scores


async def _timed(work: Callable[[], Awaitable[Report]]) -> tuple[Report, float, int]:
    tracemalloc.start()
    start = time.perf_counter()
    report = await work()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return report, seconds, peak


def _write_langwatch_file(path: Path, n: int) -> None:
    start_ms = int((NOW - timedelta(days=10)).timestamp() * 1000)
    with path.open("w", encoding="utf-8") as handle:
        for trace in langwatch_project(
            n, max(1, n // 5), seed=7, start_ms=start_ms, big_input_every=50
        ):
            handle.write(json.dumps(trace, ensure_ascii=False) + "\n")


async def file_paths(n: int, rows: list[tuple[str, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = root / "lw.jsonl"
        _write_langwatch_file(source, n)
        settings = load_settings(None, {"state_dir": root / "state"}, environ={})
        report, seconds, peak = await _timed(
            lambda: migrate(
                f"langwatch-file:{source}",
                f"opik-dir:{root / 'out'}",
                target_project="bench",
                settings=settings,
            )
        )
        rows.append(_row(f"langwatch-file → opik-dir ({n} traces)", report, seconds, None, peak))
        report, seconds, peak = await _timed(
            lambda: migrate(
                f"opik-dir:{root / 'out'}",
                f"langwatch-file:{root / 'back.jsonl'}",
                source_project="bench",
                settings=settings,
            )
        )
        rows.append(_row(f"opik-dir → langwatch-file ({n} traces)", report, seconds, None, peak))


async def api_paths(n: int, rows: list[tuple[str, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lw, op = LangWatchFake(), OpikFake()
        start_ms = int((NOW - timedelta(days=10)).timestamp() * 1000)
        for trace in langwatch_project(
            n, max(1, n // 5), seed=3, start_ms=start_ms, huge_trace_spans=250, big_input_every=50
        ):
            lw.add_trace(trace)
        settings = load_settings(
            None,
            {
                "langwatch_api_key": "sk-lw-test",
                "langwatch_endpoint": lw.base_url,
                "opik_url": op.base_url,
                "state_dir": Path(tmp) / "state",
            },
            environ={},
        )
        transports = {"langwatch": lw.transport, "opik": op.transport}
        lw_before, op_before = len(lw.requests), len(op.requests)
        report, seconds, _ = await _timed(
            lambda: migrate(
                "langwatch",
                "opik",
                target_project="bench",
                settings=settings,
                transports=transports,
            )
        )
        lw_sent = _per_1000(len(lw.requests) - lw_before, report)
        requests = f"LW {lw_sent} / Opik {_per_1000(len(op.requests) - op_before, report)}"
        rows.append(_row(f"langwatch → opik ({n} traces)", report, seconds, requests, None))

        src, dst = OpikFake(), LangWatchFake()
        for trace, spans, scores, span_scores in opik_project(
            n,
            max(1, n // 5),
            seed=4,
            start=NOW - timedelta(days=5),
            project_name="bench",
            huge_trace_spans=250,
        ):
            src.add_trace("bench", trace, spans, scores, span_scores)
        settings = load_settings(
            None,
            {
                "langwatch_api_key": "sk-lw-test",
                "langwatch_endpoint": dst.base_url,
                "opik_url": src.base_url,
                "state_dir": Path(tmp) / "state2",
            },
            environ={},
        )
        transports = {"langwatch": dst.transport, "opik": src.transport}
        report, seconds, _ = await _timed(
            lambda: migrate(
                "opik",
                "langwatch",
                source_project="bench",
                settings=settings,
                transports=transports,
            )
        )
        opik_sent = _per_1000(len(src.requests), report)
        requests = f"Opik {opik_sent} / LW {_per_1000(len(dst.requests), report)}"
        rows.append(_row(f"opik → langwatch ({n} traces)", report, seconds, requests, None))


def _per_1000(requests: int, report: Report) -> str:
    return f"{requests * 1000 / max(1, report.read.traces):.0f}"


def _row(
    name: str, report: Report, seconds: float, requests: str | None, peak: int | None
) -> tuple[str, ...]:
    return (
        name,
        f"{report.read.traces / seconds:,.0f}",
        f"{_records(report) / seconds:,.0f}",
        requests or "-",
        f"{peak / 2**20:,.1f} MiB" if peak is not None else "n/a",
        "lossy" if report.lossy else "ok",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", type=int, default=1000)
    n = parser.parse_args().traces
    rows: list[tuple[str, ...]] = [
        ("path", "traces/s", "records/s", "requests per 1000 traces", "peak memory", "result")
    ]

    async def all_paths() -> None:
        await file_paths(n, rows)
        await file_paths(4 * n, rows)
        await api_paths(n, rows)

    anyio.run(all_paths)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print("records = traces + spans + scores read. API paths run against in-process fakes.")


if __name__ == "__main__":
    main()
