"""The cyclic garbage collector during a run: rare.

A run allocates records by the hundred thousand, nearly all freed by reference counting once
their page is written. With Python's default thresholds they survive enough young collections
to trigger full ones, each walking every page in flight and every object the program holds
(pydantic's schemas included): measured, a third of the CPU of a large file read, and a fifth
of an API-to-API copy's. A first generation of 50,000 objects keeps collections rare and short.

`quiet_collector` sets the thresholds for its duration; nested uses share one, and the
thresholds before are restored when the last one ends. The engine holds it around a run, so
the host of a library run gets its own thresholds back when the run ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["QUIET_THRESHOLDS", "quiet_collector"]

#: The collector's thresholds during a run.
QUIET_THRESHOLDS = (50_000, 20, 100)
_quiet = 0
_before: tuple[int, ...] = ()  # the thresholds the first of the uses in force found
_lock = threading.Lock()  # runs in several threads (the blocking API) share the count


@contextmanager
def quiet_collector() -> Iterator[None]:
    """Run the cyclic garbage collector rarely for the duration (module docstring). Uses may
    overlap in any order (two runs in one process, in one thread or several): the thresholds
    found by the first are restored when the last ends."""
    global _quiet, _before
    with _lock:
        if _quiet == 0:
            _before = gc.get_threshold()
            gc.set_threshold(*QUIET_THRESHOLDS)
        _quiet += 1
    try:
        yield
    finally:
        with _lock:
            _quiet -= 1
            if _quiet == 0:
                gc.set_threshold(*_before)
