"""Shared test fixtures: small scenarios and the lakes built from them."""

import copy

import pytest

# --------------------------------------------------------------------------- analysis lakes (issue 6)

ANALYSIS_SMALL: dict = {
    "name": "analysis_small",
    "seed": 11,
    "calendar": {"start_date": "2024-01-01", "months": 12},
    "population": {"size": 3000},
}
ANALYSIS_SPEND_DRIFT: dict = {
    **ANALYSIS_SMALL,
    "name": "spend_drift",
    "drifts": [{"name": "spend_up", "parameter": "spend_median", "start": "2024-07-01", "multiplier": 1.25}],
}
# assign_date is not a month's first day: the engine drops effects starting exactly on a period
# start (see sim/model/effects.py breakpoints).
ANALYSIS_EXPERIMENT: dict = {
    **ANALYSIS_SMALL,
    "name": "retention_ab",
    "seed": 13,
    "experiments": [{
        "name": "retention_offer", "assign_date": "2024-06-02", "eligible": {"inactive_days": 30},
        "treatment_share": 0.5,
        "treatment": {"days": 30, "intensity_multiplier": 1.5, "hazard_multiplier": 0.5},
    }],
}


def build_analysis_lake(data: dict, lake):
    """Run a scenario into ``lake`` month by month (tables plus ``_churnsim/scenario.json``)."""
    from sim.execute.runs import run
    from sim.scenario import scenario_from_dict

    run(scenario_from_dict(data), lake)
    return lake


@pytest.fixture(scope="session")
def lake_builder():
    """:func:`build_analysis_lake`, for test modules that build a lake of their own scenario."""
    return build_analysis_lake


@pytest.fixture(scope="session")
def analysis_lake(tmp_path_factory):
    """A 3,000-customer, 12-month baseline lake (no drift, no experiment)."""
    return build_analysis_lake(ANALYSIS_SMALL, tmp_path_factory.mktemp("analysis_lake"))


@pytest.fixture(scope="session")
def drift_lake(tmp_path_factory):
    """As ``analysis_lake`` with spend_median x1.25 from 2024-07-01."""
    return build_analysis_lake(ANALYSIS_SPEND_DRIFT, tmp_path_factory.mktemp("drift_lake"))


@pytest.fixture(scope="session")
def experiment_lake(tmp_path_factory):
    """As ``analysis_lake`` with a retention experiment assigned on 2024-06-02."""
    return build_analysis_lake(ANALYSIS_EXPERIMENT, tmp_path_factory.mktemp("experiment_lake"))


# --------------------------------------------------------------------------- comparing runs

# Several shards (shard_size 500) so workers, shard order and Spark tasks have something to split.
SHARDED: dict = {"name": "sharded", "seed": 5, "calendar": {"start_date": "2024-01-01", "months": 4},
                 "population": {"size": 3000, "shard_size": 500}}


@pytest.fixture(scope="session")
def scenario():
    from sim.scenario import scenario_from_dict

    return scenario_from_dict(SHARDED)


@pytest.fixture(scope="session")
def reference(scenario):
    """The sharded scenario's tables from the in-process runner: what every engine must match."""
    from sim.execute.memory import simulate

    return simulate(scenario)


def _rows_in_order(t):
    import pyarrow as pa

    return t.sort_by([(c, "ascending") for c in t.column_names if not pa.types.is_floating(t.schema.field(c).type)
                     and not pa.types.is_nested(t.schema.field(c).type)])  # a map column does not sort


@pytest.fixture
def assert_same_tables():
    """Check two runs' tables hold the same rows (order aside) and none is empty."""
    from sim.batch.tables import TABLES

    def check(got, want) -> None:
        for name in TABLES:
            assert got[name].num_rows > 0, name
            assert _rows_in_order(got[name]).equals(_rows_in_order(want[name])), name

    return check


@pytest.fixture
def bg_cohort() -> dict:
    """A scenario that is BG/NBD: one cohort acquired over 4 weeks, buying at signup, then Poisson at a
    gamma-distributed rate (r 0.5, alpha 25 days) and leaving after each repeat purchase with a
    Beta(0.6, 2.4) chance (mean 0.2, concentration 3). A fresh copy per test."""
    return copy.deepcopy(_BG_COHORT)


_BG_COHORT = {
    "name": "bg", "seed": 5, "calendar": {"start_date": "2024-01-01", "days": 546},
    "seasonality": {"weekly": [1, 1, 1, 1, 1, 1, 1], "yearly_amplitude": 0.0},
    "population": {
        "size": 4000, "heterogeneity": {"shape": 0.5, "dropout_concentration": 3.0},
        "acquisition": {"share": 1.0, "window_days": 28, "first_purchase_at_signup": True, "graduation_days": 3650,
                        "mix": {"young_active": 0.0, "mid_stable": 1.0, "senior_declining": 0.0}},
        "segments": {"young_active": {"share": 0.0}, "mid_stable": {"share": 0.0}, "senior_declining": {"share": 0.0},
                     "new_customer": {"share": 1.0, "purchase_rate": 0.02, "dropout_hazard": 0.0,
                                      "dropout_per_purchase": 0.2, "decay_per_year": 0.0, "regularity": 1.0}},
    },
}
