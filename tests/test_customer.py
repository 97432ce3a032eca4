"""A customer's own process applies its lifecycle events at their simulated times."""

from __future__ import annotations

import numpy as np
import simpy

import sim.engine as engine
from sim import scenario_from_dict
from sim.customer import Agents, customer
from sim.segments import NEW_CUSTOMER, SEGMENTS


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
    real = engine.customer

    def counting(env, agents, i, events):
        made.append(events)
        return real(env, agents, i, events)

    monkeypatch.setattr(engine, "customer", counting)
    s = scenario_from_dict({"seed": 2, "calendar": {"months": 3}, "population": {"size": 2000}})
    state = engine.initial_state(s, engine.Calibration())
    dropped = graduated = 0
    for after, _period, _months in engine.run_periods(state):
        agents = next(iter(after.shards.values()))
        dropped, graduated = int((~np.isnan(agents.dropout)).sum()), int((agents.segment != NEW_CUSTOMER).sum())
    kinds = [k for events in made for _, k in events]
    assert kinds.count("dropout") == dropped
    assert 0 < len(made) < 2000  # a process per customer whose lifecycle changed, not per customer
    assert kinds.count("graduate") > 0 and graduated > 0
