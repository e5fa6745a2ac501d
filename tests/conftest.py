"""Shared fixtures: the CLI configures the `tracebridge` logger in-process; undo it after each
test so one test's `--quiet` cannot hide another's log records."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tracebridge._console import reset_logging


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    yield
    reset_logging()
