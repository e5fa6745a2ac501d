"""The README is run, not only read: every `tracebridge` command in its shell, console, systemd
(`ExecStart=`) and Kubernetes (`args:`) blocks runs through the CLI, in README order, in one
folder against the in-process fakes of both APIs; every Python block runs too. A command that is
wrong (an unknown option, a bad endpoint, a failing run) fails the test, naming it.

Placeholders are resolved as a reader would: the keys and URLs come from the fakes, `traces.jsonl`
is the shipped sample, `tracebridge.toml` is `config.example.toml` pointed at the fakes, an
absolute path (`--state-dir /state`) lives under the test's folder, and `--every` stops after
its first pass is under way (as SIGTERM would).

Also: the configuration reference names exactly the keys of `config.example.toml` (which loads),
and every option of every command has help text.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import click
import pytest
import yaml

import tracebridge.cli
from tests.fakes.langwatch import LangWatchFake
from tests.fakes.opik import OpikFake
from tests.test_cli import LW_KEY, RECORDS, api_env, invoke
from tracebridge._config import _FILE, load_settings
from tracebridge.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONFIG_EXAMPLE = ROOT / "config.example.toml"
BLOCK = re.compile(r"^```(?P<lang>[a-z]*)\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)
SHELL = ("sh", "shell", "console", "bash")
#: Where a shell command stops being tracebridge's arguments.
_SEPARATORS = {"&&", "||", ";", "|"}
_REDIRECTS = re.compile(r"^(\d?>>?|<|\d?>&\d)")


@dataclass(frozen=True)
class Command:
    """A `tracebridge` command found in a block: its arguments and where it was written."""

    args: tuple[str, ...]
    line: int

    def __str__(self) -> str:
        return f"README line {self.line}: tracebridge {shlex.join(self.args)}"


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _shell_commands(body: str, first_line: int) -> Iterator[Command]:
    """`tracebridge ...` in shell lines: continuations joined, `$ ` prompts and comments
    dropped, the command cut at `&&`, `;`, pipes and redirections (cron, `cd X && ...`)."""
    lines = body.replace("\\\n", " ").splitlines()
    for number, line in enumerate(lines, first_line):
        text = line.strip().removeprefix("$ ")
        if not text or text.startswith("#"):
            continue
        tokens = shlex.split(text, comments=True)
        segment: list[str] = []
        for token in [*tokens, ";"]:
            if token not in _SEPARATORS:
                segment.append(token)
                continue
            yield from _tracebridge_in(segment, number)
            segment = []


_CRON_FIELD = re.compile(r"^[\d*/,-]+$")


def _tracebridge_in(tokens: list[str], line: int) -> Iterator[Command]:
    """The command a shell segment runs, if it is tracebridge (`tracebridge`, a path to it, or
    either after a crontab's five schedule fields); its arguments up to a redirection."""
    start = 5 if len(tokens) > 5 and all(_CRON_FIELD.match(t) for t in tokens[:5]) else 0
    if len(tokens) <= start or Path(tokens[start]).name != "tracebridge":
        return
    args: list[str] = []
    for arg in tokens[start + 1 :]:
        if _REDIRECTS.match(arg):
            break
        args.append(arg)
    yield Command(tuple(args), line)


def _yaml_commands(body: str, line: int) -> Iterator[Command]:
    """The `args` of a container whose image is tracebridge's (a Kubernetes manifest)."""

    def walk(node: Any) -> Iterator[Command]:
        if isinstance(node, dict):
            if "tracebridge" in str(node.get("image", "")) and "args" in node:
                yield Command(tuple(str(a) for a in node["args"]), line)
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    yield from walk(yaml.safe_load(body))


def readme_commands(text: str) -> list[Command]:
    """Every `tracebridge` command of `text`'s code blocks, in order."""
    commands: list[Command] = []
    for block in BLOCK.finditer(text):
        lang, body = block["lang"], block["body"]
        line = _line_of(text, block.start("body"))
        if lang in SHELL:
            commands += _shell_commands(body, line)
        elif lang == "ini":
            for number, row in enumerate(body.splitlines(), line):
                if row.startswith("ExecStart="):
                    commands += _tracebridge_in(shlex.split(row.removeprefix("ExecStart=")), number)
        elif lang == "yaml":
            commands += _yaml_commands(body, line)
    return commands


def python_blocks(text: str) -> list[tuple[int, str]]:
    return [
        (_line_of(text, b.start("body")), b["body"])
        for b in BLOCK.finditer(text)
        if b["lang"] == "python"
    ]


# --- the world the commands run in -----------------------------------------------------------


@dataclass
class World:
    folder: Path
    lw: LangWatchFake
    opik: OpikFake

    @property
    def env(self) -> dict[str, str]:
        return api_env(self.lw, self.opik)


def _prepare(folder: Path, lw: LangWatchFake, opik: OpikFake) -> None:
    """The files a reader has: the repository's examples, a LangWatch export as
    `traces.jsonl`, and the example config (`cp config.example.toml tracebridge.toml`) pointed
    at the fakes."""
    shutil.copytree(ROOT / "examples", folder / "examples")
    shutil.copy(ROOT / "examples" / "langwatch-sample.jsonl", folder / "traces.jsonl")
    config = CONFIG_EXAMPLE.read_text(encoding="utf-8")
    config = re.sub(r'(?m)^endpoint = "[^"]*"', f'endpoint = "{lw.base_url}"', config)
    config = re.sub(r'(?m)^url = "[^"]*"', f'url = "{opik.base_url}"', config)
    (folder / "tracebridge.toml").write_text(config, encoding="utf-8")


def _resolve(args: tuple[str, ...], world: World) -> list[str]:
    """Absolute paths (a container's `/state`) under the test's folder."""
    out = []
    for arg in args:
        if arg.startswith("/"):
            path = world.folder / "root" / arg.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            arg = str(path)
        out.append(arg)
    return out


async def _stop_at_once(stop: anyio.Event, work: anyio.CancelScope, got: list[int]) -> None:
    """`--every` in a test: SIGTERM right away (the pass stops cleanly, exit 0)."""
    stop.set()


def run_commands(commands: list[Command], world: World) -> list[str]:
    """Run each command; what went wrong with each that failed (exit code and output)."""
    failures = []
    for command in commands:
        result = invoke(_resolve(command.args, world), world.env)
        escaped = result.exception is not None and not isinstance(result.exception, SystemExit)
        if result.exit_code != 0 or escaped:
            failures.append(
                f"{command}\n  exit {result.exit_code}\n  stdout: {result.stdout[-800:]}\n"
                f"  stderr: {result.stderr[-800:]}"
            )
    return failures


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tracebridge.cli, "_stop_on_signals", _stop_at_once)
    # The LangWatch project the sample was exported from (a backup goes back to its own).
    lw, opik = LangWatchFake(api_key=LW_KEY, project_id=RECORDS[0]["project_id"]), OpikFake()
    for record in RECORDS:
        lw.add_trace(record)
    _prepare(tmp_path, lw, opik)
    with lw.router, opik.router:
        yield World(tmp_path, lw, opik)


