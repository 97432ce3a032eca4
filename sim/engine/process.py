"""The process engine (``--engine process``): every customer is one SimPy process, literally.

:func:`customer` is what a customer does, step by step. The default engine (:mod:`sim.engine.month`)
draws the same steps for all of a shard's customers at once between two changes of the world; this
one runs them one customer and one event at a time, with the same per-customer math
(:mod:`sim.model`) and the same keyed random numbers, so the two write the same lake
(``tests/engine/test_process_engine.py``). It is the readable definition and the proof; the batched engine
is the fast one.

A customer's process lives for the whole month. Between months its state is checkpointed in the
shard's :class:`~sim.model.agents.Agents` arrays, like the batched engine's: next month's world is
rebuilt from them and each process resumes exactly where it left off (the operational time to its
next candidate purchase, its last purchase, segment and graduation date).

Equality is by construction: the thinning bound is the customer's intensity when its clock was
last set times the month's seasonal peak, the random numbers are keyed by the customer's own
counters, and each customer carries its clocks (next candidate, dropout time) from one wake-up to
the next, re-setting them only when its own parameters change, exactly as the batched engine's
:class:`~sim.model.purchases.Clocks` do (the same functions compute them). The tests compare
every table and the state bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
import simpy

from sim.contracts import NEW_CUSTOMER
from sim.engine.month import Month, in_customer_order, simulate_shard
from sim.engine.state import RunState, ShardMonth, shard_agents
from sim.model import keyed
from sim.model.agents import Agents, Purchases
from sim.model.calendar import Period
from sim.model.purchases import bound_rate, drop_time, hazard_left, thinning_ratio, unit_gaps
from sim.model.rates import rates_at

__all__ = ["Customer", "ProcessMonth", "customer", "process_runner"]

INF = math.inf


def customer(env: simpy.Environment, me: Customer, world: ProcessMonth) -> Iterator[simpy.Event]:
    """One customer's month, from its signup (or where last month left it) to the month's end or its dropout.

    Purchases are a renewal process thinned against the customer's intensity; dropout is a clock
    that runs with recency and restarts at each purchase; whichever comes first happens.
    """
    if world.next_change <= env.now:
        yield world.changed  # the rules of this moment are not in force yet: wait for them
    me.wake(max(world.clock, me.since))  # read the rules in force; the month's first wake-up sets its clocks
    while True:
        t = min(me.graduation, me.candidate, me.dropout_at)
        if t >= world.next_change:  # nothing happens to it before the world changes
            me.sleep(world.next_change)
            yield world.changed  # an intervention, an experiment's assignment, a drift step, the month's end
            if world.closed:
                return  # the month is over: its state is checkpointed, next month resumes it
            me.wake(world.clock)
            continue
        yield env.timeout(max(t - env.now, 0.0))
        if t == me.graduation:  # from new_customer to the segment it was headed for
            me.sleep(t)
            me.graduate()
            me.wake(t)  # its new segment's parameters: its clocks are re-set there
        elif t == me.candidate:  # a candidate purchase of its renewal process
            k = me.next_candidate()
            if not me.accepts(t, k):  # thinning: kept with probability intensity(t) / bound
                continue
            repeat = me.has_bought()
            me.buy(t, k)  # spend, channel and category
            if repeat and me.leaves(k):  # BG/NBD: a chance of leaving right after a repeat purchase
                me.drop_out(t)
                return
            me.restart_dropout_clock(t, k)  # recency restarts at each purchase
        else:  # its dropout clock ran out before its next purchase
            me.drop_out(t)
            return


class Customer:
    """A customer as its process sees itself: its row of the shard's arrays and its two clocks.

    A span runs from one wake-up (the month's start, its signup, a change of the world, its
    graduation) to the next; nothing changes its intensity inside one. Its clocks carry over
    from span to span and are re-set only when its own parameters change. Its random numbers
    are keyed by (customer, month, candidate counter), as in the batched engine.
    """

    def __init__(self, world: ProcessMonth, i: int) -> None:
        self.w, self.i = world, i
        self.id = int(world.agents.customer_id[i])
        self.since = float(world.agents.since[i])
        self.seed, self.month = world.s.seed, world.period.index
        self.candidate = self.dropout_at = self.graduation = INF
        self.woken, self.k = False, 0

    def _u(self, stream: str, *counters: int) -> float:
        return float(keyed.uniform(self.seed, stream, self.id, self.month, *counters)[0])

    def _anchor(self) -> float:
        last = float(self.w.agents.last[self.i])
        return self.since if math.isnan(last) else last

    def wake(self, a: float) -> None:
        """Start a span at ``a`` under the rules in force; re-set a clock only if its parameters changed.

        The renewal clock keeps the operational time left to the next candidate, the dropout
        clock what is left of its threshold; the first wake-up of the month sets both afresh.
        """
        w, ag, i = self.w, self.w.agents, self.i
        g = float(ag.graduate_at[i])
        if int(ag.segment[i]) == NEW_CUSTOMER and g <= a:
            # Graduating at this very instant: its span under the old segment has no length, and
            # the batched engine skips it, so its clocks are set (or re-set) once, in the new one.
            self.graduate()
            g = math.nan
        self.a, self.seg, r = a, int(ag.segment[i]), w.rates
        self.graduation = max(g, w.clock) if self.seg == NEW_CUSTOMER and not math.isnan(g) else INF
        m = w.multipliers(np.array([i]), np.array([self.seg], np.int8))
        self.m_int, self.m_haz, self.m_spend = (float(x[0]) for x in m)
        rate = float(r.purchase_rate[self.seg]) * float(ag.het[i]) * self.m_int
        decay = float(r.decay_per_year[self.seg]) / 365.0
        hz = float(r.dropout_hazard[self.seg]) * self.m_haz
        tau = r.recency_scale
        if not self.woken or rate != self.rate or decay != self.decay:
            due = (self.candidate - a) * self.lam if self.woken and self.lam > 0 else float(ag.due[i])
            ag.due[i] = due
            self.rate, self.decay, self.ref = rate, decay, a
            self.lam = float(bound_rate(np.array([rate]), np.array([decay]), np.array([a]), ag.t0[i:i + 1], w.peak)[0])
            self.candidate = a + due / self.lam if self.lam > 0 else INF
        if not self.woken or hz != self.hz:
            anchor = self._anchor()
            if self.woken:
                e = float(hazard_left(np.array([self.e]), np.array([self.hz]), np.array([anchor]),
                                      np.array([self.e_at]), np.array([a]), tau)[0])
            else:  # a fresh threshold at the month's start
                e = -float(np.log(self._u("dropout", 0)))
            self.hz, self.e, self.e_at = hz, e, a
            self.dropout_at = float(drop_time(np.array([anchor]), np.array([a]), np.array([e]), np.array([hz]), tau)[0])
        self.woken = True

    def sleep(self, b: float) -> None:
        """End the span at ``b``: keep the operational time left to the next candidate."""
        if self.a < b and self.lam > 0:
            self.w.agents.due[self.i] = (self.candidate - b) * self.lam

    def next_candidate(self) -> int:
        """Move the renewal clock on by one gamma gap; returns the counter of the candidate reached."""
        k = self.k
        shape = self.w.rates.regularity[self.seg:self.seg + 1]
        self.candidate = self.candidate + float(unit_gaps(self.seed, shape, self.id, self.month, k)[0]) / self.lam
        self.k += 1
        return k

    def accepts(self, t: float, k: int) -> bool:
        ratio = float(thinning_ratio(np.array([t]), np.array([self.ref]), np.array([self.decay]), self.w.s.seasonality,
                                     self.w.peak)[0])
        # A first candidate exactly at signup (first_purchase_at_signup) is the signup purchase: always kept.
        return self._u("accept", k) < ratio or (k == 0 and t == self.since and not self.has_bought())

    def has_bought(self) -> bool:
        return not math.isnan(self.w.agents.last[self.i])

    def buy(self, t: float, k: int) -> None:
        w, r, seg = self.w, self.w.rates, self.seg
        z = keyed.normal(self.seed, "amount_a", self.id, self.month, k)
        median = float(r.spend_median[seg]) * float(w.agents.spend_scale[self.i]) * self.m_spend
        amount = float(np.round(np.clip(median * np.exp(r.spend_sigma[seg] * z), 0.01, 5000.0), 2)[0])
        u, app, store = self._u("channel", k), float(r.app_share[seg]), float(r.store_share[seg])
        channel = 1 if u < app else 2 if u < app + store else 0
        cdf = r.category_cdf
        category = min(int(np.searchsorted(cdf, self._u("category", k))), len(cdf) - 1)
        w.agents.last[self.i] = t
        w.bought_one((self.id, t, amount, seg, channel, category))

    def leaves(self, k: int) -> bool:
        r = self.w.rates
        if r.dropout_per_purchase is None or not r.dropout_per_purchase.any():
            return False
        chance = min(float(r.dropout_per_purchase[self.seg]) * self.m_haz, 1.0)
        if r.dropout_concentration is not None:
            from scipy.special import betaincinv

            c, m = r.dropout_concentration, float(np.clip(chance, 1e-12, 1.0 - 1e-12))
            rank = keyed.uniform(self.seed, "leave_rank", self.id)  # its own, for life: it keeps its rank
            chance = float(betaincinv(c * m, c * (1.0 - m), rank)[0]) if chance > 0 else 0.0
        return self._u("leave", k) < chance

    def restart_dropout_clock(self, t: float, k: int) -> None:
        """A purchase (candidate ``k``) at ``t`` restarts recency: a fresh threshold, keyed by the purchase."""
        self.e, self.e_at = -float(np.log(self._u("dropout", k + 1))), t
        self.dropout_at = float(drop_time(np.array([t]), np.array([t]), np.array([self.e]), np.array([self.hz]),
                                          self.w.rates.recency_scale)[0])

    def graduate(self) -> None:
        ag = self.w.agents
        ag.segment[self.i] = ag.grad_to[self.i]
        ag.graduate_at[self.i] = np.nan
        self.w.events += 1

    def drop_out(self, t: float) -> None:
        self.w.agents.dropout[self.i] = t
        self.w.agents.due[self.i] = np.nan  # no next candidate: it has left
        self.w.events += 1


class ProcessMonth(Month):
    """One shard's month as its customers' processes see it: the rules in force, and when they change."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.changed = self.env.event()
        self.next_change = self.period.t0  # no rules are in force before the first change (the month's start)
        self.closed = False
        self.events = 0
        self._bought: list[tuple] = []

    def live(self, newcomers: Agents, changes: dict[float, list[tuple[str, object]]]) -> None:
        """Start the timeline, every live customer's process, and acquisition (newcomers at their signups)."""
        first = len(self.agents)
        self.agents = self.agents.extend(newcomers)
        self.env.process(self._timeline(changes))
        for i in np.flatnonzero(np.isnan(self.agents.dropout[:first])).tolist():
            self.env.process(customer(self.env, Customer(self, i), self))
        self.env.process(self._acquisition(first))

    def _acquisition(self, first: int) -> Iterator[simpy.Event]:
        since = self.agents.since
        for i in (first + np.argsort(since[first:], kind="stable")).tolist():
            yield self.env.timeout(since[i] - self.env.now)
            self.events += 1
            self.env.process(customer(self.env, Customer(self, i), self))

    def _timeline(self, changes: dict[float, list[tuple[str, object]]]) -> Iterator[simpy.Event]:
        """The world changes at its moments (the month's start first) and tells every customer."""
        times = sorted(changes)
        for t, until in zip(times, [*times[1:], self.period.t1], strict=True):
            yield self.env.timeout(t - self.env.now)
            self.clock = self.env.now
            for kind, what in changes[t]:
                if kind == "effect_start":
                    self.start_effect(what)  # type: ignore[arg-type]
            self.rates = rates_at(self.s, self.c, self.clock)
            self._announce(until)
        yield self.env.timeout(self.period.t1 - self.env.now)
        self.clock, self.closed = self.env.now, True
        self._announce(INF)

    def _announce(self, until: float) -> None:
        self.next_change = until
        changed, self.changed = self.changed, self.env.event()
        changed.succeed()

    def bought_one(self, row: tuple) -> None:
        self._bought.append(row)
        self.events += 1

    def purchases(self) -> Purchases:
        """The month's purchases in the batched engine's order: by customer, then time."""
        cols = list(zip(*self._bought, strict=True)) if self._bought else [()] * 6
        return in_customer_order(Purchases(*(np.array(c, dtype=d) for c, d in zip(cols, Purchases.DTYPES, strict=True))))


def process_runner(state: RunState, period: Period, plan: dict[int, tuple[np.ndarray, np.ndarray]], *,
                   outputs: bool = True) -> Iterable[tuple[Agents, ShardMonth]]:
    """Run the shards one after another in this process, each customer as its own SimPy process."""
    for k, (ids, t) in plan.items():
        yield simulate_shard(state.scenario, state.scales, k, shard_agents(state.shards.get(k)), period,
                             ids, t, outputs=outputs, engine=ProcessMonth)
