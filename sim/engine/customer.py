"""A customer's own SimPy process: the moments its state changes (graduation, dropout)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import simpy

from sim.model.agents import Agents

__all__ = ["customer"]


def customer(env: simpy.Environment, agents: Agents, i: int, events: list[tuple[float, str]]) -> Iterator[simpy.Event]:
    """Customer ``i``'s process this month: it wakes at each of its lifecycle events, in time order.

    Its purchases up to the next timeline event were drawn in one wake-up (:func:`advance`); what is
    left are the moments its own state changes: graduating to its next segment, and dropping out,
    which ends the process.
    """
    for t, kind in events:
        yield env.timeout(t - env.now)
        if kind == "graduate":
            agents.segment[i] = agents.grad_to[i]
            agents.graduate_at[i] = np.nan
        else:
            agents.dropout[i] = t
            return
