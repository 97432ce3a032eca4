"""The moments a fit matches: per segment repeats, lapse, rates and delays, read the same way off both logs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim.contracts import SEGMENTS
from sim.fit.segmenter import Features, Segmenter

__all__ = ["Moments", "confusion", "residuals", "segment_moments"]


@dataclass(frozen=True)
class Moments:
    count: dict[str, int]
    repeats: dict[str, float]
    lapse: dict[str, float]
    first: dict[str, float]  # median days from the window's start to the first purchase
    active: dict[str, float]  # mean log purchase rate while active (between first and last, 3+ purchases)
    early: dict[str, float]  # mean log(1 + repeats in the EARLY_DAYS after the first purchase)
    mean_log: dict[str, float]
    within_sd: dict[str, float]
    gap_cv2: dict[str, float]
    n: int
    excess: float  # (var - mean) / mean^2 of repeat counts: heterogeneity beyond Poisson
    trend: dict[str, float]  # repeat occasions in the second half of the window over the first half
    late: float  # share of customers first seen after the warm-up
    between_sd: float  # sd of customers' mean log amount
    weekday: np.ndarray
    yearly: np.ndarray  # see _yearly


def segment_moments(occ: pd.DataFrame, f: Features, seg: Segmenter, *, start: int, end: int, warmup: int) -> Moments:
    lab = seg(f)
    rep = f.n - 1.0

    def per(values: np.ndarray) -> dict[str, float]:
        out = {}
        for name in SEGMENTS:
            m = (lab == name) & ~np.isnan(values)
            out[name] = float(values[m].mean()) if m.any() else math.nan
        return out

    mid = start + (end - start) / 2
    occ_sorted = occ.sort_values(["customer_id", "day"], kind="stable")
    is_rep = occ_sorted["customer_id"].duplicated().to_numpy()
    d = occ_sorted["day"].to_numpy()[is_rep]
    # occ is sorted by customer like f's arrays: each repeat's customer's label
    who = lab[np.repeat(np.arange(len(f.n)), f.n)][is_rep]
    wd = np.bincount((occ["day"].to_numpy() + 3) % 7, minlength=7)
    return Moments(
        count={name: int((lab == name).sum()) for name in SEGMENTS},
        repeats=per(rep),
        lapse=per(f.lapse),
        active=per(f.active),
        early=per(f.early),
        first={k: float(np.median(f.first[(lab == k) & (f.first <= start + warmup)] - start))
               if ((lab == k) & (f.first <= start + warmup)).any() else math.nan for k in SEGMENTS},
        mean_log=per(f.mean_log),
        within_sd=per(np.sqrt(f.var_log)),
        gap_cv2=per(f.gap_cv2),
        n=len(f.n),
        excess=float((rep.var() - rep.mean()) / max(rep.mean(), 1e-9) ** 2),
        trend={k: float((((d >= mid) & (who == k)).sum() + 1) / (((d < mid) & (who == k)).sum() + 1))
               for k in SEGMENTS},
        late=float((f.first > start + warmup).mean()),
        between_sd=float(f.mean_log.std()),
        weekday=wd / max(wd.sum(), 1),
        yearly=_yearly(d, start, end),
    )


def _yearly(d: np.ndarray, start: int, end: int) -> np.ndarray:
    """Cosine and sine coefficients of a yearly cycle in log daily counts of repeat purchases (on
    days ``d``), net of a linear trend; zero below a year. Biased by the window's start-up and by
    decay alike in a real and a simulated log, so it is matched between them rather than read off."""
    if end - start + 1 < 365:
        return np.zeros(2)
    days = np.arange(start, end + 1)
    y = np.log(np.bincount(d - start, minlength=len(days))[: len(days)] + 1.0)
    t = (days - start) / (end - start)
    doy = (days.astype("datetime64[D]") - days.astype("datetime64[D]").astype("datetime64[Y]")).astype(np.int64) + 1
    w = 2 * np.pi * doy / 365.25
    a = np.column_stack([np.ones_like(t), t, np.cos(w), np.sin(w)])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return coef[2:4]


def confusion(cust: pd.DataFrame, buyers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """P(a customer of true segment j is seen with label l) in a simulation, shape (4, 4)."""
    seg = cust["segment"].to_numpy()
    members = np.array([(seg == k).sum() for k in SEGMENTS], float)
    true = pd.Series(seg, index=cust["customer_id"].to_numpy()).loc[buyers].to_numpy()
    lab = {k: i for i, k in enumerate(SEGMENTS)}
    counts = np.zeros((len(SEGMENTS), len(SEGMENTS)))
    np.add.at(counts, ([lab[t] for t in true], [lab[x] for x in labels]), 1.0)
    return counts / np.maximum(members, 1.0)[:, None]


def residuals(real: Moments, sim: Moments) -> np.ndarray:
    """Per segment: repeats, lapse, rate while active, repeats soon after the first purchase and
    first-purchase delay; then buyers. Real minus simulated."""
    out = []
    for k in SEGMENTS:
        pairs = [(math.log(real.repeats[k] + 0.1), math.log(sim.repeats[k] + 0.1)),
                 (3.0 * real.lapse[k], 3.0 * sim.lapse[k]),
                 (real.active[k], sim.active[k]),
                 (real.early[k], sim.early[k]),
                 (math.log(real.first[k] + 1.0), math.log(sim.first[k] + 1.0))]
        out += [0.0 if (math.isnan(r) or math.isnan(m)) else r - m for r, m in pairs]
    # The population is capped near the number of buyers, so the buyers have to appear.
    out.append(2.0 * math.log(real.n / max(sim.n, 1)))
    return np.asarray(out)
