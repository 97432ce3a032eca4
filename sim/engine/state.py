"""The run's state between months: what is checkpointed with every month."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sim.engine.metrics import DailyPartials
from sim.model.agents import Agents, Purchases
from sim.model.calendar import Period, horizon_end, next_period
from sim.model.population import acquisition_total
from sim.model.rates import TargetScales
from sim.scenario import Scenario

__all__ = ["RunState", "ShardMonth", "StoredShard", "initial_state", "shard_agents"]


@dataclass(frozen=True)
class StoredShard:
    """A shard's state left where it was written (its state file), not held in this process.

    ``read`` turns ``where`` into the shard's agents (the lake's reader,
    :func:`sim.lake.state.read_state_file`: the engine knows no storage). A worker handed one
    reads its own shard's state itself, so the coordinator never holds the population.
    """

    shard: int
    where: str
    read: Callable[[str], Agents]

    def load(self) -> Agents:
        return self.read(self.where)


def shard_agents(value: Agents | StoredShard | None) -> Agents:
    """A shard's agents, read from where they are stored if need be (None: a shard not yet populated)."""
    if value is None:
        return Agents.empty()
    return value.load() if isinstance(value, StoredShard) else value


@dataclass
class RunState:
    """Everything needed to simulate the next month: checkpointed with every month."""

    scenario: Scenario
    scales: TargetScales
    initial_size: int
    next_customer_id: int
    next_transaction_id: int
    period: Period | None = None
    # Each shard's state: in memory, or where its worker (or the lake) stored it.
    shards: dict[int, Agents | StoredShard] = field(default_factory=dict)

    def next_period(self) -> Period:
        s = self.scenario
        limit = horizon_end(s.calendar) if self.period is None or self.period.end < horizon_end(s.calendar) else None
        return next_period(self.period, start=s.calendar.start_date, limit=limit)


@dataclass
class ShardMonth:
    """One shard's month, as arrays (the coordinator turns them into Arrow tables)."""

    shard: int
    new_customers: dict[str, np.ndarray]
    purchases: Purchases
    labels: dict[str, np.ndarray]
    daily: DailyPartials
    # The month's customer_history rows (sim.model.changes.HISTORY_FIELDS); with files written by
    # a worker, only the rows it held back (recorded after the month's end).
    history: dict[str, np.ndarray] = field(default_factory=dict)
    # Tables this shard's worker already wrote to the lake (name -> sim.lake.files.DataFile; "state"
    # its new state), their arrays then left out: the coordinator only commits them.
    files: dict[str, object] = field(default_factory=dict)
    # Per-day purchase counts (epoch days, counts) when the purchases stayed with the worker that
    # made them (it writes their transactions once the coordinator has given each day its first id);
    # ``purchases`` is then empty.
    days: tuple[np.ndarray, np.ndarray] | None = None

    def purchase_count(self) -> int:
        """The shard's purchases this month (made here or kept by its worker)."""
        return int(self.days[1].sum()) if self.days is not None else len(self.purchases.t)


def initial_state(s: Scenario, scales: TargetScales) -> RunState:
    """The state before the first month: the initial population, placed in shards by id."""
    n_init = s.population.size - acquisition_total(s)
    return RunState(scenario=s, scales=scales, initial_size=n_init,
                    next_customer_id=n_init + 1, next_transaction_id=1)
