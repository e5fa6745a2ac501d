"""Steps named on the command line: `--step module:attribute` → the callable it names.

The module is imported with the current directory first on `sys.path` for the import (as
`python -m` does), so a step file next to where the command runs needs no installation:
`tracebridge migrate ... --step my_steps:redact` imports `./my_steps.py`. The attribute may be
dotted (`module:Class.method`). It must be callable: a plain function `(unit) -> unit | None`
or an object built at import time by a factory (`only_prod = keep_tag("production")`), whose
`rule` attribute, if any, names what it skips.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from typing import Any

from ._engine import Step
from ._errors import UsageError

__all__ = ["import_step", "import_steps"]


def import_step(spec: str) -> Step:
    """The callable `spec` ("module:attribute") names; a `UsageError` naming `spec` when it is
    malformed, cannot be imported, has no such attribute, or is not callable."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(f"--step {spec!r}: write module:function (e.g. my_steps:redact)")
    here = os.getcwd()
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--step {spec!r}: cannot import {module_name!r}: {exc}") from None
    except Exception as exc:
        raise UsageError(
            f"--step {spec!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        if added and here in sys.path:
            sys.path.remove(here)
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise UsageError(f"--step {spec!r}: {module_name!r} has no {attribute!r}") from None
    if not callable(found):
        kind = type(found).__name__
        raise UsageError(f"--step {spec!r}: {attribute!r} is a {kind}, not a callable step")
    step: Step = found
    return step


def import_steps(specs: Iterable[str]) -> list[Step]:
    """`import_step` of every spec, in order."""
    return [import_step(spec) for spec in specs]
