"""How a customer buys between two events of the timeline, drawn for a shard's customers at once.

Each customer is an agent with its own state (segment, intensity, last purchase, lifecycle).
Between two events that can change intensity (an intervention, a drift step, the month end, its
own graduation) nothing does, so a customer's purchases in that span are drawn in one wake-up
(event skipping), for all customers of a shard at once. Purchases follow a non-homogeneous
Poisson process (thinning against a bound); dropout is a competing hazard that grows with
recency and restarts at each purchase, and, where a segment sets it, a chance of leaving right
after each repeat purchase (BG/NBD's dropout); a customer who drops out buys no more.
"""

from __future__ import annotations

import numpy as np

from sim.contracts import AMOUNT_CAP, NEW_CUSTOMER
from sim.model import keyed
from sim.model.agents import Agents, Purchases
from sim.model.calendar import seasonal_bound, seasonal_factor
from sim.model.rates import Rates
from sim.scenario import Seasonality

__all__ = ["advance", "graduating", "hazard_inverse", "purchases_at", "unit_gaps"]


def unit_gaps(seed: int, shape: np.ndarray, *key: np.ndarray | int) -> np.ndarray:
    """Gamma(shape, 1/shape) gaps (mean 1): exponential at shape 1, else Wilson-Hilferty."""
    z = keyed.normal(seed, "gap", *key)
    wh = np.maximum(1.0 - 1.0 / (9.0 * shape) + z / (3.0 * np.sqrt(shape)), 0.05) ** 3
    u = keyed.uniform(seed, "gap", *key, 2)
    return np.where(shape == 1.0, -np.log(u), wh)


def hazard_inverse(y: np.ndarray, hz: np.ndarray, tau: float) -> np.ndarray:
    """Recency r with H(r) = y, where H(r) = hz * (r + r^2 / (2 tau))."""
    return tau * (np.sqrt(1.0 + 2.0 * y / (hz * tau)) - 1.0)


