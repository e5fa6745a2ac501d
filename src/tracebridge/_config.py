"""Settings: flags > config file (TOML) > environment > defaults (DESIGN.md, Configuration).

The environment uses the official SDKs' names. API keys are `SecretStr`s: they print as `**********`
and only the HTTP layer reads their value.

Loading is our own code rather than pydantic-settings': the config file's `[section] key`
names, the SDKs' environment names and "which source gave the bad value" in every error
(`UsageError`, formatted by `_decoding.describe_error`) are this tool's rules.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, PositiveInt, SecretStr, ValidationError

from ._decoding import describe_error
from ._errors import UsageError

__all__ = ["Settings", "load_settings"]

#: config-file key (section.key) -> (environment variable, settings field)
_ENV = {
    "LANGWATCH_API_KEY": "langwatch_api_key",
    "LANGWATCH_ENDPOINT": "langwatch_endpoint",
    "OPIK_URL_OVERRIDE": "opik_url",
    "OPIK_API_KEY": "opik_api_key",
    "OPIK_WORKSPACE": "opik_workspace",
    "OPIK_PROJECT_NAME": "opik_project",
}
_FILE = {
    ("langwatch", "endpoint"): "langwatch_endpoint",
    ("langwatch", "api_key"): "langwatch_api_key",
    ("opik", "url"): "opik_url",
    ("opik", "api_key"): "opik_api_key",
    ("opik", "workspace"): "opik_workspace",
    ("opik", "project"): "opik_project",
    ("opik", "ids"): "opik_ids",
    ("opik", "max_events_per_minute"): "max_events_per_minute",
    ("opik", "concurrency"): "opik_concurrency",
    ("langwatch", "concurrency"): "langwatch_concurrency",
    ("mapping", "langwatch_to_opik"): "mapping_to_opik",
    ("mapping", "opik_to_langwatch"): "mapping_to_langwatch",
    ("run", "state_dir"): "state_dir",
    ("run", "shift_old_timestamps"): "shift_old_timestamps",
}


class Settings(BaseModel):
    """Everything a run needs to know besides its endpoints.

    `opik_ids` left unset (not in `model_fields_set`: no flag, config key or argument named
    it) lets the target choose: write-time on Opik Cloud, which enforces the UUID v7 ingestion
    window, or where an earlier run left a write-time id map; elsewhere source-time, switching
    to write-time at the first `too_old` refusal. Set, it is used as given.
    `force` lets a run go on past a safety check that would stop it (a new write-time id map
    while the target already holds copies from the source): it warns instead.
    `max_events_per_minute` caps the events (batch items) sent to Opik in any minute; the
    `*_concurrency` fields are the requests an API sink keeps in flight (`_pacing.py`,
    `_inflight.py`), and for LangWatch also the thread reads its source keeps in flight.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    langwatch_endpoint: str = "https://app.langwatch.ai"
    langwatch_api_key: SecretStr | None = None
    opik_url: str = "http://localhost:5173/api"
    opik_api_key: SecretStr | None = None
    opik_workspace: str = "default"
    opik_project: str | None = None
    opik_ids: Literal["source-time", "write-time"] = "source-time"
    mapping_to_opik: Path | None = None
    mapping_to_langwatch: Path | None = None
    state_dir: Path = Path(".tracebridge")
    shift_old_timestamps: bool = False
    force: bool = False
    max_events_per_minute: PositiveInt | None = None
    opik_concurrency: PositiveInt = 4
    langwatch_concurrency: PositiveInt = 32


def _from_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"config file {path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path}: not valid TOML ({exc})") from None
    values: dict[str, Any] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise UsageError(f"config file {path}: key '{section}' must be a table")
        for key, value in table.items():
            field = _FILE.get((section, key))
            if field is None:
                known = ", ".join(f"{s}.{k}" for s, k in _FILE)
                raise UsageError(
                    f"config file {path}: unknown key '{section}.{key}' (known: {known})"
                )
            # Relative paths in a config file are relative to the file.
            if field.startswith(("mapping_", "state_dir")) and isinstance(value, str):
                value = str((path.parent / value).resolve())
            values[field] = value
    return values


def load_settings(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve settings: `overrides` (flags) > `config_file` > `environ` > defaults.

    Raises UsageError naming the source and key of a bad value.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {
        field: environ[var] for var, field in _ENV.items() if environ.get(var)
    }
    where = {field: f"environment variable {var}" for var, field in _ENV.items()}
    if config_file is not None:
        from_file = _from_file(config_file)
        values.update(from_file)
        where.update({f: f"config file {config_file}" for f in from_file})
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    values.update(given)
    where.update({f: "command line" for f in given})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        raise UsageError(f"{where.get(field, field)}: {describe_error(err)}") from None
