"""A/B read-out: arms, the interval against the twin's true effect, CRN against independent arms."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from analysis.ab import METRICS, ab_outcomes, ab_readout, arm_daily, experiment_of, read_tables
from analysis.plots import load_scenario_json
from sim.cli import main
from sim.cli.commands_analysis import _neutralised
from sim.execute.memory import simulate
from sim.scenario import scenario_from_dict


@pytest.fixture(scope="module")
def scenario(experiment_lake) -> dict:
    return load_scenario_json(experiment_lake)


@pytest.fixture(scope="module")
def readout(experiment_lake, scenario) -> dict:
    twin = simulate(scenario_from_dict(_neutralised(scenario)))
    independent = simulate(scenario_from_dict(_neutralised(scenario, seed=scenario["seed"] + 1)))
    return ab_readout(read_tables(experiment_lake), experiment_of(scenario), twin=twin, independent=independent)


def test_outcomes_per_assigned_customer(experiment_lake, scenario) -> None:
    out = ab_outcomes(read_tables(experiment_lake), experiment_of(scenario))
    assert set(out["arm"]) == {"treatment", "control"}
    assert out["customer_id"].is_unique
    assert out.attrs["label_date"] == "2024-08-31"  # first month end >= 2024-06-02 + 60 days
    n_t = (out["arm"] == "treatment").sum()
    assert 0.4 < n_t / len(out) < 0.6  # treatment_share 0.5
    assert (out["purchases_60d"] >= 0).all() and out["churned_60d"].isin([0.0, 1.0]).all()


def test_interval_covers_true_effect(readout) -> None:
    for m in METRICS:
        row = readout["metrics"][m]
        assert row["covered"], (m, row)
    # the treatment raised intensity 1.5x and halved the hazard for 30 days
    assert readout["metrics"]["purchases_60d"]["true_effect"]["estimate"] > 0
    assert readout["metrics"]["churned_60d"]["true_effect"]["estimate"] <= 0


def test_common_random_numbers_shrink_the_interval(readout) -> None:
    for m in METRICS:
        row = readout["metrics"][m]
        assert row["true_effect"]["ci_width"] < 0.6 * row["independent"]["ci_width"], (m, row)


def test_twin_of_control_is_identical(experiment_lake, scenario) -> None:
    """Neutralising the treatment leaves the control arm untouched (no interference)."""
    twin = simulate(scenario_from_dict(_neutralised(scenario)))
    a = ab_outcomes(read_tables(experiment_lake), experiment_of(scenario))
    b = ab_outcomes(twin, experiment_of(scenario))
    ca, cb = a[a["arm"] == "control"].reset_index(drop=True), b[b["arm"] == "control"].reset_index(drop=True)
    pd.testing.assert_frame_equal(ca, cb, check_dtype=False)


def test_arm_daily(experiment_lake) -> None:
    daily = arm_daily(read_tables(experiment_lake), experiment="retention_offer")
    assert set(daily["arm"]) == {"treatment", "control"}
    assert (daily["purchases_per_customer"] >= 0).all()


def test_each_experiment_is_read_out_by_its_own_arms() -> None:
    """Issue 13.5: labels carried the first experiment's arm only, so a second one read the first's."""
    s = scenario_from_dict({
        "seed": 4, "calendar": {"months": 5}, "population": {"size": 1500},
        "experiments": [
            {"name": "everyone", "assign_date": "2024-02-02", "treatment_share": 0.5},
            {"name": "young_offer", "assign_date": "2024-02-09", "eligible": {"segment": "young_active"},
             "treatment_share": 0.2, "treatment": {"intensity_multiplier": 1.5}},
        ],
    })
    tables = simulate(s)
    data = s.to_dict()
    a = ab_outcomes(tables, experiment_of(data, "everyone"))
    b = ab_outcomes(tables, experiment_of(data, "young_offer"))
    assert len(b) < 0.5 * len(a) and set(b["customer_id"]) < set(a["customer_id"])
    assert 0.12 < (b["arm"] == "treatment").mean() < 0.28 and 0.42 < (a["arm"] == "treatment").mean() < 0.58
    customers = tables["raw_customers"].to_pandas().set_index("customer_id")
    assert (customers.loc[b["customer_id"], "segment"] == "young_active").mean() > 0.9  # signup segment
    # The pandas form of the labels (a map cell is a list of pairs) reads the same arms.
    frames = {k: v.to_pandas() for k, v in tables.items()}
    pd.testing.assert_frame_equal(ab_outcomes(frames, experiment_of(data, "young_offer")), b)
    daily = arm_daily(tables, experiment="young_offer")
    assert set(daily["arm"]) == {"treatment", "control"}


def test_no_experiment_is_an_error() -> None:
    with pytest.raises(ValueError, match="no experiments"):
        experiment_of({"experiments": []})


def test_cli_ab(tmp_path, scenario) -> None:
    path = tmp_path / "ab.yaml"
    keep = {k: scenario[k] for k in ("name", "seed", "calendar", "experiments")}
    keep["population"] = {"size": 3000}
    path.write_text(yaml.safe_dump(keep))
    r = CliRunner().invoke(main, ["ab", str(path), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["arms"]["treatment"]["n"] > 300
    assert data["metrics"]["revenue_60d"]["true_effect"]["ci_width"] < data["metrics"]["revenue_60d"]["independent"]["ci_width"]
    text = CliRunner().invoke(main, ["ab", str(path), "-s", "population.size=1500"])
    assert text.exit_code == 0 and "CI width: paired (CRN)" in text.output
    none = tmp_path / "none.yaml"
    none.write_text(yaml.safe_dump({"name": "x", "calendar": {"months": 3}, "population": {"size": 200}}))
    bad = CliRunner().invoke(main, ["ab", str(none)])
    assert bad.exit_code == 2 and "Error: the scenario has no experiments" in bad.output
    assert "Example:" in CliRunner().invoke(main, ["ab", "--help"]).output
