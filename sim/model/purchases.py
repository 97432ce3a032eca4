"""How a customer buys between two events of the timeline, drawn for a shard's customers at once.

Each customer is an agent with its own state (segment, intensity, last purchase, lifecycle).
Between two events that can change intensity (an intervention, a drift step, the month end, its
own graduation) nothing does, so a customer's purchases in that span are drawn in one wake-up
(event skipping), for all customers of a shard at once. Purchases follow a non-homogeneous
Poisson process (thinning against a bound); dropout is a competing hazard that grows with
recency and restarts at each purchase, and, where a segment sets it, a chance of leaving right
after each repeat purchase (BG/NBD's dropout); a customer who drops out buys no more.

Common random numbers. Every draw is keyed by (customer, month, the customer's own counter) and
nothing else: ``k`` counts the customer's candidate purchases since the month began (or since it
joined), and candidate ``k``'s gap, thinning draw, spend, channel, category, chance of leaving and
the dropout clock restarted by its purchase are all keyed by ``k``. A customer's two clocks (the
next candidate, the dropout time) are carried from one wake-up to the next as times, and re-set
only when its own parameters change (:class:`Clocks`): a change of the world that leaves a
customer's intensity and hazard as they were leaves its draws and its rows exactly as they were,
so two scenarios share their random numbers wherever they agree. For that the thinning bound must
not depend on the month's change points either: it is the customer's intensity at the moment its
clock was last set (month start, signup, or a change of its own parameters) times the seasonal
peak of the whole month, so the thinning ratio is decay since then times season over that peak.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from sim.contracts import AMOUNT_CAP, NEW_CUSTOMER
from sim.model import keyed
from sim.model.agents import Agents, Purchases
from sim.model.calendar import seasonal_factor
from sim.model.rates import Rates
from sim.scenario import Seasonality

__all__ = ["Clocks", "advance", "bound_rate", "drop_time", "graduating", "hazard_inverse", "hazard_left",
           "purchases_at", "thinning_ratio", "unit_gaps"]

HISTORY_COUNTER = 1 << 40  # keys the initial customers' last purchase before the window: no candidate reaches it


def unit_gaps(seed: int, shape: np.ndarray, *key: np.ndarray | int) -> np.ndarray:
    """Gamma(shape, 1/shape) gaps (mean 1): exponential at shape 1, else Wilson-Hilferty."""
    z = keyed.normal(seed, "gap", *key)
    wh = np.maximum(1.0 - 1.0 / (9.0 * shape) + z / (3.0 * np.sqrt(shape)), 0.05) ** 3
    u = keyed.uniform(seed, "gap", *key, 2)
    return np.where(shape == 1.0, -np.log(u), wh)


def hazard_inverse(y: np.ndarray, hz: np.ndarray, tau: float) -> np.ndarray:
    """Recency r with H(r) = y, where H(r) = hz * (r + r^2 / (2 tau))."""
    return tau * (np.sqrt(1.0 + 2.0 * y / (hz * tau)) - 1.0)


def _h(r: np.ndarray, tau: float) -> np.ndarray:
    """The cumulative dropout hazard per unit of hazard at recency ``r``."""
    return r + r * r / (2 * tau)


def drop_time(anchor: np.ndarray, start: np.ndarray, e: np.ndarray, hz: np.ndarray, tau: float) -> np.ndarray:
    """When hazard ``hz`` (growing with recency since ``anchor``) spends ``e`` from ``start`` (inf at hz 0)."""
    hz = np.asarray(hz, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = anchor + hazard_inverse(hz * _h(start - anchor, tau) + e, hz, tau)
    return np.where(hz > 0, t, np.inf)


def hazard_left(e: np.ndarray, hz: np.ndarray, anchor: np.ndarray, since: np.ndarray, until: np.ndarray,
                tau: float) -> np.ndarray:
    """What is left of threshold ``e`` after hazard ``hz`` ran from ``since`` to ``until``."""
    return e - hz * (_h(until - anchor, tau) - _h(since - anchor, tau))


def bound_rate(rate: np.ndarray, decay: np.ndarray, a: np.ndarray, t0: np.ndarray, peak: float) -> np.ndarray:
    """The thinning bound of a clock set at ``a``: the intensity there at the month's seasonal peak."""
    return rate * np.exp(-decay * (a - t0)) * peak


