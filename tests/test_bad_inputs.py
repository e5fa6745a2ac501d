"""The bad-input corpus: every file in `tests/bad_inputs/` goes through `tracebridge migrate`.

One case a file (the large ones are generated here instead of being committed). For each, the
test asserts the exit code, the reasons in the dead-letter file, the warnings and skip rules the
summary names, and that every good record of the file arrived exactly once, with all its spans,
and nothing else did. A loss that was ever fixed gets a case here so it cannot come back.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tracebridge.cli import main

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
GOOD = {"good_1": 2, "good_2": 2, "good_3": 2}
BASE_MS = 1_773_082_931_000


def _trace(tid: str, n_spans: int = 2) -> dict[str, Any]:
    """A small valid LangWatch trace (read shape), as the committed fixtures hold."""
    spans = [
        {
            "span_id": f"{tid}_s{i}",
            "trace_id": tid,
            "parent_id": None if i == 0 else f"{tid}_s{i - 1}",
            "name": f"step_{i}",
            "type": "span",
            "timestamps": {"started_at": BASE_MS + i, "finished_at": BASE_MS + 500 + i},
        }
        for i in range(n_spans)
    ]
    return {
        "trace_id": tid,
        "project_id": "pBadInputs01",
        "metadata": {},
        "timestamps": {"started_at": BASE_MS, "inserted_at": BASE_MS + 900},
        "spans": spans,
    }


def _good_lines() -> str:
    return "".join(
        line
        for line in (CORPUS / "malformed_json.jsonl").read_text(encoding="utf-8").splitlines(True)
        if line.startswith('{"trace_id": "good_')
    )


def _deep_nesting(path: Path) -> None:
    deep = _trace("deep_1")
    text = json.dumps(deep).replace(
        '"metadata": {}', '"metadata": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    path.write_text(_good_lines() + text + "\n", encoding="utf-8")


def _huge_string(path: Path) -> None:
    huge = _trace("huge_1")
    huge["spans"][1]["output"] = {"type": "text", "value": "é" * 3_000_000}
    path.write_text(_good_lines() + json.dumps(huge, ensure_ascii=False) + "\n", encoding="utf-8")


def _wide_and_deep_tree(path: Path) -> None:
    path.write_text(_good_lines() + json.dumps(_trace("tree_1", 20_000)) + "\n", encoding="utf-8")


def _name_not_utf8(path: Path) -> None:
    """An opik-dir folder (the `repeated_identical_span` one) where one trace file's name is
    bytes that are not UTF-8, as a copy from another system may leave."""
    shutil.copytree(CORPUS / "opik_dir" / "repeated_identical_span", path)
    first = sorted(path.rglob("trace_*.json"))[0]
    os.rename(first, os.fsencode(first.parent) + b"/trace_caf\xe9.json")


@dataclass(frozen=True)
class Case:
    """One corpus file and what `migrate --to opik-dir` must do with it."""

    name: str
    exit_code: int
    #: good trace id -> its number of spans; each must arrive exactly once, nothing else may.
    arrives: dict[str, int] = field(default_factory=lambda: dict(GOOD))
    #: substrings of the dead-letter reasons, one per dead-letter entry (order-free).
    dead_letters: tuple[str, ...] = ()
    #: substrings the summary (stdout) or the error (stderr) must contain.
    says: tuple[str, ...] = ()
    #: builds the input (large cases); None: the committed file `tests/bad_inputs/<name>`.
    build: Callable[[Path], None] | None = None
    #: `opik-dir`: the case is a folder under `tests/bad_inputs/opik_dir/`, copied to a
    #: `langwatch-file` (the other direction).
    source: str = "langwatch-file"


CASES = [
    Case("malformed_json.jsonl", 1, dead_letters=("not JSON",)),
    Case("truncated_tail.jsonl", 1, dead_letters=("not JSON",)),
    Case("not_utf8.jsonl", 1, dead_letters=("not UTF-8",)),
    Case("missing_trace_id.jsonl", 1, dead_letters=("trace_id",)),
    Case("wrong_types.jsonl", 1, dead_letters=("spans",)),
    Case("bad_timestamp.jsonl", 1, dead_letters=("started_at",)),
    Case("bom_crlf.jsonl", 0),
    # U+2028/U+2029/U+0085 inside strings are not line ends (a `splitlines()` reader split them).
    Case("line_separators.jsonl", 0, arrives={**GOOD, "sep_1": 2}),
    Case("repeated_trace_ids.jsonl", 0, arrives={**GOOD, "good_1": 3}, says=("repeated",)),
    Case("trace_without_spans.jsonl", 0, arrives={**GOOD, "empty_1": 0}),
    Case("orphan_span.jsonl", 0, arrives={**GOOD, "orphan_1": 3}, says=("not in the trace",)),
    Case(
        "span_own_parent.jsonl",
        0,
        arrives={**GOOD, "cyc_self": 3},
        says=("cyc_self_s2 names itself as its parent",),
    ),
    Case("two_span_cycle.jsonl", 0, arrives={**GOOD, "cyc_two": 4}, says=("parent cycle",)),
    Case("cycle_through_root.jsonl", 0, arrives={**GOOD, "cyc_root": 3}, says=("parent cycle",)),
    Case(
        "duplicate_span_ids.jsonl",
        1,
        arrives={**GOOD, "dup_1": 2},
        dead_letters=("appears more than once in the trace with different content",),
    ),
    Case("lone_surrogate.jsonl", 1, dead_letters=("lone surrogate (U+D800)",)),
    Case("nan_metrics.jsonl", 1, dead_letters=("is Infinity",)),
    Case("exporter_json_array.json", 0),
    Case(
        "exported_without_spans.jsonl", 0, arrives=dict.fromkeys(GOOD, 0), says=("--include-spans",)
    ),
    Case("preview_cut.jsonl", 0, arrives={**GOOD, "cut_1": 2}, says=("64 KB", "cut_1")),
    Case("ui_export.jsonl", 2, arrives={}, says=("langwatch trace export",)),
    Case("langwatch_csv_export.csv", 2, arrives={}, says=("CSV",)),
    Case("deep_nesting.jsonl", 1, dead_letters=("nested",), build=_deep_nesting),
    Case("huge_string.jsonl", 0, arrives={**GOOD, "huge_1": 2}, build=_huge_string),
    Case(
        "tree_20000_spans.jsonl", 0, arrives={**GOOD, "tree_1": 20_000}, build=_wide_and_deep_tree
    ),
    Case("malformed_trace_file", 1, dead_letters=("not JSON",), source="opik-dir"),
    Case(
        "repeated_identical_span",
        0,
        says=("spans repeated in their trace with identical content",),
        source="opik-dir",
    ),
    Case("csv_export", 2, arrives={}, says=("opik export --format csv",), source="opik-dir"),
    Case("name_not_utf8", 0, build=_name_not_utf8, source="opik-dir"),
]


def _arrived(out: Path) -> tuple[Counter[str], dict[str, int]]:
    """How many copies of each source trace id `out` holds, and the spans of each: Opik trace
    files (found by their provenance) or LangWatch JSONL lines."""
    copies: Counter[str] = Counter()
    spans: dict[str, int] = {}
    if out.is_file():
        for line in out.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            copies[record["trace_id"]] += 1
            spans[record["trace_id"]] = len(record["spans"])
        return copies, spans
    for path in out.rglob("trace_*.json"):
        body = json.loads(path.read_text(encoding="utf-8"))
        source_id = body["trace"]["metadata"]["tracebridge"]["source"]["id"]
        copies[source_id] += 1
        spans[source_id] = len(body["spans"])
    return copies, spans


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_corpus_file_is_copied_by_the_rules(case: Case, tmp_path: Path) -> None:
    """Exit code, dead-letter reasons, warnings, and every good record exactly once."""
    source = tmp_path / case.name
    if case.build is not None:
        case.build(source)
    elif case.source == "opik-dir":
        shutil.copytree(CORPUS / "opik_dir" / case.name, source)
    else:
        source.write_bytes((CORPUS / case.name).read_bytes())
    state = tmp_path / "state"
    out = tmp_path / ("out.jsonl" if case.source == "opik-dir" else "out")
    to = f"langwatch-file:{out}" if case.source == "opik-dir" else f"opik-dir:{out}"
    limit = sys.getrecursionlimit()
    result = CliRunner().invoke(
        main,
        [
            "migrate",
            "--from",
            f"{case.source}:{source}",
            "--to",
            to,
            "--state-dir",
            str(state),
        ],
    )
    assert sys.getrecursionlimit() == limit
    said = (result.stdout + result.stderr).replace(str(source), "<input>")
    assert result.exit_code == case.exit_code, said
    assert result.exception is None or isinstance(result.exception, SystemExit), said
    assert "Traceback" not in said, said
    assert "internal error" not in said, said
    for text in case.says:
        assert text in said, (text, said)
    letters = state / "dead-letters.jsonl"
    reasons = (
        [json.loads(line)["reason"] for line in letters.read_text(encoding="utf-8").splitlines()]
        if letters.exists()
        else []
    )
    assert len(reasons) == len(case.dead_letters), reasons
    for wanted in case.dead_letters:
        assert any(wanted in reason for reason in reasons), (wanted, reasons)
    files, spans = _arrived(out) if out.exists() else (Counter(), {})
    assert dict(files) == dict.fromkeys(case.arrives, 1), said
    assert spans == case.arrives
