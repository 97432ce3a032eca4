"""Meeting the guide's targets: ``churn_rate`` and ``avg_transactions_per_customer``.

The label is never drawn. Instead two scales (on every segment's purchase rate and dropout
hazard) are solved for by Newton's method on a pilot population simulated with the same model,
so that the run's labels come out at the target rate. The scales are per customer, so the pilot
has a fixed size whatever the population's: a run of 300 customers gets the scales of one of
6,000 (at 300, one customer's label moves the rate by a third of a point, more than the
tolerance, and Newton could not settle). The 60-day rule puts a floor under the label rate when
purchases are sparse (a live customer can go 60 days without buying); a target outside the range
measured between the hazard's bounds is refused before anything is simulated, naming that range.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
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
# Scales solved in this process, by the pilot scenario's digest: runs that differ only in
# population.size (or shard_size) share a pilot, so they share one solve.
_SOLVED: dict[str, TargetScales] = {}
_SOLVED_MAX = 64


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
    """``s`` at ``size`` customers in one shard: the per-customer model is unchanged (segment
    counts and acquisitions are shares of the size), and nothing depends on the run's size."""
    return replace(s, population=replace(s.population, size=size, shard_size=max(size, 100)))


def solve_targets(s: Scenario, *, pilot_size: int = PILOT_SIZE) -> TargetScales:
    """Scales that make ``s`` meet its targets; the identity when it sets none.

    Raises:
        InfeasibleTargetError: ``targets.churn_rate`` lies outside the range the pilot reaches
            between the hazard scale's bounds.
    """
    want_txn, want_churn = s.targets.avg_transactions_per_customer, s.targets.churn_rate
    if want_txn is None and want_churn is None:
        return TargetScales()
    pilot = _pilot(s, pilot_size)
    key = pilot.digest()
    if key not in _SOLVED:
        if len(_SOLVED) >= _SOLVED_MAX:
            del _SOLVED[next(iter(_SOLVED))]
        _SOLVED[key] = _solve(s, pilot)
    return _SOLVED[key]


def _solve(s: Scenario, pilot: Scenario) -> TargetScales:
    """Newton's method (Broyden's updates) on the pilot, from the identity scales and the model's
    Jacobian (:func:`_prior_jacobian`): no pilot runs spent on finite differences."""
    want_txn, want_churn = s.targets.avg_transactions_per_customer, s.targets.churn_rate
    tol = np.array([_TXN_TOL, _CHURN_TOL])
    best: dict[str, float | np.ndarray] = {"score": np.inf}  # the iterate with the smallest residual

    def residual(x: np.ndarray) -> np.ndarray:
        txn, churn = measure(pilot, TargetScales(math.exp(x[0]), math.exp(x[1])))
        r = np.array([math.log(max(txn, 1e-9) / want_txn) if want_txn else 0.0,
                      churn - want_churn if want_churn is not None else 0.0])
        log.debug("calibration at %s: %.3f purchases/customer, churn %.4f", np.exp(x).round(4), txn, churn)
        score = _score(r, tol)
        if score < best["score"]:
            best.update(score=score, x=x.copy(), txn=txn, churn=churn)
        return r

    free = np.array([want_txn is not None, want_churn is not None])
    x = np.zeros(2)
    r = residual(x)
    # Churn's slopes scale with the churn: take it between the measured and the wanted rate (the secant's).
    jac = _prior_jacobian(math.sqrt(max(r[1] + want_churn, 1e-3) * want_churn) if want_churn is not None else 1.0)
    measured = False
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
        d = x_new - x
        if not measured and _score(r_new, tol) >= _score(r, tol):
            # The step made things worse: the model's slopes are wrong here (far from the targets,
            # e.g. where sparse purchases put a floor under churn). Measure them, once.
            jac, measured = _finite_differences(residual, x_new, r_new, free, back=dx), True
        elif d @ d > 0:
            # Broyden's update keeps the Jacobian current without extra pilot runs.
            jac = jac + np.outer(r_new - r - jac @ d, d) / (d @ d)
        at_floor = x_new[1] <= math.log(_MIN_HAZARD_SCALE) + 1e-9 and r_new[1] > _CHURN_TOL
        at_ceiling = x_new[1] >= math.log(_MAX_HAZARD_SCALE) - 1e-9 and r_new[1] < -_CHURN_TOL
        if want_churn is not None and (at_floor or at_ceiling):
            _check_feasible(s, pilot, x_new, want_churn)
        x, r = x_new, r_new
    if abs(r[0]) < 3 * _TXN_TOL and abs(r[1]) < 3 * _CHURN_TOL:
        return TargetScales(math.exp(x[0]), math.exp(x[1]))
    x = best["x"]  # type: ignore[assignment]
    if want_churn is not None:
        _check_feasible(s, pilot, x, want_churn)
    # Inside the measured range but not settled: the best iterate is the closest the pilot gets.
    log.warning("calibration did not settle: using the closest scales found, %.3f purchases/customer "
                "(target %s) and churn %.4f (target %s) on the pilot", best["txn"], want_txn, best["churn"], want_churn)
    return TargetScales(math.exp(x[0]), math.exp(x[1]))


def _score(r: np.ndarray, tol: np.ndarray) -> float:
    """How far residuals ``r`` are from settled, in tolerances (below 1: settled)."""
    return float(np.max(np.abs(r) / tol))


def _finite_differences(residual: Callable[[np.ndarray], np.ndarray], x: np.ndarray, r: np.ndarray,
                        free: np.ndarray, *, back: np.ndarray) -> np.ndarray:
    """The Jacobian at ``x`` (residuals ``r``) by one pilot run per free scale, stepping back
    against the last step ``back`` (towards where the pilot was measured, away from the bounds)."""
    jac = np.eye(2)
    for j in np.flatnonzero(free):
        step = np.zeros(2)
        step[j] = -0.3 if back[j] > 0 else 0.3
        jac[:, j] = (residual(x + step) - r) / step[j]
    return jac


def _prior_jacobian(level: float) -> np.ndarray:
    """The residuals' Jacobian in (log intensity scale, log hazard scale), as the model shapes it.

    Purchases go with the intensity (elasticity 1) and a little against the hazard (-0.15: who
    leaves sooner buys less); churn goes as about hazard^0.7 and a little against the intensity
    (-0.3), so its slopes are those elasticities times the churn ``level``. Broyden's updates
    correct it from the first step; over the shipped scenarios and the presets (several seeds)
    this settles in fewer pilot runs than finite differences did (59 against 99 in all).
    """
    return np.array([[1.0, -0.15], [-0.3 * level, 0.7 * level]])


def _check_feasible(s: Scenario, pilot: Scenario, x: np.ndarray, want: float) -> None:
    """Raise, naming the feasible churn range at the volume ``x[0]``, if ``want`` lies outside it."""
    floor = measure(pilot, TargetScales(math.exp(x[0]), _MIN_HAZARD_SCALE))[1]
    ceiling = measure(pilot, TargetScales(math.exp(x[0]), _MAX_HAZARD_SCALE))[1]
    if floor <= want <= ceiling:
        return
    t = s.targets
    why = ("with so few purchases, live customers already go 60 days without buying"
           if want < floor else
           "the label needs 60 days of tenure and 60 days of silence, which a short horizon cannot give")
    raise InfeasibleTargetError(
        f"targets.churn_rate: expected a value in the feasible range [{floor:.3f}, {ceiling:.3f}] for "
        f"avg_transactions_per_customer={t.avg_transactions_per_customer} over "
        f"{(s.end_date - s.calendar.start_date).days + 1} days (got {want}); {why}"
    )
