"""tracebridge: move LLM-observability data between LangWatch and Opik, both ways.

Library use (async, anyio):

    report = await tracebridge.migrate("langwatch-file:traces.jsonl", "opik-dir:out",
                                       target_project="support-bot")
    assert not report.lossy

Follow change, pass after pass (see `tracebridge sync --help`):

    report = await tracebridge.sync("langwatch", "opik", target_project="support-bot",
                                    steps=[my_redaction])

Without an event loop (a script, a notebook), the blocking twins take the same arguments:

    report = tracebridge.migrate_blocking("langwatch-file:traces.jsonl", "opik-dir:out",
                                          steps=[my_redaction])

Or compose a `Source` and a `Sink` yourself and call `run` (with `steps`, a `window`, a
`StateDir`): `open_source("opik", project="support-bot")` and
`open_sink("langwatch-file:backup.jsonl")` build them from endpoint specs.
"""

from ._blocking import migrate_blocking, sync_blocking
from ._config import Settings, load_settings
from ._echo import suppress_echoes
from ._endpoint_specs import open_sink, open_source
from ._engine import Report, Step, run, step_rule
from ._errors import (
    AuthError,
    BadCheckpointError,
    CheckpointError,
    FatalError,
    LockedError,
    MappingFileError,
    QuotaError,
    RecordError,
    RejectedRecord,
    RetriesExhausted,
    ServerError,
    TracebridgeError,
    UsageError,
)
from ._hashing import content_hash
from ._interfaces import Counts, Notes, Page, Rejected, Sink, Source, Unit, Window, WriteResult
from ._langwatch.api import LangWatchApiSink, LangWatchApiSource
from ._langwatch.file import LangWatchFileSink, LangWatchFileSource
from ._mapping import Mappings, default_mappings, load_mappings
from ._migrate import migrate
from ._models import CopyState, ErrorInfo, IOValue, Provenance, Score, Span, Thread, Trace
from ._opik.api import OpikApiSink, OpikApiSource
from ._opik.folder import OpikDirSink, OpikDirSource
from ._state import JobCounts, StateDir
from ._summary import format_summary
from ._sync import PassResult, sync
from ._unchanged import SkipUnchanged
from ._verify import VerifyReport, verify

__all__ = [
    "AuthError",
    "BadCheckpointError",
    "CheckpointError",
    "CopyState",
    "Counts",
    "ErrorInfo",
    "FatalError",
    "IOValue",
    "JobCounts",
    "LangWatchApiSink",
    "LangWatchApiSource",
    "LangWatchFileSink",
    "LangWatchFileSource",
    "LockedError",
    "MappingFileError",
    "Mappings",
    "Notes",
    "OpikApiSink",
    "OpikApiSource",
    "OpikDirSink",
    "OpikDirSource",
    "Page",
    "PassResult",
    "Provenance",
    "QuotaError",
    "RecordError",
    "Rejected",
    "RejectedRecord",
    "Report",
    "RetriesExhausted",
    "Score",
    "ServerError",
    "Settings",
    "Sink",
    "SkipUnchanged",
    "Source",
    "Span",
    "StateDir",
    "Step",
    "Thread",
    "Trace",
    "TracebridgeError",
    "Unit",
    "UsageError",
    "VerifyReport",
    "Window",
    "WriteResult",
    "content_hash",
    "default_mappings",
    "format_summary",
    "load_mappings",
    "load_settings",
    "migrate",
    "migrate_blocking",
    "open_sink",
    "open_source",
    "run",
    "step_rule",
    "suppress_echoes",
    "sync",
    "sync_blocking",
    "verify",
]
