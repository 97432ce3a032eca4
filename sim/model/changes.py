"""Customers' attributes changing over time: segment, loyalty tier, address and e-mail.

One shard-month's ``customer_history`` rows are a pure function of the month's start state, its
end state and its purchases, so both engines (which leave the same state and purchases) write
the same rows, and a month made in a resumed run is the month of a straight one.

* **segment**: the engine's graduation (``new_customer`` to the segment drawn at signup from the
  acquisition mix in force then), at the time the engine applied it.
* **tier**: reviewed at each month's close (effective from the first instant of the next month)
  on the customer's trailing spend, an exponentially decayed sum of its purchases scaled to
  currency per month (a steady spend of m a month converges to m); a tier is entered at its
  threshold and kept down to ``tier_downgrade_ratio`` of it.
* **address** and **email**: one Poisson clock per customer at the two yearly rates' sum, only
  while the customer is live: the state carries the exposure left until the next change (drawn
  at signup and after each change), so a month costs a subtraction per customer and a draw per
  change, and a customer may change more than once in a month. The new address and e-mail are
  keyed by (customer, change counter), so the state holds counters, not strings.

Randomness is keyed by (seed, customer, month), (seed, customer, version) or (seed, customer,
change counter): no global state.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from sim.contracts import CHANGE_TYPES, NEW_CUSTOMER, TIERS
from sim.model import keyed
from sim.model.agents import Agents, Purchases
from sim.model.calendar import Period
from sim.model.population import DAYS_PER_MONTH
from sim.model.rates import TargetScales, rates_at
from sim.scenario import Scenario

__all__ = ["BENCH_NO_HISTORY_ENV", "HISTORY_FIELDS", "MonthStart", "history_recorded", "month_changes"]

SIGNUP, SEGMENT, TIER, ADDRESS, EMAIL = (CHANGE_TYPES.index(k) for k in CHANGE_TYPES)
_US_PER_DAY = 86_400_000_000
# The baseline of the benchmark's history cost (sim.bench_history) runs with this set to "1" in its
# (fresh) process: the engine then skips month_changes and the batch and sinks the customer_history
# table, so the history is timed against the same job without it. Bench-only, not a scenario key:
# such a lake lacks a table. An environment variable, so a benchmark's worker processes see it too.
BENCH_NO_HISTORY_ENV = "_CHURNSIM_BENCH_NO_HISTORY"
HISTORY_FIELDS = ("customer_id", "valid_from_us", "version", "change_type", "segment", "tier", "moves", "emails",
                  "recorded_us")


@dataclass
class MonthStart:
    """What the month's changes need from its start (every agent of the month, newcomers included)."""

    segment: np.ndarray  # int8, segment at the month's start (new_customer for newcomers)
    graduate_at: np.ndarray  # float64, graduation time at the start
    joined: np.ndarray  # bool, signed up into the state this month: its version 1 is written now
    initial: np.ndarray  # bool, of the initial population (made this month): its tier starts from its spend

    @classmethod
    def of(cls, agents: Agents, newcomers: Agents, *, initial: bool) -> MonthStart:
        n_old, n_new = len(agents), len(newcomers)
        joined = np.r_[np.full(n_old, initial), np.ones(n_new, bool)]
        return cls(np.r_[agents.segment, newcomers.segment], np.r_[agents.graduate_at, newcomers.graduate_at],
                   joined, np.r_[np.full(n_old, initial), np.zeros(n_new, bool)])


def history_recorded() -> bool:
    """Whether customer_history is made (always, but in the benchmark's baseline: BENCH_NO_HISTORY_ENV)."""
    return os.environ.get(BENCH_NO_HISTORY_ENV) != "1"


