"""Meeting the guide's targets: ``churn_rate`` and ``avg_transactions_per_customer``.

The label is never drawn. Instead two scales (on every segment's purchase rate and dropout
hazard) are solved for by Newton's method on a pilot population simulated with the same model,
so that the run's labels come out at the target rate. The 60-day rule puts a floor under the
label rate when purchases are sparse (a live customer can go 60 days without buying); a target
below that floor is refused before anything is simulated, naming the feasible range.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import replace

import numpy as np

from sim.engine.labels import label_arrays
from sim.engine.state import RunState, ShardMonth, initial_state
from sim.engine.step import local_runner
from sim.errors import InfeasibleTargetError
from sim.execute.drive import drive, horizon_target
from sim.model.calendar import Period
from sim.model.rates import TargetScales
from sim.scenario import Scenario

__all__ = ["measure", "solve_targets"]

log = logging.getLogger(__name__)

PILOT_SIZE = 6000
_TXN_TOL = 0.015  # relative
_CHURN_TOL = 0.003  # absolute
_MIN_HAZARD_SCALE = 1e-4
_MAX_HAZARD_SCALE = 1e3


class _Purchases:
    """A sink that only counts purchases (the pilots need nothing else)."""

    def __init__(self) -> None:
        self.count = 0

    def write(self, before: RunState, after: RunState, period: Period, months: list[ShardMonth]) -> None:
        self.count += sum(len(m.purchases.t) for m in months)


def measure(s: Scenario, c: TargetScales) -> tuple[float, float]:
    """(purchases per customer, label churn rate at the last month end) of a whole run."""
    state = initial_state(s, c)
    counted = _Purchases()
    state = drive(state, horizon_target(state), runner=functools.partial(local_runner, outputs=False), sink=counted,
                  overlap=False)
    # Only the last month's labels matter: read them off the final state.
    churned = np.concatenate([label_arrays(a, state.period, s)["churned"] for a in state.shards.values()])
    customers = state.next_customer_id - 1
    return counted.count / max(customers, 1), float(churned.mean())


def _pilot(s: Scenario, size: int) -> Scenario:
    n = min(s.population.size, size)
    return replace(s, population=replace(s.population, size=n, shard_size=max(n, 100)))


def solve_targets(s: Scenario, *, pilot_size: int = PILOT_SIZE) -> TargetScales:
    """Scales that make ``s`` meet its targets; the identity when it sets none."""
    want_txn, want_churn = s.targets.avg_transactions_per_customer, s.targets.churn_rate
    if want_txn is None and want_churn is None:
        return TargetScales()
    pilot = _pilot(s, pilot_size)

    def residual(x: np.ndarray) -> np.ndarray:
        txn, churn = measure(pilot, TargetScales(math.exp(x[0]), math.exp(x[1])))
        r = np.array([math.log(max(txn, 1e-9) / want_txn) if want_txn else 0.0,
                      churn - want_churn if want_churn is not None else 0.0])
        log.debug("target scales %s: %.3f purchases/customer, churn %.4f", np.exp(x).round(4), txn, churn)
        return r

    free = np.array([want_txn is not None, want_churn is not None])
    x = np.zeros(2)
    r = residual(x)
    jac = np.eye(2)
    for j in range(2):
        if free[j]:
            step = np.zeros(2)
            step[j] = 0.3
            jac[:, j] = (residual(x + step) - r) / 0.3
    for _ in range(12):
        if abs(r[0]) < _TXN_TOL and abs(r[1]) < _CHURN_TOL:
            return TargetScales(math.exp(x[0]), math.exp(x[1]))
        sub = np.ix_(free, free)
        dx = np.zeros(2)
        dx[free] = -np.linalg.solve(jac[sub], r[free])
        dx = np.clip(dx, -1.5, 1.5)
        x_new = x + dx
        x_new[1] = min(max(x_new[1], math.log(_MIN_HAZARD_SCALE)), math.log(_MAX_HAZARD_SCALE))
        r_new = residual(x_new)
        # Broyden's update keeps the Jacobian current without extra pilot runs.
        d = x_new - x
        if d @ d > 0:
            jac = jac + np.outer(r_new - r - jac @ d, d) / (d @ d)
        at_floor = x_new[1] <= math.log(_MIN_HAZARD_SCALE) + 1e-9 and r_new[1] > _CHURN_TOL
        at_ceiling = x_new[1] >= math.log(_MAX_HAZARD_SCALE) - 1e-9 and r_new[1] < -_CHURN_TOL
        if want_churn is not None and (at_floor or at_ceiling):
            _infeasible(s, pilot, x_new)
        x, r = x_new, r_new
    if abs(r[0]) < 3 * _TXN_TOL and abs(r[1]) < 3 * _CHURN_TOL:
        return TargetScales(math.exp(x[0]), math.exp(x[1]))
    _infeasible(s, pilot, x)
    raise AssertionError("unreachable")


def _infeasible(s: Scenario, pilot: Scenario, x: np.ndarray) -> None:
    """Raise with the feasible churn range at the requested volume."""
    floor = measure(pilot, TargetScales(math.exp(x[0]), _MIN_HAZARD_SCALE))[1]
    ceiling = measure(pilot, TargetScales(math.exp(x[0]), _MAX_HAZARD_SCALE))[1]
    t = s.targets
    why = ("with so few purchases, live customers already go 60 days without buying"
           if t.churn_rate is not None and t.churn_rate < floor else
           "the label needs 60 days of tenure and 60 days of silence, which a short horizon cannot give")
    raise InfeasibleTargetError(
        f"targets.churn_rate: expected a value in the feasible range [{floor:.3f}, {ceiling:.3f}] for "
        f"avg_transactions_per_customer={t.avg_transactions_per_customer} over "
        f"{(s.end_date - s.calendar.start_date).days + 1} days (got {t.churn_rate}); {why}"
    )
