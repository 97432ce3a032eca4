"""Scenario files: YAML, the guide's environments file, and -s overrides."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from sim.errors import ScenarioError
from sim.scenario.build import scenario_from_dict
from sim.scenario.hints import did_you_mean, fail, unknown
from sim.scenario.schema import Scenario

__all__ = ["apply_overrides", "environment_to_scenario", "load_scenario"]


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario file ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(f"{path}: {line}malformed YAML: {problem}") from None
    except ValueError as exc:  # a scalar YAML cannot build, e.g. the date 2024-13-01
        raise ScenarioError(f"{path}: malformed YAML value: {exc}") from None


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str], *, source: str = "") -> dict:
    """Apply ``key.path=value`` strings (values parsed as YAML) to a scenario mapping."""
    out = json.loads(json.dumps(data, default=str))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ScenarioError(f"{source or 'override'}: -s {item!r}: expected KEY.PATH=VALUE")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ScenarioError(f"{source or 'override'}: {key}: expected a mapping at {part!r} (got {child!r})")
            node = child
        node[parts[-1]] = value
    return out


def environment_to_scenario(env: Mapping[str, Any], *, name: str) -> dict[str, Any]:
    """The guide's ``config/data_generation.yaml`` environment entry as a scenario mapping."""
    known = {"num_customers", "avg_transactions", "date_range_days", "churn_rate",
             "add_corruption", "corruption_rate", "seed"}
    for key, value in env.items():
        if key not in known:
            unknown("", f"environments.{name}.{key}", value, sorted(known))
    corrupt = env.get("corruption_rate", 0.02) if env.get("add_corruption") else 0.0
    out: dict[str, Any] = {
        "name": name,
        "description": f"The guide's {name} environment.",
        "calendar": {"days": env.get("date_range_days", 365)},
        "population": {"size": env.get("num_customers", 1000)},
        "targets": {
            "avg_transactions_per_customer": env.get("avg_transactions", 10),
            "churn_rate": env.get("churn_rate", 0.15),
        },
        "corruption": {"rate": corrupt},
    }
    if "seed" in env:
        out["seed"] = env["seed"]
    return out


def load_scenario(
    path: str | Path, *, overrides: Sequence[str] = (), env: str | None = None
) -> Scenario:
    """Load, override and validate a scenario file (or the guide's environments file).

    Args:
        path: a scenario YAML, or a file with a top-level ``environments:`` mapping.
        overrides: ``key.path=value`` strings applied before validation.
        env: the environment to pick from an environments file.
    """
    path = Path(path)
    src = str(path)
    data = _read_yaml(path)
    if data is None:
        fail(src, "", None, "a scenario mapping (the file is empty)")
    if isinstance(data, Mapping) and "environments" in data:
        envs = data["environments"]
        if not isinstance(envs, Mapping) or not envs:
            fail(src, "environments", envs, "a mapping of environment name to settings")
        if env is None:
            fail(src, "environments", sorted(envs), "--env NAME to pick one of them")
        if env not in envs:
            hint = did_you_mean(env, list(envs))
            fail(src, f"environments.{env}", None, "one of " + ", ".join(envs) + hint)
        try:
            data = environment_to_scenario(envs[env], name=env)
        except ScenarioError as exc:
            raise ScenarioError(f"{src}: {exc}") from None
    elif env is not None:
        fail(src, "environments", None, f"an environments file for --env {env}")
    if overrides:
        data = apply_overrides(data, overrides, source=src)
    return scenario_from_dict(data, source=src)
