"""How well a calibrated scenario reproduces a real transaction log: statistics, distances, report.

Both logs are compared as *purchase occasions*: one row per customer and day (amounts summed), as
the BG/NBD literature does, so a same-day basket split over several rows counts once in either log.
Only customers who bought at least once in the window are visible in a log, real or simulated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from sim.scenario import Scenario

__all__ = ["LogStats", "distances", "fit_report", "log_stats", "simulated_log"]

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


def _rel_err(real: np.ndarray, sim: np.ndarray, *, floor: float) -> float:
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
        "cum_repeat_max_rel_err": _rel_err(real.cum_repeat, sim.cum_repeat, floor=0.0),
        "cum_repeat_max_rel_err_after_5pct": _rel_err(real.cum_repeat, sim.cum_repeat, floor=0.05 * final),
        "weekday_max_abs_diff": float(np.max(np.abs(real.weekday - sim.weekday))),
        "buyers_rel_err": abs(sim.n_customers - real.n_customers) / max(real.n_customers, 1),
    }


def simulated_log(scenario: Scenario) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run ``scenario`` in memory: (canonical occasions log, customers with ``customer_id``, ``segment``).

    The log is the window's: the history rows before it (initial customers' last purchases) are
    not in a real log of the window either.
    """
    from sim.api import simulate
    from sim.calendar import epoch_day

    tables = simulate(scenario)
    txn = tables["raw_transactions"]
    day = txn["transaction_date"].cast("int32").to_numpy()
    df = pd.DataFrame({"customer_id": txn["customer_id"].to_numpy(), "day": day.astype(np.int64),
                       "amount": txn["amount"].to_numpy()})
    df = df[df["day"] >= epoch_day(scenario.calendar.start_date)]
    occ = df.groupby(["customer_id", "day"], as_index=False, sort=True)["amount"].sum()
    cust = tables["raw_customers"].select(["customer_id", "segment"]).to_pandas()
    return occ, cust


# --------------------------------------------------------------------------- the report


def _bgnbd(log_df: pd.DataFrame, end: int) -> dict[str, float] | None:
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


def _plot(real: LogStats, sim: LogStats, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 3, figsize=(15, 8.5))
    x = np.arange(REPEAT_BINS)
    ax[0, 0].bar(x - 0.2, real.repeat_shares, 0.4, label="real")
    ax[0, 0].bar(x + 0.2, sim.repeat_shares, 0.4, label="simulated")
    ax[0, 0].set_xticks(x, [str(i) for i in range(REPEAT_BINS - 1)] + [f"{REPEAT_BINS - 1}+"])
    ax[0, 0].set(title="Repeat purchases per customer", xlabel="repeat purchases (count)",
                 ylabel="share of customers")
    hi = max(np.percentile(np.r_[real.gaps, sim.gaps, 1.0], 99), 2.0)
    bins = np.linspace(0, hi, 40)
    for s, name in ((real, "real"), (sim, "simulated")):
        ax[0, 1].hist(s.gaps, bins, density=True, histtype="step", label=name, linewidth=1.5)
    ax[0, 1].set(title="Inter-purchase times", xlabel="days between purchases", ylabel="density (1/day)")
    hi = max(np.percentile(np.r_[real.amounts, sim.amounts, 1.0], 99), 1.0)
    bins = np.linspace(0, hi, 40)
    for s, name in ((real, "real"), (sim, "simulated")):
        ax[0, 2].hist(s.amounts, bins, density=True, histtype="step", label=name, linewidth=1.5)
    ax[0, 2].set(title="Purchase amounts", xlabel="amount per purchase day (currency units)",
                 ylabel="density (1/unit)")
    bins = np.linspace(0, real.end - real.start + 1, 40)
    for s, name in ((real, "real"), (sim, "simulated")):
        ax[1, 0].hist(s.recency, bins, density=True, histtype="step", label=name, linewidth=1.5)
    ax[1, 0].set(title="Recency at end of log", xlabel="days since last purchase", ylabel="density (1/day)")
    days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    ax[1, 1].plot(days, real.weekday, "o-", label="real")
    ax[1, 1].plot(days, sim.weekday, "s--", label="simulated")
    ax[1, 1].set(title="Weekly pattern", xlabel="day of week", ylabel="share of purchases")
    ax[1, 2].plot(np.arange(len(real.cum_repeat)), real.cum_repeat, label="real")
    ax[1, 2].plot(np.arange(len(sim.cum_repeat)), sim.cum_repeat, "--", label="simulated")
    ax[1, 2].set(title="Cumulative repeat purchases", xlabel="week since log start",
                 ylabel="repeat purchases per customer")
    for a in ax.ravel():
        a.legend()
    fig.suptitle("Real log vs simulation of the calibrated scenario")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _markdown(result: dict[str, Any]) -> str:
    lines = [f"# Fit report: {result['scenario']}", "",
             f"Window {result['start']} to {result['end']}; real log {result['real_customers']:,} customers, "
             f"simulation {result['simulated_customers']:,} customers with a purchase.", "",
             f"| distance | seed {result['seed']} | range over {result['seeds']} seeds |", "|---|---|---|"]
    lines += [f"| {k} | {v:.4f} | {result['distance_range'][k][0]:.4f} to {result['distance_range'][k][1]:.4f} |"
              for k, v in result["distances"].items()]
    lines += ["", f"Cumulative repeat curve of the {result['seeds']} simulations' mean: "
              f"{result['mean_curve_rel_err_after_5pct']:.1%} at worst past 5 % of the total (the fit's bias; "
              "one simulation adds chance)."]
    lines += ["", "| repeats | real share | simulated share |", "|---|---|---|"]
    for i, (r, s) in enumerate(zip(result["repeat_shares"]["real"], result["repeat_shares"]["simulated"], strict=True)):
        label = f"{i}" if i < REPEAT_BINS - 1 else f"{i}+"
        lines.append(f"| {label} | {r:.4f} | {s:.4f} |")
    bg = result.get("bgnbd")
    if bg:
        lines += ["", "BG/NBD (lifetimes `BetaGeoFitter`) fitted to each log:", "",
                  "| parameter | real | simulated |", "|---|---|---|"]
        for k in ("r", "alpha", "a", "b"):
            r, s = bg["real"].get(k, float("nan")), bg["simulated"].get(k, float("nan"))
            lines.append(f"| {k} | {r:.4f} | {s:.4f} |")
    else:
        lines += ["", "BG/NBD comparison skipped (lifetimes not installed or the fit failed)."]
    lines += ["", "![panel](fit_report.png)", ""]
    return "\n".join(lines)