# --- the commands -------------------------------------------------------------------------------


def test_every_readme_command_runs(world: World) -> None:
    commands = readme_commands(README.read_text(encoding="utf-8"))
    names = {c.args[0] for c in commands if c.args}
    assert {"migrate", "sync", "status", "check", "verify"} <= names
    assert any("--every" in c.args for c in commands)
    assert any("--step" in c.args for c in commands)
    assert any("--config" in c.args for c in commands)
    assert len(commands) >= 20, [str(c) for c in commands]
    failures = run_commands(commands, world)
    assert not failures, "\n".join(failures)
    assert world.opik.row_count() > 0  # the API commands really reached the fakes
    assert (world.folder / "opik-export").is_dir()


def test_the_cron_systemd_and_kubernetes_commands_are_found() -> None:
    commands = {str(c).split(": ", 1)[1] for c in readme_commands(README.read_text())}
    sync = "tracebridge sync --from langwatch --to opik --target-project support-bot"
    assert sync in commands  # cron (after `cd ... &&`, before `>>`) and systemd's ExecStart
    assert f"{sync} --state-dir /state" in commands  # the CronJob's args


def test_a_wrong_command_in_the_readme_fails_the_check(world: World) -> None:
    """The checker is not a rubber stamp: an unknown option, a bad endpoint, a missing input
    and a lossy run each fail, with their README line."""
    text = "\n".join(
        [
            "```sh",
            "tracebridge migrate --form langwatch --to opik",
            "tracebridge migrate --from langwatch-files:x.jsonl --to opik-dir:out",
            "tracebridge migrate --from langwatch-file:missing.jsonl --to opik-dir:out",
            "tracebridge status",
            "```",
            "```console",
            "$ tracebridge verify --from langwatch --to opik-dir:nothing-there",
            "```",
        ]
    )
    commands = readme_commands(text)
    assert [c.line for c in commands] == [2, 3, 4, 5, 8]
    failures = run_commands(commands, world)
    assert [f.split(":", 1)[0] for f in failures] == [
        "README line 2",
        "README line 3",
        "README line 4",
        "README line 8",
    ]


