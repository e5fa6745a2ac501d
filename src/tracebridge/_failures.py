"""Which exceptions are one record's problem, and how a dead letter names them.

The engine (writes), `_file_source.paged` (file loads) and the decoders share one rule:

| raised                                    | whose problem  | what happens                   |
| ----------------------------------------- | -------------- | ------------------------------ |
| `RecordError`                             | the record's   | dead-lettered with its reason  |
| any other `TracebridgeError`              | the run's      | fatal by design (auth, quota,  |
|                                           |                | retries exhausted, locks)      |
| `OSError` (disk full, permission denied,  | the            | fatal, exit 3 naming the path  |
| a path of the wrong kind)                 | environment's  |                                |
| `httpx.HTTPError`, `httpx.InvalidURL`     | the connection | fatal                          |
| `MemoryError`; not an `Exception` at all  | the process's  | never caught                   |
| (interrupts, cancellation)                |                |                                |
| any other `Exception`                     | the record's   | dead-lettered, reason naming   |
|                                           |                | the exception type and message |

The last row is what one record's shape provokes in code that handles it: `RecursionError` on
deeply nested values, `UnicodeEncodeError` on a lone surrogate, a `ValueError` or `TypeError` the
code did not foresee. An exception group is the record's only when every exception in it is.
"""

from __future__ import annotations

import httpx

from ._errors import RecordError, TracebridgeError

__all__ = ["describe", "is_record_failure"]

#: Exceptions that stop the run whatever record was being handled.
_FATAL: tuple[type[BaseException], ...] = (
    TracebridgeError,
    OSError,
    MemoryError,
    httpx.HTTPError,
    httpx.InvalidURL,
)

#: What an exception type means for a record, said in the dead letter after its message.
_MEANING: tuple[tuple[type[BaseException], str], ...] = (
    (RecursionError, "a value is nested too deeply to handle"),
    (
        UnicodeEncodeError,
        "a string holds a lone surrogate (half of a character), which UTF-8 cannot encode",
    ),
)

_MAX_MESSAGE = 300


def is_record_failure(exc: BaseException) -> bool:
    """True when `exc`, raised while handling one record, is that record's problem (see above)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_record_failure(inner) for inner in exc.exceptions)
    if isinstance(exc, RecordError):
        return True
    return isinstance(exc, Exception) and not isinstance(exc, _FATAL)


def describe(exc: BaseException) -> str:
    """`Type: message` (shortened), with what the type means for a record when that is known.

    A `RecordError` is described by its reason; a group by its first exception.
    """
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    if isinstance(exc, RecordError):
        return exc.reason
    message = str(exc)
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    meaning = next((m for kind, m in _MEANING if isinstance(exc, kind)), None)
    return f"{text} ({meaning})" if meaning else text
