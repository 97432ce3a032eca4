"""A customer's own process applies its lifecycle events at their simulated times."""

from __future__ import annotations

import numpy as np
import pandas as pd
import simpy

import sim.engine.month as month
from sim import scenario_from_dict
from sim.contracts import NEW_CUSTOMER, SEGMENTS
from sim.engine.customer import customer
from sim.engine.state import initial_state
from sim.execute.drive import drive
from sim.execute.memory import MemorySink, simulate
from sim.fit.stats import bgnbd
from sim.model.agents import Agents
from sim.model.rates import TargetScales


def _agents(n: int) -> Agents:
    return Agents.from_columns({
        "customer_id": np.arange(1, n + 1), "segment": np.full(n, NEW_CUSTOMER), "since": np.zeros(n),
        "t0": np.zeros(n), "het": np.ones(n), "spend_scale": np.ones(n), "last": np.full(n, np.nan),
        "dropout": np.full(n, np.nan), "graduate_at": np.full(n, 5.0), "grad_to": np.full(n, 1),
        "flags": np.zeros(n, np.uint64), "due": np.zeros(n)})


def test_the_process_graduates_then_drops_out_at_its_times():
    env = simpy.Environment(initial_time=0.0)
    ag = _agents(2)
    env.process(customer(env, ag, 0, [(5.0, "graduate"), (7.5, "dropout")]))
    env.run(until=6.0)
    assert SEGMENTS[ag.segment[0]] == "mid_stable" and np.isnan(ag.graduate_at[0])
    assert np.isnan(ag.dropout[0])
    env.run(until=8.0)
    assert ag.dropout[0] == 7.5
    assert ag.segment[1] == NEW_CUSTOMER  # the other customer had no process: untouched


def test_processes_follow_lifecycle_events_not_customers(monkeypatch):
    made = []
    real = month.customer

    def counting(env, agents, i, events):
        made.append(events)
        return real(env, agents, i, events)

    monkeypatch.setattr(month, "customer", counting)
    s = scenario_from_dict({"seed": 2, "calendar": {"months": 3}, "population": {"size": 2000}})
    state = initial_state(s, TargetScales())
    after = drive(state, 2, sink=MemorySink())
    agents = next(iter(after.shards.values()))
    dropped, graduated = int((~np.isnan(agents.dropout)).sum()), int((agents.segment != NEW_CUSTOMER).sum())
    kinds = [k for events in made for _, k in events]
    assert kinds.count("dropout") == dropped
    assert 0 < len(made) < 2000  # a process per customer whose lifecycle changed, not per customer
    assert kinds.count("graduate") > 0 and graduated > 0


def _occasions(tables) -> pd.DataFrame:
    tx = tables["raw_transactions"]
    return pd.DataFrame({"customer_id": tx["customer_id"].to_numpy(),
                         "day": tx["transaction_date"].cast("int32").to_numpy().astype(np.int64)}).drop_duplicates()


def test_leaving_after_purchases_isbgnbd(bg_cohort):
    # Truth r 0.5, alpha 0.5 / 0.02 = 25 days, a 0.6, b 2.4 (mean chance 0.2, concentration 3).
    # Measured (seed 5): r 0.513, alpha 26.6, a 0.581, b 2.43.
    occ = _occasions(simulate(scenario_from_dict(bg_cohort)))
    bg = bgnbd(occ, int(occ["day"].max()))
    assert abs(bg["r"] / 0.5 - 1) <= 0.15
    assert abs(bg["r"] / bg["alpha"] / 0.02 - 1) <= 0.10
    assert abs(bg["a"] / (bg["a"] + bg["b"]) - 0.2) <= 0.03
    assert 2.0 <= bg["a"] + bg["b"] <= 4.5


def test_a_certain_leave_allows_one_repeat_purchase(bg_cohort):
    spec = bg_cohort
    spec["population"].update(size=500, heterogeneity={"shape": 2.0})
    spec["population"]["segments"]["new_customer"].update(dropout_per_purchase=1.0, purchase_rate=0.2)
    tables = simulate(scenario_from_dict(spec))
    occ = _occasions(tables)
    # Signup, one repeat, gone: exactly two purchases each (counted as purchases, not days, since a
    # repeat on the signup day is one day of purchases; at 0.2 a day every repeat falls in the horizon).
    purchases = pd.Series(tables["raw_transactions"]["customer_id"].to_numpy()).value_counts()
    assert len(purchases) == 500 and (purchases == 2).all()
    per_customer = occ.groupby("customer_id").size()
    # Each leaves on the day of its repeat purchase: the last labels record that day as the dropout.
    labels = tables["customer_labels"].to_pandas()
    last = labels[labels["label_date"] == labels["label_date"].max()].set_index("customer_id")
    left = per_customer.index[per_customer == 2]
    repeat_day = occ.groupby("customer_id")["day"].max().loc[left]
    assert last.loc[left, "dropped_out"].all()
    dropout_day = pd.to_datetime(last.loc[left, "dropout_date"]).to_numpy().astype("datetime64[D]").astype(np.int64)
    assert (dropout_day == repeat_day.to_numpy()).all()
