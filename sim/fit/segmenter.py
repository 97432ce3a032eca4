"""Splitting a log's customers into the guide's segments: warm-up, features, k-means, names."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["EARLY_DAYS", "Features", "Segmenter", "log_features", "make_segmenter", "warmup_days"]

EARLY_DAYS = 60  # "soon after the first purchase": the early-repeats moment's span



@dataclass(frozen=True)
class Features:
    n: np.ndarray
    first: np.ndarray
    x: np.ndarray  # (customers, 2): log repeat rate, mean log amount
    mean_log: np.ndarray
    var_log: np.ndarray  # within-customer variance of log amounts (NaN below 2 occasions)
    gap_cv2: np.ndarray  # within-customer squared CV of gaps (NaN below 3 occasions)
    active: np.ndarray  # log purchase rate between first and last occasion (NaN below 3 occasions)
    lapse: np.ndarray  # recency at the end over exposure since the first occasion
    early: np.ndarray  # log(1 + repeats in the EARLY_DAYS after the first occasion) (NaN: seen too late)


def warmup_days(first: np.ndarray, days: int) -> int:
    """Days after which customers first seen are taken as acquired in the window.

    Existing customers are first seen at a falling rate (each within about one of its gaps);
    acquisitions at a steady one. The steady rate is the last third's; the warm-up ends at the
    first week after which customers first seen exceed that rate by at most a tenth of them (so
    few slow existing customers pass for new ones). At most half the window.
    """
    tail = days - days // 3
    rate = float((first >= tail).sum()) / max(days - tail, 1)
    for t in range(0, days // 2, 7):
        after = float((first > t).sum())
        if after - rate * (days - 1 - t) <= 0.1 * after:
            return t
    return days // 2


def log_features(occ: pd.DataFrame, end: int) -> Features:
    df = occ.assign(la=np.log(np.maximum(occ["amount"].to_numpy(), 0.01)))
    df["gap"] = df.groupby("customer_id")["day"].diff()
    g = df.groupby("customer_id", sort=True)
    first, last, n = g["day"].min().to_numpy(), g["day"].max().to_numpy(), g["day"].count().to_numpy()
    exposure = end - first + 1.0
    mean_log = g["la"].mean().to_numpy()
    gm, gv = g["gap"].mean().to_numpy(), g["gap"].var().to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        cv2 = np.where(n >= 3, gv / gm**2, np.nan)
    # Segments by frequency and spend only: lapse mixes behaviour with luck (and with the hazard
    # being fitted), so it is matched as a moment instead of used to draw the boundaries.
    x = np.column_stack([np.log((n - 1 + 0.5) / exposure), mean_log])
    with np.errstate(invalid="ignore", divide="ignore"):
        active = np.where(n >= 3, np.log((n - 2) / (last - first + 1.0)), np.nan)
    # Repeats soon after a customer is first seen: for acquired customers, their behaviour while new.
    soon = (df["day"].to_numpy() - np.repeat(first, n)) <= EARLY_DAYS
    early_n = np.bincount(np.repeat(np.arange(len(n)), n), weights=soon, minlength=len(n)) - 1.0
    early = np.where(first <= end - EARLY_DAYS, np.log1p(early_n), np.nan)
    return Features(n, first, x, mean_log, g["la"].var().to_numpy(), cv2, active, (end - last) / exposure, early)


def _kmeans(x: np.ndarray, k: int, seed: int, *, iters: int = 100) -> np.ndarray:
    """Centroids by Lloyd's algorithm from a k-means++ start (deterministic given the seed)."""
    rng = np.random.default_rng(seed)
    cent = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None, :] - np.asarray(cent)[None]) ** 2).sum(-1), axis=1)
        cent.append(x[rng.choice(len(x), p=d2 / d2.sum())] if d2.sum() > 0 else x[rng.integers(len(x))])
    c = np.asarray(cent, float)
    for _ in range(iters):
        lab = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        new = np.array([x[lab == j].mean(0) if (lab == j).any() else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return c


@dataclass(frozen=True)
class Segmenter:
    """Assigns customers of any log (real or simulated) to the fitted segments."""

    mu: np.ndarray
    sd: np.ndarray
    centroids: np.ndarray
    names: tuple[str, ...]  # one per centroid
    late_day: int | None  # first purchase after this day: an acquired new customer

    def __call__(self, f: Features) -> np.ndarray:
        z = (f.x - self.mu) / self.sd
        lab = np.asarray(self.names, dtype=object)[np.argmin(((z[:, None, :] - self.centroids[None]) ** 2).sum(-1), 1)]
        if self.late_day is not None:
            lab[f.first > self.late_day] = "new_customer"
        return lab


def _name_clusters(z: np.ndarray, lab: np.ndarray, first: np.ndarray, k: int) -> tuple[str, ...]:
    """The guide's names by the clusters' behaviour (see the module docstring)."""
    left = list(range(k))
    names: dict[int, str] = {}

    def pick(score: np.ndarray, name: str) -> None:
        j = max(left, key=lambda i: score[i])
        names[j] = name
        left.remove(j)

    mean = np.array([z[lab == j].mean(0) for j in range(k)])
    if k == 4:
        pick(np.array([first[lab == j].mean() for j in range(k)]), "new_customer")
    pick(mean[:, 0], "young_active")
    if len(left) >= 2:
        pick(mean[:, 1], "mid_stable")
    if left:
        names[left.pop()] = "senior_declining" if k > 1 else "mid_stable"
    return tuple(names[j] for j in range(k))


def make_segmenter(f: Features, *, segments: int, late_day: int | None, seed: int) -> Segmenter:
    mu, sd = f.x.mean(0), f.x.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    z = (f.x - mu) / sd
    early = np.ones(len(z), bool) if late_day is None else f.first <= late_day
    k = max(1, min(segments - (late_day is not None), 4, int(early.sum())))
    cent = _kmeans(z[early], k, seed)
    lab = np.argmin(((z[early][:, None, :] - cent[None]) ** 2).sum(-1), 1)
    return Segmenter(mu, sd, cent, _name_clusters(z[early], lab, f.first[early], k), late_day)
