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

Equality is by construction, with two details that mirror the batched engine: the thinning bound
is the seasonal peak over the span the shard's customers live in a block (any bound is correct;
this one is the batched engine's), and the random numbers are keyed by the block (the index of
the month's change points), as there. The one step computed differently is dropout: here the
dropout clock's expiry is compared with the next purchase's time, there the cumulative hazard at
the purchase with the clock's draw; they can disagree only within one rounding error of a tie,
which no shipped scenario meets (the tests compare every table and the state bit for bit).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
import simpy

from sim.contracts import NEW_CUSTOMER
from sim.engine.month import GRAD_BLOCK, Month, simulate_shard
from sim.engine.state import RunState, ShardMonth, shard_agents
from sim.model import keyed
from sim.model.agents import Agents, Purchases
from sim.model.calendar import Period, seasonal_bound, seasonal_factor
from sim.model.purchases import graduating, hazard_inverse, unit_gaps
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
    me.wake(max(world.clock, me.since))  # read the rules in force; a fresh dropout clock
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
            me.wake(t, graduated=True)
        elif t == me.candidate:  # a candidate purchase of its renewal process
            k = me.next_candidate()
            if not me.accepts(t, k):  # thinning: kept with probability intensity(t) / bound
                continue
            repeat = me.has_bought()
            me.buy(t, k)  # spend, channel and category
            if repeat and me.leaves(k):  # BG/NBD: a chance of leaving right after a repeat purchase
                me.drop_out(t)
                return
            me.restart_dropout_clock(t)  # recency restarts at each purchase
        else:  # its dropout clock ran out before its next purchase
            me.drop_out(t)
            return


class Customer:
    """A customer as its process sees itself: its row of the shard's arrays and the span it lives in.

    A span runs from one wake-up (the month's start, its signup, a change of the world, its
    graduation) to the next; nothing changes its intensity inside one. Its random numbers are keyed
    by (customer, month, span, counter), as in the batched engine.
    """

    def __init__(self, world: ProcessMonth, i: int) -> None:
        self.w, self.i = world, i
        self.id = int(world.agents.customer_id[i])
        self.since = float(world.agents.since[i])
        self.seed, self.month = world.s.seed, world.period.index
        self.candidate = self.dropout_at = self.graduation = INF

    def _u(self, stream: str, *counters: int) -> float:
        return float(keyed.uniform(self.seed, stream, self.id, self.month, *counters)[0])

    def wake(self, a: float, *, graduated: bool = False) -> None:
        """Start a span at ``a`` under the rules in force: intensity bound, effects, next candidate, dropout clock.

        A graduate's span (from its graduation to the next change) is keyed apart from the block's.
        """
        w, ag, i = self.w, self.w.agents, self.i
        self.a, self.seg, r = a, int(ag.segment[i]), w.rates
        self.span = w.block + (GRAD_BLOCK if graduated else 0)
        g = float(ag.graduate_at[i])
        self.graduation = max(g, w.clock) if self.seg == NEW_CUSTOMER and not math.isnan(g) else INF
        self.decay = float(r.decay_per_year[self.seg]) / 365.0
        m = w._multipliers(np.array([i]), np.array([self.seg], np.int8))
        self.m_int, self.m_haz, self.m_spend = (float(x[0]) for x in m)
        self.bound = w.grad_bound(a) if graduated else w.bound
        self.lam = (float(r.purchase_rate[self.seg]) * float(ag.het[i]) * self.m_int
                    * float(np.exp(-self.decay * (a - float(ag.t0[i])))) * self.bound)
        self.candidate = a + float(ag.due[i]) / self.lam if self.lam > 0 else INF
        self.k = self.n = 0
        last = float(ag.last[i])
        self.restart_dropout_clock(a, anchor=self.since if math.isnan(last) else last)

    def sleep(self, b: float) -> None:
        """End the span at ``b``: keep the operational time left to the next candidate."""
        if self.a < b and self.lam > 0:
            self.w.agents.due[self.i] = (self.candidate - b) * self.lam

    def next_candidate(self) -> int:
        """Move the renewal clock on by one gamma gap; returns the counter of the candidate reached."""
        k = self.k
        shape = self.w.rates.regularity[self.seg:self.seg + 1]
        self.candidate = self.candidate + float(unit_gaps(self.seed, shape, self.id, self.month, self.span, k)[0]) / self.lam
        self.k += 1
        return k

    def accepts(self, t: float, k: int) -> bool:
        ratio = (float(np.exp(-self.decay * (t - self.a))) * float(seasonal_factor(np.array([t]), self.w.s.seasonality)[0])
                 / self.bound)
        # A first candidate exactly at signup (first_purchase_at_signup) is the signup purchase: always kept.
        return self._u("accept", self.span, k) < ratio or (k == 0 and t == self.since and not self.has_bought())

    def has_bought(self) -> bool:
        return not math.isnan(self.w.agents.last[self.i])

    def buy(self, t: float, k: int) -> None:
        w, r, seg = self.w, self.w.rates, self.seg
        z = keyed.normal(self.seed, "amount_a", self.id, self.month, self.span, k)
        median = float(r.spend_median[seg]) * float(w.agents.spend_scale[self.i]) * self.m_spend
        amount = float(np.round(np.clip(median * np.exp(r.spend_sigma[seg] * z), 0.01, 5000.0), 2)[0])
        u, app, store = self._u("channel", self.span, k), float(r.app_share[seg]), float(r.store_share[seg])
        channel = 1 if u < app else 2 if u < app + store else 0
        cdf = r.category_cdf
        category = min(int(np.searchsorted(cdf, self._u("category", self.span, k))), len(cdf) - 1)
        w.agents.last[self.i] = t
        w.bought_one((w.block, self.span, self.i, k), (self.id, t, amount, seg, channel, category))

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
        return self._u("leave", self.span, k) < chance

    def restart_dropout_clock(self, start: float, anchor: float | None = None) -> None:
        """Draw when the dropout hazard, growing with recency since ``anchor``, runs out from ``start``."""
        anchor = start if anchor is None else anchor
        r = self.w.rates
        hz, tau, r0 = float(r.dropout_hazard[self.seg]) * self.m_haz, r.recency_scale, start - anchor
        h0 = hz * (r0 + r0 * r0 / (2 * tau))
        e = -float(np.log(self._u("dropout", self.span, self.n)))
        self.n += 1
        self.dropout_at = anchor + float(hazard_inverse(h0 + e, hz, tau)) if hz > 0 else INF

    def graduate(self) -> None:
        ag = self.w.agents
        ag.segment[self.i] = ag.grad_to[self.i]
        ag.graduate_at[self.i] = np.nan
        self.w.events += 1

    def drop_out(self, t: float) -> None:
        self.w.agents.dropout[self.i] = t
        self.w.events += 1
        # The checkpoint holds the renewal clock at the span's end (as the batched engine's does).
        end = min(self.graduation, self.w.next_change)
        while self.candidate < end:
            self.next_candidate()
        self.sleep(end)


