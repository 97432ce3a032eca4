"""Behaviour trajectories as PNGs (matplotlib, Agg backend).

:func:`plot_all` writes, into one directory:

- ``activity.png``: active customers (30-day), daily revenue and daily transactions per segment,
  with interventions, drift onsets and experiment assignments as vertical lines;
- ``cohort_retention.png``: share of each acquisition-month cohort purchasing in each month since
  signup (the customers present at the start form one cohort, counted from the start);
- ``intensity_hazard.png``: purchases per active customer per day and the monthly dropout hazard
  (latent dropouts per alive customer per day) by segment;
- ``churn_vs_recency.png``: share churned 60 days later against today's recency, by segment;
- ``ab_arms.png``: purchases and revenue per customer per day in each experiment arm (only when
  the lake's labels carry experiment arms);
- ``customers.png`` (with ``customers=N``): N customers sampled by segment, one row each on a
  shared time axis: purchases sized by amount, segment changes, latent dropout, churned months.

:func:`figures` yields the same figures unsaved, for the HTML report (:mod:`analysis.report`)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis.ab import arm_daily  # noqa: E402
from sim.contracts import SEGMENTS

__all__ = [
    "DPI",
    "EVENT_STYLE",
    "FIGURES",
    "SEGMENT_ORDER",
    "has_experiment",
    "load_scenario_json",
    "mark_events",
    "ordered_segments",
    "plot_ab",
    "plot_activity",
    "plot_churn_vs_recency",
    "plot_cohorts",
    "plot_intensity_hazard",
    "save_figure",
    "scenario_events",
]

log = logging.getLogger(__name__)

SEGMENT_ORDER = SEGMENTS  # the engine's segment codes' order


EVENT_STYLE = {"intervention": ("tab:green", "--"), "drift": ("tab:red", ":"), "experiment": ("tab:purple", "-.")}


DPI = 110


FIGURES = ("activity", "cohort_retention", "intensity_hazard", "churn_vs_recency", "ab_arms", "customers")


def load_scenario_json(lake: str | Path) -> dict[str, Any]:
    """``LAKE/_churnsim/scenario.json`` (empty dict when the lake has none)."""
    path = Path(lake) / "_churnsim" / "scenario.json"
    if not path.exists():
        log.warning("%s not found: plots carry no event markers", path)
        return {}
    return json.loads(path.read_text())


def scenario_events(scenario: Mapping[str, Any]) -> list[tuple[pd.Timestamp, str, str]]:
    out = []
    for iv in scenario.get("interventions") or []:
        out.append((pd.Timestamp(iv["start"]), "intervention", iv["name"]))
    for d in scenario.get("drifts") or []:
        out.append((pd.Timestamp(d["start"]), "drift", d["name"]))
    for e in scenario.get("experiments") or []:
        out.append((pd.Timestamp(e["assign_date"]), "experiment", e["name"]))
    return out


def mark_events(ax: Axes, events: list[tuple[pd.Timestamp, str, str]], *, label: bool) -> None:
    for when, kind, name in events:
        color, style = EVENT_STYLE[kind]
        ax.axvline(when, color=color, linestyle=style, linewidth=1.2, label=f"{kind}: {name}" if label else None)


def ordered_segments(present: Any) -> list[str]:
    """The guide's four segments in its order, then any others sorted."""
    have = set(present)
    return [s for s in SEGMENT_ORDER if s in have] + sorted(have - set(SEGMENT_ORDER))


