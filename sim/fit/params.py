"""A fit's parameters, their first guesses from the log, their updates, and the scenario they make."""

from __future__ import annotations

import copy
import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sim.contracts import SEGMENTS
from sim.fit.moments import Moments, residuals
from sim.fit.segmenter import Features
from sim.scenario import Scenario, scenario_from_dict

__all__ = [
    "MAX_SIZE_FACTOR",
    "Params",
    "acquired_starts",
    "average_params",
    "initial_params",
    "is_cohort",
    "params_scenario",
    "rate_hazard_step",
    "reweigh",
    "scaled_params",
    "update_params",
]

_DAMP = 0.7  # share of a log-ratio step taken per iteration: full steps oscillate between coupled moments


_MAX_STEP = math.log(3.0)


_NEVER_GRADUATE = 3650.0


# Customers who never buy in the window are invisible in a log; allow some, but a fit that needs
# many more of them than buyers is explaining the log with the wrong mechanism.
MAX_SIZE_FACTOR = 1.5


_FD_STEP = 0.25  # log step of the finite-difference Jacobian


_COHORT_SPAN = 0.25  # share of the window holding 95 % of first purchases in a single-cohort log


def _step(real: float, sim: float, *, power: float = 1.0) -> float:
    """A damped, bounded multiplicative step towards ``real`` from ``sim``."""
    if not (real > 0 and sim > 0) or math.isnan(real) or math.isnan(sim):
        return 1.0
    return math.exp(max(-_MAX_STEP, min(_MAX_STEP, _DAMP * power * math.log(real / sim))))


@dataclass
class Params:
    size: int
    shares: dict[str, float]
    acquisition: float
    rate: dict[str, float]
    decay: dict[str, float]
    hazard: dict[str, float]
    regularity: dict[str, float]
    spend_median: dict[str, float]
    spend_sigma: dict[str, float]
    het_shape: float
    het_spend_sigma: float
    weekly: np.ndarray
    yearly: np.ndarray  # cosine and sine coefficients of the yearly cycle
    graduation_days: float
    window_days: int | None = None  # set: a single cohort acquired over this many days, first purchase at signup
    window_shape: float = 1.0  # the cohort's acquisition.window_shape
    leave: float = 0.0  # dropout_per_purchase (every segment)
    leave_concentration: float | None = None  # heterogeneity.dropout_concentration


def params_scenario(p: Params, *, name: str, seed: int, start: dt.date, days: int, source: str,
              scale: int = 1) -> Scenario:
    total = sum(p.shares.values())
    shares = {k: v / total for k, v in p.shares.items()}
    shares["new_customer"] = max(shares["new_customer"], p.acquisition)
    total = sum(shares.values())
    shares = {k: round(v / total, 6) for k, v in shares.items()}
    shares["mid_stable"] = round(1.0 - sum(v for k, v in shares.items() if k != "mid_stable"), 6)
    acq = min(round(p.acquisition, 6), shares["new_customer"])
    segs = {
        k: {"share": shares[k], "purchase_rate": round(max(p.rate[k], 1e-5), 6),
            "decay_per_year": round(p.decay[k], 4), "dropout_hazard": round(min(max(p.hazard[k], 0.0), 1.0), 7),
            "dropout_per_purchase": round(min(max(p.leave, 0.0), 1.0), 6),
            "regularity": round(min(max(p.regularity[k], 1.0), 100.0), 3),
            "spend_median": round(min(max(p.spend_median[k], 0.01), 5000.0), 2),
            "spend_sigma": round(min(max(p.spend_sigma[k], 0.0), 3.0), 4)}
        for k in SEGMENTS
    }
    data: dict[str, Any] = {
        "name": name,
        "description": f"Calibrated from {source} by sim.fit_scenario.",
        "seed": seed,
        "calendar": {"start_date": start.isoformat(), "days": days},
        "seasonality": {"weekly": [round(float(w), 4) for w in p.weekly / p.weekly.mean()],
                        "yearly_amplitude": round(min(float(np.hypot(*p.yearly)), 0.5), 4),
                        "yearly_peak_day": int(round(math.atan2(p.yearly[1], p.yearly[0]) * 365.25 / (2 * np.pi))) % 365 + 1},
        "population": {
            "size": int(p.size) * scale, "shard_size": max(50_000, int(p.size) * scale),
            "segments": segs,
            "heterogeneity": {"shape": round(min(max(p.het_shape, 0.1), 1000.0), 4), "spend_correlation": 0.0,
                              "spend_sigma": round(min(max(p.het_spend_sigma, 0.0), 3.0), 4),
                              "dropout_concentration": None if p.leave_concentration is None
                              else round(min(max(p.leave_concentration, 1e-3), 1e6), 4)},
            "acquisition": _acquisition(p, acq),
        },
        "notes": {
            "source": f"segments, rates, spend, dropout and seasonality fitted to {source} "
                      "by simulation-based moment matching (sim.fit)",
            "population.size": "sized so the simulated log has as many buying customers as the real one",
            "population.heterogeneity.spend_correlation": "not fitted: 0",
            "targets": "left unset on purpose: the fitted rates are used as they are",
        },
    }
    return scenario_from_dict(data, source="calibrate")