def thinning_ratio(t: np.ndarray, ref: np.ndarray, decay: np.ndarray, season: Seasonality, peak: float) -> np.ndarray:
    """Intensity at ``t`` over the bound of a clock set at ``ref``."""
    return np.exp(-decay * (t - ref)) * seasonal_factor(t, season) / peak


@dataclass
class Clocks:
    """A shard's customers' clocks within one month, carried from one wake-up to the next.

    ``rate``/``decay``/``hz`` are the parameters the clocks were set under; ``ref`` and ``lam``
    the time and bound of the candidate clock, ``cur`` its next candidate, ``k`` the candidate
    counter; ``e`` the dropout threshold left at time ``e_at`` and ``drop_at`` when it runs out.
    """

    woken: np.ndarray
    rate: np.ndarray
    decay: np.ndarray
    hz: np.ndarray
    ref: np.ndarray
    lam: np.ndarray
    cur: np.ndarray
    k: np.ndarray
    e: np.ndarray
    e_at: np.ndarray
    drop_at: np.ndarray

    @classmethod
    def of(cls, n: int) -> Clocks:
        return cls(np.zeros(n, bool), *(np.full(n, np.nan) for _ in range(6)), np.zeros(n, np.int64),
                   *(np.full(n, np.nan) for _ in range(3)))

    def fit(self, n: int) -> Clocks:
        """These clocks for ``n`` customers (newcomers appended, not yet woken)."""
        if n == len(self.woken):
            return self
        more = Clocks.of(n - len(self.woken))
        return Clocks(*(np.concatenate([getattr(self, f.name), getattr(more, f.name)]) for f in fields(self)))


def wake(agents: Agents, clocks: Clocks, idx: np.ndarray, a: np.ndarray, rate: np.ndarray, decay: np.ndarray,
         hz: np.ndarray, tau: float, peak: float, *, seed: int, period: int) -> None:
    """Customers ``idx`` wake at ``a`` under (rate, decay, hazard): set their clocks if new this month or changed.

    A customer whose parameters are unchanged keeps its clocks bit for bit. One whose intensity
    changed keeps the operational time left to its next candidate; one whose hazard changed keeps
    what is left of its dropout threshold.
    """
    new = ~clocks.woken[idx]
    moved = new | (rate != clocks.rate[idx]) | (decay != clocks.decay[idx])
    if moved.any():
        j, aj = idx[moved], a[moved]
        lam0, cur0 = clocks.lam[j], clocks.cur[j]
        with np.errstate(invalid="ignore"):
            due = np.where(new[moved] | ~(lam0 > 0), agents.due[j], (cur0 - aj) * lam0)
        lam = bound_rate(rate[moved], decay[moved], aj, agents.t0[j], peak)
        agents.due[j] = due
        clocks.rate[j], clocks.decay[j], clocks.ref[j], clocks.lam[j] = rate[moved], decay[moved], aj, lam
        with np.errstate(divide="ignore"):
            clocks.cur[j] = np.where(lam > 0, aj + due / lam, np.inf)
        clocks.k[j[new[moved]]] = 0
    shifted = new | (hz != clocks.hz[idx])
    if shifted.any():
        j, aj, n = idx[shifted], a[shifted], new[shifted]
        last = agents.last[j]
        anchor = np.where(np.isnan(last), agents.since[j], last)
        e = np.empty(len(j))
        # A fresh threshold at the month's start (memoryless: conditional on surviving to it).
        e[n] = -np.log(keyed.uniform(seed, "dropout", agents.customer_id[j[n]], period, 0))
        o = ~n
        e[o] = hazard_left(clocks.e[j[o]], clocks.hz[j[o]], anchor[o], clocks.e_at[j[o]], aj[o], tau)
        clocks.hz[j], clocks.e[j], clocks.e_at[j] = hz[shifted], e, aj
        clocks.drop_at[j] = drop_time(anchor, aj, e, hz[shifted], tau)
    clocks.woken[idx] = True


