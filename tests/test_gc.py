"""`_gc.quiet_collector`: the collector runs rarely during a run, and the thresholds found
before are restored after, also when two runs overlap."""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.test_engine import MemorySink, MemorySource, _pages
from tracebridge._engine import run
from tracebridge._gc import QUIET_THRESHOLDS, quiet_collector


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def thresholds() -> Iterator[tuple[int, ...]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield (700, 10, 10)
    gc.set_threshold(*before)


def test_quiet_for_the_duration_then_restored(thresholds: tuple[int, ...]) -> None:
    with quiet_collector():
        assert gc.get_threshold() == QUIET_THRESHOLDS
        with quiet_collector():
            assert gc.get_threshold() == QUIET_THRESHOLDS
        assert gc.get_threshold() == QUIET_THRESHOLDS
    assert gc.get_threshold() == thresholds


def test_overlapping_uses_ending_in_any_order_restore_the_first_ones(
    thresholds: tuple[int, ...],
) -> None:
    first, second = quiet_collector(), quiet_collector()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first run ends first
    assert gc.get_threshold() == QUIET_THRESHOLDS
    second.__exit__(None, None, None)
    assert gc.get_threshold() == thresholds


@pytest.mark.anyio
async def test_the_engine_holds_it_around_a_run(thresholds: tuple[int, ...]) -> None:
    """A run of any source (not only files) writes with the collector quiet; the host's
    thresholds are back when it ends, after a failure too."""
    during: list[tuple[int, ...]] = []
    sink = MemorySink(before_write=lambda _: during.append(gc.get_threshold()))
    await run(MemorySource(_pages(2)), sink)
    assert during == [QUIET_THRESHOLDS, QUIET_THRESHOLDS]
    assert gc.get_threshold() == thresholds
    with pytest.raises(Exception, match="500"):
        await run(MemorySource(_pages(2)), MemorySink(fail_on_call=1))
    assert gc.get_threshold() == thresholds


def test_runs_in_several_threads_restore_the_thresholds_found_before(
    thresholds: tuple[int, ...],
) -> None:
    """Blocking runs in threads of their own enter and leave at once: the count of uses is
    kept under a lock, so the thresholds come back when the last run in any thread ends.
    (Switching threads every microsecond, unlocked counting lost updates here.)"""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        start = threading.Barrier(8)

        def runs() -> None:
            start.wait()
            for _ in range(5_000):
                with quiet_collector():
                    pass

        threads = [threading.Thread(target=runs) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert gc.get_threshold() == thresholds
    with quiet_collector():
        assert gc.get_threshold() == QUIET_THRESHOLDS
    assert gc.get_threshold() == thresholds
