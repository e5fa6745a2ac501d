"""The benchmark script runs end to end (`--quick`: 50 traces per path), prints a row for every
path the README's table promises, and no path loses a record; so the script cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
PATHS = (
    "langwatch-file → opik-dir",
    "opik-dir → langwatch-file",
    "opik-dir → opik",
    "opik import",
    "langwatch-file → langwatch",
    "opik → opik-dir",
    "langwatch → langwatch-file",
    "langwatch → opik",
    "opik → langwatch",
    "opik-dir → opik, rate-limited",
)
COLUMNS = ("spans/s", "records/s", "requests per 1,000 traces", "peak RSS", "fake / bridge / wait")


def test_the_quick_benchmark_prints_every_path_and_loses_nothing(tmp_path: Path) -> None:
    numbers = tmp_path / "numbers.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--latency-ms", "2", "--json", str(numbers)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    header, rule, *lines = done.stdout.splitlines()
    assert all(column in header for column in COLUMNS)
    assert set(rule) == {"-", " "}
    rows = json.loads(numbers.read_text())
    assert {row["path"] for row in rows} == set(PATHS)
    for path in PATHS:  # each in the printed table too
        assert any(line.startswith(path + " ") for line in lines), path
    measured = [row for row in rows if "skipped" not in row]
    assert [row["path"] for row in rows if "skipped" in row] == ["opik-dir → opik, rate-limited"]
    assert all(row["result"] == "ok" for row in measured), rows
    assert "lossy" not in done.stdout
    files = [row for row in measured if row["path"] == "langwatch-file → opik-dir"]
    assert sorted(row["traces"] for row in files) == [50, 500]  # N and 10×N
    for row in measured:
        assert row["traces"] >= 50, row
        assert row["spans"] > row["traces"], row
        assert 0 <= row["fake_cpu"] <= row["cpu"] + 0.05, row
        if row["path"].endswith(("→ opik", "→ langwatch", "opik import")):
            assert sum(row["requests"].values()) > 0, row  # an API sink made requests
