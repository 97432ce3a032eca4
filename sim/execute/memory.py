"""Running a scenario in memory: the tables as Arrow, through the same month loop as a lake."""

from __future__ import annotations

import pyarrow as pa

from sim.batch.tables import SCHEMAS, TABLES, deliver_history, month_tables
from sim.engine.state import RunState, ShardMonth, initial_state
from sim.engine.step import ShardRunner, local_runner
from sim.execute.drive import drive, horizon_target
from sim.execute.targets import solve_targets
from sim.model.calendar import Period
from sim.model.rates import TargetScales
from sim.scenario import Scenario

__all__ = ["MemorySink", "simulate"]


class MemorySink:
    """Keeps every month's tables in memory (the guide's Python API), as a lake would hold them:
    a late customer_history row is in the batch that delivers it (changes still in flight at the
    end are not in the tables)."""

    def __init__(self) -> None:
        self._parts: dict[str, list[pa.Table]] = {name: [] for name in TABLES}
        self._carry: pa.Table | None = None

    def write(self, before: RunState, after: RunState, period: Period, months: list[ShardMonth]) -> None:
        tables = month_tables(before, period, months)
        if "customer_history" in tables:  # (not in the benchmark's baseline without the history)
            tables["customer_history"], self._carry = deliver_history(tables["customer_history"], self._carry, period)
        for name, table in tables.items():
            self._parts[name].append(table)

    def tables(self) -> dict[str, pa.Table]:
        return {name: pa.concat_tables(t) if t else SCHEMAS[name].empty_table() for name, t in self._parts.items()}


def simulate(scenario: Scenario, *, months: int | None = None, scales: TargetScales | None = None,
             runner: ShardRunner = local_runner) -> dict[str, pa.Table]:
    """Run a scenario in memory and return the five tables.

    Args:
        scenario: the scenario to run.
        months: months to simulate (default: the horizon).
        scales: target scales to use instead of solving the scenario's targets; pass the original
            run's (:func:`sim.execute.targets.solve_targets`) to a counterfactual twin so the two
            share every random number.
        runner: how shards run (:func:`sim.execute.parallel.make_runner`); the tables do not depend on it.
    """
    state = initial_state(scenario, scales or solve_targets(scenario))
    sink = MemorySink()
    drive(state, horizon_target(state, months), runner=runner, sink=sink)
    return sink.tables()