def _acquisition(p: Params, share: float) -> dict[str, Any]:
    out: dict[str, Any] = {"share": share, "graduation_days": round(p.graduation_days, 1)}
    if p.window_days is not None:
        out.update(window_days=int(p.window_days), window_shape=p.window_shape, first_purchase_at_signup=True,
                   mix={"young_active": 0.0, "mid_stable": 1.0, "senior_declining": 0.0})
    return out


def is_cohort(f: Features, *, start: int, days: int) -> bool:
    """Whether the log is one acquisition cohort: nearly every first purchase early in the window.

    A steady population's first purchases spread over its slow buyers' gaps and its acquisitions
    over the whole window; a cohort's all fall in a short opening stretch.
    """
    return float(np.percentile(f.first - start, 95)) < _COHORT_SPAN * days


def acquired_starts(occ: pd.DataFrame, f: Features, real: Moments, *, start: int, end: int,
                     days: int) -> list[Params]:
    """Everyone acquired over the span of first purchases, buying at signup; rates from a BG/NBD fit.

    The engine can be BG/NBD exactly: purchasing is Poisson at a gamma-distributed rate (r and
    alpha give heterogeneity and rate) and ``dropout_per_purchase`` with a Beta concentration is
    its dropout (Beta(a, b) chance of leaving after each repeat purchase). Without lifetimes, the
    repeat rate and a recency hazard start the search instead.
    """
    from sim.fit.stats import bgnbd

    window = int(f.first.max() - start + 1)
    bg = bgnbd(occ, end)
    exposure = end - f.first + 1.0
    rate = max(float((f.n - 1).sum() / exposure.sum()), 1.0 / days)
    shape, hazard, leave, concentration = 1.0, 0.2 * rate, 0.0, None
    if bg is not None and min(bg.values()) > 0:
        shape, rate = bg["r"], bg["r"] / bg["alpha"]
        hazard, leave, concentration = 0.0, bg["a"] / (bg["a"] + bg["b"]), bg["a"] + bg["b"]
    within = float(np.nanmean(f.var_log)) if np.isfinite(f.var_log).any() else 0.25
    between = max(real.between_sd**2 - within / 2, 0.0)
    mu, sd = _lognormal_by_ks(occ["amount"].to_numpy(float))
    # The moments split the spread between and within customers; the KS fit sets its total.
    k = sd / math.sqrt(max(within + between, 1e-9))
    med, within, between = math.exp(mu), within * k * k, between * k * k
    weekly = np.maximum(real.weekday * 7, 0.05)
    p = Params(size=real.n, shares={k: float(k == "new_customer") for k in SEGMENTS}, acquisition=1.0,
                rate=dict.fromkeys(SEGMENTS, rate), decay=dict.fromkeys(SEGMENTS, 0.0), hazard=dict.fromkeys(SEGMENTS, hazard),
                regularity=dict.fromkeys(SEGMENTS, 1.0), spend_median=dict.fromkeys(SEGMENTS, med),
                spend_sigma=dict.fromkeys(SEGMENTS, math.sqrt(within)), het_shape=shape,
                het_spend_sigma=math.sqrt(between),
                weekly=weekly, yearly=np.zeros(2), graduation_days=_NEVER_GRADUATE, window_days=window,
                window_shape=_window_shape(f.first - start, window), leave=leave,
                leave_concentration=concentration)
    if leave == 0:
        return [p]
    by_recency = copy.deepcopy(p)
    by_recency.hazard = dict.fromkeys(SEGMENTS, leave * rate)  # about BG/NBD's chance per mean gap
    by_recency.leave, by_recency.leave_concentration = 0.0, None
    return [p, by_recency]


def _window_shape(first: np.ndarray, window: int) -> float:
    """Maximum-likelihood ``window_shape`` of first-purchase days (0-based) in a ``window``-day window.

    The share acquired by fraction x of the window is x ** (1 / window_shape); a day's probability is
    the CDF's step over it (a continuous fit biases front-loaded shapes, most mass being on day 0).
    """
    from scipy.optimize import minimize_scalar

    days = np.bincount(np.clip(np.asarray(first, np.int64), 0, window - 1), minlength=window)
    if days.sum() == 0:
        return 1.0
    edges = np.arange(window + 1) / window

    def nll(log_shape: float) -> float:
        step = np.diff(edges ** math.exp(-log_shape))
        return -float((days * np.log(np.maximum(step, 1e-300))).sum())

    best = minimize_scalar(nll, bounds=(math.log(0.1), math.log(10.0)), method="bounded",
                           options={"xatol": 1e-4})
    return round(math.exp(best.x), 3)


