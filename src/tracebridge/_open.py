"""Endpoint specs (`langwatch-file:PATH`, `opik-dir:PATH`, `langwatch`, `opik`) → endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from ._config import Settings
from ._endpoints import Sink, Source
from ._errors import UsageError
from ._mapping import Mappings
from ._models import Platform

__all__ = ["Endpoint", "open_sink", "open_source", "parse_endpoint"]

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


def open_source(
    endpoint: Endpoint,
    *,
    settings: Settings,
    mappings: Mappings,
    project: str | None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> Source:
    """The source an endpoint names, reading `project`."""
    if endpoint.kind == "langwatch-file":
        from ._langwatch.file import LangWatchFileSource

        assert endpoint.path is not None
        return LangWatchFileSource(endpoint.path, project=project)
    if endpoint.kind == "opik-dir":
        from ._opik.folder import OpikDirSource

        assert endpoint.path is not None
        return OpikDirSource(endpoint.path, project=project, mappings=mappings)
    raise UsageError(f"{endpoint} is not available as a source in this version")


def open_sink(
    endpoint: Endpoint,
    *,
    settings: Settings,
    mappings: Mappings,
    project: str | None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> Sink:
    """The sink an endpoint names, writing to `project`."""
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
    raise UsageError(f"{endpoint} is not available as a sink in this version")
