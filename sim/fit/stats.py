"""Statistics of a transaction log and the distances between two logs, both read as purchase occasions.

Both logs are compared as *purchase occasions*: one row per customer and day (amounts summed), as
the BG/NBD literature does, so a same-day basket split over several rows counts once in either log.
Only customers who bought at least once in the window are visible in a log, real or simulated.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim.model.calendar import epoch_day
from sim.scenario.schema import Scenario

__all__ = ["LogStats", "REPEAT_BINS", "bgnbd", "distances", "ks", "log_stats", "rel_err", "simulated_log"]

log = logging.getLogger(__name__)

REPEAT_BINS = 8  # 0, 1, ..., 6, 7+


_EPOCH = np.datetime64("1970-01-01", "D")


@dataclass(frozen=True)
class LogStats:
    """Per-customer and per-occasion summaries of a canonical log over ``[start, end]`` (epoch days)."""

    start: int
    end: int
    n_customers: int
    repeats: np.ndarray  # per customer: occasions after the first
    first: np.ndarray  # per customer: epoch day of the first occasion
    recency: np.ndarray  # per customer: days from the last occasion to the end
    gaps: np.ndarray  # per repeat occasion: days since the customer's previous one
    amounts: np.ndarray  # per occasion
    weekday: np.ndarray  # share of occasions Monday..Sunday
    cum_repeat: np.ndarray  # per week from start: cumulative repeat occasions per customer

    @property
    def repeat_shares(self) -> np.ndarray:
        """Share of customers with 0, 1, ..., 6, 7+ repeat occasions."""
        counts = np.bincount(np.minimum(self.repeats, REPEAT_BINS - 1), minlength=REPEAT_BINS)
        return counts / max(counts.sum(), 1)


def log_stats(log_df: pd.DataFrame, *, start: int, end: int) -> LogStats:
    """Summaries of a canonical log (``customer_id``, ``day`` epoch int, ``amount``), one row per occasion."""
    df = log_df.sort_values(["customer_id", "day"], kind="stable")
    cid = df["customer_id"].to_numpy()
    day = df["day"].to_numpy(np.int64)
    new = np.r_[True, cid[1:] != cid[:-1]] if len(cid) else np.empty(0, bool)
    starts = np.flatnonzero(new)
    n_occ = np.diff(np.r_[starts, len(cid)])
    last_idx = np.r_[starts[1:], len(cid)] - 1
    gaps = np.diff(day)[~new[1:]] if len(day) else np.empty(0, np.int64)
    weeks = (end - start) // 7 + 1
    rep_week = (day[~new] - start) // 7
    cum = np.cumsum(np.bincount(rep_week, minlength=weeks)[:weeks]) / max(len(starts), 1)
    wd = np.bincount((day + 3) % 7, minlength=7)  # 1970-01-01 was a Thursday; Monday first
    return LogStats(
        start=start, end=end, n_customers=len(starts), repeats=n_occ - 1, first=day[starts],
        recency=end - day[last_idx], gaps=gaps.astype(float), amounts=df["amount"].to_numpy(float),
        weekday=wd / max(wd.sum(), 1), cum_repeat=cum,
    )


def ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (1.0 when either sample is empty)."""
    if len(a) == 0 or len(b) == 0:
        return 1.0
    a, b = np.sort(a), np.sort(b)
    x = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, x, "right") / len(a) - np.searchsorted(b, x, "right") / len(b))))


def rel_err(real: np.ndarray, sim: np.ndarray, *, floor: float) -> float:
    n = min(len(real), len(sim))
    real, sim = real[:n], sim[:n]
    ok = real > floor
    return float(np.max(np.abs(sim[ok] - real[ok]) / real[ok])) if ok.any() else float("nan")


def distances(real: LogStats, sim: LogStats) -> dict[str, float]:
    """Distances between two logs' summaries.

    ``tvd_repeat``: total variation distance of the shares with 0..7+ repeat occasions;
    ``ks_gap``, ``ks_amount``, ``ks_recency``: KS statistics; ``cum_repeat_max_rel_err``: max relative
    error of the weekly cumulative repeat curve (per customer) over every week with a repeat in the real
    log, and ``cum_repeat_max_rel_err_after_5pct`` the same once the real curve has reached 5 % of its
    final value (the first weeks' tiny counts make the former noisy); ``buyers_rel_err``: relative
    difference in the number of customers with a purchase.
    """
    final = real.cum_repeat[-1] if len(real.cum_repeat) else 0.0
    return {
        "tvd_repeat": float(0.5 * np.abs(real.repeat_shares - sim.repeat_shares).sum()),
        "ks_gap": ks(real.gaps, sim.gaps),
        "ks_amount": ks(real.amounts, sim.amounts),
        "ks_recency": ks(real.recency, sim.recency),
        "cum_repeat_max_rel_err": rel_err(real.cum_repeat, sim.cum_repeat, floor=0.0),
        "cum_repeat_max_rel_err_after_5pct": rel_err(real.cum_repeat, sim.cum_repeat, floor=0.05 * final),
        "weekday_max_abs_diff": float(np.max(np.abs(real.weekday - sim.weekday))),
        "buyers_rel_err": abs(sim.n_customers - real.n_customers) / max(real.n_customers, 1),
    }


def simulated_log(scenario: Scenario) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run ``scenario`` in memory: (canonical occasions log, customers with ``customer_id``, ``segment``).

    The log is the window's: the history rows before it (initial customers' last purchases) are
    not in a real log of the window either.
    """
    from sim.execute.memory import simulate

    tables = simulate(scenario)
    txn = tables["raw_transactions"]
    day = txn["transaction_date"].cast("int32").to_numpy()
    df = pd.DataFrame({"customer_id": txn["customer_id"].to_numpy(), "day": day.astype(np.int64),
                       "amount": txn["amount"].to_numpy()})
    df = df[df["day"] >= epoch_day(scenario.calendar.start_date)]
    occ = df.groupby(["customer_id", "day"], as_index=False, sort=True)["amount"].sum()
    cust = tables["raw_customers"].select(["customer_id", "segment"]).to_pandas()
    return occ, cust


def bgnbd(log_df: pd.DataFrame, end: int) -> dict[str, float] | None:
    try:
        from lifetimes import BetaGeoFitter
    except ImportError:
        return None
    g = log_df.groupby("customer_id")["day"]
    first, last, n = g.min(), g.max(), g.count()
    bgf = BetaGeoFitter(penalizer_coef=0.0)
    printed = io.StringIO()
    try:
        # lifetimes prints the optimiser's result to stdout when it fails; keep stdout for our output.
        with contextlib.redirect_stdout(printed):
            bgf.fit((n - 1).to_numpy(float), (last - first).to_numpy(float), (end - first).to_numpy(float))
    except Exception as exc:  # lifetimes raises its own ConvergenceError and plain ones from scipy
        log.warning("BG/NBD fit failed: %s", str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        log.debug("BG/NBD optimiser output: %s", printed.getvalue())
        return None
    return {k: float(v) for k, v in bgf.params_.items()}
