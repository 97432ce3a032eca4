"""The scenario language: YAML loaded once into frozen, validated dataclasses.

Every error names the file, the key path, the value and what was expected, on one line, and is
raised before anything is simulated or written. ``schema`` holds the dataclasses, ``build`` turns a
mapping into them, ``checks`` checks across fields, ``load`` reads files and overrides, ``shipped``
finds the scenarios shipped with the package.
"""

from sim.scenario.build import scenario_from_dict
from sim.scenario.load import apply_overrides, environment_to_scenario, load_scenario
from sim.scenario.schema import (
    Acquisition,
    Calendar,
    Changes,
    Corruption,
    Drift,
    Experiment,
    Heterogeneity,
    Holiday,
    Intervention,
    Population,
    Scenario,
    Seasonality,
    Segment,
    Target,
    Targets,
    Treatment,
)

__all__ = [
    "Acquisition",
    "Calendar",
    "Changes",
    "Corruption",
    "Drift",
    "Experiment",
    "Heterogeneity",
    "Holiday",
    "Intervention",
    "Population",
    "Scenario",
    "Seasonality",
    "Segment",
    "Target",
    "Targets",
    "Treatment",
    "apply_overrides",
    "environment_to_scenario",
    "load_scenario",
    "scenario_from_dict",
]