def _tier_up(spend: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many thresholds ``spend`` reaches (three comparisons beat a searchsorted here)."""
    up = np.zeros(len(spend), np.int8)
    for x in thresholds:
        up += spend >= x
    return up


def _review(tier: np.ndarray, spend: np.ndarray, thresholds: np.ndarray, ratio: float) -> np.ndarray:
    """The tier after a review: up to the highest threshold reached, else down to the highest one kept."""
    up = _tier_up(spend, thresholds)
    kept = _tier_up(spend, thresholds * ratio)
    return np.where(up > tier, up, np.minimum(tier, kept)).astype(np.int8)


def _in_group(idx: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Running sum of ``x`` within runs of equal ``idx`` (rows sorted by ``idx``), inclusive."""
    cs = np.cumsum(x)
    first = np.r_[True, idx[1:] != idx[:-1]]
    base = np.where(first, cs - x, 0)
    return cs - np.maximum.accumulate(base)


def _moves_and_emails(s: Scenario, ag: Agents, period: Period,
                      joined: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This month's moves and e-mail changes: (customer index, change type, time), live customers only.

    One Poisson clock at the two rates' sum. Each customer carries the exposure left until its
    next change (``ag.change_clock``): a unit exponential keyed by (customer, its changes so far),
    drawn at signup (``joined``) and after each change, and spent at the rates in force, so a
    month costs one subtraction per live customer and a draw per change. A new scenario's rates
    apply from its first month, and two or more changes in a month happen at their rate (an exact
    Poisson process). Which of the two a change is, by their rates, is a keyed draw per change.
    Updates ``ag.change_clock``.
    """
    ch = s.population.changes
    rate = ch.move_rate_per_year + ch.email_change_rate_per_year
    seed, cid, clock = s.seed, ag.customer_id, ag.change_clock

    def done(i: np.ndarray) -> np.ndarray:  # changes so far: key the clock's next draw
        return ag.moves[i].astype(np.int64) + ag.emails[i]

    new = np.flatnonzero(joined)
    if len(new):
        clock[new] = -np.log(keyed.uniform(seed, "change_clock", cid[new], done(new)))
    none = np.empty(0, np.int64), np.empty(0, np.int8), np.empty(0)
    if rate <= 0 or not len(ag):
        return none
    per_day = rate / 365.25
    # Whole-array arithmetic, no gather: live from lo until the month's end or the dropout (NaN: none).
    lo = np.maximum(period.t0, ag.since)
    end = np.fmin(ag.dropout, period.t1)
    spend = np.maximum(end - lo, 0.0)
    spend *= per_day
    who = np.flatnonzero(clock < spend)
    t, k = lo[who] + clock[who] / per_day, done(who)
    clock -= spend  # (the changers' clocks are drawn again below)
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    while len(who):  # the few who changed: their next change, until it falls after the month
        out.append((who, t, k))
        k = k + 1
        e = -np.log(keyed.uniform(seed, "change_clock", cid[who], k))
        nxt = t + e / per_day
        again = nxt < end[who]
        rest = ~again
        clock[who[rest]] = e[rest] - (end[who[rest]] - t[rest]) * per_day
        who, t, k = who[again], nxt[again], k[again]
    if not out:
        return none
    idx, t, k = (np.concatenate([o[i] for o in out]) for i in range(3))
    is_email = keyed.uniform(seed, "change_kind", cid[idx], k) < ch.email_change_rate_per_year / rate
    return idx, np.where(is_email, EMAIL, ADDRESS).astype(np.int8), t


def month_changes(s: Scenario, c: TargetScales, period: Period, start: MonthStart, ag: Agents,
                  purchases: Purchases) -> dict[str, np.ndarray]:
    """The shard-month's history rows (by customer, then time); updates ``ag``'s counters, tier and spend.

    ``ag`` is the state at the month's end; ``purchases`` the month's (in customer order).
    """
    ch = s.population.changes
    n, t0, t1 = len(ag), period.t0, period.t1
    thresholds = np.array([ch.tier_thresholds[k] for k in TIERS[1:]], float)
    if start.initial.any():  # customers of long standing: trailing spend at its expected level
        i = np.flatnonzero(start.initial)
        r, seg = rates_at(s, c, t0), ag.segment[i]
        per_month = r.purchase_rate[seg] * ag.het[i] * DAYS_PER_MONTH
        ag.spend[i] = per_month * r.spend_median[seg] * ag.spend_scale[i] * np.exp(r.spend_sigma[seg] ** 2 / 2)
        ag.tier[i] = _tier_up(ag.spend[i], thresholds)
    # Tier review at the month's close.
    half_life = ch.spend_half_life_months * DAYS_PER_MONTH
    ids = ag.customer_id
    if n and ids[-1] - ids[0] == n - 1:  # a shard's ids are one contiguous range (shards are id ranges)
        pos = purchases.customer_id - ids[0]
    else:
        pos = np.searchsorted(ids, purchases.customer_id)
    weight = purchases.amount * np.exp2(-(t1 - purchases.t) / half_life)
    spend = ag.spend * math.exp2(-(t1 - t0) / half_life)
    spend += np.bincount(pos, weights=weight, minlength=n) * (math.log(2) / ch.spend_half_life_months)
    old_tier = ag.tier.copy()
    new_tier = _review(old_tier, spend, thresholds, ch.tier_downgrade_ratio)
    ag.spend[:], ag.tier[:] = spend, new_tier

    joined = np.flatnonzero(start.joined)
    grads = np.flatnonzero((start.segment == NEW_CUSTOMER) & (ag.segment != NEW_CUSTOMER))
    grad_t = np.maximum(np.maximum(start.graduate_at[grads], t0), ag.since[grads])
    tiered = np.flatnonzero(new_tier != old_tier)
    moved, moved_kind, moved_t = _moves_and_emails(s, ag, period, start.joined)
    parts = [(joined, SIGNUP, ag.since[joined]), (grads, SEGMENT, grad_t), (tiered, TIER, np.full(len(tiered), t1))]
    idx = np.concatenate([p[0] for p in parts] + [moved])
    kind = np.concatenate([np.full(len(p[0]), p[1], np.int8) for p in parts] + [moved_kind])
    t = np.concatenate([p[2] for p in parts] + [moved_t])
    order = np.lexsort((kind, t, idx))
    idx, kind, t = idx[order], kind[order], t[order]

    us = np.round(t * _US_PER_DAY).astype(np.int64)
    same = np.flatnonzero((idx[1:] == idx[:-1]) & (us[1:] <= us[:-1])) + 1
    while len(same):  # (customer, valid_from) is a key: a change in the same microsecond moves on by one
        us[same] = us[same - 1] + 1
        same = np.flatnonzero((idx[1:] == idx[:-1]) & (us[1:] <= us[:-1])) + 1
    rank = _in_group(idx, np.ones(len(idx), np.int64))
    version = ag.version[idx].astype(np.int64) + rank
    after = {k: _in_group(idx, kind == k) for k in (SEGMENT, TIER, ADDRESS, EMAIL)}
    segment = np.where(after[SEGMENT] > 0, ag.segment[idx], start.segment[idx]).astype(np.int8)
    tier = np.where(after[TIER] > 0, new_tier[idx], old_tier[idx]).astype(np.int8)
    moves = ag.moves[idx] + after[ADDRESS]
    emails = ag.emails[idx] + after[EMAIL]
    recorded = np.full(len(idx), t1)
    if ch.late_share > 0:
        changed = np.flatnonzero(kind != SIGNUP)  # version 1 arrives with raw_customers
        u = keyed.uniform(s.seed, "late", ag.customer_id[idx[changed]], version[changed])
        late = u < ch.late_share
        recorded[changed[late]] += u[late] / ch.late_share * ch.late_max_days
    ag.version += np.bincount(idx, minlength=n).astype(np.int32)
    ag.moves += np.bincount(idx, weights=kind == ADDRESS, minlength=n).astype(np.int16)
    ag.emails += np.bincount(idx, weights=kind == EMAIL, minlength=n).astype(np.int16)
    return {"customer_id": ag.customer_id[idx], "valid_from_us": us, "version": version.astype(np.int32),
            "change_type": kind, "segment": segment, "tier": tier, "moves": moves.astype(np.int16),
            "emails": emails.astype(np.int16), "recorded_us": np.round(recorded * _US_PER_DAY).astype(np.int64)}