def _lognormal_by_ks(amounts: np.ndarray) -> tuple[float, float]:
    """Log-normal (mean, sd of log) closest to the amounts in KS distance.

    Real amounts are not log-normal (price points, a floor); moments fit the bulk poorly where KS
    judges it, so the KS distance itself is minimised.
    """
    from scipy.optimize import minimize
    from scipy.stats import norm

    x = np.sort(np.log(np.maximum(amounts, 0.01)))
    emp_hi = np.arange(1, len(x) + 1) / len(x)
    emp_lo = np.arange(len(x)) / len(x)

    def dist(v: np.ndarray) -> float:
        c = norm.cdf(x, v[0], math.exp(v[1]))
        return float(max(np.max(emp_hi - c), np.max(c - emp_lo)))

    x0 = np.array([float(np.median(x)), math.log(max(float(x.std()), 1e-3))])
    got = minimize(dist, x0, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-4, "maxfev": 400})
    return float(got.x[0]), math.exp(float(got.x[1]))


def initial_params(real: Moments, f: Features, lab: np.ndarray, *, end: int, days: int, warmup: int) -> Params:
    exposure = end - f.first + 1.0
    rate, reg, med, sig = {}, {}, {}, {}
    for name in SEGMENTS:
        m = lab == name
        by_repeats = float((f.n[m] - 1).sum() / exposure[m].sum()) if m.any() else 0.01
        rate[name] = max(by_repeats, 1.0 / days)
        cv2 = real.gap_cv2[name]
        reg[name] = 1.0 / cv2 if cv2 > 0 else 1.0
        med[name] = math.exp(real.mean_log[name]) if not math.isnan(real.mean_log[name]) else 50.0
        sig[name] = real.within_sd[name] if not math.isnan(real.within_sd[name]) else 0.5
    acq = min(real.late * days / max(days - warmup, 1), 0.9)
    shares = {k: real.count[k] / real.n for k in SEGMENTS}
    within = np.nanmean([real.within_sd[k] ** 2 / 2 for k in SEGMENTS]) if real.n else 0.0
    weekly = np.maximum(real.weekday * 7, 0.05)
    return Params(size=real.n, shares=shares, acquisition=acq, rate=rate, decay=dict.fromkeys(SEGMENTS, 0.1),
                   hazard=dict.fromkeys(SEGMENTS, 0.001), regularity=reg, spend_median=med, spend_sigma=sig,
                   het_shape=2.0, het_spend_sigma=math.sqrt(max(real.between_sd**2 - within, 0.0)),
                   weekly=weekly, yearly=real.yearly,
                   graduation_days=90.0 if acq > 0 else _NEVER_GRADUATE)


def update_params(p: Params, real: Moments, sim: Moments, *, half_years: float) -> None:
    """Fixed-point steps for everything but rates and hazards (each moment moves one parameter)."""
    for k in SEGMENTS:
        if real.count[k] == 0:
            continue
        p.regularity[k] = min(max(p.regularity[k] * _step(sim.gap_cv2[k], real.gap_cv2[k]), 1.0), 100.0)
        p.spend_median[k] *= _step(math.exp(real.mean_log[k]), math.exp(sim.mean_log[k]))
        p.spend_sigma[k] *= _step(real.within_sd[k], sim.within_sd[k])
    if real.late > 0:
        p.acquisition = min(max(p.acquisition, 1e-3) * _step(real.late, max(sim.late, 1e-4)), 0.9)
    for k in SEGMENTS:
        p.decay[k] = min(max(p.decay[k] + _DAMP * math.log(sim.trend[k] / real.trend[k]) / half_years, 0.0), 20.0)
    p.het_shape = min(max(p.het_shape * _step(max(sim.excess, 1e-3), max(real.excess, 1e-3)), 0.1), 1000.0)
    p.het_spend_sigma *= _step(real.between_sd, sim.between_sd)
    p.yearly = p.yearly + _DAMP * (real.yearly - sim.yearly)
    p.weekly = p.weekly * np.array([_step(r, s) for r, s in zip(real.weekday, sim.weekday, strict=True)])


