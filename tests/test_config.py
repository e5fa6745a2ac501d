"""`_config`: flags > config file > environment > defaults, with the official SDKs' variable
names; unknown keys are refused by name; secrets never print."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracebridge import Settings, UsageError, load_settings

LW_SECRET = "sk-lw-7f3a9c1e5b2d4f60"
OPIK_SECRET = "opik-key-0a1b2c3d4e5f6789"


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tracebridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_anything() -> None:
    """No flags, no file, empty environment: the documented defaults (local Opik, no key)."""
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.opik_url == "http://localhost:5173/api"
    assert settings.opik_api_key is None
    assert settings.opik_workspace == "default"
    assert settings.langwatch_endpoint == "https://app.langwatch.ai"
    assert settings.opik_ids == "source-time"


def test_environment_uses_the_official_sdk_names() -> None:
    """LANGWATCH_API_KEY, LANGWATCH_ENDPOINT, OPIK_URL_OVERRIDE, OPIK_API_KEY, OPIK_WORKSPACE,
    OPIK_PROJECT_NAME fill their settings."""
    settings = load_settings(
        environ={
            "LANGWATCH_API_KEY": LW_SECRET,
            "LANGWATCH_ENDPOINT": "https://lw.example.com",
            "OPIK_URL_OVERRIDE": "https://www.comet.com/opik/api",
            "OPIK_API_KEY": OPIK_SECRET,
            "OPIK_WORKSPACE": "acme",
            "OPIK_PROJECT_NAME": "support-bot",
        }
    )
    assert settings.langwatch_api_key is not None
    assert settings.langwatch_api_key.get_secret_value() == LW_SECRET
    assert settings.langwatch_endpoint == "https://lw.example.com"
    assert settings.opik_url == "https://www.comet.com/opik/api"
    assert settings.opik_api_key is not None
    assert settings.opik_api_key.get_secret_value() == OPIK_SECRET
    assert settings.opik_workspace == "acme"
    assert settings.opik_project == "support-bot"


def test_empty_environment_values_are_ignored() -> None:
    """`OPIK_WORKSPACE=` (set but empty) does not replace the default."""
    assert load_settings(environ={"OPIK_WORKSPACE": ""}).opik_workspace == "default"


def test_the_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an explicit `environ`, os.environ is used."""
    monkeypatch.setenv("OPIK_WORKSPACE", "from-process-env")
    assert load_settings().opik_workspace == "from-process-env"


def test_config_file_beats_environment(tmp_path: Path) -> None:
    """A value in the config file wins over the environment; the rest still comes from env."""
    path = _config(tmp_path, '[opik]\nworkspace = "from-file"\n')
    settings = load_settings(
        path, environ={"OPIK_WORKSPACE": "from-env", "OPIK_PROJECT_NAME": "env-project"}
    )
    assert settings.opik_workspace == "from-file"
    assert settings.opik_project == "env-project"


def test_flags_beat_config_file_and_environment(tmp_path: Path) -> None:
    """Flags win over everything; a flag left at None does not erase a lower layer."""
    path = _config(tmp_path, '[opik]\nworkspace = "from-file"\nproject = "file-project"\n')
    settings = load_settings(
        path,
        overrides={"opik_workspace": "from-flag", "opik_project": None},
        environ={"OPIK_WORKSPACE": "from-env"},
    )
    assert settings.opik_workspace == "from-flag"
    assert settings.opik_project == "file-project"


def test_every_config_section_is_read(tmp_path: Path) -> None:
    """All documented config-file keys land in their settings."""
    path = _config(
        tmp_path,
        "\n".join(
            [
                "[langwatch]",
                'endpoint = "https://lw.internal"',
                f'api_key = "{LW_SECRET}"',
                "[opik]",
                'url = "http://opik.internal/api"',
                f'api_key = "{OPIK_SECRET}"',
                'ids = "write-time"',
                "[mapping]",
                'langwatch_to_opik = "maps/to-opik.toml"',
                "[run]",
                'state_dir = "state"',
                "shift_old_timestamps = true",
            ]
        ),
    )
    settings = load_settings(path, environ={})
    assert settings.langwatch_endpoint == "https://lw.internal"
    assert settings.opik_url == "http://opik.internal/api"
    assert settings.opik_ids == "write-time"
    assert settings.shift_old_timestamps is True
    assert settings.opik_api_key is not None
    assert settings.opik_api_key.get_secret_value() == OPIK_SECRET


