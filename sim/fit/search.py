"""Fitting a scenario to a real transaction log by simulation: the two models and the search.

The log is reduced to purchase occasions (one per customer and day). Customers first seen after a
warm-up (once first sightings settle to the steady rate of acquisitions) are the acquired
``new_customer`` segment; the rest are split by k-means on log repeat rate and log spend and named
by behaviour (young_active buys most often, mid_stable spends most, senior_declining is the rest).
First guesses are each segment's moments. Then, for a few rounds, the candidate scenario is
simulated at the log's size and its customers are classified by the same segmenter:

* spend, regularity, heterogeneity, each segment's decay, acquisition and the weekly and yearly
  patterns each follow one moment by a damped step (fixed point);
* every segment's rate and dropout hazard move together by a Levenberg-Marquardt step on a
  finite-difference Jacobian of the segments' repeats, lapse, rate while active and first-purchase
  delay, plus the number of buyers;
* shares and size are solved by non-negative least squares through the simulation's confusion
  between true segment and label (never-buyers included).

Each round simulates fresh customers (the runs of its Jacobian share them, so its differences are
not noise), and the mean of the later rounds' parameters is the estimate: the rounds chase
independent simulation noise, which the mean averages out. With one set of customers for every
round, the rounds would all chase the same draw's luck and the mean would keep it.

That is the ``steady`` model: a customer base that was buying before the window opened, plus
acquisitions. The ``acquired`` model is the other: every customer is acquired inside the window at
its first purchase (``acquisition.window_days`` spans the first purchases, ``window_shape`` by
maximum likelihood on their days, ``first_purchase_at_signup``), as in a cohort log like CDNOW or a
young business's log. It has one behaviour with an early phase (``new_customer`` buying at a
multiple of the later rate for some weeks, then graduating to ``mid_stable``); rate, heterogeneity
and dropout start from a BG/NBD fit (the engine with ``dropout_per_purchase`` is BG/NBD), spend
from the log-normal closest in KS, and the search below runs from each way of dropping out (after
purchases, or by recency) with four times the budget (six scales: at twice it, the search was
still falling steeply when it stopped).

A final Nelder-Mead search on common scales trades the moments off when the model cannot match
them all (real logs). ``model="auto"`` fits both models, except the steady one to a log that is
one cohort (95 % of first purchases in the window's first quarter). Every simulation is keyed by
the seed, so the fit is deterministic; the candidate with the smallest summed distance (see
:func:`sim.fit.stats.distances`) is returned.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import math
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from sim.contracts import SEGMENTS
from sim.errors import ScenarioError
from sim.fit.log import occasions
from sim.fit.moments import Moments, confusion, segment_moments
from sim.fit.params import (
    MAX_SIZE_FACTOR,
    Params,
    acquired_starts,
    average_params,
    initial_params,
    is_cohort,
    params_scenario,
    rate_hazard_step,
    reweigh,
    scaled_params,
    update_params,
)
from sim.fit.report import distances, log_stats, simulated_log
from sim.fit.segmenter import log_features, make_segmenter, warmup_days
from sim.scenario import Scenario

__all__ = ["MODELS", "fit_scenario"]

log = logging.getLogger(__name__)


MODELS = ("auto", "steady", "acquired")


_FIT_CUSTOMERS = 10_000  # the acquired model's search simulates at least this many customers...


_MAX_SCALE = 5  # ...at most this many times the log's


# A fit is judged by each distance against its own bar: total variation of repeat counts within
# 0.05, KS distances within 0.10, the weekly cumulative repeat curve within 10 %.
_BARS = {"tvd_repeat": 0.05, "ks_gap": 0.10, "ks_recency": 0.10, "cum_repeat_max_rel_err_after_5pct": 0.10}


def _score(d: Mapping[str, float]) -> float:
    """The sum of the distances, each relative to its bar (a max over them chases simulation noise
    in the cumulative curve, and fresh seeds then fit worse)."""
    r = [min(d[k] if d[k] == d[k] else 1.0, 1.0) / bar for k, bar in _BARS.items()]
    return (sum(r) + d["ks_amount"] / 0.10
            + 30.0 * max(d["buyers_rel_err"] - 0.15, 0.0))  # a fit made of invisible never-buyers is not a fit


def fit_scenario(
    df: pd.DataFrame,
    *,
    columns: Mapping[str, str] | None = None,
    segments: int = 4,
    seed: int = 42,
    start_date: dt.date | None = None,
    end_date: dt.date | None = None,
    iterations: int = 12,
    search: int = 20,
    model: str = "auto",
    name: str = "calibrated",
) -> Scenario:
    """Fit a scenario to a real transaction log.

    Args:
        df: transactions with a customer id, a date and an amount per row (see :func:`read_log`).
        columns: maps ``customer_id``/``date``/``amount`` to ``df``'s column names.
        segments: how many segments to find (1-4), named with the guide's four names.
        seed: the fitted scenario's seed, also seeding the segmentation and every fitting simulation.
        start_date: first day of the window (default: the log's first date); earlier rows are dropped.
        end_date: last day of the window (default: the log's last date); later rows are dropped.
        iterations: simulate-and-correct rounds of the per-segment moment matching.
        search: simulations allowed for the final Nelder-Mead search on common scales (0: none).
        model: ``steady`` (a customer base in segments, plus acquisitions), ``acquired`` (every
            customer acquired in the window at its first purchase) or ``auto`` (the better fit).
        name: the scenario's name.

    Returns:
        A validated :class:`~sim.scenario.Scenario` with no ``targets``, on the log's calendar.

    Raises:
        ScenarioError: the log is unusable (see :func:`occasions`) or an option is out of range.
    """
    src = str(df.attrs.get("source", "log")) if isinstance(df, pd.DataFrame) else "log"
    if not 1 <= segments <= 4:
        raise ScenarioError(f"segments: expected 1 to 4 (got {segments})")
    if model not in MODELS:
        raise ScenarioError(f"model: expected one of {', '.join(MODELS)} (got {model!r})")
    occ = occasions(df, columns=columns)
    lo = int(occ["day"].min()) if start_date is None else (start_date - dt.date(1970, 1, 1)).days
    hi = int(occ["day"].max()) if end_date is None else (end_date - dt.date(1970, 1, 1)).days
    occ = occ[(occ["day"] >= lo) & (occ["day"] <= hi)]
    if hi <= lo or occ["customer_id"].nunique() < 2:
        raise ScenarioError(f"{src}: expected a window with purchases of at least 2 customers "
                            f"(got {occ['customer_id'].nunique()} between day {lo} and {hi})")
    start, end, days = lo, hi, hi - lo + 1
    f = log_features(occ, end)
    warmup = warmup_days(f.first - start, days)
    late = f.first > start + warmup
    late_day = start + warmup if segments > 1 and late.mean() > 0.005 else None
    seg = make_segmenter(f, segments=segments, late_day=late_day, seed=seed)
    real = segment_moments(occ, f, seg, start=start, end=end, warmup=warmup)
    p = initial_params(real, f, seg(f), end=end, days=days, warmup=warmup)
    start_d = dt.date(1970, 1, 1) + dt.timedelta(days=start)
    real_stats = log_stats(occ, start=start, end=end)
    runs: list[tuple[float, Params]] = []

    def simulate(q: Params, scale: int = 1, draw: int = 0) -> tuple[pd.DataFrame, pd.DataFrame] | None:
        """The candidate's log and customers; None when fewer than 2 customers bought."""
        sim_occ, sim_cust = simulated_log(params_scenario(q, name=name, seed=seed + draw, start=start_d, days=days,
                                                    source=src, scale=scale))
        return None if sim_occ["customer_id"].nunique() < 2 else (sim_occ, sim_cust)

    def evaluate(q: Params, *, scale: int = 1) -> float:
        """Score a candidate and keep it among the runs the best is picked from."""
        got = simulate(q, scale)
        if got is None:
            return math.inf
        sim_stats = log_stats(got[0], start=start, end=end)
        dist = distances(real_stats, sim_stats)
        dist["buyers_rel_err"] = abs(sim_stats.n_customers / scale - real_stats.n_customers) / real_stats.n_customers
        runs.append((_score(dist), copy.deepcopy(q)))
        log.info("calibration run %d: score %.4f %s", len(runs), runs[-1][0], {k: round(v, 4) for k, v in dist.items()})
        return runs[-1][0]

    def moments_of(q: Params, draw: int = 0) -> tuple[Moments, np.ndarray, pd.DataFrame, pd.DataFrame] | None:
        got = simulate(q, draw=draw)
        if got is None:
            return None
        sim_occ, sim_cust = got
        sf = log_features(sim_occ, end)
        return segment_moments(sim_occ, sf, seg, start=start, end=end, warmup=warmup), seg(sf), sim_occ, sim_cust

    if model == "steady" or (model == "auto" and not is_cohort(f, start=start, days=days)):
        min_rate = 1.0 / days
        iterates = []
        for i in range(iterations):
            got = moments_of(p, i)  # round i's own customers (see the module docstring)
            if got is None:
                p.rate = {k: v * 3 for k, v in p.rate.items()}
                continue
            sim, labels, sim_occ, sim_cust = got
            update_params(p, real, sim, half_years=days / 2 / 365.0)
            rate_hazard_step(p, real, lambda q, draw=i: moments_of(q, draw), min_rate=min_rate)
            reweigh(p, real, confusion(sim_cust, np.sort(sim_occ["customer_id"].unique()), labels),
                     cap=MAX_SIZE_FACTOR)
            iterates.append(copy.deepcopy(p))
            log.debug("round %d: size %d, shares %s, rates %s, hazards %s", len(iterates), p.size,
                      {k: round(v, 3) for k, v in p.shares.items()}, {k: round(v, 4) for k, v in p.rate.items()},
                      {k: round(v, 5) for k, v in p.hazard.items()})
        # Each step chases its round's simulation noise as well as the log: the mean of the later
        # iterates is the estimate (Polyak averaging).
        p = average_params(iterates[len(iterates) // 2:]) if iterates else p
        evaluate(p)
        if search:
            _global_search(p, evaluate, budget=search)
    if model in ("acquired", "auto"):
        starts = acquired_starts(occ, f, real, start=start, end=end, days=days)
        log.info("acquired model: acquisition window %d days (shape %.3f), first purchase at signup",
                 starts[0].window_days, starts[0].window_shape)
        exposure = float(np.mean(end - f.first + 1.0))
        # Simulating a bigger population than the log's keeps the search from fitting one small
        # simulation's luck (a few heavy buyers move a small log's totals by several per cent).
        scale = max(1, min(_MAX_SCALE, math.ceil(_FIT_CUSTOMERS / real.n)))
        for q in starts:
            if search:
                q = _early_phase(q, lambda x: evaluate(x, scale=scale), exposure=exposure, days=days)
                _global_search(q, lambda x: evaluate(x, scale=scale), budget=4 * search)
            else:
                evaluate(q, scale=scale)
    if not runs or math.isinf(min(r[0] for r in runs)):
        raise ScenarioError(f"{src}: calibration failed: no candidate scenario produced purchases")
    best = min(runs, key=lambda r: r[0])[1]
    return params_scenario(best, name=name, seed=seed, start=start_d, days=days, source=src)


def _global_search(p: Params, objective: Callable[[Params], float], *, budget: int) -> None:
    """Nelder-Mead on the common scales of :func:`scaled_params`.

    The per-segment fixed point matches each segment's own moments; when the model cannot match
    them all at once (a real log is not a simulation), this trades them off on the distances.
    """
    from scipy.optimize import minimize

    dims = 4 if p.window_days is None else 6
    minimize(lambda x: objective(scaled_params(p, x)), np.zeros(dims), method="Nelder-Mead",
             options={"maxfev": budget, "initial_simplex": np.vstack([np.zeros(dims), 0.5 * np.eye(dims)]),
                      "xatol": 0.02, "fatol": 0.002})


def _early_phase(p: Params, objective: Callable[[Params], float], *, exposure: float, days: int) -> Params:
    """The best early phase on a coarse grid, then the best gap regularity. In the early phase,
    customers buy at a multiple of the later rate for the first weeks after signup (as
    new_customer, then graduating to mid_stable).

    New customers often buy most right after their first purchase. BG/NBD has no such phase, and
    without it the cumulative repeat curve runs low in the first weeks and high later. Each point
    keeps the expected repeats over the mean exposure, so the grid compares shapes, not volumes.
    """
    best, best_score = p, objective(p)
    for boost in (1.5, 2.0, 3.0):
        for weeks in (4, 8, 16):
            g = min(7.0 * weeks, days / 2)
            q = copy.deepcopy(p)
            later = p.rate["mid_stable"] * exposure / (boost * g + max(exposure - g, 0.0))
            q.rate = dict.fromkeys(SEGMENTS, later)
            q.rate["new_customer"], q.graduation_days = boost * later, g
            score = objective(q)
            if score < best_score:
                best, best_score = q, score
    # Then how regular the gaps are (gamma shape; 1 is Poisson, BG/NBD's): it leaves the mean rate
    # as it is, so it is tried on the best point alone.
    base = best
    for shape in (1.5, 2.0, 3.0, 4.0, 6.0):
        q = copy.deepcopy(base)
        q.regularity = dict.fromkeys(SEGMENTS, shape)
        score = objective(q)
        if score < best_score:
            best, best_score = q, score
    return best
