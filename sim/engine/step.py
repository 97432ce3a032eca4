"""The coordinator's step: plan the month's shards, run them with a runner, gather the new state."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

import numpy as np

from sim.engine.month import simulate_shard
from sim.engine.state import RunState, ShardMonth, StoredShard, shard_agents
from sim.model.agents import Agents
from sim.model.calendar import Period
from sim.model.population import arrivals

__all__ = ["ShardRunner", "local_runner", "shards_for", "step"]

log = logging.getLogger(__name__)

ShardRunner = Callable[[RunState, Period, dict[int, tuple[np.ndarray, np.ndarray]]],
                       Iterable[tuple[Agents | StoredShard, ShardMonth]]]


def shards_for(state: RunState, arrival_ids: np.ndarray, arrival_t: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Which shards run this month, and the arrivals each receives (shard = (id - 1) // size)."""
    size = state.scenario.population.shard_size
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if state.period is None:
        n_shards = -(-state.initial_size // size)
        out = {k: (np.empty(0, np.int64), np.empty(0)) for k in range(n_shards)}
    else:
        out = {k: (np.empty(0, np.int64), np.empty(0)) for k in state.shards}
    if len(arrival_ids):
        sh = (arrival_ids - 1) // size
        for k in np.unique(sh):
            m = sh == k
            out[int(k)] = (arrival_ids[m], arrival_t[m])
    return dict(sorted(out.items()))


def local_runner(state: RunState, period: Period, plan: dict[int, tuple[np.ndarray, np.ndarray]], *,
                 outputs: bool = True) -> Iterator[tuple[Agents, ShardMonth]]:
    """Run the shards one after another in this process."""
    for k, (ids, t) in plan.items():
        yield simulate_shard(state.scenario, state.scales, k, shard_agents(state.shards.get(k)), period,
                             ids, t, outputs=outputs)


def step(state: RunState, *, runner: ShardRunner = local_runner) -> tuple[RunState, Period, list[ShardMonth]]:
    """Simulate the next month of every shard; returns the new state and the shards' months."""
    period = state.next_period()
    ids, t = arrivals(state.scenario, period, state.next_customer_id)
    plan = shards_for(state, ids, t)
    shards = dict(state.shards)
    months = []
    for agents, month in runner(state, period, plan):
        shards[month.shard] = agents
        months.append(month)
    months.sort(key=lambda m: m.shard)
    n_txn = sum(m.purchase_count() for m in months)
    new_state = replace(state, period=period, shards=shards,
                        next_customer_id=state.next_customer_id + len(ids),
                        next_transaction_id=state.next_transaction_id + n_txn)
    return new_state, period, months