class ProcessMonth(Month):
    """One shard's month as its customers' processes see it: the rules in force, and when they change."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.changed = self.env.event()
        self.next_change = self.period.t0  # no rules are in force before the first change (the month's start)
        self.closed = False
        self.bound, self._grad_from, self.events = 1.0, None, 0
        self._bought: list[tuple[tuple[int, int, int, int], tuple]] = []

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
        for block, (t, until) in enumerate(zip(times, [*times[1:], self.period.t1], strict=True)):
            yield self.env.timeout(t - self.env.now)
            self.clock = self.env.now
            for kind, what in changes[t]:
                if kind == "effect_start":
                    self.start_effect(what)  # type: ignore[arg-type]
            self._rules(block, until)
        yield self.env.timeout(self.period.t1 - self.env.now)
        self.clock, self.closed = self.env.now, True
        self._announce(INF)

    def _rules(self, block: int, until: float) -> None:
        self.block, self.rates, self._grad_from = block, rates_at(self.s, self.c, self.clock), None
        # The thinning bound: the seasonal peak over the span the shard's customers live this block
        # (exactly the batched engine's, so that both draw the same candidates).
        ag = self.agents
        idx = np.flatnonzero(np.isnan(ag.dropout) & (ag.since < until))
        b = np.full(len(idx), until)
        grads = graduating(ag, idx, until)
        b[np.searchsorted(idx, grads)] = np.maximum(ag.graduate_at[grads], self.clock)
        a = np.maximum(self.clock, ag.since[idx])
        live = a < b
        self.bound = seasonal_bound(self.s.seasonality, float(a[live].min()), float(b[live].max())) if live.any() else 1.0
        self._announce(until)

    def _announce(self, until: float) -> None:
        self.next_change = until
        changed, self.changed = self.changed, self.env.event()
        changed.succeed()

    def grad_bound(self, a: float) -> float:
        """The thinning bound of graduates' spans this block: from the block's first graduation on."""
        if self._grad_from is None:
            self._grad_from = a
        return seasonal_bound(self.s.seasonality, self._grad_from, self.next_change)

    def bought_one(self, order: tuple[int, int, int, int], row: tuple) -> None:
        self._bought.append((order, row))
        self.events += 1

    def purchases(self) -> Purchases:
        """The month's purchases in the batched engine's order: by span, then customer, then time."""
        rows = [row for _, row in sorted(self._bought, key=lambda x: x[0])]
        cols = list(zip(*rows, strict=True)) if rows else [()] * 6
        return Purchases(*(np.array(c, dtype=d) for c, d in zip(cols, Purchases.DTYPES, strict=True)))


def process_runner(state: RunState, period: Period, plan: dict[int, tuple[np.ndarray, np.ndarray]], *,
                   outputs: bool = True) -> Iterable[tuple[Agents, ShardMonth]]:
    """Run the shards one after another in this process, each customer as its own SimPy process."""
    for k, (ids, t) in plan.items():
        yield simulate_shard(state.scenario, state.scales, k, shard_agents(state.shards.get(k)), period,
                             ids, t, outputs=outputs, engine=ProcessMonth)
