"""One shard's month on a SimPy timeline.

A shard's month is one SimPy environment. Its global processes are ``acquisition`` (this month's
new customers join, each buying from its signup time), one ``_change`` process per moment the
world changes (an intervention or experiment window edge, a drift step; and the month's start),
and ``month_end`` (the checkpoint). At each change every customer wakes once and draws its
purchases up to the next change (event skipping: nothing can change its intensity before then),
so it reacts to an intervention at the intervention's time. Each customer whose own state
changes in between (graduation, dropout) runs as its own process (``sim.engine.customer``) that
applies the change at its simulated time; the process of a customer who drops out ends there.
A shard-month is a pure function of (scenario, seed, shard state, month): the coordinator may run
shards in any order, in any process.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import simpy

from sim.contracts import EXPERIMENT_BIT0, NEW_CUSTOMER
from sim.engine.customer import customer
from sim.engine.labels import label_arrays
from sim.engine.metrics import daily_partials
from sim.engine.state import ShardMonth
from sim.model import keyed
from sim.model.agents import Agents, Purchases
from sim.model.calendar import Period, epoch_day, seasonal_bound
from sim.model.changes import MonthStart, history_recorded, month_changes
from sim.model.effects import Effect, breakpoints, effects_of
from sim.model.population import acquisition_total, create_agents, initial_agents
from sim.model.purchases import HISTORY_COUNTER, Clocks, advance, graduating, purchases_at
from sim.model.rates import TargetScales, rates_at
from sim.scenario import Scenario

__all__ = ["Month", "in_customer_order", "simulate_shard"]


class Month:
    """The world of one shard during one month, advanced by the SimPy processes (the batched
    engine; :class:`sim.engine.process.ProcessMonth` runs the same month one customer at a time)."""

    def __init__(self, env: simpy.Environment, s: Scenario, c: TargetScales, shard: int, agents: Agents,
                 period: Period) -> None:
        self.env, self.s, self.c, self.shard, self.agents, self.period = env, s, c, shard, agents, period
        self.clock = period.t0
        # The thinning bounds' seasonal peak: the month's, never a block's, so that the month's change
        # points do not move anyone's draws (sim.model.purchases).
        self.peak = seasonal_bound(s.seasonality, period.t0, period.t1)
        self.clocks = Clocks.of(0)
        self.effects = [e for e in effects_of(s) if e.t_start < period.t1 and e.t_end > period.t0]
        self.bought: list[Purchases] = []

    def multipliers(self, idx: np.ndarray, segment: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = [np.ones(len(idx)) for _ in range(3)]
        for eff in self.effects:
            if not eff.t_start <= self.clock < eff.t_end:
                continue
            if eff.inactive_days is None and eff.bit < EXPERIMENT_BIT0:
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
        self.clocks = clocks = self.clocks.fit(len(ag))
        idx = np.flatnonzero(np.isnan(ag.dropout) & (ag.since < t))
        rates = rates_at(self.s, self.c, self.clock)
        grads = graduating(ag, idx, t)
        b = np.full(len(idx), t)
        b[np.searchsorted(idx, grads)] = np.maximum(ag.graduate_at[grads], self.clock)
        kw = {"seed": self.s.seed, "period": self.period.index, "peak": self.peak}
        bought, gone, when = advance(ag, clocks, idx, b, rates, self.multipliers(idx, ag.segment[idx]),
                                     self.s.seasonality, start=self.clock, **kw)
        self.bought.append(bought)
        events: dict[int, list[tuple[float, str]]] = {}
        if len(grads):
            alive = grads[~np.isin(grads, gone)]
            start = np.maximum(ag.graduate_at[alive], self.clock)
            nxt = ag.grad_to[alive]
            bought, gone2, when2 = advance(ag, clocks, alive, np.full(len(alive), t), rates,
                                           self.multipliers(alive, nxt), self.s.seasonality, start=start,
                                           segment=nxt, **kw)
            self.bought.append(bought)
            for i, g in zip(alive.tolist(), start.tolist(), strict=True):
                events[i] = [(g, "graduate")]
            gone, when = np.r_[gone, gone2], np.r_[when, when2]
        for i, d in zip(gone.tolist(), when.tolist(), strict=True):
            events.setdefault(i, []).append((d, "dropout"))
        for i, evs in events.items():
            self.env.process(customer(self.env, ag, i, evs))

    def start_effect(self, eff: Effect) -> None:
        if eff.inactive_days is None and eff.bit < EXPERIMENT_BIT0:
            return  # reaches its segment (or everyone) in every block, new arrivals included
        ag, t = self.agents, self.clock
        last = np.where(np.isnan(ag.last), ag.since, ag.last)
        hit = ag.since <= t
        if eff.segment is not None:
            hit &= ag.segment == eff.segment
        if eff.inactive_days is not None:
            hit &= (t - last) >= eff.inactive_days
        if eff.bit >= EXPERIMENT_BIT0:
            e = (eff.bit - EXPERIMENT_BIT0) // 2
            share = self.s.experiments[e].treatment_share
            treat = keyed.uniform(self.s.seed, "assign", ag.customer_id, e) < share
            ag.flags[hit & treat] |= np.uint64(1) << np.uint64(eff.bit)
            ag.flags[hit & ~treat] |= np.uint64(1) << np.uint64(eff.bit + 1)
        else:
            ag.flags[hit] |= np.uint64(1) << np.uint64(eff.bit)

    def live(self, newcomers: Agents, changes: dict[float, list[tuple[str, object]]]) -> None:
        """Start the month's processes: acquisition, one per change (with what changes), the checkpoint."""
        env, t1 = self.env, self.period.t1
        env.process(_acquisition(env, self, newcomers))
        times = sorted(changes)
        for t, until in zip(times, [*times[1:], t1], strict=True):
            env.process(_change(env, self, t, changes[t], until))
        env.process(_month_end(env, self))

    def purchases(self) -> Purchases:
        return in_customer_order(Purchases.concat(self.bought))