def test_every_python_block_of_the_readme_runs(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in world.env.items():
        monkeypatch.setenv(name, value)
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 3
    for line, body in blocks:
        namespace: dict[str, Any] = {"__name__": "readme"}
        try:
            exec(compile(body, f"README.md:{line}", "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"the Python block at README line {line} failed: {exc!r}")
    assert (world.folder / "redacted").is_dir()


# --- the configuration reference --------------------------------------------------------------

_SECTION = re.compile(r"^\[(?P<name>[a-z_]+)\]")
_KEY = re.compile(r"^#?\s*(?P<key>[a-z_]+)\s*=\s*\S")


def example_keys() -> set[str]:
    """`section.key` for every key of config.example.toml, set or commented out."""
    keys, section = set(), None
    for line in CONFIG_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if match := _SECTION.match(line):
            section = match["name"]
        elif section and (match := _KEY.match(line)):
            keys.add(f"{section}.{match['key']}")
    return keys


def reference_keys() -> set[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("### Configuration reference")
    section = text[start : text.index("\n## ", start)]
    return set(re.findall(r"(?m)^\| `([a-z_]+\.[a-z_]+)` \|", section))


def test_the_configuration_reference_matches_config_example_toml() -> None:
    example, reference = example_keys(), reference_keys()
    assert len(example) >= 10
    assert not example - reference, (
        f"add to the README's configuration reference: {sorted(example - reference)}"
    )
    assert not reference - example, (
        f"in the README's reference, not in config.example.toml: {sorted(reference - example)}"
    )
    known = {f"{section}.{key}" for section, key in _FILE}
    assert example == known, (
        f"config.example.toml and the keys tracebridge reads differ: {sorted(example ^ known)}"
    )


def test_config_example_toml_loads() -> None:
    settings = load_settings(CONFIG_EXAMPLE, environ={})
    assert settings.opik_project == "support-bot"
    assert settings.state_dir == (ROOT / ".tracebridge").resolve()


def test_the_key_parser_sees_commented_keys_and_not_prose(tmp_path: Path) -> None:
    """`# api_key = "..."` is a key of the example; `# Opik ids: "x" derives` is prose."""
    keys = example_keys()
    assert {"langwatch.api_key", "opik.ids", "mapping.langwatch_to_opik"} <= keys
    assert not {k for k in keys if k.split(".")[1] in ("opik", "langwatch")}


# --- help texts ---------------------------------------------------------------------------------


def _commands() -> Iterator[tuple[str, click.Command]]:
    yield "tracebridge", main
    assert isinstance(main, click.Group)
    yield from sorted(main.commands.items())


@pytest.mark.parametrize(("name", "command"), list(_commands()))
def test_every_option_of_every_command_has_help(name: str, command: click.Command) -> None:
    assert (command.help or "").strip(), f"{name} has no help text"
    ctx = click.Context(command, info_name=name)
    for param in command.get_params(ctx):
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), f"{name} {param.opts[0]} has no help text"
        else:
            pytest.fail(f"{name} {param.name}: an argument cannot carry help; use an option")
    args = [] if command is main else [name]
    shown = invoke([*args, "--help"])
    assert shown.exit_code == 0
    for param in command.get_params(ctx):
        assert param.opts[-1] in shown.stdout, f"{name} --help does not show {param.opts[-1]}"
