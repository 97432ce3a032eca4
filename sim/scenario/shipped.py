"""The scenarios shipped with churnsim, found by name.

They live in the checkout's top-level ``scenarios/``; ``sim/scenarios`` is a symlink to it, so
setuptools copies them into the wheel as package data of ``sim`` and one lookup through
``importlib.resources`` finds them from a checkout, an editable install, an installed wheel or a
zip.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib.resources import as_file, files
from pathlib import Path

import yaml

from sim.errors import ScenarioError, SimError
from sim.scenario.hints import did_you_mean

__all__ = ["SCENARIO_DIR", "shipped", "shipped_path"]

#: The shipped scenarios' folder (a ``Traversable``: a plain path unless sim is imported from a zip).
SCENARIO_DIR = files("sim").joinpath("scenarios")

# Files extracted from a zip import must outlive the call that asked for them.
_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def shipped() -> dict[str, str]:
    """Name -> one-line description of every shipped scenario."""
    if not SCENARIO_DIR.is_dir():
        raise SimError(f"{SCENARIO_DIR}: the shipped scenarios are missing; reinstall churnsim")
    out = {}
    for entry in sorted(SCENARIO_DIR.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        data = yaml.safe_load(entry.read_text(encoding="utf-8")) or {}
        desc = data.get("description") or ("The guide's environments file (use --env dev|staging|prod)."
                                           if "environments" in data else "")
        out[entry.name.removesuffix(".yaml")] = " ".join(str(desc).split())
    return out


def shipped_path(name: str) -> Path:
    """The file of the shipped scenario ``name`` (``baseline``, ``dev``, ...)."""
    entry = SCENARIO_DIR.joinpath(f"{name}.yaml")
    if not entry.is_file():
        names = sorted(shipped())
        raise ScenarioError(f"{name}: no such scenario file or shipped scenario{did_you_mean(name, names)}; "
                            f"shipped: {', '.join(names)}")
    return _extracted.enter_context(as_file(entry))
