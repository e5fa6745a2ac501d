"""The file paths write byte for byte what they wrote when the goldens were made.

`tests/fixtures/golden/make_golden.py` runs `langwatch-file → opik-dir`, `opik-dir →
langwatch-file` (of that output) and the same-platform copies on deterministic corpora (the
factories with fixed seeds and times, big inputs and a huge trace; the stash v1 fixtures; the
bad-input corpus); the goldens are its committed outputs. Any change to a converter, the stash,
a JSON writer or a reader that changes one byte of any output file fails here.

Normalised (run-dependent): only the `downloaded_at` stamp of `opik-dir` trace files.
"""

from __future__ import annotations

import difflib

import pytest

from .fixtures.golden.make_golden import CORPORA, produce, read_golden


def _first_difference(expected: str, actual: str) -> str:
    at = next(
        (i for i, (a, b) in enumerate(zip(expected, actual, strict=False)) if a != b),
        min(len(expected), len(actual)),
    )
    return f"first difference at character {at}: {expected[at - 80 : at + 80]!r} != " + repr(
        actual[at - 80 : at + 80]
    )


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_outputs_are_byte_identical_to_the_goldens(corpus: str) -> None:
    expected = read_golden(corpus)
    actual = produce(corpus)
    assert sorted(actual) == sorted(expected)
    for path_name, files in expected.items():
        got = actual[path_name]
        missing = difflib.ndiff(sorted(files), sorted(got))
        assert sorted(got) == sorted(files), f"{path_name}: files differ\n" + "\n".join(missing)
        for name, text in files.items():
            assert got[name] == text, f"{path_name}: {name}: " + _first_difference(text, got[name])


def test_the_goldens_hold_real_output() -> None:
    """A golden of nothing would pin nothing: the generated corpora write every path."""
    for corpus in ("lw_generated", "opik_generated"):
        for path_name, files in read_golden(corpus).items():
            assert files, f"{corpus}: {path_name} wrote nothing"
    lw = read_golden("lw_generated")["langwatch-file->opik-dir"]
    assert len(lw) > 30  # trace files, thread files, project.json
