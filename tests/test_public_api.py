"""The public surface: `tracebridge.__all__` is sorted, complete and light to import."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import tracebridge

#: Private modules whose own `__all__` is public API: every class and function in it is exported.
FULLY_PUBLIC = (
    "tracebridge._errors",
    "tracebridge._models",
    "tracebridge._interfaces",
    "tracebridge._engine",
    "tracebridge._config",
    "tracebridge._langwatch.file",
    "tracebridge._opik.folder",
    "tracebridge._blocking",
)
#: Names from other private modules that library users need.
ALSO_PUBLIC = (
    "migrate",
    "sync",
    "load_mappings",
    "default_mappings",
    "Mappings",
    "format_summary",
    # issue 11: a custom pipeline needs no private import
    "open_source",
    "open_sink",
    "StateDir",
    "JobCounts",  # `Report.job`: what the whole job did, on a resumed run
    "LangWatchApiSource",
    "LangWatchApiSink",
    "OpikApiSource",
    "OpikApiSink",
)


def test_all_is_sorted() -> None:
    """`__all__` is kept in sorted order (easy to review, no duplicates)."""
    assert tracebridge.__all__ == sorted(tracebridge.__all__)
    assert len(set(tracebridge.__all__)) == len(tracebridge.__all__)


def test_every_exported_name_exists() -> None:
    """`from tracebridge import *` cannot fail on a stale name."""
    missing = [name for name in tracebridge.__all__ if not hasattr(tracebridge, name)]
    assert missing == []


def test_exported_objects_come_from_the_package() -> None:
    """Exports are tracebridge's own classes and functions, not re-exported third-party ones."""
    for name in tracebridge.__all__:
        obj = getattr(tracebridge, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__.startswith("tracebridge."), (name, obj.__module__)


@pytest.mark.parametrize("module_name", FULLY_PUBLIC)
def test_public_classes_and_functions_are_exported(module_name: str) -> None:
    """Every class or function a public-facing private module lists is in `tracebridge`."""
    module = importlib.import_module(module_name)
    names = [
        name
        for name in module.__all__
        if inspect.isclass(getattr(module, name)) or inspect.isfunction(getattr(module, name))
    ]
    assert names, module_name
    missing = [name for name in names if name not in tracebridge.__all__]
    assert missing == [], f"{module_name} defines public {missing} not exported by tracebridge"
    for name in names:
        assert getattr(tracebridge, name) is getattr(module, name)


@pytest.mark.parametrize("name", ALSO_PUBLIC)
def test_library_entry_points_are_exported(name: str) -> None:
    """What the README's library use needs is importable from the top level."""
    assert name in tracebridge.__all__
    assert callable(getattr(tracebridge, name))


def test_every_error_class_is_exported_with_its_exit_code() -> None:
    """All errors are reachable from `tracebridge` and carry the documented exit codes."""
    errors = importlib.import_module("tracebridge._errors")
    for name in errors.__all__:
        cls = getattr(tracebridge, name)
        assert issubclass(cls, tracebridge.TracebridgeError)
    assert tracebridge.UsageError.exit_code == 2
    assert tracebridge.MappingFileError.exit_code == 2
    assert tracebridge.FatalError.exit_code == 3
    assert tracebridge.CheckpointError.exit_code == 3
    assert tracebridge.LockedError.exit_code == 2
    assert tracebridge.RecordError.exit_code == 1
    assert tracebridge.RejectedRecord.exit_code == 1


def test_import_does_not_pull_in_test_dependencies() -> None:
    """`import tracebridge` in a fresh interpreter loads no test-only package."""
    code = (
        "import sys, tracebridge\n"
        "bad = sorted(m for m in ('respx', 'hypothesis', 'pytest', 'jsonschema', 'yaml')"
        " if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
