"""churnsim: agent-based simulation of the raw tables a churn feature store is built from."""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from sim.api import DataConfig, SyntheticDataGenerator, generate_dataset, simulate
from sim.errors import InfeasibleTargetError, ScenarioError, SimError, StorageError
from sim.fit import fit_scenario
from sim.quality import add_data_quality_issues, validate, validate_features
from sim.scenario import Scenario, load_scenario, scenario_from_dict

try:
    __version__ = _version("churnsim")
except _PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

calibrate = fit_scenario  # the CLI's name for it (`churnsim calibrate`), kept for scripts that use it

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
