"""churnsim: agent-based simulation of the raw tables a churn feature store is built from."""

from importlib.metadata import PackageNotFoundError, version

from sim.api import DataConfig, SyntheticDataGenerator, generate_dataset, simulate
from sim.errors import InfeasibleTargetError, ScenarioError, SimError, StorageError
from sim.scenario import Scenario, load_scenario, scenario_from_dict

try:
    __version__ = version("churnsim")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "DataConfig",
    "InfeasibleTargetError",
    "Scenario",
    "ScenarioError",
    "SimError",
    "StorageError",
    "SyntheticDataGenerator",
    "__version__",
    "generate_dataset",
    "load_scenario",
    "scenario_from_dict",
    "simulate",
]
