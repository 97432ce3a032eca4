"""Shared fixtures: small scenarios and lakes built from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

# --------------------------------------------------------------------------- analysis lakes (issue 6)

SMALL: dict[str, Any] = {
    "name": "small",
    "seed": 11,
    "calendar": {"start_date": "2024-01-01", "months": 12},
    "population": {"size": 3000},
}

SPEND_DRIFT: dict[str, Any] = {
    **SMALL,
    "name": "spend_drift",
    "drifts": [{"name": "spend_up", "parameter": "spend_median", "start": "2024-07-01", "multiplier": 1.25}],
}

EXPERIMENT: dict[str, Any] = {
    **SMALL,
    "name": "retention_ab",
    "experiments": [{
        "name": "retention_offer", "assign_date": "2024-06-01", "eligible": {"inactive_days": 30},
        "treatment_share": 0.5,
        "treatment": {"days": 30, "intensity_multiplier": 1.5, "hazard_multiplier": 0.5},
    }],
}


def build_lake(data: dict[str, Any], lake: Path) -> Path:
    """Write a scenario's four tables and ``_churnsim/scenario.json`` to ``lake``.

    Swap the body for ``sim.store.run(scenario, lake)`` once the store exists.
    """
    import deltalake

    from sim.api import simulate
    from sim.scenario import scenario_from_dict

    scenario = scenario_from_dict(data)
    for name, table in simulate(scenario).items():
        deltalake.write_deltalake(str(lake / name), table)
    (lake / "_churnsim").mkdir(parents=True, exist_ok=True)
    (lake / "_churnsim" / "scenario.json").write_text(json.dumps(scenario.to_dict()))
    return lake


@pytest.fixture(scope="session")
def small_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3,000-customer, 12-month baseline lake (no drift, no experiment)."""
    return build_lake(SMALL, tmp_path_factory.mktemp("small_lake"))


@pytest.fixture(scope="session")
def drift_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As ``small_lake`` with spend_median x1.25 from 2024-07-01."""
    return build_lake(SPEND_DRIFT, tmp_path_factory.mktemp("drift_lake"))


@pytest.fixture(scope="session")
def experiment_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As ``small_lake`` with a retention experiment assigned on 2024-06-01."""
    return build_lake(EXPERIMENT, tmp_path_factory.mktemp("experiment_lake"))