def advance(
    agents: Agents,
    clocks: Clocks,
    idx: np.ndarray,
    b: np.ndarray,
    rates: Rates,
    mult: tuple[np.ndarray, np.ndarray, np.ndarray],
    season: Seasonality,
    *,
    seed: int,
    period: int,
    peak: float,
    start: float | np.ndarray,
    segment: np.ndarray | None = None,
) -> tuple[Purchases, np.ndarray, np.ndarray]:
    """Draw the purchases of customers ``idx`` from ``max(start, since)`` to ``b`` (exclusive).

    One wake-up per customer for the whole span: nothing changes its intensity before ``b``.
    ``mult`` holds per-customer (intensity, hazard, spend) multipliers of the active effects;
    ``segment`` overrides the customers' segments (a graduate's next one); ``peak`` is the month's
    seasonal peak. Updates the clocks and the purchase clock (``last``, ``due``) in place and
    returns the purchases made, and which customers drop out and when: the customer's own
    process applies that at its time.
    """
    a = np.maximum(start, agents.since[idx])
    live = (a < b) & np.isnan(agents.dropout[idx])
    idx, a, b = idx[live], a[live], b[live]
    m_int, m_haz, m_spend = (m[live] for m in mult)
    n = len(idx)
    cid = agents.customer_id[idx]
    seg = (agents.segment[idx] if segment is None else segment[live]).astype(np.intp)
    tau = rates.recency_scale
    hz = rates.dropout_hazard[seg] * m_haz
    wake(agents, clocks, idx, a, rates.purchase_rate[seg] * agents.het[idx] * m_int,
         rates.decay_per_year[seg] / 365.0, hz, tau, peak, seed=seed, period=period)

    # Candidate points: a renewal process at the clock's bound (gamma gaps: shape 1 is Poisson,
    # higher is more regular), carried across wake-ups as the next candidate's time.
    shape = rates.regularity[seg]
    cur, k, lam = clocks.cur[idx], clocks.k[idx], clocks.lam[idx]
    active = np.flatnonzero(cur < b)
    rounds_i, rounds_t, rounds_k = [], [], []
    while active.size:
        rounds_i.append(active)
        rounds_t.append(cur[active])
        rounds_k.append(k[active])
        cur[active] += unit_gaps(seed, shape[active], cid[active], period, k[active]) / lam[active]
        k[active] += 1
        active = active[cur[active] < b[active]]
    clocks.cur[idx], clocks.k[idx] = cur, k
    has_rate = lam > 0
    agents.due[idx[has_rate]] = (cur[has_rate] - b[has_rate]) * lam[has_rate]
    ci = np.concatenate(rounds_i) if rounds_i else np.empty(0, np.intp)
    ct = np.concatenate(rounds_t) if rounds_t else np.empty(0)
    ck = np.concatenate(rounds_k) if rounds_k else np.empty(0, np.int64)
    # Thinning: keep a candidate with probability lambda(t) / bound.
    ratio = thinning_ratio(ct, clocks.ref[idx][ci], clocks.decay[idx][ci], season, peak)
    keep = keyed.uniform(seed, "accept", cid[ci], period, ck) < ratio
    # A first candidate exactly at signup, before any purchase, exists only when the scenario makes
    # the first purchase the signup (due 0): it is always kept.
    keep |= (ck == 0) & (ct == agents.since[idx][ci]) & np.isnan(agents.last[idx][ci])
    order = np.argsort(ci[keep], kind="stable")
    pi, pt, pk = ci[keep][order], ct[keep][order], ck[keep][order]

    # Dropout: the carried clock from the wake-up, then one restarted by each purchase (keyed by it).
    e_p = -np.log(keyed.uniform(seed, "dropout", cid[pi], period, pk + 1))
    drop_p = drop_time(pt, pt, e_p, hz[pi], tau)
    s_cust = np.concatenate([np.arange(n), pi])
    s_start = np.concatenate([a, pt])
    s_drop = np.concatenate([clocks.drop_at[idx], drop_p])
    s_order = np.lexsort((s_start, s_cust))
    s_cust, s_start, s_drop = s_cust[s_order], s_start[s_order], s_drop[s_order]
    first = np.ones(len(s_cust), bool)
    first[1:] = s_cust[1:] != s_cust[:-1]
    s_end = np.empty_like(s_start)
    s_end[:-1] = s_start[1:]
    last_of = np.ones(len(s_cust), bool)
    last_of[:-1] = first[1:]
    s_end[last_of] = b[s_cust[last_of]]
    hit = s_drop < s_end
    drop_t = np.full(n, np.nan)
    if hit.any():
        hs = np.flatnonzero(hit)
        firsts = hs[np.r_[True, s_cust[hs][1:] != s_cust[hs][:-1]]]
        drop_t[s_cust[firsts]] = s_drop[firsts]
    leave_t = _leave_after_purchase(agents, idx, pi, pt, pk, seg, rates, m_haz, cid, seed=seed, period=period)
    # NaN compares False: customers who stay keep everything; one who leaves keeps that purchase.
    kept = ~(pt >= drop_t[pi])
    if leave_t is not None:
        kept &= ~(pt > leave_t[pi])
        drop_t = np.fmin(drop_t, leave_t)
    pi, pt, pk, drop_p, e_p = pi[kept], pt[kept], pk[kept], drop_p[kept], e_p[kept]
    gone = np.flatnonzero(~np.isnan(drop_t))
    if len(pi):
        ends = np.r_[pi[1:] != pi[:-1], True]
        j = idx[pi[ends]]
        agents.last[j] = pt[ends]
        clocks.e[j], clocks.e_at[j], clocks.drop_at[j] = e_p[ends], pt[ends], drop_p[ends]
    agents.due[idx[gone]] = np.nan  # no next candidate: it has left

    pc, ps = cid[pi], seg[pi]
    bought = purchases_at(pc, pt, ps, agents.spend_scale[idx[pi]] * m_spend[pi], rates, seed=seed, period=period,
                          counter=pk)
    return bought, idx[gone], drop_t[gone]