def test_relative_paths_in_a_config_file_are_relative_to_the_file(tmp_path: Path) -> None:
    """`state_dir = "state"` in /x/tracebridge.toml means /x/state, wherever the run starts."""
    path = _config(
        tmp_path, '[run]\nstate_dir = "state"\n[mapping]\nopik_to_langwatch = "m.toml"\n'
    )
    settings = load_settings(path, environ={})
    assert settings.state_dir == (tmp_path / "state").resolve()
    assert settings.mapping_to_langwatch == (tmp_path / "m.toml").resolve()


def test_unknown_config_key_is_refused_by_name(tmp_path: Path) -> None:
    """A typo (`opik.workspce`) is a UsageError naming the section and key."""
    path = _config(tmp_path, '[opik]\nworkspce = "acme"\n')
    with pytest.raises(UsageError) as info:
        load_settings(path, environ={})
    assert "opik.workspce" in str(info.value)
    assert str(path) in str(info.value)


def test_unknown_config_section_is_refused_by_name(tmp_path: Path) -> None:
    """An unknown section is as wrong as an unknown key."""
    path = _config(tmp_path, '[opk]\nworkspace = "acme"\n')
    with pytest.raises(UsageError, match=r"opk\.workspace"):
        load_settings(path, environ={})


def test_top_level_value_in_config_file_is_refused(tmp_path: Path) -> None:
    """Keys live in sections; `workspace = ...` at the top level is named."""
    path = _config(tmp_path, 'workspace = "acme"\n')
    with pytest.raises(UsageError, match="'workspace'"):
        load_settings(path, environ={})


def test_bad_value_names_where_it_came_from(tmp_path: Path) -> None:
    """A value that does not validate names its source (config file) and the setting."""
    path = _config(tmp_path, '[opik]\nids = "sometimes"\n')
    with pytest.raises(UsageError) as info:
        load_settings(path, environ={})
    assert str(path) in str(info.value)
    assert "opik_ids" in str(info.value)


def test_bad_flag_value_names_the_command_line() -> None:
    """A bad flag value says it came from the command line."""
    with pytest.raises(UsageError, match="command line"):
        load_settings(overrides={"opik_ids": "never"}, environ={})


def test_invalid_toml_and_missing_file_are_usage_errors(tmp_path: Path) -> None:
    """Broken or missing config files are usage errors naming the file."""
    broken = _config(tmp_path, "[opik\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_settings(broken, environ={})
    missing = tmp_path / "nope.toml"
    with pytest.raises(UsageError, match="cannot read") as info:
        load_settings(missing, environ={})
    assert str(missing) in str(info.value)


def test_secrets_never_appear_in_repr_or_str(tmp_path: Path) -> None:
    """API keys from any layer print masked in repr, str and JSON dumps."""
    path = _config(tmp_path, f'[opik]\napi_key = "{OPIK_SECRET}"\n')
    settings = load_settings(path, environ={"LANGWATCH_API_KEY": LW_SECRET})
    for text in (repr(settings), str(settings), settings.model_dump_json(), f"{settings}"):
        assert LW_SECRET not in text
        assert OPIK_SECRET not in text
    assert "**********" in repr(settings)


def test_secrets_are_not_echoed_in_validation_errors() -> None:
    """A rejected settings value from the same layer as a secret does not leak the secret."""
    with pytest.raises(UsageError) as info:
        load_settings(
            overrides={"opik_api_key": OPIK_SECRET, "opik_ids": "never"},
            environ={"LANGWATCH_API_KEY": LW_SECRET},
        )
    assert OPIK_SECRET not in str(info.value)
    assert LW_SECRET not in str(info.value)


def test_settings_are_immutable() -> None:
    """Settings are frozen: a run cannot change them under another."""
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.opik_workspace = "other"  # type: ignore[misc]
