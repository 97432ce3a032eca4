"""Who the customers are: the initial population and this month's arrivals, drawn per shard."""

from __future__ import annotations

import math

import numpy as np

from sim.contracts import NEW_CUSTOMER, SEGMENTS
from sim.model import keyed
from sim.model.agents import Agents
from sim.model.calendar import Period, epoch_day, horizon_end
from sim.model.rates import TargetScales, drift_weight
from sim.scenario import Scenario

__all__ = [
    "DAYS_PER_MONTH",
    "acquired_by",
    "acquisition_total",
    "arrivals",
    "create_agents",
    "graduation_mix",
    "initial_agents",
    "segment_counts",
    "window_cdf",
    "window_quantile",
]

DAYS_PER_MONTH = 365.25 / 12


def acquisition_total(s: Scenario) -> int:
    return int(math.floor(s.population.size * s.population.acquisition.share))


def acquired_by(s: Scenario, day: int) -> int:
    """Customers acquired from the start up to and including epoch ``day``."""
    start = epoch_day(s.calendar.start_date)
    acq = s.population.acquisition
    window = acq.window_days
    if window is None:
        # Past the horizon (append) acquisition continues at the same daily rate.
        horizon = epoch_day(horizon_end(s.calendar)) - start + 1
        return int(math.floor(acquisition_total(s) * (day - start + 1) / horizon))
    if acq.window_shape == 1.0:
        # Kept apart from the shaped form: its float rounding differs, and runs must not change.
        return int(math.floor(acquisition_total(s) * min(day - start + 1, window) / window))
    x = min(max(day - start + 1, 0), window) / window
    return int(math.floor(acquisition_total(s) * window_cdf(x, acq.window_shape)))


def window_cdf(x: np.ndarray | float, shape: float) -> np.ndarray | float:
    """Share of a window's acquisitions made by fraction ``x`` of it (``window_shape``)."""
    return x ** (1.0 / shape)


def window_quantile(p: np.ndarray, shape: float) -> np.ndarray:
    """Inverse of :func:`window_cdf`."""
    return p**shape


def segment_counts(s: Scenario, n: int, shard_n: int) -> np.ndarray:
    """Exact per-segment counts for ``shard_n`` initial customers (largest remainder)."""
    segs = s.population.segments
    total = s.population.size
    want = np.array([segs[name].share * total for name in SEGMENTS])
    want[NEW_CUSTOMER] = max(want[NEW_CUSTOMER] - acquisition_total(s), 0.0)
    if want.sum() <= 0:  # rounding left a few initial customers where the shares leave none
        want[NEW_CUSTOMER] = 1.0
    p = want / want.sum() * shard_n
    counts = np.floor(p).astype(np.int64)
    rest = shard_n - counts.sum()
    counts[np.argsort(-(p - counts), kind="stable")[:rest]] += 1
    return counts


def graduation_mix(s: Scenario, t: np.ndarray) -> np.ndarray:
    """Per-customer cumulative graduation mix (3 columns) in force at times ``t``."""
    segs = s.population.segments
    base = s.population.acquisition.mix or {k: segs[k].share for k in SEGMENTS[:3]}
    mix = np.tile(np.array([base.get(k, 0.0) for k in SEGMENTS[:3]], float), (len(t), 1))
    for d in s.drifts:
        if d.parameter == "acquisition_mix" and d.mix is not None:
            target = np.array([d.mix.get(k, 0.0) for k in SEGMENTS[:3]], float)
            w = drift_weight(d, t)[:, None]
            mix = mix * (1 - w) + target * w
    mix = mix / mix.sum(axis=1, keepdims=True)
    return np.cumsum(mix, axis=1)


