"""`_mapping`: the shipped TOML defaults load; a user file overrides key by key; bad files are
refused with a `MappingFileError` naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

import tracebridge._mapping as mapping_module
from tracebridge import MappingFileError, UsageError
from tracebridge._mapping import (
    LANGWATCH_SPAN_TYPES,
    OPIK_SPAN_TYPES,
    default_mappings,
    load_mappings,
)


def _write(tmp_path: Path, text: str, name: str = "my-mapping.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _refused(path: Path, *, to_opik: bool = True) -> str:
    """Load `path` as the mapping of one direction; return the MappingFileError message."""
    files = {"to_opik": path} if to_opik else {"to_langwatch": path}
    with pytest.raises(MappingFileError) as info:
        load_mappings(**files)
    message = str(info.value)
    assert str(path) in message, message
    return message


# ------------------------------------------------------------------------------------ defaults


def test_defaults_load_with_the_documented_tables() -> None:
    """The shipped tables match DESIGN.md's default mapping."""
    m = default_mappings()
    to_opik = m.to_opik
    assert to_opik.version == 1
    for kind in ("llm", "tool", "guardrail"):
        assert to_opik.span_type(kind) == kind
    for kind in ("agent", "chain", "rag", "span", "workflow", "something-new"):
        assert to_opik.span_type(kind) == "general"
    assert to_opik.scores.statuses == frozenset({"processed"})
    assert (to_opik.scores.passed_value, to_opik.scores.failed_value) == (1.0, 0.0)
    assert to_opik.scores.source == "sdk"
    assert to_opik.model.split_vendor_prefix is True
    assert to_opik.io["chat_messages"] == "messages"
    assert to_opik.io["text"] == "text"

    to_lw = m.to_langwatch
    assert to_lw.span_type("general") == "span"
    assert to_lw.span_type("llm") == "llm"
    assert to_lw.span_type("unknown-opik-type") == "span"
    assert to_lw.scores.status == "processed"
    assert to_lw.model.join_provider is True
    assert to_lw.io["messages"] == "chat_messages"


def test_default_tables_only_name_known_types() -> None:
    """Every value of the span-type tables is a type of the target platform."""
    m = default_mappings()
    assert set(m.to_opik.span_types.values()) <= OPIK_SPAN_TYPES
    assert set(m.to_langwatch.span_types.values()) <= LANGWATCH_SPAN_TYPES


def test_default_mappings_is_loaded_once() -> None:
    """`default_mappings` is cached: the same object every call."""
    assert default_mappings() is default_mappings()


def test_the_io_tables_are_inverse() -> None:
    """The Opik key of each typed value maps back to that type (the IO bijection needs it)."""
    m = default_mappings()
    for lw_type, opik_key in m.to_opik.io.items():
        assert m.to_langwatch.io[opik_key] == lw_type


# ------------------------------------------------------------------------------- user overrides


def test_user_file_overrides_one_key_and_keeps_the_rest(tmp_path: Path) -> None:
    """A file naming only `chain` changes `chain`; every other default stays."""
    path = _write(tmp_path, '[span_types]\nchain = "tool"\n')
    m = load_mappings(to_opik=path)
    defaults = default_mappings()
    assert m.to_opik.span_type("chain") == "tool"
    assert m.to_opik.span_type("agent") == "general"  # from "*"
    assert m.to_opik.span_type("llm") == "llm"
    assert m.to_opik.scores == defaults.to_opik.scores
    assert m.to_opik.io == defaults.to_opik.io
    assert m.to_langwatch == defaults.to_langwatch  # the other direction is untouched


def test_user_file_overrides_nested_scalars(tmp_path: Path) -> None:
    """Nested tables merge key by key: one score rule changes, the others stay."""
    path = _write(tmp_path, "[scores]\npassed_value = 0.75\n")
    scores = load_mappings(to_opik=path).to_opik.scores
    assert scores.passed_value == 0.75
    assert scores.failed_value == 0.0
    assert scores.source == "sdk"


def test_user_file_for_the_reverse_direction(tmp_path: Path) -> None:
    """The Opik -> LangWatch file is overridable the same way."""
    path = _write(tmp_path, '[span_types]\ngeneral = "chain"\n[metadata.rename]\nenv = "e"\n')
    m = load_mappings(to_langwatch=path)
    assert m.to_langwatch.span_type("general") == "chain"
    assert m.to_langwatch.span_type("tool") == "tool"
    assert m.to_langwatch.metadata.rename == {"env": "e"}
    assert m.to_opik == default_mappings().to_opik


def test_a_user_span_table_without_star_keeps_the_default_star(tmp_path: Path) -> None:
    """Merging is key by key, so a user table cannot lose the "*" fallback."""
    path = _write(tmp_path, '[span_types]\nagent = "llm"\n')
    m = load_mappings(to_opik=path)
    assert m.to_opik.span_types["*"] == "general"
    assert m.to_opik.span_type("chain") == "general"


# ----------------------------------------------------------------------------------- bad files


