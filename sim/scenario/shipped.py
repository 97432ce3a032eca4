"""The scenarios shipped in ``scenarios/``, found by name."""

from __future__ import annotations

from pathlib import Path

import yaml

from sim.errors import ScenarioError
from sim.scenario.hints import did_you_mean

__all__ = ["SCENARIO_DIR", "shipped", "shipped_path"]

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "scenarios"


def shipped() -> dict[str, str]:
    """Name -> one-line description of every shipped scenario."""
    out = {}
    for path in sorted(SCENARIO_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        desc = data.get("description") or ("The guide's environments file (use --env dev|staging|prod)."
                                           if "environments" in data else "")
        out[path.stem] = " ".join(str(desc).split())
    return out


def shipped_path(name: str) -> Path:
    path = SCENARIO_DIR / f"{name}.yaml"
    if not path.exists():

        names = sorted(shipped())
        hint = did_you_mean(name, names)
        raise ScenarioError(f"{name}: no such scenario file or shipped scenario{hint}; shipped: {', '.join(names)}")
    return path