def create_agents(s: Scenario, ids: np.ndarray, segment: np.ndarray, since: np.ndarray,
            run_start: float, rng: np.random.Generator) -> tuple[Agents, np.ndarray]:
    """New agents and their ages; ``rng`` is keyed by (seed, shard, month)."""
    n = len(ids)
    segs = [s.population.segments[name] for name in SEGMENTS]
    lo = np.array([g.age[0] for g in segs])[segment]
    hi = np.array([g.age[1] for g in segs])[segment]
    age = rng.integers(lo, hi + 1)
    het_cfg = s.population.heterogeneity
    k = np.array([het_cfg.shape if g.heterogeneity_shape is None else g.heterogeneity_shape for g in segs])[segment]
    het = rng.gamma(k, 1.0 / k)  # the same draws as a scalar shape when no segment sets its own
    spend_scale = het ** het_cfg.spend_correlation * np.exp(het_cfg.spend_sigma * rng.standard_normal(n))
    shape = np.array([g.regularity for g in segs])[segment]
    grad_days = s.population.acquisition.graduation_days
    jitter = s.population.acquisition.graduation_jitter_days
    is_new = segment == NEW_CUSTOMER
    # Graduation lands within a couple of weeks of the nominal day, never before the run starts.
    grad_at = np.where(is_new, np.maximum(since + grad_days + rng.uniform(-jitter, jitter, n), run_start), np.nan)
    cdf = graduation_mix(s, since)
    grad_to = np.where(is_new, (rng.uniform(size=n)[:, None] > cdf).sum(axis=1).clip(0, 2), -1)
    agents = Agents.from_columns({
        "customer_id": ids, "segment": segment, "since": since, "t0": np.maximum(since, run_start),
        "het": het, "spend_scale": spend_scale, "last": np.full(n, np.nan), "dropout": np.full(n, np.nan),
        "graduate_at": grad_at, "grad_to": grad_to, "flags": np.zeros(n, np.uint64),
        # The equilibrium residual of a renewal process (uniform point of a length-biased gap), so the
        # run starts in steady state instead of with a wave of first purchases.
        "due": rng.uniform(size=n) * rng.gamma(shape + 1.0, 1.0 / shape),
    })
    return agents, age


def initial_agents(s: Scenario, c: TargetScales, shard: int, ids: np.ndarray) -> tuple[Agents, np.ndarray, np.ndarray]:
    rng = keyed.generator(s.seed, 1, shard)
    counts = segment_counts(s, s.population.size, len(ids))
    segment = rng.permutation(np.repeat(np.arange(len(SEGMENTS)), counts)).astype(np.int8)
    segs = [s.population.segments[name] for name in SEGMENTS]
    lo = np.array([g.tenure_months[0] for g in segs])[segment]
    hi = np.array([g.tenure_months[1] for g in segs])[segment]
    start = float(epoch_day(s.calendar.start_date))
    since = np.floor(start - rng.uniform(lo, hi) * DAYS_PER_MONTH) + rng.uniform(size=len(ids))
    since = np.minimum(since, start)
    agents, age = create_agents(s, ids, segment, since, start, rng)
    # Customers were buying before the window opens. In a steady renewal process the window opens
    # at a uniform point of a length-biased gap: the part behind is the age of the last purchase,
    # the part ahead the time to the next one. Drawing both from one gap starts the run in steady
    # state (no ramp in 30-day activity, no wave of first purchases).
    shape = np.array([g.regularity for g in segs])[segment]
    gap = rng.gamma(shape + 1.0, 1.0 / shape)
    u = rng.uniform(size=len(ids))
    rate = np.array([g.purchase_rate for g in segs])[segment] * c.intensity_scale * agents.het
    agents.due[:] = (1.0 - u) * gap
    with np.errstate(divide="ignore"):
        last = start - u * gap / rate
    agents.last[:] = np.where(last >= since, last, np.nan)
    return agents, age, segment


def arrivals(s: Scenario, period: Period, next_id: int) -> tuple[np.ndarray, np.ndarray]:
    """This month's new customers: ids and signup times (ids follow signup order)."""
    before = acquired_by(s, epoch_day(period.start) - 1)
    count = acquired_by(s, epoch_day(period.end)) - before
    u = np.sort(keyed.uniform(s.seed, "arrival", period.index, np.arange(count)))
    ids = np.arange(next_id, next_id + count, dtype=np.int64)
    acq = s.population.acquisition
    t1 = period.t1
    if acq.window_days is None:
        return ids, period.t0 + u * (t1 - period.t0)
    w0, window = float(epoch_day(s.calendar.start_date)), float(acq.window_days)
    t1 = min(t1, w0 + window)
    if acq.window_shape == 1.0:
        return ids, period.t0 + u * (t1 - period.t0)
    # The month's share of the window's CDF, spread by the same keyed uniforms through its inverse.
    lo, hi = (window_cdf(np.clip((t - w0) / window, 0.0, 1.0), acq.window_shape) for t in (period.t0, t1))
    t = w0 + window * window_quantile(lo + u * (max(hi, lo) - lo), acq.window_shape)
    # Rounding must not move a signup out of its month: [t0, t1).
    return ids, np.minimum(np.maximum(t, period.t0), np.nextafter(t1, -np.inf))