def test_unknown_opik_span_type_names_the_key_and_the_value(tmp_path: Path) -> None:
    """`chain = "banana"`: the message names the file, `span_types`, `chain` and the value."""
    message = _refused(_write(tmp_path, '[span_types]\nchain = "banana"\n'))
    assert "span_types" in message
    assert "'chain'" in message
    assert "banana" in message
    assert "Opik span type" in message


def test_unknown_langwatch_span_type_is_refused(tmp_path: Path) -> None:
    """The reverse table only maps to LangWatch's span types."""
    message = _refused(_write(tmp_path, '[span_types]\ngeneral = "general"\n'), to_opik=False)
    assert "span_types" in message
    assert "LangWatch span type" in message


def test_missing_star_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A span table without "*" (here: a shipped default without it) names the key and "*"."""
    original = mapping_module._default_text

    def without_star(name: str) -> str:
        return "\n".join(line for line in original(name).splitlines() if not line.startswith('"*"'))

    monkeypatch.setattr(mapping_module, "_default_text", without_star)
    path = _write(tmp_path, '[span_types]\nchain = "general"\n')
    message = _refused(path)
    assert "span_types" in message
    assert '"*"' in message


def test_bad_score_source_is_refused(tmp_path: Path) -> None:
    """Opik's score source is ui, sdk or online_scoring; the message names `scores.source`."""
    message = _refused(_write(tmp_path, '[scores]\nsource = "robot"\n'))
    assert "scores.source" in message


def test_bad_score_status_is_refused(tmp_path: Path) -> None:
    """Statuses are LangWatch's evaluation statuses."""
    message = _refused(_write(tmp_path, '[scores]\nstatuses = ["processed", "done"]\n'))
    assert "scores.statuses" in message


def test_unknown_top_level_key_is_refused(tmp_path: Path) -> None:
    """A typo at the top level (`span_type`) is not silently ignored."""
    message = _refused(_write(tmp_path, '[span_type]\nchain = "tool"\n'))
    assert "key 'span_type'" in message
    assert "not permitted" in message


def test_unknown_io_type_is_refused(tmp_path: Path) -> None:
    """The io table only knows LangWatch's typed-value types."""
    message = _refused(_write(tmp_path, '[io]\nimage = "img"\n'))
    assert "key 'io'" in message
    assert "image" in message


def test_io_keys_must_be_distinct(tmp_path: Path) -> None:
    """Two types on one Opik key would make the IO mapping ambiguous."""
    message = _refused(_write(tmp_path, '[io]\nraw = "text"\n'))
    assert "distinct" in message


def test_wrong_version_is_refused(tmp_path: Path) -> None:
    """Only format version 1 exists."""
    message = _refused(_write(tmp_path, "version = 2\n"))
    assert "version" in message


def test_invalid_toml_is_refused(tmp_path: Path) -> None:
    """A file that is not TOML says so, naming the file."""
    message = _refused(_write(tmp_path, "[span_types\nchain = tool\n"))
    assert "not valid TOML" in message


def test_unreadable_path_is_refused(tmp_path: Path) -> None:
    """A missing file is a usage error naming the path, not a traceback."""
    message = _refused(tmp_path / "does-not-exist.toml")
    assert "cannot read" in message


def test_mapping_file_error_is_a_usage_error() -> None:
    """Mapping problems end the command with exit code 2."""
    assert issubclass(MappingFileError, UsageError)
    assert MappingFileError.exit_code == 2


@pytest.mark.parametrize(
    ("text", "to_opik", "expected"),
    [
        (
            '[scores]\nstatus = "processed"\n[model]\njoin_provider = false\n',
            True,
            "is a opik_to_langwatch mapping (it has [model] join_provider, [scores] status), "
            "but this run writes to Opik: pass it when copying to LangWatch",
        ),
        (
            "[model]\nsplit_vendor_prefix = false\n",
            False,
            "is a langwatch_to_opik mapping (it has [model] split_vendor_prefix), "
            "but this run writes to LangWatch: pass it when copying to Opik",
        ),
    ],
)
def test_a_file_of_the_other_direction_is_named_as_such(
    tmp_path: Path, text: str, to_opik: bool, expected: str
) -> None:
    """A mapping file written for the other direction is recognised, not just "unknown key"."""
    message = _refused(_write(tmp_path, text), to_opik=to_opik)
    assert expected in message


def test_the_shipped_file_of_the_other_direction_is_named_as_such() -> None:
    """Passing the repository's opik_to_langwatch.toml to a run writing to Opik is named."""
    shipped = Path(mapping_module.__file__).resolve().parents[2] / "mappings"
    with pytest.raises(MappingFileError, match="is a opik_to_langwatch mapping"):
        load_mappings(to_opik=shipped / "opik_to_langwatch.toml")
    with pytest.raises(MappingFileError, match="is a langwatch_to_opik mapping"):
        load_mappings(to_langwatch=shipped / "langwatch_to_opik.toml")
    assert MappingFileError.exit_code == 2
