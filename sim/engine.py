"""The engine: shards of customers simulated month by month on a SimPy timeline.

A shard's month is one SimPy environment. Its global processes are ``acquisition`` (this month's
new customers join, each buying from its signup time), one ``_change`` process per moment the
world changes (an intervention or experiment window edge, a drift step; and the month's start),
and ``month_end`` (the checkpoint). At each change every customer wakes once and draws its
purchases up to the next change (event skipping: nothing can change its intensity before then),
so it reacts to an intervention at the intervention's time. Each customer whose own state
changes in between (graduation, dropout) runs as its own process (``sim.customer.customer``) that
applies the change at its simulated time; the process of a customer who drops out ends there.
A shard-month is a pure function of (scenario, seed, shard state, month): the coordinator may run
shards in any order, in any process.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import simpy

from sim import keyed
from sim.calendar import Period, epoch_day, horizon_end, horizon_periods, next_period
from sim.customer import Agents, Purchases, Rates, advance, customer, graduating, purchases_at
from sim.labels import label_arrays
from sim.metrics import DailyPartials, daily_partials
from sim.scenario import MAX_INTERVENTIONS, Drift, Scenario
from sim.segments import NEW_CUSTOMER, SEGMENTS

__all__ = ["Calibration", "RunState", "ShardMonth", "initial_state", "run_periods", "simulate_shard"]

log = logging.getLogger(__name__)

_DAYS_PER_MONTH = 365.25 / 12
_EXPERIMENT_BIT0 = MAX_INTERVENTIONS  # bits 0..31: interventions; 32+2e / 33+2e: experiment e treatment / control
_GRAD_BLOCK = 1 << 20  # keys the post-graduation part of a block apart from the block itself
_HISTORY_BLOCK = 1 << 21  # keys the initial customers' last purchase before the window


@dataclass(frozen=True)
class Calibration:
    """Scales applied to every segment's purchase rate and dropout hazard to meet the targets."""

    intensity_scale: float = 1.0
    hazard_scale: float = 1.0


@dataclass
class RunState:
    """Everything needed to simulate the next month: checkpointed with every month."""

    scenario: Scenario
    calibration: Calibration
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


# --------------------------------------------------------------------------- population


def _acquisition_total(s: Scenario) -> int:
    return int(math.floor(s.population.size * s.population.acquisition.share))


def _acquired_by(s: Scenario, day: int) -> int:
    """Customers acquired from the start up to and including epoch ``day``."""
    start = epoch_day(s.calendar.start_date)
    acq = s.population.acquisition
    window = acq.window_days
    if window is None:
        # Past the horizon (append) acquisition continues at the same daily rate.
        horizon = epoch_day(horizon_end(s.calendar)) - start + 1
        return int(math.floor(_acquisition_total(s) * (day - start + 1) / horizon))
    if acq.window_shape == 1.0:
        # Kept apart from the shaped form: its float rounding differs, and runs must not change.
        return int(math.floor(_acquisition_total(s) * min(day - start + 1, window) / window))
    x = min(max(day - start + 1, 0), window) / window
    return int(math.floor(_acquisition_total(s) * _window_cdf(x, acq.window_shape)))


def _window_cdf(x: np.ndarray | float, shape: float) -> np.ndarray | float:
    """Share of a window's acquisitions made by fraction ``x`` of it (``window_shape``)."""
    return x ** (1.0 / shape)


def _window_quantile(p: np.ndarray, shape: float) -> np.ndarray:
    """Inverse of :func:`_window_cdf`."""
    return p**shape


