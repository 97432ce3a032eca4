"""Churn labels, read off customer state at each month end.

The rule (the guide's "no activity in 60 days", made exact): at ``label_date`` D a customer is
``churned`` when it has been a customer for at least 60 days (``customer_since_date <= D - 60``)
and made no purchase on any of the 60 days ``D-59 .. D`` (so ``recency_days >= 60``, recency
counting from the last purchase, or from signup for a customer who never bought; an initial
customer's last purchase before the window is in raw_transactions as history, so the label is
recomputable from the tables). The guide's
"low spend + segment" qualifiers are carried as columns (``segment``, ``recency_days``,
``tenure_days``) rather than folded into the label, so the label stays observable and a model must
learn the segment effect. The latent truth (``dropped_out``, ``dropout_date``) sits beside it.
"""

from __future__ import annotations

import numpy as np

from sim.contracts import CHURN_WINDOW_DAYS, EXPERIMENT_BIT0
from sim.model.agents import Agents
from sim.model.calendar import Period, epoch_day
from sim.scenario import Scenario

__all__ = ["label_arrays"]



def label_arrays(agents: Agents, period: Period, s: Scenario) -> dict[str, np.ndarray]:
    """One row per customer signed up by the month's last day."""
    d = epoch_day(period.end)
    since_day = np.floor(agents.since).astype(np.int64)
    rows = np.flatnonzero(since_day <= d)
    since_day = since_day[rows]
    last = agents.last[rows]
    activity = np.where(np.isnan(last), since_day, np.floor(np.nan_to_num(last, nan=0.0))).astype(np.int64)
    recency = d - activity
    tenure = d - since_day
    dropout = agents.dropout[rows]
    dropped = dropout < period.t1  # NaN compares False
    # Column e: the arm in experiment e (1 treatment, 0 control, -1 not assigned).
    arms = np.full((len(rows), len(s.experiments)), -1, np.int8)
    flags = agents.flags[rows]
    for e in range(len(s.experiments)):
        bit = np.uint64(EXPERIMENT_BIT0 + 2 * e)
        arms[(flags >> (bit + np.uint64(1))) & np.uint64(1) == 1, e] = 0
        arms[(flags >> bit) & np.uint64(1) == 1, e] = 1
    return {
        "customer_id": agents.customer_id[rows],
        "label_day": np.full(len(rows), d, np.int64),
        "segment": agents.segment[rows],
        "churned": (tenure >= CHURN_WINDOW_DAYS) & (recency >= CHURN_WINDOW_DAYS),
        "recency_days": recency,
        "tenure_days": tenure,
        "dropped_out": dropped,
        "dropout_day": np.where(dropped, np.floor(np.nan_to_num(dropout, nan=0.0)), 0).astype(np.int64),
        "experiment_arms": arms,
    }