def advance(
    agents: Agents,
    idx: np.ndarray,
    b: np.ndarray,
    rates: Rates,
    mult: tuple[np.ndarray, np.ndarray, np.ndarray],
    season: Seasonality,
    *,
    seed: int,
    period: int,
    block: int,
    start: float | np.ndarray,
    segment: np.ndarray | None = None,
) -> tuple[Purchases, np.ndarray, np.ndarray]:
    """Draw the purchases of customers ``idx`` from ``max(start, since)`` to ``b`` (exclusive).

    One wake-up per customer for the whole span: nothing changes its intensity before ``b``.
    ``mult`` holds per-customer (intensity, hazard, spend) multipliers of the active effects;
    ``segment`` overrides the customers' segments (a graduate's next one). Updates the purchase
    clock (``last``, ``due``) in place and returns the purchases made, and which customers drop
    out and when: the customer's own process applies that at its time.
    """
    a = np.maximum(start, agents.since[idx])
    live = (a < b) & np.isnan(agents.dropout[idx])
    idx, a, b = idx[live], a[live], b[live]
    m_int, m_haz, m_spend = (m[live] for m in mult)
    n = len(idx)
    cid = agents.customer_id[idx]
    seg = (agents.segment[idx] if segment is None else segment[live]).astype(np.intp)
    decay = rates.decay_per_year[seg] / 365.0
    age0 = a - agents.t0[idx]
    bound = seasonal_bound(season, float(a.min()), float(b.max())) if n else 1.0
    lam_max = rates.purchase_rate[seg] * agents.het[idx] * m_int * np.exp(-decay * age0) * bound

    # Candidate points: a renewal process at lam_max (gamma gaps: shape 1 is Poisson, higher is
    # more regular). The operational time left to the next candidate carries across blocks, so a
    # block edge does not restart anyone's clock.
    shape = rates.regularity[seg]
    cur = np.full(n, np.inf)
    has_rate = lam_max > 0
    cur[has_rate] = a[has_rate] + agents.due[idx[has_rate]] / lam_max[has_rate]
    active = np.flatnonzero(cur < b)
    rounds_i, rounds_t, rounds_k = [], [], []
    k = 0
    while active.size:
        rounds_i.append(active)
        rounds_t.append(cur[active])
        rounds_k.append(np.full(active.size, k, np.int64))
        cur[active] += unit_gaps(seed, shape[active], cid[active], period, block, k) / lam_max[active]
        active = active[cur[active] < b[active]]
        k += 1
    agents.due[idx[has_rate]] = (cur[has_rate] - b[has_rate]) * lam_max[has_rate]
    ci = np.concatenate(rounds_i) if rounds_i else np.empty(0, np.intp)
    ct = np.concatenate(rounds_t) if rounds_t else np.empty(0)
    ck = np.concatenate(rounds_k) if rounds_k else np.empty(0, np.int64)
    # Thinning: keep a candidate with probability lambda(t) / lam_max.
    ratio = np.exp(-decay[ci] * (ct - a[ci])) * seasonal_factor(ct, season) / bound
    keep = keyed.uniform(seed, "accept", cid[ci], period, block, ck) < ratio
    # A first candidate exactly at signup, before any purchase, exists only when the scenario makes
    # the first purchase the signup (due 0): it is always kept.
    keep |= (ck == 0) & (ct == agents.since[idx][ci]) & np.isnan(agents.last[idx][ci])
    order = np.argsort(ci[keep], kind="stable")
    pi, pt, pk = ci[keep][order], ct[keep][order], ck[keep][order]

    # Dropout: one recency segment from the block start, then one after each purchase.
    anchor0 = agents.last[idx]
    anchor0 = np.where(np.isnan(anchor0), agents.since[idx], anchor0)
    s_cust = np.concatenate([np.arange(n), pi])
    s_start = np.concatenate([a, pt])
    s_anchor = np.concatenate([anchor0, pt])
    s_order = np.lexsort((s_start, s_cust))
    s_cust, s_start, s_anchor = s_cust[s_order], s_start[s_order], s_anchor[s_order]
    first = np.ones(len(s_cust), bool)
    first[1:] = s_cust[1:] != s_cust[:-1]
    s_end = np.empty_like(s_start)
    s_end[:-1] = s_start[1:]
    last_of = np.ones(len(s_cust), bool)
    last_of[:-1] = first[1:]
    s_end[last_of] = b[s_cust[last_of]]
    ordinal = np.arange(len(s_cust)) - np.maximum.accumulate(np.where(first, np.arange(len(s_cust)), 0))
    tau = rates.recency_scale
    hz = (rates.dropout_hazard[seg] * m_haz)[s_cust]
    r0, r1 = s_start - s_anchor, s_end - s_anchor
    h0 = hz * (r0 + r0 * r0 / (2 * tau))
    dh = hz * (r1 + r1 * r1 / (2 * tau)) - h0
    e = -np.log(keyed.uniform(seed, "dropout", cid[s_cust], period, block, ordinal))
    hit = e < dh
    drop_t = np.full(n, np.nan)
    gone = np.empty(0, np.intp)
    if hit.any():
        hs = np.flatnonzero(hit)
        firsts = hs[np.r_[True, s_cust[hs][1:] != s_cust[hs][:-1]]]
        drop_t[s_cust[firsts]] = s_anchor[firsts] + hazard_inverse(h0[firsts] + e[firsts], hz[firsts], tau)
    leave_t = _leave_after_purchase(agents, idx, pi, pt, pk, seg, rates, m_haz, cid, seed=seed, period=period,
                                    block=block)
    if hit.any() or leave_t is not None:
        # NaN compares False: customers who stay keep everything; one who leaves keeps that purchase.
        kept = ~(pt >= drop_t[pi])
        if leave_t is not None:
            kept &= ~(pt > leave_t[pi])
            drop_t = np.fmin(drop_t, leave_t)
        pi, pt, pk = pi[kept], pt[kept], pk[kept]
        gone = np.flatnonzero(~np.isnan(drop_t))
    if len(pi):
        ends = np.r_[pi[1:] != pi[:-1], True]
        agents.last[idx[pi[ends]]] = pt[ends]

    pc, ps = cid[pi], seg[pi]
    bought = purchases_at(pc, pt, ps, agents.spend_scale[idx[pi]] * m_spend[pi], rates, seed=seed, period=period,
                          block=block, counter=pk)
    return bought, idx[gone], drop_t[gone]


def purchases_at(cid: np.ndarray, t: np.ndarray, seg: np.ndarray, spend_scale: np.ndarray, rates: Rates, *,
                 seed: int, period: int, block: int, counter: np.ndarray) -> Purchases:
    """What each purchase looks like (amount, channel, category), keyed by (customer, period, block, counter)."""
    ps = np.asarray(seg, np.intp)
    z = keyed.normal(seed, "amount_a", cid, period, block, counter)
    median = rates.spend_median[ps] * spend_scale
    amount = np.round(np.clip(median * np.exp(rates.spend_sigma[ps] * z), 0.01, AMOUNT_CAP), 2)
    uch = keyed.uniform(seed, "channel", cid, period, block, counter)
    app, store = rates.app_share[ps], rates.store_share[ps]
    channel = np.where(uch < app, 1, np.where(uch < app + store, 2, 0)).astype(np.int8)
    ucat = keyed.uniform(seed, "category", cid, period, block, counter)
    cdf = rates.category_cdf
    category = np.minimum(np.searchsorted(cdf, ucat), len(cdf) - 1).astype(np.int8)
    return Purchases(cid, t, amount, ps.astype(np.int8), channel, category)


def _leave_after_purchase(agents: Agents, idx: np.ndarray, pi: np.ndarray, pt: np.ndarray, pk: np.ndarray,
                          seg: np.ndarray, rates: Rates, m_haz: np.ndarray, cid: np.ndarray, *, seed: int,
                          period: int, block: int) -> np.ndarray | None:
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
    go = ~first_ever & (keyed.uniform(seed, "leave", cid[pi], period, block, pk) < chance)
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
