"""Common random numbers across scenarios: draws depend only on the customer (DESIGN.md invariant 1).

An effect that does not touch a customer leaves its rows unchanged, whatever it does to the month's
change points; a drift and its baseline share every random number, so their lakes are equal before
the drift's onset and differ after it only where the drift acts.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sim.execute.memory import simulate
from sim.execute.targets import solve_targets
from sim.scenario import load_scenario
from sim.scenario.shipped import shipped_path

SIZE = 1200


def _load(name: str, *overrides: str):
    return load_scenario(shipped_path(name), overrides=[f"population.size={SIZE}", *overrides])


@pytest.fixture(scope="module")
def baseline():
    s = _load("baseline")
    scales = solve_targets(s)
    return s, scales, simulate(s, months=5, scales=scales)


def _rows(t: pa.Table, keep: np.ndarray | None = None) -> set[tuple]:
    """A table's rows as a set (without transaction ids, which number every customer's rows together)."""
    cols = [c for c in t.column_names if c != "transaction_id"]
    if keep is not None:
        t = t.filter(pc.is_in(t["customer_id"], pa.array(keep)))
    return set(zip(*(t[c].to_pylist() for c in cols), strict=True))


@pytest.mark.parametrize("target", ["{inactive_days: 36500}", "{segment: senior_declining, inactive_days: 36500}"])
def test_an_intervention_that_reaches_nobody_leaves_the_lake_unchanged(baseline, target):
    s0, scales, base = baseline
    # Mid-month and ending mid-month: two change points that split everyone's month.
    iv = (f"interventions=[{{name: nobody, start: 2024-02-10, days: 45, target: {target}, "
          "intensity_multiplier: 3, hazard_multiplier: 0.2, spend_multiplier: 2}]")
    twin = simulate(_load("baseline", iv), months=5, scales=scales)
    assert base.keys() == twin.keys()
    for name in base:
        assert base[name].equals(twin[name]), name
    assert base["raw_transactions"].num_rows > 3000


def test_an_intervention_changes_only_the_rows_of_those_it_reaches(baseline):
    s0, scales, base = baseline
    iv = ("interventions=[{name: seniors, start: 2024-02-10, days: 20, target: {segment: senior_declining}, "
          "intensity_multiplier: 2, spend_multiplier: 1.5}]")
    twin = simulate(_load("baseline", iv), months=5, scales=scales)
    lab = base["customer_labels"]
    ever = set(lab.filter(pc.equal(lab["segment"], "senior_declining"))["customer_id"].to_pylist())
    ever |= set(twin["customer_labels"].filter(pc.equal(twin["customer_labels"]["segment"], "senior_declining"))
                ["customer_id"].to_pylist())
    others = np.array(sorted(set(base["raw_customers"]["customer_id"].to_pylist()) - ever))
    assert len(others) > SIZE // 2
    for name in ("raw_transactions", "customer_labels"):
        assert _rows(base[name], others) == _rows(twin[name], others), name
    reached = np.array(sorted(ever))
    before = pc.less(base["raw_transactions"]["transaction_date"], pa.scalar(dt.date(2024, 2, 10)))
    assert _rows(base["raw_transactions"].filter(before), reached) == _rows(
        twin["raw_transactions"].filter(pc.less(twin["raw_transactions"]["transaction_date"],
                                                pa.scalar(dt.date(2024, 2, 10)))), reached)
    assert _rows(base["raw_transactions"], reached) != _rows(twin["raw_transactions"], reached)


def test_a_spend_drift_and_its_baseline_share_their_random_numbers():
    base_s = _load("baseline")
    scales = solve_targets(base_s)
    months = 8  # the drift starts with month 7
    base = simulate(base_s, months=months, scales=scales)
    drift = simulate(_load("drift_spend_inflation"), months=months, scales=scales)
    onset = dt.date(2024, 7, 1)
    # Spend drives nothing but amounts: customers, labels, purchase times and ids are the same.
    for name in ("raw_customers", "customer_labels"):
        assert base[name].equals(drift[name]), name
    bt, dt_ = base["raw_transactions"], drift["raw_transactions"]
    for col in ("transaction_id", "customer_id", "transaction_date", "transaction_ts", "category", "channel"):
        assert bt[col].equals(dt_[col]), col
    after = (bt["transaction_date"].to_numpy() >= np.datetime64(onset)).astype(bool)
    assert 1000 < after.sum() < len(after) - 1000
    a0, a1 = bt["amount"].to_numpy(), dt_["amount"].to_numpy()
    assert np.array_equal(a0[~after], a1[~after])
    # After the onset every amount is its baseline's times 1.25, up to the rounding to cents.
    assert np.all(np.abs(a1[after] - 1.25 * a0[after]) <= 0.0126)
    bm, dm = base["daily_metrics"], drift["daily_metrics"]
    late = (bm["metric_date"].to_numpy() >= np.datetime64(onset)).astype(bool)
    for col in bm.column_names:
        x, y = bm[col].to_numpy(zero_copy_only=False), dm[col].to_numpy(zero_copy_only=False)
        if col in ("revenue", "avg_amount"):
            assert np.array_equal(x[~late], y[~late], equal_nan=True), col
            assert not np.allclose(x[late], y[late], equal_nan=True), col
        else:
            assert np.array_equal(x, y), col