def _segment_counts(s: Scenario, n: int, shard_n: int) -> np.ndarray:
    """Exact per-segment counts for ``shard_n`` initial customers (largest remainder)."""
    segs = s.population.segments
    total = s.population.size
    want = np.array([segs[name].share * total for name in SEGMENTS])
    want[NEW_CUSTOMER] = max(want[NEW_CUSTOMER] - _acquisition_total(s), 0.0)
    if want.sum() <= 0:  # rounding left a few initial customers where the shares leave none
        want[NEW_CUSTOMER] = 1.0
    p = want / want.sum() * shard_n
    counts = np.floor(p).astype(np.int64)
    rest = shard_n - counts.sum()
    counts[np.argsort(-(p - counts), kind="stable")[:rest]] += 1
    return counts


def _graduation_mix(s: Scenario, t: np.ndarray) -> np.ndarray:
    """Per-customer cumulative graduation mix (3 columns) in force at times ``t``."""
    segs = s.population.segments
    base = s.population.acquisition.mix or {k: segs[k].share for k in SEGMENTS[:3]}
    mix = np.tile(np.array([base.get(k, 0.0) for k in SEGMENTS[:3]], float), (len(t), 1))
    for d in s.drifts:
        if d.parameter == "acquisition_mix" and d.mix is not None:
            target = np.array([d.mix.get(k, 0.0) for k in SEGMENTS[:3]], float)
            w = _drift_weight(d, t)[:, None]
            mix = mix * (1 - w) + target * w
    mix = mix / mix.sum(axis=1, keepdims=True)
    return np.cumsum(mix, axis=1)


