"""Every error tracebridge raises, and the exit code each one ends a command with.

```
TracebridgeError                 base class; never raised itself
├── UsageError            (2)    the command line, a config file or a mapping file is wrong
│   ├── MappingFileError  (2)    a mapping file does not validate (names the key)
│   └── BadCheckpointError (2)   a sync checkpoint is corrupt, foreign or of an unknown
│                                schema (names the file and --reset)
├── FatalError            (3)    the run cannot go on
│   ├── AuthError         (3)    credentials refused (names the variable to fix)
│   ├── QuotaError        (3)    the destination's plan quota is used up (LangWatch 402)
│   ├── RetriesExhausted  (3)    a transient failure outlasted the retry budget
│   ├── ServerError       (3)    an answer the bridge cannot act on (unexpected status)
│   └── CheckpointError   (3)    the state directory is unreadable or of another job
│       └── LockedError   (2)    another run holds the job or the destination (names it)
└── RecordError                  one record cannot be read, mapped or written: it is
    └── RejectedRecord           dead-lettered with its reason and the run goes on (exit 1)
```

Transient failures (timeouts, connection resets, 5xx, 429) are not errors here: `_http` retries
them and raises `RetriesExhausted` only when the budget is spent. Messages never contain secrets.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BadCheckpointError",
    "CheckpointError",
    "FatalError",
    "LockedError",
    "MappingFileError",
    "QuotaError",
    "RecordError",
    "RejectedRecord",
    "RetriesExhausted",
    "ServerError",
    "TracebridgeError",
    "UsageError",
]


class TracebridgeError(Exception):
    """Base of every tracebridge error; `exit_code` is what the CLI exits with."""

    exit_code: int = 3


class UsageError(TracebridgeError):
    """The command line, the config file or a mapping file is wrong."""

    exit_code = 2


class MappingFileError(UsageError):
    """A mapping file does not validate; the message names the file, the key and the problem."""


class BadCheckpointError(UsageError):
    """A sync job's checkpoint is not one this job can use: not JSON, an unknown schema version,
    invalid, or another job's. The message names the file and `--reset`, which starts the job
    over. (A checkpoint that cannot be read at all, for permissions, is a `CheckpointError`.)
    """


class FatalError(TracebridgeError):
    """A runtime failure after which the run cannot continue."""

    exit_code = 3


class AuthError(FatalError):
    """The server refused the credentials; the message names the variable to fix."""


class QuotaError(FatalError):
    """The destination refuses more data for plan reasons (LangWatch answers 402)."""


class RetriesExhausted(FatalError):
    """A transient failure (timeout, 5xx, 429) lasted longer than the retry budget."""


class ServerError(FatalError):
    """The server answered something the bridge cannot act on."""


class CheckpointError(FatalError):
    """The state directory is locked by another run, unreadable, or belongs to another job."""


class LockedError(CheckpointError):
    """Another tracebridge run holds the job's checkpoint or the destination; names the holder.

    Exit code 2: two runs over one job or one output is a setup to fix, not a runtime failure.
    """

    exit_code = 2


class RecordError(TracebridgeError):
    """One record cannot be read, mapped or written; it is dead-lettered, the run goes on.

    `where` says where the record came from (a file and line, or a trace id), `reason` why it
    failed. The run that meets one ends with exit code 1.
    """

    exit_code = 1

    def __init__(self, reason: str, *, where: str = "", record: object = None) -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.reason = reason
        self.where = where
        self.record = record


class RejectedRecord(RecordError):
    """The destination refused one record (a 400/422 isolated to it, or a partial acceptance)."""
