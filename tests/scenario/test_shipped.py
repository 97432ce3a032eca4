"""Every shipped scenario runs, and its effect shows in the output where and when it should."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import sim.scenario.shipped
from sim import load_scenario, simulate
from sim.cli import main
from sim.errors import SimError
from sim.execute.targets import solve_targets
from sim.scenario.shipped import shipped, shipped_path

ROOT = Path(__file__).resolve().parents[2]


def _run(name: str, *overrides: str, env: str | None = None) -> dict[str, pd.DataFrame]:
    s = load_scenario(shipped_path(name), overrides=overrides, env=env)
    return {k: v.to_pandas() for k, v in simulate(s).items()}


def test_the_package_finds_the_top_level_scenarios_folder():
    # One copy in the checkout: sim/scenarios (what the wheel carries) is the top-level folder.
    assert (ROOT / "sim" / "scenarios").resolve() == (ROOT / "scenarios").resolve()
    assert set(shipped()) == {p.stem for p in (ROOT / "scenarios").glob("*.yaml")}
    assert shipped_path("dev").read_bytes() == (ROOT / "scenarios" / "dev.yaml").read_bytes()


def test_missing_shipped_scenarios_are_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sim.scenario.shipped, "SCENARIO_DIR", tmp_path / "gone")
    with pytest.raises(SimError, match=r"gone: the shipped scenarios are missing; reinstall churnsim$"):
        shipped()


def _month(dates: pd.Series) -> pd.Series:
    return pd.to_datetime(dates).dt.strftime("%Y-%m")


@pytest.mark.parametrize("name", sorted(set(shipped()) - {"environments"}))
def test_every_shipped_scenario_runs_small(name):
    t = _run(name, "population.size=800")
    assert len(t["raw_transactions"]) > 0 and len(t["customer_labels"]) > 0


_EVERY = [(n, None) for n in sorted(set(shipped()) - {"environments"})] + [
    ("environments", e) for e in ("dev", "staging", "prod")]


@pytest.mark.parametrize(("name", "env"), _EVERY)
def test_every_shipped_scenario_runs_at_a_few_hundred_customers_with_the_scales_of_6000(name, env):
    """Issue 13.2: small populations were refused (the pilot was the population, too noisy to settle)."""
    big = solve_targets(load_scenario(shipped_path(name), overrides=["population.size=6000"], env=env))
    for size in (100, 200, 300, 500):
        s = load_scenario(shipped_path(name), overrides=[f"population.size={size}"], env=env)
        assert solve_targets(s) == big
        t = simulate(s)
        assert t["raw_customers"].num_rows == size
        assert t["customer_labels"].num_rows > 0 and t["raw_transactions"].num_rows > 0


def test_the_scales_for_300_customers_are_solved_afresh_equal_to_those_for_6000(monkeypatch):
    scales = []
    for size in (300, 6000):
        monkeypatch.setattr("sim.execute.targets._SOLVED", {})  # no cached solve: each size solves its own pilot
        scales.append(solve_targets(load_scenario(shipped_path("baseline"), overrides=[f"population.size={size}"])))
    assert scales[0] == scales[1]


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_the_environments_file_runs_each_environment(env):
    t = _run("environments", "population.size=800", "calendar.days=120", env=env)
    assert t["raw_customers"]["customer_id"].is_unique


def test_spend_inflation_moves_spend_after_onset_and_not_before():
    tx = _run("drift_spend_inflation", "population.size=3000")["raw_transactions"]
    mean = tx.groupby(_month(tx["transaction_date"]))["amount"].mean()
    before = mean.loc["2024-01":"2024-06"]
    after = mean.loc["2024-07":"2024-12"]
    assert 1.18 < after.mean() / before.mean() < 1.32
    assert abs(before.loc["2024-04":"2024-06"].mean() / before.loc["2024-01":"2024-03"].mean() - 1) < 0.06


def test_senior_decline_and_acquisition_mix_shift_after_onset():
    base = _run("baseline", "population.size=4000")
    drift = _run("drift_senior_decline", "population.size=4000")

    def senior_share(t):
        m = t["daily_metrics"]
        by = m.groupby([_month(m["metric_date"]), "segment"])["transactions"].sum().unstack()
        return by["senior_declining"] / by.sum(axis=1)

    b, d = senior_share(base), senior_share(drift)
    # Calibration differs a little (the drift changes the final churn), so "before" is close, not equal.
    assert (d.loc["2024-01":"2024-06"] / b.loc["2024-01":"2024-06"] - 1).abs().max() < 0.06
    assert d.loc["2024-10":"2024-12"].mean() < 0.85 * b.loc["2024-10":"2024-12"].mean()
    lab = drift["customer_labels"]
    last = lab[lab["label_date"] == lab["label_date"].max()].set_index("customer_id")
    c = drift["raw_customers"].set_index("customer_id")
    grads = last[(c["segment"] == "new_customer") & (last["segment"] != "new_customer")]
    since = pd.to_datetime(c.loc[grads.index, "customer_since_date"])
    late = grads[since >= "2024-07-01"]["segment"].value_counts(normalize=True)
    early = grads[since < "2024-04-01"]["segment"].value_counts(normalize=True)
    assert late.get("young_active", 0) > early.get("young_active", 0) + 0.15


def test_holiday_season_shows_in_daily_metrics():
    m = _run("holiday_season", "population.size=4000")["daily_metrics"]
    day = m.groupby("metric_date")["transactions"].sum()
    day.index = pd.to_datetime(day.index)
    black_friday = day.loc["2024-11-29":"2024-12-02"].mean()
    november = day.loc["2024-11-01":"2024-11-27"].mean()
    assert black_friday > 1.8 * november
    assert day.loc["2024-12-25"] < 0.5 * day.loc["2024-12-18":"2024-12-24"].mean()
    by_dow = day.groupby(day.index.day_of_week).mean()
    assert by_dow[5] > 1.15 * by_dow[0]  # Saturdays beat Mondays
    assert day.loc["2024-12"].mean() > 1.2 * day.loc["2024-06"].mean()  # yearly cycle


def test_ab_retention_treatment_differs_from_control_by_about_the_true_effect():
    result = CliRunner().invoke(main, ["ab", "ab_retention", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    purchases = out["metrics"]["purchases_60d"]
    true, ab = purchases["true_effect"]["estimate"], purchases["ab"]
    assert true > 0.2  # the scenario's stated effect: about +0.4 purchases per treated customer
    assert ab["ci_low"] <= true <= ab["ci_high"] and ab["estimate"] > 0
    assert purchases["true_effect"]["ci_width"] < purchases["independent"]["ci_width"]