def _create(s: Scenario, ids: np.ndarray, segment: np.ndarray, since: np.ndarray,
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
    is_new = segment == NEW_CUSTOMER
    # Graduation lands within a couple of weeks of the nominal day, never before the run starts.
    grad_at = np.where(is_new, np.maximum(since + grad_days + rng.uniform(-14, 14, n), run_start), np.nan)
    cdf = _graduation_mix(s, since)
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


def _initial_agents(s: Scenario, c: Calibration, shard: int, ids: np.ndarray) -> tuple[Agents, np.ndarray, np.ndarray]:
    rng = keyed.generator(s.seed, 1, shard)
    counts = _segment_counts(s, s.population.size, len(ids))
    segment = rng.permutation(np.repeat(np.arange(len(SEGMENTS)), counts)).astype(np.int8)
    segs = [s.population.segments[name] for name in SEGMENTS]
    lo = np.array([g.tenure_months[0] for g in segs])[segment]
    hi = np.array([g.tenure_months[1] for g in segs])[segment]
    start = float(epoch_day(s.calendar.start_date))
    since = np.floor(start - rng.uniform(lo, hi) * _DAYS_PER_MONTH) + rng.uniform(size=len(ids))
    since = np.minimum(since, start)
    agents, age = _create(s, ids, segment, since, start, rng)
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


def initial_state(s: Scenario, calibration: Calibration) -> RunState:
    """The state before the first month: the initial population, placed in shards by id."""
    n_init = s.population.size - _acquisition_total(s)
    return RunState(scenario=s, calibration=calibration, initial_size=n_init,
                    next_customer_id=n_init + 1, next_transaction_id=1)


def _arrivals(s: Scenario, period: Period, next_id: int) -> tuple[np.ndarray, np.ndarray]:
    """This month's new customers: ids and signup times (ids follow signup order)."""
    before = _acquired_by(s, epoch_day(period.start) - 1)
    count = _acquired_by(s, epoch_day(period.end)) - before
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
    lo, hi = (_window_cdf(np.clip((t - w0) / window, 0.0, 1.0), acq.window_shape) for t in (period.t0, t1))
    t = w0 + window * _window_quantile(lo + u * (max(hi, lo) - lo), acq.window_shape)
    # Rounding must not move a signup out of its month: [t0, t1).
    return ids, np.minimum(np.maximum(t, period.t0), np.nextafter(t1, -np.inf))


# --------------------------------------------------------------------------- scenario in force


def _drift_weight(d: Drift, t: np.ndarray | float) -> np.ndarray:
    x = (np.asarray(t, float) - epoch_day(d.start)) / (d.ramp_days if d.shape == "ramp" else 1e-9)
    return np.clip(np.where(np.asarray(t, float) >= epoch_day(d.start), x, 0.0), 0.0, 1.0)


def _rates(s: Scenario, c: Calibration, t: float) -> Rates:
    segs = [s.population.segments[name] for name in SEGMENTS]

    def col(name: str, scale: float = 1.0) -> np.ndarray:
        v = np.array([getattr(g, name) for g in segs], float) * scale
        for d in s.drifts:
            if d.parameter == name:
                w = float(_drift_weight(d, t))
                f = 1.0 + (d.multiplier - 1.0) * w
                mask = np.ones(len(SEGMENTS), bool) if d.segment is None else np.array([x == d.segment for x in SEGMENTS])
                v = np.where(mask, v * f, v)
        return v

    return Rates(
        purchase_rate=col("purchase_rate", c.intensity_scale),
        decay_per_year=col("decay_per_year"),
        spend_median=col("spend_median"),
        spend_sigma=col("spend_sigma"),
        dropout_hazard=col("dropout_hazard", c.hazard_scale),
        dropout_per_purchase=np.minimum(col("dropout_per_purchase", c.hazard_scale), 1.0),
        dropout_concentration=s.population.heterogeneity.dropout_concentration,
        regularity=col("regularity"),
        app_share=col("app_share"),
        store_share=col("store_share"),
        recency_scale=s.population.recency_scale_days,
    )


@dataclass(frozen=True)
class _Effect:
    bit: int
    t_start: float
    t_end: float
    segment: int | None
    inactive_days: float | None
    intensity: float
    hazard: float
    spend: float


def _effects(s: Scenario) -> list[_Effect]:
    out = []
    for j, iv in enumerate(s.interventions):
        t = float(epoch_day(iv.start))
        seg = None if iv.target.segment is None else SEGMENTS.index(iv.target.segment)
        out.append(_Effect(j, t, t + iv.days, seg, iv.target.inactive_days,
                           iv.intensity_multiplier, iv.hazard_multiplier, iv.spend_multiplier))
    for e, ex in enumerate(s.experiments):
        t = float(epoch_day(ex.assign_date))
        tr = ex.treatment
        seg = None if ex.eligible.segment is None else SEGMENTS.index(ex.eligible.segment)
        out.append(_Effect(_EXPERIMENT_BIT0 + 2 * e, t, t + tr.days, seg, ex.eligible.inactive_days,
                           tr.intensity_multiplier, tr.hazard_multiplier, tr.spend_multiplier))
    return out


def _breakpoints(s: Scenario, period: Period) -> list[tuple[float, str, object]]:
    """Times inside the month where the world changes, with what changes."""
    pts: list[tuple[float, str, object]] = []
    for eff in _effects(s):
        pts.append((eff.t_start, "effect_start", eff))
        pts.append((eff.t_end, "effect_end", eff))
    for d in s.drifts:
        if d.parameter == "acquisition_mix":
            continue
        t = float(epoch_day(d.start))
        steps = [t] if d.shape == "step" else [t + k for k in range(0, d.ramp_days + 7, 7)]
        pts.extend((x, "drift", d) for x in steps)
    return sorted((p for p in pts if period.t0 <= p[0] < period.t1), key=lambda p: p[0])


# --------------------------------------------------------------------------- one shard, one month


class _Month:
    """The world of one shard during one month, advanced by the SimPy processes."""

    def __init__(self, env: simpy.Environment, s: Scenario, c: Calibration, shard: int, agents: Agents,
                 period: Period) -> None:
        self.env, self.s, self.c, self.shard, self.agents, self.period = env, s, c, shard, agents, period
        self.clock = period.t0
        self.block = 0
        self.effects = [e for e in _effects(s) if e.t_start < period.t1 and e.t_end > period.t0]
        self.bought: list[Purchases] = []

    def _multipliers(self, idx: np.ndarray, segment: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = [np.ones(len(idx)) for _ in range(3)]
        for eff in self.effects:
            if not eff.t_start <= self.clock < eff.t_end:
                continue
            if eff.inactive_days is None and eff.bit < _EXPERIMENT_BIT0:
                hit = np.ones(len(idx), bool) if eff.segment is None else segment == eff.segment
            else:
                hit = (self.agents.flags[idx] >> np.uint64(eff.bit)) & np.uint64(1) == 1
            for arr, f in zip(m, (eff.intensity, eff.hazard, eff.spend), strict=True):
                if f != 1.0:
                    arr[hit] *= f
        return m[0], m[1], m[2]

    def draw_until(self, t: float) -> None:
        """Wake every customer once: draw its purchases from now to ``t`` under the rules in force.

        Nothing can change a customer's intensity before ``t`` but its own graduation, so its
        purchases are drawn in one go (event skipping); a graduate's continue under its next
        segment. Graduations and dropouts then happen in each customer's own process, at their time.
        """
        if t <= self.clock:
            return
        ag = self.agents
        idx = np.flatnonzero(np.isnan(ag.dropout) & (ag.since < t))
        rates = _rates(self.s, self.c, self.clock)
        grads = graduating(ag, idx, t)
        b = np.full(len(idx), t)
        b[np.searchsorted(idx, grads)] = np.maximum(ag.graduate_at[grads], self.clock)
        kw = {"seed": self.s.seed, "period": self.period.index}
        bought, gone, when = advance(ag, idx, b, rates, self._multipliers(idx, ag.segment[idx]), self.s.seasonality,
                                     block=self.block, start=self.clock, **kw)
        self.bought.append(bought)
        events: dict[int, list[tuple[float, str]]] = {}
        if len(grads):
            alive = grads[~np.isin(grads, gone)]
            start = np.maximum(ag.graduate_at[alive], self.clock)
            nxt = ag.grad_to[alive]
            bought, gone2, when2 = advance(ag, alive, np.full(len(alive), t), rates, self._multipliers(alive, nxt),
                                           self.s.seasonality, block=self.block + _GRAD_BLOCK, start=start,
                                           segment=nxt, **kw)
            self.bought.append(bought)
            for i, g in zip(alive.tolist(), start.tolist(), strict=True):
                events[i] = [(g, "graduate")]
            gone, when = np.r_[gone, gone2], np.r_[when, when2]
        for i, d in zip(gone.tolist(), when.tolist(), strict=True):
            events.setdefault(i, []).append((d, "dropout"))
        for i, evs in events.items():
            self.env.process(customer(self.env, ag, i, evs))
        self.block += 1

    def start_effect(self, eff: _Effect) -> None:
        if eff.inactive_days is None and eff.bit < _EXPERIMENT_BIT0:
            return  # reaches its segment (or everyone) in every block, new arrivals included
        ag, t = self.agents, self.clock
        last = np.where(np.isnan(ag.last), ag.since, ag.last)
        hit = ag.since <= t
        if eff.segment is not None:
            hit &= ag.segment == eff.segment
        if eff.inactive_days is not None:
            hit &= (t - last) >= eff.inactive_days
        if eff.bit >= _EXPERIMENT_BIT0:
            e = (eff.bit - _EXPERIMENT_BIT0) // 2
            share = self.s.experiments[e].treatment_share
            treat = keyed.uniform(self.s.seed, "assign", ag.customer_id, e) < share
            ag.flags[hit & treat] |= np.uint64(1) << np.uint64(eff.bit)
            ag.flags[hit & ~treat] |= np.uint64(1) << np.uint64(eff.bit + 1)
        else:
            ag.flags[hit] |= np.uint64(1) << np.uint64(eff.bit)


def _acquisition(env: simpy.Environment, world: _Month, newcomers: Agents) -> Iterator[simpy.Event]:
    """New customers join the shard; each starts buying at its own signup time."""
    world.agents = world.agents.extend(newcomers)
    yield env.timeout(0)


def _change(env: simpy.Environment, world: _Month, t: float, changes: list[tuple[str, object]],
            until: float) -> Iterator[simpy.Event]:
    """At ``t`` the world changes (interventions, experiment assignment, drift steps); then every
    customer wakes once and lives on under the new rules until the next change."""
    yield env.timeout(t - env.now)
    world.clock = env.now
    for kind, what in changes:
        if kind == "effect_start":
            world.start_effect(what)  # type: ignore[arg-type]
    world.draw_until(until)


def _month_end(env: simpy.Environment, world: _Month) -> Iterator[simpy.Event]:
    """The checkpoint: every customer process has applied its events of the month by now."""
    yield env.timeout(world.period.t1 - env.now)
    world.clock = env.now


def simulate_shard(s: Scenario, c: Calibration, shard: int, agents: Agents, period: Period,
                   arrival_ids: np.ndarray, arrival_t: np.ndarray, *, outputs: bool = True) -> tuple[Agents, ShardMonth]:
    """Simulate one shard for one month; returns its new state and the month's arrays.

    With ``outputs=False`` (calibration pilots) labels and daily metrics are not computed.
    """
    start = float(epoch_day(s.calendar.start_date))
    new_cols: dict[str, np.ndarray] = {}
    history: Purchases | None = None
    if period.index == 0 and len(agents) == 0:
        size = s.population.size - _acquisition_total(s)
        lo, hi = shard * s.population.shard_size + 1, min((shard + 1) * s.population.shard_size, size)
        if lo <= hi:
            agents, age, seg = _initial_agents(s, c, shard, np.arange(lo, hi + 1, dtype=np.int64))
            new_cols = {"customer_id": agents.customer_id, "age": age, "segment": seg, "since": agents.since}
            if outputs:
                history = _history(s, c, agents, start)
    newcomers = Agents.empty()
    if len(arrival_ids):
        rng = keyed.generator(s.seed, 2, shard, period.index)
        seg = np.full(len(arrival_ids), NEW_CUSTOMER, np.int8)
        newcomers, age = _create(s, arrival_ids, seg, arrival_t, start, rng)
        if s.population.acquisition.first_purchase_at_signup:
            # A candidate at the signup instant is the signup purchase (see customer.advance).
            newcomers.due[:] = 0.0
        add = {"customer_id": arrival_ids, "age": age, "segment": seg, "since": arrival_t}
        new_cols = {k: np.concatenate([new_cols[k], v]) if new_cols else v for k, v in add.items()}
    prev_last = agents.last.copy()
    prev_segment = agents.segment.copy()

    env = simpy.Environment(initial_time=period.t0)
    world = _Month(env, s, c, shard, agents, period)
    env.process(_acquisition(env, world, newcomers))
    changes: dict[float, list[tuple[str, object]]] = {period.t0: []}
    for t, kind, obj in _breakpoints(s, period):
        changes.setdefault(t, []).append((kind, obj))
    times = sorted(changes)
    for t, until in zip(times, [*times[1:], period.t1], strict=True):
        env.process(_change(env, world, t, changes[t], until))
    env.process(_month_end(env, world))
    env.run()

    purchases = _concat_purchases(world.bought)
    if not outputs:
        return world.agents, ShardMonth(shard, new_cols, purchases, {}, None)  # type: ignore[arg-type]
    n_old = len(prev_last)
    daily = daily_partials(
        period, purchases, world.agents,
        prev_last=np.r_[prev_last, np.full(len(world.agents) - n_old, np.nan)],
        prev_segment=np.r_[prev_segment, world.agents.segment[n_old:]],
    )
    labels = label_arrays(world.agents, period, s)
    if history is not None:
        # History goes to raw_transactions only: daily metrics stay inside the window.
        purchases = _concat_purchases([history, purchases])
    return world.agents, ShardMonth(shard, new_cols, purchases, labels, daily)


def _history(s: Scenario, c: Calibration, agents: Agents, start: float) -> Purchases:
    """Each initial customer's last purchase before the window (its ``last``), as a transaction.

    Labels and 30-day activity read recency off ``last``; writing it makes them recomputable from
    the tables. It looks like any purchase of its segment under the rules in force at the start.
    """
    i = np.flatnonzero(~np.isnan(agents.last))
    rates = _rates(s, c, start)
    return purchases_at(agents.customer_id[i], agents.last[i], agents.segment[i], agents.spend_scale[i], rates,
                        seed=s.seed, period=0, block=_HISTORY_BLOCK, counter=np.zeros(len(i), np.int64))


def _concat_purchases(parts: list[Purchases]) -> Purchases:
    if not parts:
        e = np.empty(0)
        return Purchases(e.astype(np.int64), e, e, e.astype(np.int8), e.astype(np.int8), e.astype(np.int8))
    return Purchases(*(np.concatenate([getattr(p, f) for p in parts])
                       for f in ("customer_id", "t", "amount", "segment", "channel", "category")))


# --------------------------------------------------------------------------- the coordinator


ShardRunner = Callable[[RunState, Period, dict[int, tuple[np.ndarray, np.ndarray]]], Iterable[tuple[Agents, ShardMonth]]]


def _shards_for(state: RunState, arrival_ids: np.ndarray, arrival_t: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Which shards run this month, and the arrivals each receives (shard = (id - 1) // size)."""
    size = state.scenario.population.shard_size
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if state.period is None:
        n_shards = -(-state.initial_size // size)
        out = {k: (np.empty(0, np.int64), np.empty(0)) for k in range(n_shards)}
    else:
        out = {k: (np.empty(0, np.int64), np.empty(0)) for k in state.shards}
    if len(arrival_ids):
        sh = (arrival_ids - 1) // size
        for k in np.unique(sh):
            m = sh == k
            out[int(k)] = (arrival_ids[m], arrival_t[m])
    return dict(sorted(out.items()))


def local_runner(state: RunState, period: Period, plan: dict[int, tuple[np.ndarray, np.ndarray]], *,
                 outputs: bool = True) -> Iterator[tuple[Agents, ShardMonth]]:
    """Run the shards one after another in this process."""
    for k, (ids, t) in plan.items():
        yield simulate_shard(state.scenario, state.calibration, k, state.shards.get(k, Agents.empty()), period,
                             ids, t, outputs=outputs)


def step(state: RunState, *, runner: ShardRunner = local_runner) -> tuple[RunState, Period, list[ShardMonth]]:
    """Simulate the next month of every shard; returns the new state and the shards' months."""
    period = state.next_period()
    ids, t = _arrivals(state.scenario, period, state.next_customer_id)
    plan = _shards_for(state, ids, t)
    shards = dict(state.shards)
    months = []
    for agents, month in runner(state, period, plan):
        shards[month.shard] = agents
        months.append(month)
    months.sort(key=lambda m: m.shard)
    n_txn = sum(len(m.purchases.t) for m in months)
    new_state = replace(state, period=period, shards=shards,
                        next_customer_id=state.next_customer_id + len(ids),
                        next_transaction_id=state.next_transaction_id + n_txn)
    return new_state, period, months


def run_periods(state: RunState, months: int | None = None, *, runner: ShardRunner = local_runner) -> Iterator[tuple[RunState, Period, list[ShardMonth]]]:
    """Yield (state after, period, shard months) for ``months`` months (default: to the horizon)."""
    if months is None:
        remaining = [p for p in horizon_periods(state.scenario.calendar)
                     if state.period is None or p.start > state.period.end]
        months = len(remaining)
    for _ in range(months):
        state, period, shard_months = step(state, runner=runner)
        log.debug("simulated %s: %d purchases", period.label, sum(len(m.purchases.t) for m in shard_months))
        yield state, period, shard_months
