"""The engine on the guide's medium preset: shares, ranges, ordering, targets, rules, determinism."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sim import InfeasibleTargetError, scenario_from_dict, simulate
from sim.api import PRESETS
from sim.scenario.defaults import DEFAULT_SEGMENTS


@pytest.fixture(scope="module")
def medium():
    s = PRESETS["medium"].to_scenario()
    tables = simulate(s)
    frames = {k: t.to_pandas() for k, t in tables.items()}
    return s, tables, frames


def _in_window(s, t: pd.DataFrame) -> pd.DataFrame:
    """Transactions inside the simulated window (without the history rows before it)."""
    return t[pd.to_datetime(t["transaction_date"]) >= pd.Timestamp(s.calendar.start_date)]


def test_segment_shares_match_the_guide(medium):
    _, _, f = medium
    shares = f["raw_customers"]["segment"].value_counts(normalize=True)
    for name, params in DEFAULT_SEGMENTS.items():
        assert abs(shares[name] - params["share"]) <= 0.015, name


def test_ages_and_tenures_inside_the_table_ranges(medium):
    s, _, f = medium
    c = f["raw_customers"]
    start = pd.Timestamp(s.calendar.start_date)
    for name, params in DEFAULT_SEGMENTS.items():
        seg = c[c["segment"] == name]
        lo, hi = params["age"]
        assert seg["age"].between(lo, hi).all(), name
        initial = seg[pd.to_datetime(seg["customer_since_date"]) <= start]
        tenure_months = (start - pd.to_datetime(initial["customer_since_date"])).dt.days / (365.25 / 12)
        tlo, thi = params["tenure_months"]
        assert tenure_months.between(tlo - 0.05, thi + 0.05).all(), name


def test_segment_behaviour_follows_the_table(medium):
    _, _, f = medium
    c, t, lab = f["raw_customers"], f["raw_transactions"], f["customer_labels"]
    per = t.groupby("customer_id").agg(n=("amount", "size"), spend=("amount", "mean"))
    per = c.set_index("customer_id")[["segment"]].join(per).fillna({"n": 0})
    freq = per.groupby("segment")["n"].mean()
    # Spend by the segment a customer is in when buying (new customers graduate after ~3 months).
    m = f["daily_metrics"].groupby("segment")[["revenue", "transactions"]].sum()
    spend = m["revenue"] / m["transactions"]
    assert freq["young_active"] == freq.max()
    assert freq["senior_declining"] < freq["mid_stable"]
    assert spend["mid_stable"] == spend.max()
    assert spend["new_customer"] == spend.min()
    last = lab[lab["label_date"] == lab["label_date"].max()].set_index("customer_id")
    churn = c.set_index("customer_id")[["segment"]].join(last["churned"]).groupby("segment")["churned"].mean()
    assert churn["senior_declining"] == churn.max()
    # Frequency and spend correlate within a segment (shared heterogeneity).
    mid = per[per["segment"] == "mid_stable"].dropna()
    assert np.corrcoef(np.log1p(mid["n"]), np.log(mid["spend"]))[0, 1] > 0.05


def test_churn_rate_and_volume_meet_the_targets(medium):
    s, _, f = medium
    lab = f["customer_labels"]
    last = lab[lab["label_date"] == lab["label_date"].max()]
    assert abs(last["churned"].mean() - s.targets.churn_rate) <= 0.015
    per_customer = len(_in_window(s, f["raw_transactions"])) / len(f["raw_customers"])
    assert abs(per_customer / s.targets.avg_transactions_per_customer - 1) <= 0.10


def test_the_guides_quality_rules_hold_by_construction(medium):
    s, _, f = medium
    c, t, lab = f["raw_customers"], f["raw_transactions"], f["customer_labels"]
    assert c["age"].notna().all() and c["age"].between(18, 100).all()
    assert (t["amount"] > 0).all() and (t["amount"] <= 5000).all()
    assert t["transaction_id"].is_unique and c["customer_id"].is_unique
    since = t["customer_id"].map(c.set_index("customer_id")["customer_since_date"])
    assert (t["transaction_date"] >= since).all()
    end = pd.Timestamp(s.end_date).date()
    assert (t["transaction_date"] <= end).all()
    assert (c["customer_since_date"] <= end).all()
    assert t["customer_id"].isin(c["customer_id"]).all()
    assert lab["customer_id"].isin(c["customer_id"]).all()


def test_labels_follow_the_60_day_rule_and_keep_latent_truth(medium):
    _, _, f = medium
    lab = f["customer_labels"]
    rule = (lab["recency_days"] >= 60) & (lab["tenure_days"] >= 60)
    assert (lab["churned"] == rule).all()
    dropped = lab[lab["dropped_out"]]
    assert dropped["dropout_date"].notna().all() and lab.loc[~lab["dropped_out"], "dropout_date"].isna().all()
    # Latent dropouts mostly end up labelled churned once 60 days have passed.
    late = dropped[(pd.to_datetime(dropped["label_date"]) - pd.to_datetime(dropped["dropout_date"])).dt.days > 90]
    assert late["churned"].mean() > 0.95


def test_daily_metrics_add_up_to_the_event_log(medium):
    s, _, f = medium
    t, m = _in_window(s, f["raw_transactions"]), f["daily_metrics"]
    assert m["transactions"].sum() == len(t)
    assert abs(m["revenue"].sum() - t["amount"].sum()) < 1.0
    per_day = t.groupby("transaction_date")["customer_id"].nunique()
    got = m.groupby("metric_date")["purchasing_customers"].sum()
    assert (got.loc[per_day.index] == per_day).all()
    assert len(m) == m["metric_date"].nunique() * 4


def _digest(tables) -> str:
    h = hashlib.sha256()
    for name in sorted(tables):
        h.update(tables[name].to_pandas().to_csv(index=False).encode())
    return h.hexdigest()


SMALL = {"seed": 5, "calendar": {"months": 4}, "population": {"size": 1500, "shard_size": 400}}


def test_same_seed_same_tables_different_seed_different():
    a = simulate(scenario_from_dict(SMALL))
    b = simulate(scenario_from_dict(SMALL))
    c = simulate(scenario_from_dict({**SMALL, "seed": 6}))
    assert all(a[k].equals(b[k]) for k in a)
    assert not a["raw_transactions"].equals(c["raw_transactions"])


def test_identical_across_processes():
    code = ("import hashlib,sys; from sim import scenario_from_dict, simulate; "
            f"t = simulate(scenario_from_dict({SMALL!r})); "
            "print(hashlib.sha256(b''.join(t[k].to_pandas().to_csv(index=False).encode() for k in sorted(t))).hexdigest())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
            for _ in range(2)}
    assert outs == {_digest(simulate(scenario_from_dict(SMALL)))}


def test_shard_size_changes_nothing_but_the_partitioning_of_work():
    a = simulate(scenario_from_dict(SMALL))
    b = simulate(scenario_from_dict({**SMALL, "population": {"size": 1500, "shard_size": 1500}}))
    # Initial segment quotas are per shard, so compare behaviour of the same customers statistically
    # and the transactions of customers whose attributes coincide exactly.
    assert a["raw_customers"].num_rows == b["raw_customers"].num_rows
    assert abs(a["raw_transactions"].num_rows / b["raw_transactions"].num_rows - 1) < 0.1


def test_an_outage_stops_purchases_at_its_time_and_not_before():
    s = scenario_from_dict({**SMALL, "interventions": [{
        "name": "outage", "kind": "outage", "start": "2024-02-10", "days": 5,
        "target": {"segment": "young_active"}, "intensity_multiplier": 0.0}]})
    m = simulate(s)["daily_metrics"].to_pandas()
    young = m[m["segment"] == "young_active"].set_index("metric_date")["transactions"]
    window = young.loc[pd.Timestamp("2024-02-10").date():pd.Timestamp("2024-02-14").date()]
    assert (window == 0).all()
    assert young.loc[pd.Timestamp("2024-02-05").date():pd.Timestamp("2024-02-09").date()].min() > 0
    assert young.loc[pd.Timestamp("2024-02-15").date():pd.Timestamp("2024-02-19").date()].sum() > 0


def test_an_infeasible_churn_target_is_refused_before_simulating():
    with pytest.raises(InfeasibleTargetError, match=r"targets.churn_rate: expected a value in the feasible range"):
        from sim.execute.targets import solve_targets

        solve_targets(scenario_from_dict({"calendar": {"days": 365}, "population": {"size": 1500},
                                      "targets": {"avg_transactions_per_customer": 3, "churn_rate": 0.05}}))


def test_a_pilot_too_small_to_settle_gives_its_closest_scales_not_a_refusal(caplog):
    """At 300 pilot customers one label moves the rate by 0.33 points, more than the tolerance:
    Newton cannot settle (unless an iterate lands inside the tolerance by luck: seed 2 is measured
    not to), yet 0.15 is inside the measured range, so the closest iterate is used."""
    from sim.execute.targets import solve_targets

    s = scenario_from_dict({"seed": 2, "calendar": {"months": 12}, "population": {"size": 10_000},
                            "targets": {"avg_transactions_per_customer": 15, "churn_rate": 0.15}})
    with caplog.at_level("WARNING", logger="sim.execute.targets"):
        c = solve_targets(s, pilot_size=300)
    assert "calibration did not settle" in caplog.text and "target 0.15" in caplog.text
    assert 0.5 < c.intensity_scale < 2 and 0.05 < c.hazard_scale < 1


@pytest.mark.parametrize("size", ["small", "medium", "large"])
def test_the_guides_presets_are_feasible(size):
    from sim.execute.targets import solve_targets

    solve_targets(PRESETS[size].to_scenario())  # raises if not


def test_a_cohort_is_acquired_inside_its_window_and_buys_at_signup():
    s = scenario_from_dict({
        "seed": 3, "calendar": {"months": 4},
        "population": {"size": 1200, "acquisition": {"share": 1.0, "window_days": 40, "first_purchase_at_signup": True,
                                                     "mix": {"young_active": 0.3, "mid_stable": 0.5, "senior_declining": 0.2}},
                       "segments": {"young_active": {"share": 0.0}, "mid_stable": {"share": 0.0},
                                    "senior_declining": {"share": 0.0}, "new_customer": {"share": 1.0}}}})
    t = simulate(s)
    c, tx = t["raw_customers"].to_pandas(), t["raw_transactions"].to_pandas()
    assert len(c) == 1200 and (c["segment"] == "new_customer").all()
    since = pd.to_datetime(c["customer_since_date"])
    assert since.min() >= pd.Timestamp("2024-01-01") and since.max() < pd.Timestamp("2024-01-01") + pd.Timedelta(days=40)
    first = tx.groupby("customer_id")["transaction_date"].min()
    assert (pd.to_datetime(first.reindex(c["customer_id"]).to_numpy()) == since.to_numpy()).all()


def test_segment_heterogeneity_shape_overrides_the_population_one():
    # Same rate, no dropout: a segment with shape 0.5 has customers' counts spread far wider
    # (variance beyond Poisson ~ mean^2 / shape) than one left at the population's 50.
    seg = {"purchase_rate": 0.1, "dropout_hazard": 0.0, "decay_per_year": 0.0}
    s = scenario_from_dict({
        "name": "het", "seed": 3, "calendar": {"start_date": "2024-01-01", "days": 180},
        "population": {"size": 4000, "heterogeneity": {"shape": 50.0}, "acquisition": {"share": 0.0},
                       "segments": {"young_active": {**seg, "share": 0.5, "heterogeneity_shape": 0.5},
                                    "mid_stable": {**seg, "share": 0.5},
                                    "senior_declining": {"share": 0.0}, "new_customer": {"share": 0.0}}},
    })
    f = {k: t.to_pandas() for k, t in simulate(s).items()}
    n = f["raw_transactions"].groupby("customer_id").size()
    per = f["raw_customers"].set_index("customer_id")[["segment"]].join(n.rename("n")).fillna({"n": 0})
    g = per.groupby("segment")["n"]
    excess = (g.var() - g.mean()) / g.mean() ** 2
    assert abs(g.mean()["young_active"] / g.mean()["mid_stable"] - 1) < 0.1
    assert 1.0 < excess["young_active"] < 3.0  # 1 / 0.5 = 2
    assert excess["mid_stable"] < 0.2  # 1 / 50 = 0.02


def test_a_full_flag_word_runs_and_labels_carry_every_experiments_arm():
    """Issue 13.5: 32 interventions and 16 experiments fill the 64-bit flag word; the labels name
    each customer's arm in every experiment (the last experiment uses the word's top bits)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    segs = ["young_active", "mid_stable", "senior_declining"]
    s = scenario_from_dict({
        "seed": 9, "calendar": {"months": 3}, "population": {"size": 600},
        "interventions": [{"name": f"c{i}", "start": "2024-01-20", "days": 10, "intensity_multiplier": 1.01}
                          for i in range(32)],
        "experiments": [{"name": f"e{k}", "assign_date": f"2024-02-{k + 2:02d}", "treatment_share": 0.1 + 0.05 * k,
                         "eligible": {"segment": segs[k % 3]} if k % 2 else {}} for k in range(16)],
    })
    labels = simulate(s)["customer_labels"]
    first = labels.filter(pc.equal(labels["label_date"], pc.min(labels["label_date"])))
    last = labels.filter(pc.equal(labels["label_date"], pc.max(labels["label_date"])))
    n0 = first.num_rows  # the initial population, labelled since the first month (ids 1..n0)
    segment = np.asarray(last["segment"].to_pylist(), object)
    # Customers in one segment all run long (no graduation): their segment at assignment is known.
    steady = np.zeros(last.num_rows, bool)
    steady[:n0] = segment[:n0] == np.asarray(first["segment"].to_pylist(), object)
    assert (last["customer_id"].to_numpy()[:n0] == first["customer_id"].to_numpy()).all()
    for k, e in enumerate(s.experiments):
        arm = np.asarray(pc.map_lookup(last["experiment_arms"], pa.scalar(e.name), "first").to_pylist(), object)
        assigned = arm != None  # noqa: E711 (element-wise)
        eligible = (segment == segs[k % 3]) if k % 2 else np.ones(len(segment), bool)
        assert (assigned[steady] == eligible[steady]).all(), e.name
        share = (arm[assigned] == "treatment").mean()
        assert abs(share - e.treatment_share) < 0.12, (e.name, share)
    keys = {k for m in last["experiment_arms"].to_pylist() if m for k, _ in m}
    assert keys == {e.name for e in s.experiments}


def test_the_medium_preset_is_solved_in_five_pilot_runs(monkeypatch):
    """The model's Jacobian replaces the two finite-difference runs; with the keyed draws of #15.3
    finite differences took 7 runs here (each a whole pilot simulation)."""
    import sim.execute.targets as targets

    runs = []
    measure = targets.measure
    monkeypatch.setattr(targets, "measure", lambda p, c: runs.append(c) or measure(p, c))
    monkeypatch.setattr(targets, "_SOLVED", {})
    targets.solve_targets(PRESETS["medium"].to_scenario())
    assert len(runs) <= 5