def reweigh(p: Params, real: Moments, conf: np.ndarray, *, cap: float) -> None:
    """Shares and size that reproduce the real label counts through the simulation's confusion.

    A segment's customers can be seen with another segment's label, or not at all (never bought in
    the window): the counts per true segment are solved for by non-negative least squares.
    """
    from scipy.optimize import nnls

    n_real = np.array([real.count[k] for k in SEGMENTS], float)
    ok = conf.sum(1) > 0
    m = np.zeros(len(SEGMENTS))
    m[ok], _ = nnls(conf[ok].T, n_real)
    if m.sum() <= 0:
        return
    old = np.array([p.shares[k] for k in SEGMENTS]) * p.size
    new = np.exp(np.log(np.maximum(old, 1.0)) * (1 - _DAMP) + np.log(np.maximum(m, 1.0)) * _DAMP)
    new[~ok] = old[~ok]
    # Early on, another segment's misfit can make a segment look unneeded; once at zero it would
    # get no signal back, so a labelled segment keeps a floor.
    new = np.maximum(new, 0.3 * n_real)
    new[n_real == 0] = 0.0
    p.size = int(min(max(round(new.sum()), 2), cap * real.n))
    p.shares = {k: float(v / new.sum()) for k, v in zip(SEGMENTS, new, strict=True)}


def rate_hazard_step(p: Params, real: Moments, moments_of: Callable[[Params], Any], *, min_rate: float) -> None:
    """One Levenberg-Marquardt step on every segment's log rate and log hazard.

    Rate and hazard act on all four moments at once (a low rate and early lapsing both mean few
    repeats), and through misclassification on other segments' moments too, so they are moved
    together along a finite-difference Jacobian rather than one moment each.
    """
    base = moments_of(p)
    if base is None:
        return
    r0 = residuals(real, base[0])
    keys = [("rate", k) for k in SEGMENTS] + [("hazard", k) for k in SEGMENTS]
    jac = np.zeros((len(r0), len(keys)))
    for j, (what, k) in enumerate(keys):
        if p.shares[k] <= 0:
            continue
        q = copy.deepcopy(p)
        getattr(q, what)[k] = max(getattr(p, what)[k], 1e-6) * math.exp(_FD_STEP)
        got = moments_of(q)
        if got is not None:
            jac[:, j] = (r0 - residuals(real, got[0])) / _FD_STEP  # d(simulated moment)/d(log param)
    jtj = jac.T @ jac
    lam = 0.1 * np.trace(jtj) / len(keys) + 1e-9
    dx = np.linalg.solve(jtj + lam * np.diag(np.diag(jtj) + 1e-6), jac.T @ r0)
    dx = np.clip(dx, -_MAX_STEP, _MAX_STEP)
    for (what, k), d in zip(keys, dx, strict=True):
        v = max(getattr(p, what)[k], 1e-6) * math.exp(d)
        getattr(p, what)[k] = max(v, min_rate) if what == "rate" else min(v, 0.5)


def average_params(ps: list[Params]) -> Params:
    """The geometric mean of positive parameters (rates, shares, scales), the arithmetic mean of the rest."""
    out = copy.deepcopy(ps[-1])

    def mean(values: list[Any]) -> Any:
        a = np.asarray(values, float)
        return np.exp(np.log(a).mean(0)) if (a > 0).all() else a.mean(0)

    for field in ("rate", "hazard", "regularity", "spend_median", "spend_sigma", "shares", "decay"):
        setattr(out, field, {k: float(mean([getattr(q, field)[k] for q in ps])) for k in SEGMENTS})
    for field in ("acquisition", "het_shape", "het_spend_sigma"):
        setattr(out, field, float(mean([getattr(q, field) for q in ps])))
    out.size = int(round(float(mean([q.size for q in ps]))))
    out.weekly = mean([q.weekly for q in ps])
    out.yearly = np.mean([q.yearly for q in ps], axis=0)
    return out


def scaled_params(p: Params, x: np.ndarray) -> Params:
    """``p`` with common log scales ``x``: rate, dropout, heterogeneity shape, then decay (steady
    state) or the cohort's early phase (its rate multiple and length) and gap regularity."""
    q = copy.deepcopy(p)
    q.rate = {k: v * math.exp(x[0]) for k, v in p.rate.items()}
    q.hazard = {k: min(v * math.exp(x[1]), 1.0) for k, v in p.hazard.items()}
    q.leave = min(p.leave * math.exp(x[1]), 1.0)
    q.het_shape = p.het_shape * math.exp(x[2])
    if p.window_days is None:
        q.decay = {k: min(max(v + x[3], 0.0), 20.0) for k, v in p.decay.items()}
    else:
        q.rate["new_customer"] *= math.exp(x[3])
        q.graduation_days = min(max(p.graduation_days * math.exp(x[4]), 14.0), _NEVER_GRADUATE)
        q.regularity = {k: min(max(v * math.exp(x[5]), 1.0), 100.0) for k, v in p.regularity.items()}
    return q
