"""Endpoint specs (`langwatch-file:PATH`, `opik-dir:PATH`, `langwatch`, `opik`) → endpoints."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

from ._config import Settings, load_settings
from ._errors import UsageError
from ._file_source import FileSource
from ._interfaces import Sink, Source
from ._mapping import Mappings, load_mappings
from ._models import Platform

__all__ = [
    "Endpoint",
    "mappings_for",
    "open_endpoints",
    "open_sink",
    "open_source",
    "parse_endpoint",
    "refuse_self_copy",
]

_KINDS: dict[str, Platform] = {
    "langwatch-file": "langwatch",
    "opik-dir": "opik",
    "langwatch": "langwatch",
    "opik": "opik",
}


@dataclass(frozen=True)
class Endpoint:
    """A parsed endpoint spec: its kind, platform and, for files, path."""

    kind: str
    platform: Platform
    path: Path | None

    def __str__(self) -> str:
        return f"{self.kind}:{self.path}" if self.path else self.kind


def parse_endpoint(spec: str) -> Endpoint:
    """Parse an endpoint spec; a UsageError lists the forms there are."""
    kind, sep, path = spec.partition(":")
    forms = "langwatch-file:PATH, opik-dir:PATH, langwatch or opik"
    if kind not in _KINDS:
        raise UsageError(f"unknown endpoint {spec!r}: use {forms}")
    is_file = kind in ("langwatch-file", "opik-dir")
    if is_file and not path:
        raise UsageError(f"endpoint {spec!r} needs a path: {kind}:PATH")
    if not is_file and sep:
        raise UsageError(f"endpoint {spec!r} takes no path: write just {kind}")
    return Endpoint(kind, _KINDS[kind], Path(path) if is_file else None)


def refuse_self_copy(
    source: Endpoint,
    sink: Endpoint,
    *,
    settings: Settings,
    source_project: str | None,
    target_project: str | None,
) -> None:
    """A UsageError when `sink` is `source` itself; any other pair, one platform or two, runs.

    The same means: files, the same kind and the same path (symlinks resolved). API endpoints
    of one platform are always the same, since one configuration reaches one LangWatch project
    and one Opik workspace: `langwatch` → `langwatch` is that one project (the API key's;
    --source-project and --target-project do not choose it); `opik` → `opik` is a copy onto
    itself when both sides resolve to one project as the run resolves them (--source-project,
    else OPIK_PROJECT_NAME; --target-project, else OPIK_PROJECT_NAME, else "Default Project";
    names compared case-insensitively), and with two projects of the one workspace it is
    refused as well: the copies keep their Opik ids, and one id in two projects of a
    workspace is a second row under that id (reference/opik-api.md §3.3).
    """
    if source.kind != sink.kind:
        return
    if source.path is not None and sink.path is not None:
        if source.path.resolve() == sink.path.resolve():
            raise UsageError(
                f"{source} is both --from and --to: a copy onto itself. Write the copy to "
                "another path"
            )
        return
    if source.kind == "langwatch":
        raise UsageError(
            "--from langwatch and --to langwatch are the same LangWatch project: one "
            "LANGWATCH_API_KEY reaches one project (--source-project and --target-project do "
            "not choose it). To copy between two projects, go through a file: --to "
            "langwatch-file:PATH with the first project's key, then --from "
            "langwatch-file:PATH with the second's"
        )
    read = source_project or settings.opik_project
    written = target_project or settings.opik_project or "Default Project"
    where = f"{settings.opik_url}, workspace {settings.opik_workspace!r}"
    if read is not None and read.casefold() == written.casefold():
        raise UsageError(
            f"--from opik and --to opik are the same Opik project ({written!r} on {where}): a "
            "copy onto itself. (Projects not given: --source-project is OPIK_PROJECT_NAME; "
            '--target-project is OPIK_PROJECT_NAME, else "Default Project")'
        )
    raise UsageError(
        f"--from opik and --to opik are the same Opik workspace ({where}): a copy keeps its "
        "Opik ids, and another project of the same workspace holding the same ids makes a "
        "second row under each id. Copy through a folder (--to opik-dir:PATH) and load it "
        "into another server or workspace"
    )


#: Undocumented, for tests: the page size of the file sources (many small pages make many
#: checkpoints, so a kill lands between them). Not an option: it changes no result.
PAGE_SIZE_VARIABLE = "TRACEBRIDGE_PAGE_SIZE"


def _file_page_size() -> int:
    value = os.environ.get(PAGE_SIZE_VARIABLE, "")
    if not value:
        return 100
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"environment variable {PAGE_SIZE_VARIABLE}: {value!r} is not a size >= 1")
    return int(value)


def _resolve(
    endpoint: Endpoint | str, settings: Settings | None, mappings: Mappings | None
) -> tuple[Endpoint, Settings, Mappings]:
    """`endpoint` parsed, with the settings and mappings a caller left out loaded."""
    if isinstance(endpoint, str):
        endpoint = parse_endpoint(endpoint)
    settings = settings or load_settings()
    if mappings is None:
        mappings = mappings_for(settings, None, endpoint)
    return endpoint, settings, mappings


def open_source(
    endpoint: Endpoint | str,
    *,
    project: str | None = None,
    settings: Settings | None = None,
    mappings: Mappings | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> Source:
    """The source an endpoint spec names (`"langwatch-file:PATH"`, `"opik-dir:PATH"`,
    `"langwatch"`, `"opik"`), reading `project`; the caller closes it (`await src.aclose()`,
    or hands it to `run`, which closes it).

    `settings` default to `load_settings()` (the environment), `mappings`
    to the settings' mapping files (else the built-in tables). `transports` ("langwatch",
    "opik") replace the HTTP transport of an API endpoint (tests plug fakes in there). A bad
    spec, or `"opik"` with no project (argument or OPIK_PROJECT_NAME), is a `UsageError`.
    """
    endpoint, settings, mappings = _resolve(endpoint, settings, mappings)
    if endpoint.kind == "langwatch-file":
        from ._langwatch.file import LangWatchFileSource

        assert endpoint.path is not None
        return LangWatchFileSource(endpoint.path, project=project, page_size=_file_page_size())
    if endpoint.kind == "opik-dir":
        from ._opik.folder import OpikDirSource

        assert endpoint.path is not None
        return OpikDirSource(
            endpoint.path, project=project, mappings=mappings, page_size=_file_page_size()
        )
    transports = transports or {}
    if endpoint.kind == "langwatch":
        from ._langwatch.api import LangWatchApiSource, langwatch_api

        return LangWatchApiSource(
            langwatch_api(settings, transports.get("langwatch")),
            project=project,
            concurrency=settings.langwatch_concurrency,  # thread reads in flight
        )
    from ._opik.api import OpikApiSource, opik_api

    name = project or settings.opik_project
    if not name:
        raise UsageError("name the Opik project to read: --source-project or OPIK_PROJECT_NAME")
    return OpikApiSource(
        opik_api(settings, transports.get("opik")), project=name, mappings=mappings
    )


def open_sink(
    endpoint: Endpoint | str,
    *,
    project: str | None = None,
    settings: Settings | None = None,
    mappings: Mappings | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> Sink:
    """The sink an endpoint spec names (forms and defaults as `open_source`), writing to
    `project` (Opik: else OPIK_PROJECT_NAME, else "Default Project"; a LangWatch file: the
    project id written into its records). `run` closes it.
    """
    endpoint, settings, mappings = _resolve(endpoint, settings, mappings)
    if endpoint.kind == "langwatch-file":
        from ._langwatch.file import LangWatchFileSink

        assert endpoint.path is not None
        return LangWatchFileSink(endpoint.path, project_id=project)
    if endpoint.kind == "opik-dir":
        from ._opik.folder import OpikDirSink

        assert endpoint.path is not None
        return OpikDirSink(
            endpoint.path,
            workspace=settings.opik_workspace,
            project=project or settings.opik_project or "Default Project",
            mappings=mappings,
        )
    transports = transports or {}
    if endpoint.kind == "langwatch":
        from ._langwatch.api import LangWatchApiSink, langwatch_api

        return LangWatchApiSink(
            langwatch_api(settings, transports.get("langwatch")),
            shift_old_timestamps=settings.shift_old_timestamps,
            project=project,  # the key's project id, when the API cannot tell
            concurrency=settings.langwatch_concurrency,
        )
    from ._opik.api import OpikApiSink, is_opik_cloud, opik_api
    from ._opik.ids import MintedIds, OpikIds, SourceTimeIds
    from ._pacing import Pacer

    name = project or settings.opik_project or "Default Project"
    key = f"{settings.opik_url}\x1f{settings.opik_workspace}\x1f{name.casefold()}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    id_map = settings.state_dir / f"opik-ids-{digest}.sqlite"
    mode, notice = _opik_id_mode(settings, id_map, cloud=is_opik_cloud(settings.opik_url))
    ids: OpikIds = MintedIds(id_map) if mode == "write-time" else SourceTimeIds()
    api = opik_api(settings, transports.get("opik"))
    # Opik Cloud's event budget, read from its answers, and the user's cap, if any.
    api.pacer = Pacer(max_events_per_minute=settings.max_events_per_minute)
    return OpikApiSink(
        api,
        project=name,
        mappings=mappings,
        ids=ids,
        switch_to=(lambda: MintedIds(id_map)) if mode == "auto" else None,
        force=settings.force,
        notice=notice,
        concurrency=settings.opik_concurrency,
    )


def _opik_id_mode(settings: Settings, id_map: Path, *, cloud: bool) -> tuple[str, str | None]:
    """The id mode for an Opik API sink ("source-time", "write-time" or "auto") and a notice.

    The user's choice (`--opik-ids`, config, argument) is used as given. Otherwise: write-time
    where an earlier run left an id map for this target (its records have minted ids) or on
    Opik Cloud (the UUID v7 ingestion window is on there, reference §11); else "auto":
    source-time, switching to write-time at the first `too_old` refusal.
    """
    if "opik_ids" in settings.model_fields_set:
        return settings.opik_ids, None
    if id_map.exists():
        return "write-time", None
    if cloud:
        return "write-time", (
            "Opik Cloud refuses ids older than its UUID v7 ingestion window, so ids are minted "
            f"at write time (--opik-ids write-time) and kept in {id_map}: keep the state "
            "directory, it is what makes reruns idempotent. Pass --opik-ids source-time to "
            "derive them from the source start times instead."
        )
    return "auto", None


def mappings_for(settings: Settings, mapping: Path | None, sink: Endpoint) -> Mappings:
    """The mappings in force: `mapping` (a `--mapping` file) overrides the direction that
    writes to `sink`'s platform; the config file's mapping files the rest."""
    to_opik = mapping if sink.platform == "opik" and mapping else settings.mapping_to_opik
    to_lw = mapping if sink.platform == "langwatch" and mapping else settings.mapping_to_langwatch
    return load_mappings(to_opik, to_lw)


async def open_endpoints(
    source: Endpoint,
    sink: Endpoint,
    *,
    settings: Settings,
    mappings: Mappings,
    source_project: str | None,
    target_project: str | None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> tuple[Source, Sink]:
    """The source and the sink of a run; the source is closed again when the sink cannot be
    opened (a bad path, a refused name), so nothing is left open."""
    src = open_source(
        source, settings=settings, mappings=mappings, project=source_project, transports=transports
    )
    try:
        dst = open_sink(
            sink,
            settings=settings,
            mappings=mappings,
            project=target_project,
            transports=transports,
        )
    except BaseException:
        with anyio.CancelScope(shield=True):
            await src.aclose()
        raise
    wanted = getattr(dst, "page_spans", None)
    if isinstance(src, FileSource) and isinstance(wanted, int) and wanted > src.page_spans:
        src.page_spans = wanted  # pages as large as the sink's batches (`PAGE_SPANS`)
        src.page_size = max(src.page_size, wanted // 2)
    return src, dst
