"""tracebridge: move LLM-observability data between LangWatch and Opik, both ways.

Library use (async, anyio):

    report = await tracebridge.migrate("langwatch-file:traces.jsonl", "opik-dir:out",
                                       target_project="support-bot")
    assert not report.lossy

Or compose a `Source` and a `Sink` yourself and call `run`.
"""

from ._config import Settings, load_settings
from ._echo import suppress_echoes
from ._endpoints import Counts, Notes, Page, Rejected, Sink, Source, Unit, Window, WriteResult
from ._engine import Report, run
from ._errors import (
    AuthError,
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
from ._langwatch.file import LangWatchFileSink, LangWatchFileSource
from ._mapping import Mappings, default_mappings, load_mappings
from ._migrate import migrate
from ._models import CopyState, ErrorInfo, IOValue, Provenance, Score, Span, Thread, Trace
from ._opik.folder import OpikDirSink, OpikDirSource
from ._summary import format_summary
from ._unchanged import SkipUnchanged
from ._verify import VerifyReport, verify

__all__ = [
    "AuthError",
    "CheckpointError",
    "CopyState",
    "Counts",
    "ErrorInfo",
    "FatalError",
    "IOValue",
    "LangWatchFileSink",
    "LangWatchFileSource",
    "LockedError",
    "MappingFileError",
    "Mappings",
    "Notes",
    "OpikDirSink",
    "OpikDirSource",
    "Page",
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
    "run",
    "suppress_echoes",
    "verify",
]
