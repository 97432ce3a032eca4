"""churnsim: agent-based simulation of the raw tables a churn feature store is built from.

The public names load on first use (PEP 562), so ``import sim.contracts`` (as ``analysis`` does)
does not load the engine.
"""

import importlib as _importlib
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version
from typing import TYPE_CHECKING as _TYPE_CHECKING

try:
    __version__ = _version("churnsim")
except _PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

_EXPORTS = {
    "DataConfig": "sim.api", "SyntheticDataGenerator": "sim.api", "generate_dataset": "sim.api",
    "simulate": "sim.execute.memory",
    "InfeasibleTargetError": "sim.errors", "ScenarioError": "sim.errors", "SimError": "sim.errors",
    "StorageError": "sim.errors",
    "fit_scenario": "sim.fit",
    "add_data_quality_issues": "sim.quality", "validate": "sim.quality", "validate_features": "sim.quality",
    "Scenario": "sim.scenario", "load_scenario": "sim.scenario", "scenario_from_dict": "sim.scenario",
}
_ALIASES = {"calibrate": "fit_scenario"}  # the CLI's name for it (`churnsim calibrate`), kept for scripts

__all__ = [
    "DataConfig",
    "InfeasibleTargetError",
    "Scenario",
    "ScenarioError",
    "SimError",
    "StorageError",
    "SyntheticDataGenerator",
    "__version__",
    "add_data_quality_issues",
    "calibrate",
    "fit_scenario",
    "generate_dataset",
    "load_scenario",
    "scenario_from_dict",
    "simulate",
    "validate",
    "validate_features",
]

if _TYPE_CHECKING:
    from sim.api import DataConfig, SyntheticDataGenerator, generate_dataset
    from sim.errors import InfeasibleTargetError, ScenarioError, SimError, StorageError
    from sim.execute.memory import simulate
    from sim.fit import fit_scenario
    from sim.fit import fit_scenario as calibrate
    from sim.quality import add_data_quality_issues, validate, validate_features
    from sim.scenario import Scenario, load_scenario, scenario_from_dict


def __getattr__(name: str) -> object:
    target = _ALIASES.get(name, name)
    if target not in _EXPORTS:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    value = getattr(_importlib.import_module(_EXPORTS[target]), target)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
