"""Daily metrics per segment, counted from the event log with bincount (no per-customer tick)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from sim.contracts import ACTIVE_WINDOW_DAYS, SEGMENTS
from sim.model.agents import Agents, Purchases
from sim.model.calendar import Period, epoch_day

__all__ = ["DailyPartials", "daily_partials"]

_NS = len(SEGMENTS)


@dataclass
class DailyPartials:
    """Additive counts over (day of month, segment): shards' partials sum to the month's metrics."""

    transactions: np.ndarray
    revenue: np.ndarray
    purchasing_customers: np.ndarray
    active_customers_30d: np.ndarray
    new_customers: np.ndarray
    dropouts: np.ndarray

    def __add__(self, other: DailyPartials) -> DailyPartials:
        return DailyPartials(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


def _count(day: np.ndarray, seg: np.ndarray, nd: int, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(day * _NS + seg, weights=weights, minlength=nd * _NS)[: nd * _NS].reshape(nd, _NS)


def daily_partials(period: Period, p: Purchases, agents: Agents, *, prev_last: np.ndarray,
                   prev_segment: np.ndarray) -> DailyPartials:
    d0 = epoch_day(period.start)
    nd = epoch_day(period.end) - d0 + 1
    day = np.floor(p.t).astype(np.int64) - d0
    seg = p.segment.astype(np.int64)
    txn = _count(day, seg, nd)
    rev = _count(day, seg, nd, p.amount)
    key = p.customer_id * (nd + 1) + day
    if len(key) < 2 or bool((key[1:] >= key[:-1]).all()):  # one block: already in (customer, time) order
        new_pair = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, bool)
        purchasing = _count(day[new_pair], seg[new_pair], nd)
    else:
        pair, first = np.unique(key, return_index=True)
        purchasing = _count(pair % (nd + 1), seg[first], nd)

    # Active: a purchase keeps its customer active for that day and the 29 after it.
    had = ~np.isnan(prev_last)
    c = np.concatenate([agents.customer_id[had], p.customer_id])
    start = np.concatenate([np.floor(prev_last[had]).astype(np.int64) - d0, day])
    s = np.concatenate([prev_segment[had].astype(np.int64), seg])
    # Earlier purchases come first and each block is in (customer, time) order: a stable sort by
    # customer is enough unless the month had several blocks.
    order = np.argsort(c, kind="stable") if len(key) < 2 or bool((key[1:] >= key[:-1]).all()) else np.lexsort((start, c))
    c, start, s = c[order], start[order], s[order]
    end = start + ACTIVE_WINDOW_DAYS  # exclusive
    same_next = np.r_[c[1:] == c[:-1], False]
    end = np.where(same_next, np.minimum(end, np.r_[start[1:], 0]), end)
    lo, hi = np.clip(start, 0, nd), np.clip(end, 0, nd)
    ok = hi > lo
    size = (nd + 1) * _NS
    diff = np.bincount(lo[ok] * _NS + s[ok], minlength=size) - np.bincount(hi[ok] * _NS + s[ok], minlength=size)
    active = np.cumsum(diff.reshape(nd + 1, _NS), axis=0)[:nd].round().astype(np.int64)

    arrived = (agents.since >= period.t0) & (agents.since < period.t1)
    new = _count(np.floor(agents.since[arrived]).astype(np.int64) - d0,
                 np.full(int(arrived.sum()), SEGMENTS.index("new_customer")), nd)
    gone = (agents.dropout >= period.t0) & (agents.dropout < period.t1)
    drops = _count(np.floor(agents.dropout[gone]).astype(np.int64) - d0, agents.segment[gone].astype(np.int64), nd)
    return DailyPartials(txn, rev, purchasing, active, new, drops)