def fit_report(real_df: pd.DataFrame, scenario: Scenario, *, out_dir: str | Path,
               columns: dict[str, str] | None = None, seeds: int = 5) -> dict[str, Any]:
    """Compare a real log with a simulation of ``scenario`` and write ``fit_report.{md,json,png}``.

    Args:
        real_df: the real transaction log (customer id, date, amount), as given to ``calibrate``.
        scenario: the calibrated scenario; it is simulated on its own calendar and population.
        out_dir: directory for the three files (created if missing).
        columns: maps ``customer_id``/``date``/``amount`` to ``real_df``'s column names.
        seeds: simulations with consecutive seeds from the scenario's (1: only the scenario's). A
            log of a few thousand customers moves the distances by chance alone; the range over
            seeds shows how much, and the mean of their cumulative curves shows the fit's own bias.

    Returns:
        The JSON-able content of ``fit_report.json``: distances (the scenario's seed), their range
        over ``seeds``, the mean curve's error, repeat shares, BG/NBD parameters.
    """
    from sim.calendar import epoch_day
    from sim.fitting import occasions

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    real_log = occasions(real_df, columns=columns)
    start = epoch_day(scenario.calendar.start_date)
    end = epoch_day(scenario.end_date)
    sim_log, _ = simulated_log(scenario)
    real, sim = log_stats(real_log, start=start, end=end), log_stats(sim_log, start=start, end=end)
    runs = [distances(real, sim)]
    curves = [sim.cum_repeat]
    for k in range(1, max(seeds, 1)):
        other = log_stats(simulated_log(dataclasses.replace(scenario, seed=scenario.seed + k))[0], start=start, end=end)
        runs.append(distances(real, other))
        curves.append(other.cum_repeat)
    final = real.cum_repeat[-1] if len(real.cum_repeat) else 0.0
    result: dict[str, Any] = {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "start": scenario.calendar.start_date.isoformat(),
        "end": (scenario.calendar.start_date + dt.timedelta(days=end - start)).isoformat(),
        "real_customers": real.n_customers,
        "simulated_customers": sim.n_customers,
        "distances": runs[0],
        "seeds": len(runs),
        "distance_range": {k: [min(r[k] for r in runs), max(r[k] for r in runs)] for k in runs[0]},
        "mean_curve_rel_err_after_5pct": _rel_err(real.cum_repeat, np.mean(curves, axis=0), floor=0.05 * final),
        "repeat_shares": {"real": real.repeat_shares.round(6).tolist(), "simulated": sim.repeat_shares.round(6).tolist()},
        "weekday_shares": {"real": real.weekday.round(6).tolist(), "simulated": sim.weekday.round(6).tolist()},
    }
    bg_real, bg_sim = _bgnbd(real_log, end), _bgnbd(sim_log, end)
    if bg_real is not None and bg_sim is not None:
        result["bgnbd"] = {"real": bg_real, "simulated": bg_sim}
    _plot(real, sim, out / "fit_report.png")
    (out / "fit_report.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    (out / "fit_report.md").write_text(_markdown(result))
    log.info("fit report written to %s", out)
    return result