def purchases_at(cid: np.ndarray, t: np.ndarray, seg: np.ndarray, spend_scale: np.ndarray, rates: Rates, *,
                 seed: int, period: int, counter: np.ndarray) -> Purchases:
    """What each purchase looks like (amount, channel, category), keyed by (customer, period, counter)."""
    ps = np.asarray(seg, np.intp)
    z = keyed.normal(seed, "amount_a", cid, period, counter)
    median = rates.spend_median[ps] * spend_scale
    amount = np.round(np.clip(median * np.exp(rates.spend_sigma[ps] * z), 0.01, AMOUNT_CAP), 2)
    uch = keyed.uniform(seed, "channel", cid, period, counter)
    app, store = rates.app_share[ps], rates.store_share[ps]
    channel = np.where(uch < app, 1, np.where(uch < app + store, 2, 0)).astype(np.int8)
    ucat = keyed.uniform(seed, "category", cid, period, counter)
    cdf = rates.category_cdf
    category = np.minimum(np.searchsorted(cdf, ucat), len(cdf) - 1).astype(np.int8)
    return Purchases(cid, t, amount, ps.astype(np.int8), channel, category)


def _leave_after_purchase(agents: Agents, idx: np.ndarray, pi: np.ndarray, pt: np.ndarray, pk: np.ndarray,
                          seg: np.ndarray, rates: Rates, m_haz: np.ndarray, cid: np.ndarray, *, seed: int,
                          period: int) -> np.ndarray | None:
    """Per customer (of ``idx``): the time of the repeat purchase after which it leaves (NaN: none).

    ``None`` when no segment sets ``dropout_per_purchase``, so scenarios without it draw nothing more.
    A customer's chance is its Beta quantile at one keyed uniform of its own, so it keeps its rank
    among customers whatever scales the mean (targets, drifts, interventions).
    """
    if rates.dropout_per_purchase is None or not rates.dropout_per_purchase.any():
        return None
    mean = np.minimum(rates.dropout_per_purchase[seg] * m_haz, 1.0)
    chance = mean[pi]
    if rates.dropout_concentration is not None:
        from scipy.special import betaincinv

        c, m = rates.dropout_concentration, np.clip(chance, 1e-12, 1.0 - 1e-12)
        chance = np.where(chance > 0, betaincinv(c * m, c * (1.0 - m), keyed.uniform(seed, "leave_rank", cid[pi])), 0.0)
    # BG/NBD's timing: the first purchase ever cannot be followed by leaving, only repeats can.
    first_ever = np.r_[True, pi[1:] != pi[:-1]] & np.isnan(agents.last[idx][pi]) if len(pi) else np.empty(0, bool)
    go = ~first_ever & (keyed.uniform(seed, "leave", cid[pi], period, pk) < chance)
    leave_t = np.full(len(idx), np.nan)
    hs = np.flatnonzero(go)
    if hs.size:
        firsts = hs[np.r_[True, pi[hs][1:] != pi[hs][:-1]]]
        leave_t[pi[firsts]] = pt[firsts]
    return leave_t


def graduating(agents: Agents, idx: np.ndarray, t1: float) -> np.ndarray:
    """Customers among ``idx`` who graduate from ``new_customer`` before ``t1``."""
    g = agents.graduate_at[idx]
    return idx[(agents.segment[idx] == NEW_CUSTOMER) & (g < t1)]
