"""The data half of the mapping layer: span-kind tables, score rules, model names, IO shapes.

Defaults live in the repository's `mappings/*.toml`; a user's file overrides them key by key.
A file that does not validate raises `MappingFileError` naming the file, the key and the
problem; a file written for the other direction is named as such (both files have the same
tables, so the keys only one direction has tell them apart). The logic half (ids, time,
trees) is code, in the platform converters.

Merging is our own ten lines (a key-by-key dict merge) rather than a config library's: the
rules (tables merge, scalars and lists replace) are this format's, and pydantic does the rest.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._decoding import describe_validation_error
from ._errors import MappingFileError

__all__ = [
    "LANGWATCH_IO_TYPES",
    "LANGWATCH_SPAN_TYPES",
    "OPIK_SPAN_TYPES",
    "LangWatchToOpik",
    "Mappings",
    "OpikToLangWatch",
    "default_mappings",
    "load_mappings",
]

LANGWATCH_SPAN_TYPES = frozenset(
    {
        "span", "llm", "chain", "tool", "agent", "rag", "guardrail", "evaluation", "workflow",
        "component", "module", "server", "client", "producer", "consumer", "task", "unknown",
    }
)  # fmt: skip
OPIK_SPAN_TYPES = frozenset({"general", "llm", "tool", "guardrail"})
LANGWATCH_IO_TYPES = frozenset(
    ["text", "chat_messages", "json", "raw", "list", "guardrail_result", "evaluation_result"]
)


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _L2OScores(_Table):
    statuses: frozenset[Literal["processed", "skipped", "error", "scheduled", "in_progress"]]
    passed_value: float
    failed_value: float
    source: Literal["ui", "sdk", "online_scoring"]


class _L2OModel(_Table):
    split_vendor_prefix: bool


class _MetadataTable(_Table):
    rename: dict[str, str] = Field(default_factory=dict)


def _check_table(table: dict[str, str], allowed: frozenset[str], what: str) -> dict[str, str]:
    for key, value in table.items():
        if value not in allowed:
            raise ValueError(
                f"{key!r} maps to {value!r}, which is not {what} ({', '.join(sorted(allowed))})"
            )
    return table


class _Direction(_Table):
    """What both mapping files have: span types (with a "*" default), IO shapes, renames."""

    #: The span types this direction maps to, and what to call them in an error.
    _targets: ClassVar[tuple[frozenset[str], str]]

    version: Literal[1]
    span_types: dict[str, str]
    io: dict[str, str]
    metadata: _MetadataTable

    @field_validator("span_types")
    @classmethod
    def _span_types(cls, table: dict[str, str]) -> dict[str, str]:
        if "*" not in table:
            raise ValueError('needs a "*" entry for the types not listed')
        allowed, what = cls._targets
        return _check_table(table, allowed, what)

    def span_type(self, kind: str) -> str:
        """The span type this direction maps `kind` to."""
        return self.span_types.get(kind, self.span_types["*"])


class LangWatchToOpik(_Direction):
    """`mappings/langwatch_to_opik.toml`: LangWatch type -> Opik type, typed value -> Opik key."""

    _targets = (OPIK_SPAN_TYPES, "an Opik span type")

    scores: _L2OScores
    model: _L2OModel

    @field_validator("io")
    @classmethod
    def _io(cls, table: dict[str, str]) -> dict[str, str]:
        unknown = set(table) - LANGWATCH_IO_TYPES
        if unknown:
            raise ValueError(f"{sorted(unknown)} are not LangWatch typed-value types")
        if len(set(table.values())) != len(table) or not all(table.values()):
            raise ValueError("Opik keys must be distinct and not empty")
        return table


class _O2LScores(_Table):
    status: Literal["processed"]


class _O2LModel(_Table):
    join_provider: bool


class OpikToLangWatch(_Direction):
    """`mappings/opik_to_langwatch.toml`: Opik type -> LangWatch type, Opik key -> typed value."""

    _targets = (LANGWATCH_SPAN_TYPES, "a LangWatch span type")

    scores: _O2LScores
    model: _O2LModel

    @field_validator("io")
    @classmethod
    def _io(cls, table: dict[str, str]) -> dict[str, str]:
        _check_table(table, LANGWATCH_IO_TYPES, "a LangWatch typed-value type")
        if not all(table):
            raise ValueError("Opik keys must not be empty")
        return table


class Mappings(BaseModel):
    """Both directions; the Opik converter needs both to know what the reverse will do."""

    model_config = ConfigDict(frozen=True)

    to_opik: LangWatchToOpik
    to_langwatch: OpikToLangWatch


def _default_text(name: str) -> str:
    packaged = resources.files("tracebridge").joinpath("_default_mappings").joinpath(name)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    # A source checkout (editable install): the repository's own mappings/ folder.
    return (Path(__file__).resolve().parents[2] / "mappings" / name).read_text(encoding="utf-8")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


#: Keys only one direction's file has: (table, key) -> which file has it.
_ONLY_IN: dict[str, frozenset[tuple[str, str]]] = {
    "langwatch_to_opik.toml": frozenset(
        {
            ("scores", "statuses"), ("scores", "passed_value"), ("scores", "failed_value"),
            ("scores", "source"), ("model", "split_vendor_prefix"),
        }
    ),
    "opik_to_langwatch.toml": frozenset({("scores", "status"), ("model", "join_provider")}),
}  # fmt: skip
#: Which platform a direction's file writes to.
_WRITES_TO = {"langwatch_to_opik.toml": "Opik", "opik_to_langwatch.toml": "LangWatch"}


def _check_direction(name: str, user_file: Path, data: dict[str, Any]) -> None:
    """Refuse a user file written for the other direction, naming it as such.

    A file counts as the other direction's when it has keys only that direction has and none
    only this one has; a file mixing both is left to validation (which names the bad keys).
    """
    other = next(n for n in _ONLY_IN if n != name)
    keys = {
        (table, key) for table, values in data.items() if isinstance(values, dict) for key in values
    }
    theirs = sorted(keys & _ONLY_IN[other])
    if not theirs or keys & _ONLY_IN[name]:
        return
    found = ", ".join(f"[{table}] {key}" for table, key in theirs)
    raise MappingFileError(
        f"{user_file} is a {other.removesuffix('.toml')} mapping (it has {found}), but this run "
        f"writes to {_WRITES_TO[name]}: pass it when copying to {_WRITES_TO[other]}"
    )


def _load(model: type[_Table], name: str, user_file: Path | None) -> Any:
    source = name
    data = tomllib.loads(_default_text(name))
    if user_file is not None:
        source = str(user_file)
        try:
            user_data = tomllib.loads(user_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise MappingFileError(
                f"mapping file {user_file}: cannot read it ({exc.strerror})"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise MappingFileError(f"mapping file {user_file}: not valid TOML ({exc})") from None
        _check_direction(name, user_file, user_data)
        data = _merge(data, user_data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = describe_validation_error(exc, noun="key")
        raise MappingFileError(f"mapping file {source}: {problems}") from None


def load_mappings(to_opik: Path | None = None, to_langwatch: Path | None = None) -> Mappings:
    """The mappings in force: the defaults, overridden by the user's files where given."""
    return Mappings(
        to_opik=_load(LangWatchToOpik, "langwatch_to_opik.toml", to_opik),
        to_langwatch=_load(OpikToLangWatch, "opik_to_langwatch.toml", to_langwatch),
    )


@cache
def default_mappings() -> Mappings:
    """The shipped defaults (read once)."""
    return load_mappings()