def save_figure(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    log.info("wrote %s", path)
    return path


def plot_activity(metrics: pd.DataFrame, events: list) -> Figure:
    """Active customers, revenue and transactions per segment over time."""
    fig, axes = plt.subplots(3, 1, figsize=(11, 10), sharex=True)
    panels = [("active_customers_30d", "Active customers (purchase in last 30 days)", "customers", 1),
              ("revenue", "Daily revenue (7-day mean)", "revenue per day (currency units)", 7),
              ("transactions", "Daily transactions (7-day mean)", "transactions per day", 7)]
    for ax, (col, title, unit, win) in zip(axes, panels, strict=True):
        wide = metrics.pivot_table(index="metric_date", columns="segment", values=col, aggfunc="sum")
        for seg in ordered_segments(wide.columns):
            ax.plot(wide.index, wide[seg].rolling(win, min_periods=1).mean(), label=seg, linewidth=1.4)
        mark_events(ax, events, label=ax is axes[0])
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    axes[-1].set_xlabel("date")
    return fig


def plot_cohorts(customers: pd.DataFrame, transactions: pd.DataFrame, *, max_cohorts: int = 12,
                 start: dt.date | pd.Timestamp | None = None) -> Figure:
    """Share of each signup-month cohort purchasing in month k after signup.

    ``start`` is the simulation's first day (default the first transaction); history rows before
    it (initial customers' last purchases before the window) are left out.
    """
    first = pd.to_datetime(transactions["transaction_date"]).min() if start is None else pd.Timestamp(start)
    transactions = transactions[pd.to_datetime(transactions["transaction_date"]) >= first]
    start = first.to_period("M")
    c = customers[["customer_id", "customer_since_date"]].copy()
    since = pd.to_datetime(c["customer_since_date"]).dt.to_period("M")
    c["cohort"] = since.where(since >= start, start - 1)
    c["cohort_month"] = np.maximum((since - start).apply(lambda x: x.n), 0)
    t = transactions[["customer_id", "transaction_date"]].copy()
    t["month"] = (pd.to_datetime(t["transaction_date"]).dt.to_period("M") - start).apply(lambda x: x.n)
    t = t.drop_duplicates(["customer_id", "month"]).merge(c, on="customer_id")
    t["age"] = t["month"] - t["cohort_month"]
    sizes = c.groupby("cohort").size()
    active = t.groupby(["cohort", "age"]).size().unstack("age").fillna(0)
    last = int(t["month"].max())
    fig, ax = plt.subplots(figsize=(10, 6))
    cmap = plt.get_cmap("viridis")
    cohorts = [k for k in active.index if k >= start][:max_cohorts]
    for i, k in enumerate(cohorts):
        share = (active.loc[k] / sizes[k]).loc[: last - (k - start).n]  # months not yet observed are not zeros
        ax.plot(share.index, share.values, marker="o", markersize=3, color=cmap(i / max(len(cohorts) - 1, 1)),
                label=f"{k} (n={sizes[k]})")
    if (start - 1) in active.index:
        share = active.loc[start - 1] / sizes[start - 1]
        ax.plot(share.index, share.values, color="black", linewidth=2.2,
                label=f"present at start (n={sizes[start - 1]})")
    ax.set_title("Cohort retention: share of each signup-month cohort purchasing in month k")
    ax.set_xlabel("months since signup (customers present at the start: since the start)")
    ax.set_ylabel("share of cohort with a purchase in the month")
    ax.set_ylim(0, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, title="signup month")
    return fig


def plot_intensity_hazard(metrics: pd.DataFrame, labels: pd.DataFrame) -> Figure:
    """Purchases per active customer per day, and the monthly dropout hazard, per segment."""
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    m = metrics.groupby(["metric_date", "segment"])[["transactions", "active_customers_30d", "dropouts"]].sum()
    wide = m.unstack("segment")
    for seg in ordered_segments(wide["transactions"].columns):
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = wide["transactions"][seg] / wide["active_customers_30d"][seg].replace(0, np.nan)
        ax1.plot(rate.index, rate.rolling(7, min_periods=1).mean(), label=seg)
    ax1.set_title("Purchase intensity: purchases per active customer per day (7-day mean)")
    ax1.set_ylabel("purchases / active customer / day")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)

    lab = labels[["label_date", "segment", "dropped_out", "dropout_date"]].copy()
    lab["label_date"] = pd.to_datetime(lab["label_date"])
    dates = sorted(lab["label_date"].unique())
    alive = lab[~lab["dropped_out"].astype(bool)].groupby(["label_date", "segment"]).size().unstack("segment")
    drops = m["dropouts"].unstack("segment")
    month = drops.index.to_period("M")
    monthly = drops.groupby(month).sum()
    for seg in ordered_segments(alive.columns):
        xs, ys = [], []
        for i, d in enumerate(dates[1:], start=1):
            p = pd.Timestamp(d).to_period("M")
            at_risk = alive[seg].get(dates[i - 1], np.nan)
            days = pd.Timestamp(d).day
            if p in monthly.index and at_risk and np.isfinite(at_risk):
                xs.append(pd.Timestamp(d) - pd.Timedelta(days=days // 2))
                ys.append(monthly.loc[p, seg] / at_risk / days * 1000 if seg in monthly else np.nan)
        ax2.plot(xs, ys, marker="o", markersize=3, label=seg)
    ax2.set_title("Empirical dropout hazard by segment (latent dropouts / alive customers, per month)")
    ax2.set_ylabel("dropouts per 1,000 alive customers per day")
    ax2.set_xlabel("date")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    return fig


def plot_churn_vs_recency(frame: pd.DataFrame) -> Figure:
    """Share churned 60 days later against recency today, by segment."""
    edges = np.array([0, 7, 14, 21, 30, 45, 60, 90, 120, 180, 365])
    mids = np.array([3.5, 10.5, 17.5, 25.5, 37.5, 52.5, 75, 105, 150, 272])
    fig, ax = plt.subplots(figsize=(10, 6))
    # Beyond a year the recency is counted from signup (no purchase seen in the lake): left out.
    frame = frame[frame["recency_days"] < edges[-1]]
    b = np.searchsorted(edges, frame["recency_days"].to_numpy(), side="right") - 1
    frame = frame.assign(bin=b)
    for seg in [*ordered_segments(frame["segment"].dropna().unique()), "all"]:
        g = frame if seg == "all" else frame[frame["segment"] == seg]
        rate = g.groupby("bin")["churned"].agg(["mean", "size"])
        rate = rate[rate["size"] >= 20]
        ax.plot(mids[rate.index], rate["mean"], marker="o", label=seg,
                color="black" if seg == "all" else None, linewidth=2.2 if seg == "all" else 1.4)
    ax.axvline(60, color="grey", linestyle="--", linewidth=1, label="60-day churn rule")
    ax.set_xscale("log")
    ax.set_title("Empirical churn rate against recency (churned 60 days later)")
    ax.set_xlabel("recency at the feature date (days since last purchase, log scale)")
    ax.set_ylabel("share churned at the label date")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def plot_ab(tables: Mapping[str, pd.DataFrame], scenario: Mapping[str, Any]) -> Figure:
    """Purchases and revenue per customer per day in each arm of each experiment over time."""
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    exps = list(scenario.get("experiments") or [])
    for e in exps:
        for arm, g in arm_daily(tables, experiment=e["name"]).groupby("arm"):
            label = arm if len(exps) == 1 else f"{e['name']}: {arm}"
            ax1.plot(g["date"], g["purchases_per_customer"].rolling(7, min_periods=1).mean(), label=label)
            ax2.plot(g["date"], g["revenue_per_customer"].rolling(7, min_periods=1).mean(), label=label)
    for e in exps:
        a = pd.Timestamp(e["assign_date"])
        for ax in (ax1, ax2):
            ax.axvspan(a, a + pd.Timedelta(days=int(e.get("treatment", {}).get("days", 30))), color="tab:purple",
                       alpha=0.12, label=f"{e['name']}: treatment window" if ax is ax1 else None)
            ax.axvline(a + pd.Timedelta(days=60), color="grey", linestyle="--", linewidth=1,
                       label="assign + 60 days" if ax is ax1 else None)
    ax1.set_title("Experiment arms: purchases per assigned customer per day (7-day mean)")
    ax1.set_ylabel("purchases / customer / day")
    ax2.set_title("Experiment arms: revenue per assigned customer per day (7-day mean)")
    ax2.set_ylabel("revenue / customer / day (currency units)")
    ax2.set_xlabel("date")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def has_experiment(labels: pd.DataFrame) -> bool:
    return "experiment_arms" in labels.columns and bool(labels["experiment_arms"].notna().any())
