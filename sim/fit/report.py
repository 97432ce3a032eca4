"""The fit report: how well a fitted scenario reproduces a real log, as Markdown, JSON and PNG."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.fit.stats import REPEAT_BINS, LogStats, bgnbd, distances, log_stats, rel_err, simulated_log
from sim.scenario.schema import Scenario

__all__ = ["fit_report"]

log = logging.getLogger(__name__)


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
    from sim.fit.log import occasions
    from sim.model.calendar import epoch_day

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
        "mean_curve_rel_err_after_5pct": rel_err(real.cum_repeat, np.mean(curves, axis=0), floor=0.05 * final),
        "repeat_shares": {"real": real.repeat_shares.round(6).tolist(), "simulated": sim.repeat_shares.round(6).tolist()},
        "weekday_shares": {"real": real.weekday.round(6).tolist(), "simulated": sim.weekday.round(6).tolist()},
    }
    bg_real, bg_sim = bgnbd(real_log, end), bgnbd(sim_log, end)
    if bg_real is not None and bg_sim is not None:
        result["bgnbd"] = {"real": bg_real, "simulated": bg_sim}
    _plot(real, sim, out / "fit_report.png")
    (out / "fit_report.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    (out / "fit_report.md").write_text(_markdown(result))
    log.info("fit report written to %s", out)
    return result
