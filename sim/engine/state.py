"""The run's state between months: what is checkpointed with every month."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.engine.metrics import DailyPartials
from sim.model.agents import Agents, Purchases
from sim.model.calendar import Period, horizon_end, next_period
from sim.model.population import acquisition_total
from sim.model.rates import TargetScales
from sim.scenario import Scenario

__all__ = ["RunState", "ShardMonth", "initial_state"]


@dataclass
class RunState:
    """Everything needed to simulate the next month: checkpointed with every month."""

    scenario: Scenario
    scales: TargetScales
    initial_size: int
    next_customer_id: int
    next_transaction_id: int
    period: Period | None = None
    shards: dict[int, Agents] = field(default_factory=dict)

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


def initial_state(s: Scenario, scales: TargetScales) -> RunState:
    """The state before the first month: the initial population, placed in shards by id."""
    n_init = s.population.size - acquisition_total(s)
    return RunState(scenario=s, scales=scales, initial_size=n_init,
                    next_customer_id=n_init + 1, next_transaction_id=1)
