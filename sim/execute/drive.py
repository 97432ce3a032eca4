"""The one month loop: simulate month after month and hand each month to a sink.

Every way of running a scenario goes through :func:`drive`: ``run``/``append`` into a lake (the
Delta sink), the in-memory API (:mod:`sim.execute.memory`), the targets' pilots, and Spark (a runner).
The engine never sees storage: a sink gets each month's state and shard arrays, in order, and
decides what to do with them.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from sim.engine.state import RunState, ShardMonth
from sim.engine.step import ShardRunner, local_runner, step
from sim.model.calendar import Period, horizon_periods

__all__ = ["Sink", "drive", "horizon_target"]

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where months go. ``write`` is called once per month, in order, from one thread."""

    def write(self, before: RunState, after: RunState, period: Period, months: list[ShardMonth]) -> None: ...


def drive(state: RunState, target: int, *, runner: ShardRunner = local_runner, sink: Sink,
          overlap: bool = True) -> RunState:
    """Simulate from ``state`` through month ``target`` (0-based), handing each month to ``sink``.

    With ``overlap`` month k is written in a second thread while month k+1 is simulated (Delta
    writes release the GIL); writes stay strictly in order, one month in flight.
    """
    if not overlap:
        while state.period is None or state.period.index < target:
            after, period, months = step(state, runner=runner)
            sink.write(state, after, period, months)
            state = after
        return state
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="churnsim-sink") as writer:
        pending: Future | None = None
        while state.period is None or state.period.index < target:
            after, period, months = step(state, runner=runner)
            log.debug("simulated %s: %d purchases", period.label, sum(m.purchase_count() for m in months))
            if pending is not None:
                pending.result()
            pending = writer.submit(sink.write, state, after, period, months)
            state = after
        if pending is not None:
            pending.result()
    return state


def horizon_target(state: RunState, months: int | None = None) -> int:
    """Index of the last month to simulate from ``state``: ``months`` more, or to the horizon's end."""
    done = -1 if state.period is None else state.period.index
    if months is None:
        months = sum(1 for p in horizon_periods(state.scenario.calendar) if state.period is None or p.start > state.period.end)
    return done + months
