"""The scenarios shipped in ``scenarios/``, found by name."""

from __future__ import annotations

from pathlib import Path

import yaml

from sim.errors import ScenarioError

__all__ = ["SCENARIO_DIR", "shipped", "shipped_path"]

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"


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
        import difflib

        names = sorted(shipped())
        near = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ScenarioError(f"{name}: no such scenario file or shipped scenario{hint}; shipped: {', '.join(names)}")
    return path