def _acquisition(env: simpy.Environment, world: Month, newcomers: Agents) -> Iterator[simpy.Event]:
    """New customers join the shard; each starts buying at its own signup time."""
    world.agents = world.agents.extend(newcomers)
    yield env.timeout(0)


def _change(env: simpy.Environment, world: Month, t: float, changes: list[tuple[str, object]],
            until: float) -> Iterator[simpy.Event]:
    """At ``t`` the world changes (interventions, experiment assignment, drift steps); then every
    customer wakes once and lives on under the new rules until the next change."""
    yield env.timeout(t - env.now)
    world.clock = env.now
    for kind, what in changes:
        if kind == "effect_start":
            world.start_effect(what)  # type: ignore[arg-type]
    world.draw_until(until)


def _month_end(env: simpy.Environment, world: Month) -> Iterator[simpy.Event]:
    """The checkpoint: every customer process has applied its events of the month by now."""
    yield env.timeout(world.period.t1 - env.now)
    world.clock = env.now


def simulate_shard(s: Scenario, c: TargetScales, shard: int, agents: Agents, period: Period,
                   arrival_ids: np.ndarray, arrival_t: np.ndarray, *, outputs: bool = True,
                   engine: type[Month] = Month) -> tuple[Agents, ShardMonth]:
    """Simulate one shard for one month; returns its new state and the month's arrays.

    With ``outputs=False`` (the targets' pilots) labels and daily metrics are not computed.
    ``engine`` is how the month is lived: batched (this module), or one process per customer
    (:class:`sim.engine.process.ProcessMonth`); the arrays do not depend on it.
    """
    start = float(epoch_day(s.calendar.start_date))
    new_cols: dict[str, np.ndarray] = {}
    history: Purchases | None = None
    made_initial = False  # the initial population is made in this shard's first month
    if period.index == 0 and len(agents) == 0:
        size = s.population.size - acquisition_total(s)
        lo, hi = shard * s.population.shard_size + 1, min((shard + 1) * s.population.shard_size, size)
        if lo <= hi:
            agents, age, seg = initial_agents(s, c, shard, np.arange(lo, hi + 1, dtype=np.int64))
            made_initial = True
            new_cols = {"customer_id": agents.customer_id, "age": age, "segment": seg, "since": agents.since}
            if outputs:
                history = _history(s, c, agents, start)
    newcomers = Agents.empty()
    if len(arrival_ids):
        rng = keyed.generator(s.seed, 2, shard, period.index)
        seg = np.full(len(arrival_ids), NEW_CUSTOMER, np.int8)
        newcomers, age = create_agents(s, arrival_ids, seg, arrival_t, start, rng)
        if s.population.acquisition.first_purchase_at_signup:
            # A candidate at the signup instant is the signup purchase (see customer.advance).
            newcomers.due[:] = 0.0
        add = {"customer_id": arrival_ids, "age": age, "segment": seg, "since": arrival_t}
        new_cols = {k: np.concatenate([new_cols[k], v]) if new_cols else v for k, v in add.items()}
    prev_last = agents.last.copy()
    prev_segment = agents.segment.copy()
    start_state = MonthStart.of(agents, newcomers, initial=made_initial)

    env = simpy.Environment(initial_time=period.t0)
    world = engine(env, s, c, shard, agents, period)
    changes: dict[float, list[tuple[str, object]]] = {period.t0: []}
    for t, kind, obj in breakpoints(s, period):
        changes.setdefault(t, []).append((kind, obj))
    world.live(newcomers, changes)
    env.run()

    purchases = world.purchases()
    if not outputs:
        return world.agents, ShardMonth(shard, new_cols, purchases, {}, None)  # type: ignore[arg-type]
    n_old = len(prev_last)
    daily = daily_partials(
        period, purchases, world.agents,
        prev_last=np.r_[prev_last, np.full(len(world.agents) - n_old, np.nan)],
        prev_segment=np.r_[prev_segment, world.agents.segment[n_old:]],
    )
    labels = label_arrays(world.agents, period, s)
    history_rows = month_changes(s, c, period, start_state, world.agents, purchases) if history_recorded() else {}
    if history is not None:
        # History goes to raw_transactions only: daily metrics stay inside the window.
        purchases = Purchases.concat([history, purchases])
    return world.agents, ShardMonth(shard, new_cols, purchases, labels, daily, history=history_rows)


def _history(s: Scenario, c: TargetScales, agents: Agents, start: float) -> Purchases:
    """Each initial customer's last purchase before the window (its ``last``), as a transaction.

    Labels and 30-day activity read recency off ``last``; writing it makes them recomputable from
    the tables. It looks like any purchase of its segment under the rules in force at the start.
    """
    i = np.flatnonzero(~np.isnan(agents.last))
    rates = rates_at(s, c, start)
    return purchases_at(agents.customer_id[i], agents.last[i], agents.segment[i], agents.spend_scale[i], rates,
                        seed=s.seed, period=0, counter=np.full(len(i), HISTORY_COUNTER, np.int64))


def in_customer_order(p: Purchases) -> Purchases:
    """A month's purchases by (customer, time): not by block, so the month's change points move no sum.

    Each customer's purchases come in time order already (its spans are appended in order), so a
    stable sort by customer alone is the (customer, time) order, and far quicker than a lexsort.
    """
    return p.take(np.argsort(p.customer_id, kind="stable"))
